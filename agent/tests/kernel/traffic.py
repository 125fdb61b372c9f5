#!/usr/bin/env python3
"""Traffic makers for the kernel tests and the demo. Each subcommand is one program run inside a network
namespace (`ip netns exec NS python3 traffic.py ...`): a client that misbehaves in a precise way, or a
server that does. Clients bind fixed source ports so the tests know every endpoint in advance."""

import argparse
import socket
import struct
import subprocess
import sys
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def client_socket(host, sport, kind=socket.SOCK_STREAM):
    s = socket.socket(family(host), kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if ":" in host else "0.0.0.0", sport))
    return s


def listener(port, v6=False):
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if v6 else "0.0.0.0", port))
    s.listen(16)
    print("listening", flush=True)
    return s


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


# ---- clients -----------------------------------------------------------------------------------------

def connect(a):
    """Connect, optionally send, then close as asked: normally, with RST (linger 0), or half-close."""
    s = client_socket(a.host, a.sport)
    s.settimeout(a.timeout)
    try:
        s.connect((a.host, a.port))
    except OSError as e:
        print(f"connect failed: {e}", flush=True)
        return
    if a.send:
        s.sendall(a.send.encode().decode("unicode_escape").encode("latin-1"))
    if a.wait:
        s.settimeout(a.wait)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
    if a.close == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    time.sleep(a.linger_after)


def http_get(a):
    """Several HTTP/1.1 requests on one keep-alive connection, then a clean close."""
    import http.client

    conn = http.client.HTTPConnection(a.host, a.port, timeout=5, source_address=("", a.sport))
    for method, path in (p.split(" ", 1) for p in a.requests):
        conn.request(method, path)
        r = conn.getresponse()
        r.read()
        print(method, path, r.status, flush=True)
    conn.close()


def http_load(a):
    """Many requests on one keep-alive connection: paths /fail/<i> for the planted failures, /ok/<i>
    (with bodies of several sizes, some of many segments) for the rest. Prints each status."""
    import http.client

    planted = {int(i) for i in a.fail.split(",") if i}
    conn = http.client.HTTPConnection(a.host, a.port, timeout=30, source_address=("", a.sport))
    for i in range(a.count):
        path = f"/fail/{i}" if i in planted else f"/ok/{i}?size={(i * 977) % 6000}"
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        print(i, r.status, flush=True)
    conn.close()
    time.sleep(0.3)


def udp(a):
    s = client_socket(a.host, a.sport, socket.SOCK_DGRAM)
    v6 = ":" in a.host
    if a.ttl:
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, a.ttl)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, a.ttl)
    if a.df:
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, 23, 2)  # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO
        else:
            s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    try:
        s.sendto(b"x" * a.size, (a.host, a.port))
    except OSError as e:
        print(f"send failed: {e}", flush=True)
    time.sleep(0.3)


# ---- servers -----------------------------------------------------------------------------------------

def serve(a):
    """One-connection servers with a chosen flaw."""
    srv = listener(a.port, a.v6)
    conn, _ = srv.accept()
    if a.mode == "hold":
        # Never close, whatever the peer does: the peer's FIN leaves us in CLOSE_WAIT.
        time.sleep(a.hold)
        return
    if a.mode == "read-then-hold":
        while conn.recv(4096):
            pass
        time.sleep(a.hold)
        return
    if a.mode == "close-after-eof":
        while conn.recv(4096):
            pass
        if a.before_close:
            subprocess.run(a.before_close, shell=True, check=True)
        conn.close()
        time.sleep(a.hold)
        return
    req = read_request(conn)
    if a.mode == "silent":
        # Read the request, never answer; close only when the client does.
        while conn.recv(4096):
            pass
    elif a.mode == "garbage":
        conn.sendall(b"\x00\x01 this is not HTTP\r\n\r\n")
    elif a.mode == "short":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it")
    elif a.mode == "ok":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    elif a.mode == "error":
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    del req
    conn.close()
    time.sleep(a.hold)


def http_server(a):
    """A keep-alive HTTP/1.1 server for healthy traffic."""
    import http.server

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/missing":
                body = b"not here"
                self.send_response(404)
            elif self.path.startswith("/fail/"):
                body = b"busy"
                self.send_response(503)
            elif "?size=" in self.path:
                body = b"x" * int(self.path.rsplit("=", 1)[1])
                self.send_response(200)
            else:
                body = b"hello world\n"
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    cls = http.server.ThreadingHTTPServer
    if a.v6:
        class V6(cls):
            address_family = socket.AF_INET6
        cls = V6
    httpd = cls(("::" if a.v6 else "0.0.0.0", a.port), H)
    print("listening", flush=True)
    httpd.serve_forever()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--sport", type=int, required=True)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--send", default="")
    c.add_argument("--wait", type=float, default=0.0, help="read replies for this long before closing")
    c.add_argument("--close", choices=["fin", "rst"], default="fin")
    c.add_argument("--linger-after", type=float, default=0.2)
    c.set_defaults(fn=connect)
    g = sub.add_parser("http-get")
    g.add_argument("host")
    g.add_argument("port", type=int)
    g.add_argument("--sport", type=int, required=True)
    g.add_argument("requests", nargs="+", help='e.g. "GET /" "HEAD /x"')
    g.set_defaults(fn=http_get)
    lg = sub.add_parser("http-load")
    lg.add_argument("host")
    lg.add_argument("port", type=int)
    lg.add_argument("--sport", type=int, required=True)
    lg.add_argument("--count", type=int, default=200)
    lg.add_argument("--fail", default="", help="comma-separated request numbers answered 503")
    lg.set_defaults(fn=http_load)
    u = sub.add_parser("udp")
    u.add_argument("host")
    u.add_argument("port", type=int)
    u.add_argument("--sport", type=int, required=True)
    u.add_argument("--ttl", type=int, default=0)
    u.add_argument("--size", type=int, default=8)
    u.add_argument("--df", action="store_true")
    u.set_defaults(fn=udp)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    s.add_argument("mode", choices=["hold", "read-then-hold", "close-after-eof", "silent", "garbage", "short", "ok", "error"])
    s.add_argument("--v6", action="store_true")
    s.add_argument("--hold", type=float, default=0.5)
    s.add_argument("--before-close", default="")
    s.set_defaults(fn=serve)
    h = sub.add_parser("http-server")
    h.add_argument("port", type=int)
    h.add_argument("--v6", action="store_true")
    h.set_defaults(fn=http_server)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
