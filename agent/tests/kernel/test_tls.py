"""TLS handshakes on real kernels (SPEC §3.5): `openssl s_server` with a certificate from a CA the client does
not trust, an expired certificate, TLS 1.3 only against a TLS 1.2 client, and healthy TLS 1.2 and 1.3
handshakes; `openssl s_client` verifying; a server that closes on the ClientHello. In TLS 1.3, where the
alerts are encrypted: a client rejecting an untrusted or expired certificate, a server rejecting a client
with no certificate or an untrusted one (mTLS), a HelloRetryRequest, healthy or failing after it; a TLS 1.2
`unrecognized_name` warning after which the handshake completes; an `https` client on a plain HTTP port.
The ground truth is what the test set up; tshark names the alerts it can see."""

import datetime
import subprocess
import sys
import time

from netlab import SERVER4, Lab, analyze, tshark_fields


def make_certs(d):
    """A trusted CA, an untrusted one, and leaves: ok.test (valid), rogue.test (untrusted CA),
    expired.test (valid CA, expired yesterday). PEM files in `d`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn, key, issuer, issuer_key, start, end, ca=False):
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(stem, c, key):
        (d / f"{stem}.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        (d / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))

    cas = {}
    for ca in ("ca", "rogue-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        c = cert(ca, key, name(ca), key, now - datetime.timedelta(days=1), now + datetime.timedelta(days=30), ca=True)
        write(ca, c, key)
        cas[ca] = (c, key)
    for leaf, ca, start, end in (("ok.test", "ca", -1, 30), ("rogue.test", "rogue-ca", -1, 30),
                                 ("expired.test", "ca", -30, -1)):
        key = ec.generate_private_key(ec.SECP256R1())
        c = cert(leaf, key, cas[ca][0].subject, cas[ca][1], now + datetime.timedelta(days=start),
                 now + datetime.timedelta(days=end))
        write(leaf, c, key)


def s_server(lab, d, port, leaf, *flags):
    return lab.serve("openssl", "s_server", "-quiet", "-accept", str(port), "-cert", str(d / f"{leaf}.crt"),
                     "-key", str(d / f"{leaf}.key"), *flags)


def s_client(lab, d, port, sni, *flags):
    r = subprocess.run(["ip", "netns", "exec", lab.c, "openssl", "s_client", "-connect", f"{SERVER4}:{port}",
                        "-servername", sni, "-CAfile", str(d / "ca.crt"), "-verify_return_error", *flags],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    return r.returncode


CLOSER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept(); c.recv(4096); c.close()
"""


def test_real_handshakes_fail_exactly_as_they_did(tmp_path):
    make_certs(tmp_path)
    pcap = tmp_path / "tls.pcap"
    with Lab() as lab:
        s_server(lab, tmp_path, 4431, "ok.test")
        s_server(lab, tmp_path, 4432, "rogue.test")
        s_server(lab, tmp_path, 4433, "expired.test")
        s_server(lab, tmp_path, 4434, "ok.test", "-tls1_3")
        lab.serve(sys.executable, "-c", CLOSER, "4435")
        for port in (4431, 4432, 4433, 4434, 4435):
            lab.wait_listening(port)
        with lab.capture(pcap, bpf="tcp portrange 4431-4435"):
            assert s_client(lab, tmp_path, 4431, "ok.test", "-tls1_3") == 0
            assert s_client(lab, tmp_path, 4431, "ok.test", "-tls1_2") == 0
            assert s_client(lab, tmp_path, 4432, "rogue.test", "-tls1_2") != 0
            assert s_client(lab, tmp_path, 4433, "expired.test", "-tls1_2") != 0
            assert s_client(lab, tmp_path, 4434, "ok.test", "-tls1_2") != 0
            assert s_client(lab, tmp_path, 4435, "closer.test", "-tls1_2") != 0
            time.sleep(0.5)
    entries = analyze(pcap)
    got = sorted((e["dst"]["port"], e["tls"].get("alert"), e["tls"].get("by"), e["tls"].get("sni"),
                  e["tls"].get("version"), e["error"]["type"]) for e in entries if e["protocol"] == "tls")
    assert got == [
        (4432, "unknown_ca", "client", "rogue.test", "TLS 1.2", "tls"),
        (4433, "certificate_expired", "client", "expired.test", "TLS 1.2", "tls"),
        (4434, "protocol_version", "server", "ok.test", "TLS 1.2", "tls"),
        (4435, None, "server", "closer.test", "TLS 1.2", "tls"),
    ], got
    closed = [e for e in entries if e["protocol"] == "tls" and e["dst"]["port"] == 4435][0]
    assert closed["error"]["msg"].startswith("no ServerHello"), closed
    # tshark names the same alerts, sent by the same sides: the clients' to ports 4432 and 4433, the
    # server's from port 4434.
    fatal = tshark_fields(pcap, "tls.alert_message.level == 2", "tcp.srcport", "tcp.dstport", "tls.alert_message.desc")
    to_server = {int(d): int(c) for _, d, c in fatal}
    from_server = {int(s): int(c) for s, _, c in fatal}
    assert (to_server.get(4432), to_server.get(4433), from_server.get(4434)) == (48, 45, 70), fatal
    # Healthy handshakes are no entry, and no stream timed out.
    assert not [e for e in entries if e["dst"]["port"] == 4431], entries


def s_client_held(lab, d, port, sni, *flags, hold=2):
    """`s_client` whose stdin stays open `hold` seconds (it does not close first on an empty stdin)."""
    cmd = ["ip", "netns", "exec", lab.c, "openssl", "s_client", "-connect", f"{SERVER4}:{port}", "-servername", sni,
           "-CAfile", str(d / "ca.crt"), "-verify_return_error", *flags]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=hold)
    except subprocess.TimeoutExpired:
        p.stdin.close()
        p.wait(timeout=10)
    return p.returncode


def test_tls13_failures_are_seen_through_the_encryption(tmp_path, peers):
    make_certs(tmp_path)
    pcap = tmp_path / "tls13.pcap"
    crt = lambda leaf: ["-cert", str(tmp_path / f"{leaf}.crt"), "-key", str(tmp_path / f"{leaf}.key")]  # noqa: E731
    with Lab() as lab:
        s_server(lab, tmp_path, 4441, "rogue.test", "-tls1_3")
        s_server(lab, tmp_path, 4442, "expired.test", "-tls1_3")
        s_server(lab, tmp_path, 4443, "ok.test", "-tls1_3", "-Verify", "1", "-CAfile", str(tmp_path / "ca.crt"),
                 "-verify_return_error")
        s_server(lab, tmp_path, 4444, "ok.test", "-tls1_3", "-groups", "P-256")
        s_server(lab, tmp_path, 4445, "expired.test", "-tls1_3", "-groups", "P-256")
        s_server(lab, tmp_path, 4446, "ok.test", "-tls1_2", "-servername", "other.test", *[
            a.replace("-cert", "-cert2").replace("-key", "-key2") if a.startswith("-") else a for a in crt("ok.test")])
        # Go's own HTTP/1.1 server: what it answers a ClientHello with is what real servers do.
        lab.serve(peers, "http-server", "4447")
        for port in range(4441, 4448):
            lab.wait_listening(port)
        with lab.capture(pcap, bpf="tcp portrange 4441-4447"):
            assert s_client_held(lab, tmp_path, 4441, "rogue.test", "-tls1_3") != 0
            assert s_client_held(lab, tmp_path, 4442, "expired.test", "-tls1_3") != 0
            assert s_client_held(lab, tmp_path, 4443, "ok.test", "-tls1_3") != 0, "no client certificate"
            # In TLS 1.3 the client's handshake is over before the server judges its certificate: s_client
            # may exit 0 here; the server rejecting a certificate from a CA it does not trust is the truth.
            s_client_held(lab, tmp_path, 4443, "ok.test", "-tls1_3", *crt("rogue.test"))
            assert s_client_held(lab, tmp_path, 4443, "ok.test", "-tls1_3", *crt("ok.test"), hold=1) == 0
            assert s_client_held(lab, tmp_path, 4444, "ok.test", "-tls1_3", "-groups", "X25519:P-256", hold=1) == 0
            assert s_client_held(lab, tmp_path, 4445, "expired.test", "-tls1_3", "-groups", "X25519:P-256") != 0
            assert s_client_held(lab, tmp_path, 4446, "ok.test", "-tls1_2", hold=1) == 0
            assert s_client_held(lab, tmp_path, 4447, "web.test", "-tls1_3") != 0
            # Go's client encrypts its verdict on the server's certificate (its handshake keys are in use).
            go = subprocess.run(["ip", "netns", "exec", lab.c, peers, "tls-client", f"{SERVER4}:4442", "--ca",
                                 str(tmp_path / "ca.crt"), "--sni", "expired.test"], capture_output=True, text=True)
            assert "expired" in go.stdout, go.stdout + go.stderr
            time.sleep(0.5)
    entries = analyze(pcap)
    got = sorted((e["dst"]["port"], e["tls"].get("alert") or "", e["tls"].get("by"), e["tls"].get("version"),
                  e["error"]["msg"].split(":")[0]) for e in entries if e["protocol"] == "tls")
    # OpenSSL's client sends its verdict on the server's certificate in the clear (its write keys are not
    # yet the handshake's): read and named. A server's verdict on the client's certificate is encrypted:
    # known by its size.
    assert got == [
        (4441, "unknown_ca", "client", "TLS 1.3", "unknown_ca"),
        (4442, "", "client", "TLS 1.3", "encrypted alert"),
        (4442, "certificate_expired", "client", "TLS 1.3", "certificate_expired"),
        (4443, "", "server", "TLS 1.3", "encrypted alert"),
        (4443, "", "server", "TLS 1.3", "encrypted alert"),
        (4445, "certificate_expired", "client", "TLS 1.3", "certificate_expired"),
        (4447, "", "server", "TLS 1.3", "not TLS"),
    ], got
    [plain_http] = [e for e in entries if e["dst"]["port"] == 4447]
    assert "400" in plain_http["error"]["msg"], plain_http
    assert not [e for e in entries if e.get("error") and e["protocol"] != "tls"], entries
    # tshark: the retry really happened, and the 1.2 warning was sent and the handshake went on.
    hrr = tshark_fields(pcap, "tls.handshake.type == 2 and tcp.srcport == 4444", "tls.handshake.random")
    assert any(r.startswith("cf21ad74e59a6111be1d8c021e65b891") for (r,) in hrr), hrr
    warning = tshark_fields(pcap, "tls.alert_message.level == 1 and tcp.srcport == 4446", "tls.alert_message.desc")
    assert ("112",) in warning, warning
