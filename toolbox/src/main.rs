//! `faultline-toolbox`: the workloads of the real-node tests, in the toolbox image beside busybox. Each
//! subcommand is one program that succeeds or fails in a precise, known way, so that a test knows the
//! ground truth of every entry Faultline reports:
//!
//! ```text
//! faultline-toolbox http-server PORT          # GET /status/N answers N, /reset resets, /hang never answers,
//!                                             # /garbage answers what is not HTTP, /short cuts its body,
//!                                             # /alloc allocates until the kernel kills it (OOMKilled)
//! faultline-toolbox hold-server PORT          # accepts and never closes, whatever the client does
//! faultline-toolbox close-server PORT         # reads until the client's FIN, then closes
//! faultline-toolbox http-get URL [--count N]  # N requests on one keep-alive connection; prints statuses
//! faultline-toolbox connect HOST:PORT [--sport N] [--send TEXT] [--wait SECS]
//!                                             # prints "connected" (then sends, reads, closes) or "refused"
//! faultline-toolbox udp HOST:PORT             # one datagram (to a closed port: ICMP port unreachable)
//! faultline-toolbox dns NAME [--type N]       # one DNS query (type A, or N) to resolv.conf's first
//!                                             # nameserver, no retry and no search list; prints the rcode
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("http-server") => http_server(arg(&args, 1)),
        Some("hold-server") => simple_server(arg(&args, 1), Hold::Forever),
        Some("close-server") => simple_server(arg(&args, 1), Hold::UntilEof),
        Some("http-get") => http_get(arg(&args, 1), count(&args)),
        Some("connect") => connect(arg(&args, 1), &args),
        Some("udp") => udp(arg(&args, 1)),
        Some("dns") => dns(arg(&args, 1), flag(&args, "--type").and_then(|t| t.parse().ok()).unwrap_or(1)),
        _ => Err(io::Error::other(
            "usage: faultline-toolbox http-server PORT | http-get URL [--count N] | connect HOST:PORT | udp HOST:PORT",
        )),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultline-toolbox: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_default()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].as_str())
}

fn count(args: &[String]) -> usize {
    flag(args, "--count").and_then(|n| n.parse().ok()).unwrap_or(1)
}

enum Hold {
    Forever,
    UntilEof,
}

/// A TCP server that never closes (its clients see CLOSE_WAIT on its side), or closes only after the
/// client's FIN (the server's FIN is then the last one).
fn simple_server(port: &str, hold: Hold) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port.parse::<u16>().map_err(io::Error::other)?))?;
    println!("listening on {port}");
    let mut held = Vec::new();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        match hold {
            Hold::Forever => held.push(conn),
            Hold::UntilEof => {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    drop(conn);
                });
            }
        }
    }
    Ok(())
}

/// A keep-alive HTTP/1.1 server, a thread per connection.
fn http_server(port: &str) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port.parse::<u16>().map_err(io::Error::other)?))?;
    println!("listening on {port}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            let _ = serve(conn);
        });
    }
    Ok(())
}

fn serve(conn: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        // The rest of the head; bodies are not expected.
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if path == "/reset" {
            // Linger 0: close() sends an RST instead of a FIN.
            socket2::SockRef::from(&writer).set_linger(Some(Duration::ZERO))?;
            return Ok(());
        }
        if path == "/hang" {
            std::thread::sleep(Duration::from_secs(3600));
            return Ok(());
        }
        if path == "/alloc" {
            // Grows without end, touching every page: under a memory limit the kernel kills the process
            // (OOMKilled) while this request waits for its answer.
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(vec![1u8; 1 << 20]);
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if path == "/garbage" {
            writer.write_all(b"\x00\x01 this is not HTTP\r\n\r\n")?;
            return Ok(());
        }
        if path == "/short" {
            writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it")?;
            return Ok(());
        }
        let status: u16 = path.strip_prefix("/status/").and_then(|s| s.parse().ok()).unwrap_or(200);
        // 1xx, 204 and 304 have no body (RFC 9112 §6.3): a workload that sent one would break HTTP itself.
        let body = if matches!(status, 100..=199 | 204 | 304) { String::new() } else { format!("status {status}\n") };
        write!(writer, "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n\r\n{body}", reason(status), body.len())?;
        writer.flush()?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// `count` GETs of `url` (http://host:port/path) on one connection; prints each status, or the error.
fn http_get(url: &str, count: usize) -> io::Result<()> {
    let rest = url.strip_prefix("http://").ok_or_else(|| io::Error::other("only http:// URLs"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let target = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
    let mut conn = TcpStream::connect(resolve(&target)?)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    for _ in 0..count {
        write!(conn, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")?;
        let mut status = String::new();
        if reader.read_line(&mut status)? == 0 {
            println!("closed");
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        println!("{}", status.split_whitespace().nth(1).unwrap_or("?"));
    }
    conn.shutdown(Shutdown::Both)?;
    Ok(())
}

/// Connects (from `--sport` if given), sends `--send`, reads for `--wait` seconds, closes.
fn connect(target: &str, args: &[String]) -> io::Result<()> {
    let addr = resolve(target)?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    if let Some(port) = flag(args, "--sport").and_then(|p| p.parse::<u16>().ok()) {
        socket.set_reuse_address(true)?;
        let any: std::net::SocketAddr =
            if addr.is_ipv4() { ([0, 0, 0, 0], port).into() } else { ([0u16; 8], port).into() };
        socket.bind(&any.into())?;
    }
    let mut conn: TcpStream = match socket.connect_timeout(&addr.into(), Duration::from_secs(5)) {
        Ok(()) => socket.into(),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            println!("refused");
            return Ok(());
        }
        Err(e) => {
            println!("failed: {e}");
            return Ok(());
        }
    };
    println!("connected");
    if let Some(text) = flag(args, "--send") {
        conn.write_all(text.replace("\\r", "\r").replace("\\n", "\n").as_bytes())?;
    }
    if let Some(secs) = flag(args, "--wait").and_then(|s| s.parse::<f64>().ok()) {
        conn.set_read_timeout(Some(Duration::from_secs_f64(secs.max(0.001))))?;
        let mut buf = [0u8; 4096];
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    }
    Ok(())
}

fn udp(target: &str) -> io::Result<()> {
    let addr = resolve(target)?;
    let s = UdpSocket::bind(if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    s.send_to(b"faultline", addr)?;
    std::thread::sleep(Duration::from_millis(200));
    println!("sent");
    Ok(())
}

/// One query for `name` (type `qtype`), recursion desired, to the first nameserver of /etc/resolv.conf: a
/// client whose every packet the test knows (a resolver library would add a search list, a second type
/// and retries). Prints the answer's rcode, or "timeout" after 5 s.
fn dns(name: &str, qtype: u16) -> io::Result<()> {
    let conf = std::fs::read_to_string("/etc/resolv.conf")?;
    let server = conf
        .lines()
        .find_map(|l| l.strip_prefix("nameserver").map(str::trim))
        .ok_or_else(|| io::Error::other("no nameserver in /etc/resolv.conf"))?;
    let server: std::net::IpAddr = server.parse().map_err(io::Error::other)?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let mut q = Vec::with_capacity(64);
    q.extend(id.to_be_bytes());
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).map_err(io::Error::other)?);
        q.extend(label.as_bytes());
    }
    q.push(0);
    q.extend(qtype.to_be_bytes());
    q.extend(1u16.to_be_bytes());
    let s = UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.send_to(&q, (server, 53))?;
    let mut buf = [0u8; 4096];
    match s.recv(&mut buf) {
        Ok(n) if n >= 4 && buf[..2] == id.to_be_bytes() => {
            let rcode = buf[3] & 0x0f;
            let names = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];
            println!("{}", names.get(usize::from(rcode)).copied().unwrap_or("OTHER"));
        }
        Ok(_) => println!("unexpected answer"),
        Err(_) => println!("timeout"),
    }
    Ok(())
}

fn resolve(target: &str) -> io::Result<std::net::SocketAddr> {
    target.to_socket_addrs()?.next().ok_or_else(|| io::Error::other(format!("{target}: no address")))
}
