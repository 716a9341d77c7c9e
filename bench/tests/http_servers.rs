//! The `http` workload's servers that Cargo builds (`http_asyncnet`,
//! `http_hyper`) speak enough HTTP/1.1 for wrk and for a plain client:
//! keep-alive, pipelining, request bodies, `Connection: close`, HTTP/1.0,
//! and 400 for a malformed request line. Checked with a blocking
//! `TcpStream`; neither wrk nor nim is needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use asyncnet_bench::child::Spawned;
use asyncnet_bench::parse_ready_line;

const ASYNCNET: &str = env!("CARGO_BIN_EXE_http_asyncnet");
const HYPER: &str = env!("CARGO_BIN_EXE_http_hyper");
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

fn start(bin: &str) -> (Spawned, u16) {
    let server = Spawned::start(bin, Path::new(bin), &["0".to_string()], None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = server.wait_for_line(deadline, parse_ready_line).unwrap();
    (server, port)
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// One response as read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Header names in lower case, values trimmed.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response: status line, headers, then `Content-Length` bytes of
/// body (none if `head`, the answer to a `HEAD`).
fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap();
    assert!(version.starts_with("HTTP/1."), "status line {line:?}");
    let status = parts.next().unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "header line {line:?}");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .unwrap();
    if !head {
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).unwrap();
    }
    resp
}

fn assert_hello(resp: &Response, with_body: bool) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("text/plain"), "{resp:?}");
    assert_eq!(resp.header("content-length"), Some("13"), "{resp:?}");
    let body: &[u8] = if with_body { b"Hello, World!" } else { b"" };
    assert_eq!(resp.body, body, "{resp:?}");
}

/// True if the server closed the connection: end of stream (or a reset)
/// where the next response would be.
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn check_keep_alive(port: u16) {
    let (mut w, mut r) = connect(port);
    w.write_all(GET).unwrap();
    assert_hello(&read_response(&mut r, false), true);
    w.write_all(GET).unwrap();
    assert_hello(&read_response(&mut r, false), true);
}

fn check_pipelined(port: u16) {
    let (mut w, mut r) = connect(port);
    // Three requests in one write; the HEAD in the middle shows the order
    // (its response has no body).
    let mut batch = GET.to_vec();
    batch.extend_from_slice(b"HEAD /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    batch.extend_from_slice(GET);
    w.write_all(&batch).unwrap();
    assert_hello(&read_response(&mut r, false), true);
    assert_hello(&read_response(&mut r, true), false);
    assert_hello(&read_response(&mut r, false), true);
}

fn check_body(port: u16) {
    let (mut w, mut r) = connect(port);
    let body = vec![b'x'; 100_000];
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).unwrap();
    // The body in two parts, the second after a pause.
    w.write_all(&body[..30_000]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    w.write_all(&body[30_000..]).unwrap();
    assert_hello(&read_response(&mut r, false), true);
    // A small body with the next request right behind it, in one write: the
    // body was consumed, not taken for a request.
    w.write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_hello(&read_response(&mut r, false), true);
    assert_hello(&read_response(&mut r, false), true);
}

fn check_close(port: u16) {
    let (mut w, mut r) = connect(port);
    w.write_all(GET).unwrap();
    assert_hello(&read_response(&mut r, false), true);
    w.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r, false);
    assert_hello(&resp, true);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed(&mut r), "still open after Connection: close");

    // HTTP/1.0 closes unless it asks for keep-alive.
    let (mut w, mut r) = connect(port);
    w.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_hello(&read_response(&mut r, false), true);
    assert!(closed(&mut r), "HTTP/1.0 still open");
    let (mut w, mut r) = connect(port);
    for _ in 0..2 {
        w.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false);
        assert_hello(&resp, true);
        assert_eq!(
            resp.header("connection").map(str::to_ascii_lowercase),
            Some("keep-alive".to_string())
        );
    }
}

fn check_malformed(port: u16) {
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
    ] {
        let (mut w, mut r) = connect(port);
        w.write_all(bad).unwrap();
        let resp = read_response(&mut r, false);
        assert_eq!(resp.status, 400, "{bad:?}: {resp:?}");
        assert!(closed(&mut r), "{bad:?}: still open after a 400");
    }
}

fn check_server(bin: &str) {
    let (mut server, port) = start(bin);
    check_keep_alive(port);
    check_pipelined(port);
    check_body(port);
    check_close(port);
    check_malformed(port);
    // Many connections at once, each with a few requests.
    let mut conns: Vec<_> = (0..20).map(|_| connect(port)).collect();
    for _ in 0..3 {
        for (w, _) in &mut conns {
            w.write_all(GET).unwrap();
        }
        for (_, r) in &mut conns {
            assert_hello(&read_response(r, false), true);
        }
    }
    assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
}

#[test]
fn http_asyncnet_serves() {
    check_server(ASYNCNET);
}

#[test]
fn http_hyper_serves() {
    check_server(HYPER);
}

/// Ours only (hyper has its own rules): lines over 8 KiB, bodies it cannot
/// frame, and a HEAD.
#[test]
fn http_asyncnet_refuses_what_it_cannot_serve() {
    let (mut server, port) = start(ASYNCNET);
    let (mut w, mut r) = connect(port);
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
    w.write_all(long.as_bytes()).unwrap();
    assert_eq!(read_response(&mut r, false).status, 400);
    assert!(closed(&mut r));

    let (mut w, mut r) = connect(port);
    w.write_all(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).status, 501);
    assert!(closed(&mut r));

    let (mut w, mut r) = connect(port);
    w.write_all(b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).status, 400);
    assert!(closed(&mut r));

    // Empty lines before a request line are skipped.
    let (mut w, mut r) = connect(port);
    w.write_all(b"\r\n\r\nHEAD / HTTP/1.1\r\n\r\n").unwrap();
    assert_hello(&read_response(&mut r, true), false);
    w.write_all(GET).unwrap();
    assert_hello(&read_response(&mut r, false), true);

    // A client gone mid-request does not take the server down.
    let (mut w, r) = connect(port);
    w.write_all(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    drop((w, r));
    check_keep_alive(port);
    assert!(server.try_wait().unwrap().is_none(), "http_asyncnet exited");
}
