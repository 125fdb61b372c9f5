//! `faultline-agent analyze` as a user runs it: every capture format and link layer gives the same
//! entries, output is exact JSON lines, and broken input is a clear error with what was found kept.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etherparse::PacketBuilder;

const BIN: &str = env!("CARGO_BIN_EXE_faultline-agent");

/// A refused connection, a reset one, and an HTTP 404, as raw IPv4 packets with capture times (µs).
fn conversation() -> Vec<(u64, Vec<u8>)> {
    let c = [198, 51, 100, 2];
    let s = [203, 0, 113, 2];
    let mut pkts = Vec::new();
    let mut push = |us: u64, src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, f: &str, seq: u32, ack: u32, data: &[u8]| {
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 65535);
        if f.contains('S') {
            b = b.syn();
        }
        if f.contains('A') {
            b = b.ack(ack);
        }
        if f.contains('F') {
            b = b.fin();
        }
        if f.contains('R') {
            b = b.rst();
        }
        let mut p = Vec::new();
        b.write(&mut p, data).expect("builds");
        pkts.push((1_795_821_177_000_000 + us, p));
    };
    // Refused.
    push(0, c, s, 40001, 1, "S", 100, 0, b"");
    push(100, s, c, 1, 40001, "RA", 0, 101, b"");
    // HTTP 404 then reset by the server.
    push(1000, c, s, 40002, 8080, "S", 1000, 0, b"");
    push(1100, s, c, 8080, 40002, "SA", 5000, 1001, b"");
    push(1200, c, s, 40002, 8080, "A", 1001, 5001, b"");
    let req = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    push(1300, c, s, 40002, 8080, "A", 1001, 5001, req);
    let resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    push(3300, s, c, 8080, 40002, "A", 5001, 1001 + req.len() as u32, resp);
    push(4000, s, c, 8080, 40002, "RA", 5001 + resp.len() as u32, 0, b"");
    pkts
}

fn ethernet(ip: &[u8], vlan_tags: usize) -> Vec<u8> {
    let mut f = vec![4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2];
    for i in 0..vlan_tags {
        f.extend(if i == 0 && vlan_tags == 2 { [0x88, 0xa8] } else { [0x81, 0x00] });
        f.extend([0x00, 0x0a]);
    }
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f
}

fn sll(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0, 0x08, 0x00];
    f.extend(ip);
    f
}

fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0];
    f.extend(ip);
    f
}

fn pcap(link: u32, nanos: bool, big_endian: bool, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = Vec::new();
    f.extend(w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend(w16(2));
    f.extend(w16(4));
    f.extend(w32(0));
    f.extend(w32(0));
    f.extend(w32(262_144));
    f.extend(w32(link));
    for (us, data) in frames {
        f.extend(w32((us / 1_000_000) as u32));
        f.extend(w32(if nanos { (us % 1_000_000 * 1000) as u32 } else { (us % 1_000_000) as u32 }));
        f.extend(w32(data.len() as u32));
        f.extend(w32(data.len() as u32));
        f.extend(data);
    }
    f
}

fn pcapng(link: u16, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        let mut b = t.to_le_bytes().to_vec();
        b.extend(total.to_le_bytes());
        b.extend(body);
        b.resize(8 + padded, 0);
        b.extend(total.to_le_bytes());
        b
    }
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend([1, 0, 0, 0]);
    shb.extend((-1i64).to_le_bytes());
    let mut f = block(0x0a0d_0d0a, &shb);
    let mut idb = link.to_le_bytes().to_vec();
    idb.extend([0, 0, 0, 0, 0, 0]);
    f.extend(block(1, &idb));
    for (us, data) in frames {
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(((us >> 32) as u32).to_le_bytes());
        epb.extend((*us as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend(data);
        f.extend(block(6, &epb));
    }
    f
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("temp file");
    p
}

fn analyze(args: &[&str], files: &[&Path]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("analyze").args(args);
    for f in files {
        cmd.arg(f);
    }
    cmd.output().expect("runs")
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_format_and_link_layer_gives_the_same_entries() {
    let dir = tempdir("formats");
    let conv = conversation();
    let map = |f: fn(&[u8]) -> Vec<u8>| conv.iter().map(|(t, p)| (*t, f(p))).collect::<Vec<_>>();
    let eth = map(|p| ethernet(p, 0));
    let files = [
        write(&dir, "eth.pcap", &pcap(1, false, false, &eth)),
        write(&dir, "eth-ns-be.pcap", &pcap(1, true, true, &eth)),
        write(&dir, "vlan.pcap", &pcap(1, false, false, &map(|p| ethernet(p, 1)))),
        write(&dir, "qinq.pcap", &pcap(1, false, false, &map(|p| ethernet(p, 2)))),
        write(&dir, "sll.pcap", &pcap(113, false, false, &map(sll))),
        write(&dir, "sll2.pcapng", &pcapng(276, &map(sll2))),
        write(&dir, "raw.pcap", &pcap(101, false, false, &conv)),
        write(&dir, "eth.pcapng", &pcapng(1, &eth)),
    ];
    let first = analyze(&["--output", "jsonl"], &[&files[0]]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let expected = stdout(&first);
    let lines: Vec<serde_json::Value> =
        expected.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    let kinds: Vec<String> = lines
        .iter()
        .map(|e| match (&e["tcp"], &e["response"], &e["error"]) {
            (serde_json::Value::Object(t), _, _) => {
                format!("{}/{}", t["state"], t.get("reason").unwrap_or(&serde_json::Value::Null))
            }
            (_, serde_json::Value::Object(r), _) => format!("http {}", r["status"]),
            (_, _, err) => format!("{}", err["msg"]),
        })
        .collect();
    assert_eq!(kinds, vec![r#""SynSent"/"refused""#, "http 404", r#""Reset"/null"#]);
    assert_eq!(lines[1]["elapsedTime"], 2.0);
    assert_eq!(lines[0]["timestamp"], "2026-11-27T23:12:57.000000Z");
    for f in &files[1..] {
        let o = analyze(&["--output", "jsonl"], &[f]);
        assert!(o.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&o.stderr));
        assert_eq!(stdout(&o), expected, "{}", f.display());
    }
}

#[test]
fn truncated_file_keeps_what_was_found_and_fails() {
    let dir = tempdir("truncated");
    let conv = conversation();
    let full = pcap(101, false, false, &conv);
    // Cut inside the last record (the server's RST): the refused connection and the 404 were seen.
    let cut = write(&dir, "cut.pcap", &full[..full.len() - 10]);
    let o = analyze(&["--output", "jsonl"], &[&cut]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cut.pcap: truncated at byte"), "{err}");
    let out = stdout(&o);
    assert!(out.contains(r#""reason":"refused""#), "{out}");
    assert!(out.contains(r#""status":404"#), "{out}");
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let dir = tempdir("unreadable");
    let missing = dir.join("no-such.pcap");
    let o = analyze(&[], &[&missing]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such.pcap: cannot open"));

    let text = write(&dir, "notes.txt", b"these are not packets, just notes\n");
    let o = analyze(&[], &[&text]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a capture file"));
    assert!(o.stdout.is_empty());
}

#[test]
fn query_filters_entries() {
    let dir = tempdir("query");
    let f = write(&dir, "eth.pcap", &pcap(101, false, false, &conversation()));
    let count = |q: &str| -> usize {
        let o = analyze(&["--output", "jsonl", "--query", q], &[&f]);
        assert!(o.status.success(), "{q}: {}", String::from_utf8_lossy(&o.stderr));
        stdout(&o).lines().count()
    };
    assert_eq!(count("tcp"), 2);
    assert_eq!(count("!tcp"), 1);
    assert_eq!(count("response.status > 400 or error or icmp or tcp"), 3);
    assert_eq!(count("response.status > 404"), 0);
    assert_eq!(count(r#"request.path.startsWith("/no") and response.status == 404"#), 1);
    let o = analyze(&["--output", "jsonl", "--query", "tcp"], &[&f]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 entries (1 more did not match the query)"));
}

#[test]
fn bad_query_points_at_the_fault() {
    let dir = tempdir("badquery");
    let f = write(&dir, "eth.pcap", &pcap(101, false, false, &conversation()));
    let o = analyze(&["--query", "(tcp or icmp"], &[&f]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "faultline-agent: invalid --query: column 13: expected ')' to close the '(' at column 1, found end of query\n  \
         (tcp or icmp\n              ^\n"
    );
    assert!(o.stdout.is_empty(), "nothing is analysed with a bad query");
}

#[test]
fn table_output_names_what_happened() {
    let dir = tempdir("table");
    let f = write(&dir, "eth.pcap", &pcap(101, false, false, &conversation()));
    let o = analyze(&["--output", "table"], &[&f]);
    assert!(o.status.success());
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME") && lines[0].contains("DETAIL"), "{out}");
    assert!(lines[1].contains("SynSent (refused)") && lines[1].contains("198.51.100.2:40001"), "{out}");
    assert!(lines[2].contains("404 Not Found") && lines[2].contains("GET /nope"), "{out}");
    assert!(lines[3].contains("Reset (server)"), "{out}");
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains("3 entries"), "{summary}");
    assert!(summary.contains("8 packets"), "{summary}");
}

#[test]
fn timeout_flags_reach_the_engine() {
    let dir = tempdir("flags");
    // One unanswered SYN, then an unrelated packet 2 s later.
    let mut frames = Vec::new();
    let mut p = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 80, 1, 100).syn().write(&mut p, b"").expect("b");
    frames.push((1_000_000, p));
    let mut q = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 3], [10, 0, 0, 4], 64).udp(1, 2).write(&mut q, b"").expect("b");
    frames.push((3_000_000, q));
    let f = write(&dir, "syn.pcap", &pcap(101, false, false, &frames));
    let elapsed = |args: &[&str]| -> f64 {
        let o = analyze(args, &[&f]);
        let line = stdout(&o);
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one entry");
        v["elapsedTime"].as_f64().expect("number")
    };
    assert_eq!(elapsed(&["--output", "jsonl", "--syn-timeout-ms", "500"]), 500.0);
    // With the default 3000 ms, the capture ends first (2 s after the SYN).
    assert_eq!(elapsed(&["--output", "jsonl"]), 2000.0);
}

/// The benchmark's capture (generated smaller): one engine and two or four shards print the same
/// entries, in the same order, with the same ids, and the same summary; and they are the errors the
/// generator made.
#[test]
fn engine_threads_print_what_one_engine_prints_on_the_bench_capture() {
    let dir = tempdir("sharded");
    let cap = dir.join("bench.pcap");
    let generator = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/gen_capture.py");
    let gen = Command::new("python3")
        .args([generator, cap.to_str().expect("utf-8 path"), "--conversations", "6000"])
        .output()
        .expect("python3 runs the generator");
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    let expected: serde_json::Value = serde_json::from_slice(&gen.stdout).expect("the generator's counts");
    let one = analyze(&["--threads", "1", "--output", "jsonl"], &[&cap]);
    assert!(one.status.success());
    for n in ["2", "4"] {
        let sharded = analyze(&["--threads", n, "--output", "jsonl"], &[&cap]);
        assert!(stdout(&sharded) == stdout(&one), "{n} threads printed other entries");
        assert_eq!(String::from_utf8_lossy(&sharded.stderr), String::from_utf8_lossy(&one.stderr), "{n} threads");
    }
    let entries: Vec<serde_json::Value> =
        stdout(&one).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let refused = entries.iter().filter(|e| e["tcp"]["reason"] == "refused").count();
    let icmp = entries.iter().filter(|e| e["protocol"] == "icmp").count();
    assert_eq!(Some(refused as u64), expected["refused"].as_u64());
    assert_eq!(Some(icmp as u64), expected["icmp"].as_u64());
    let _ = std::fs::remove_dir_all(&dir);
}
