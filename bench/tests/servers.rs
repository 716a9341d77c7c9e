//! Every server binary keeps its contract, table-driven over the servers:
//! ready line, then a byte echo on every connection whatever the chunking
//! (TCP and Unix stream), every datagram back to its sender (UDP), a
//! `+PONG\r\n` per line (`--pong`), enough HTTP/1.1 for wrk and a plain
//! client (the `http` servers), TLS with the given certificate (the TLS
//! servers, driven by the TLS load generator).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use asyncnet_bench::child::Spawned;
use asyncnet_bench::extpeers;
use asyncnet_bench::loadgen::{self, Span};
use asyncnet_bench::peers::Peer;
use asyncnet_bench::tls::certs::{self, IdentityFiles};
use asyncnet_bench::tls::loadgen::{self as tls, Mode, Settings};
use asyncnet_bench::{parse_ready_line, Listen};

const ASYNCNET: &str = env!("CARGO_BIN_EXE_echo_asyncnet");
const TOKIO: &str = env!("CARGO_BIN_EXE_echo_tokio");
/// The TCP echo servers: every peer built by Cargo, with its flags.
const TCP: [(&str, &[&str]); 6] = [
    (ASYNCNET, &[]),
    (ASYNCNET, &["--recv"]),
    (ASYNCNET, &["--threads", "2"]),
    (TOKIO, &[]),
    (TOKIO, &["--tuned"]),
    (TOKIO, &["--multi-thread"]),
];

fn start(bin: &str, flags: &[&str], listen: &Listen) -> (Spawned, u16) {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(listen.to_args());
    let server = Spawned::start(bin, Path::new(bin), &args, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = match listen {
        Listen::Unix(_) => {
            let line = server.next_line(deadline).unwrap();
            assert_eq!(line, listen.ready_line(0));
            0
        }
        _ => server.wait_for_line(deadline, parse_ready_line).unwrap(),
    };
    (server, port)
}

/// A TCP or Unix stream.
trait Stream: Read + Write + Send + Sized + 'static {
    fn dup(&self) -> Self;
    fn close_write(&self);
}

macro_rules! stream {
    ($t:ty) => {
        impl Stream for $t {
            fn dup(&self) -> Self {
                self.try_clone().unwrap()
            }
            fn close_write(&self) {
                self.shutdown(Shutdown::Write).unwrap();
            }
        }
    };
}
stream!(TcpStream);
stream!(UnixStream);

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The server echoes: small messages on several connections at once,
/// interleaved; a large payload written while reading (so the server's
/// writes block and must resume); and a client vanishing without reading
/// does not take it down.
fn check_echo<S: Stream>(bin: &str, flags: &[&str], listen: Listen, connect: impl Fn(u16) -> S) {
    let (mut server, port) = start(bin, flags, &listen);
    let mut conns: Vec<S> = (0..5).map(|_| connect(port)).collect();
    for round in 0..20u8 {
        for (i, c) in conns.iter_mut().enumerate() {
            let msg = [b'a' + (i as u8 + round) % 26; 64];
            c.write_all(&msg).unwrap();
            let mut back = [0u8; 64];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
        }
    }
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = connect(port);
    let (mut w, data) = (c.dup(), payload.clone());
    let writer = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.close_write();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(
        back == payload,
        "echoed {} of {} bytes, or different",
        back.len(),
        payload.len()
    );
    let mut rude = connect(port);
    rude.write_all(&[1u8; 100_000]).unwrap();
    drop((rude, conns));
    let mut c = connect(port);
    c.write_all(b"still there\n").unwrap();
    let mut back = [0u8; 12];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still there\n");
    assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
}

/// `--pong`: one `+PONG\r\n` per line, whether the lines come one at a time,
/// pipelined in one write, or split across writes.
fn check_pong(bin: &str, flags: &[&str]) {
    let all: Vec<&str> = std::iter::once("--pong")
        .chain(flags.iter().copied())
        .collect();
    let (mut server, port) = start(bin, &all, &Listen::Tcp(0));
    let mut c = connect(port);
    let expect = |c: &mut TcpStream, send: &[u8], n: usize| {
        c.write_all(send).unwrap();
        let mut back = vec![0u8; 7 * n];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, b"+PONG\r\n".repeat(n));
    };
    expect(&mut c, b"PING\r\n", 1);
    expect(&mut c, &b"PING\r\n".repeat(16), 16);
    c.write_all(b"PI").unwrap();
    thread::sleep(Duration::from_millis(50));
    expect(&mut c, b"NG\r\nPING\r\n", 2);
    assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
}

#[test]
fn servers_echo_and_pong_over_tcp() {
    for (bin, flags) in TCP {
        check_echo(bin, flags, Listen::Tcp(0), connect);
        check_pong(bin, flags);
    }
}

/// True under CI (`CI=true`), where a missing tool fails a test instead of skipping it.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The C floors, built as the suite builds them (`cc -O2`), keep the same
/// contract, over TCP and Unix stream sockets: the epoll one (also with a
/// buffer per connection, `c-floor-buffers`), and the io_uring one wherever
/// io_uring may be used (elsewhere the suite skips it, and so does this
/// test, saying why).
#[test]
fn c_floors_echo_and_pong_over_tcp_and_echo_over_unix_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut notes = Vec::new();
    let mut own_buffers = Peer::source("c-floor-buffers", "echo_floor.c");
    own_buffers.args.push("--own-buffers".into());
    let sources = vec![
        Peer::source("c-floor", "echo_floor.c"),
        own_buffers,
        Peer::source("c-uring", "echo_uring.c"),
    ];
    let built = extpeers::prepare(sources, &dir, &mut notes).unwrap();
    if built.is_empty() {
        assert!(!ci(), "cc is missing under CI: {notes:?}");
        eprintln!("skipped: {notes:?}");
        return;
    }
    if !built.iter().any(|p| p.name == "c-uring") {
        assert!(notes.iter().any(|n| n.contains("io_uring")), "{notes:?}");
        eprintln!("c-uring not tested: {notes:?}");
    }
    for peer in &built {
        let path = peer.path(Path::new("")).unwrap();
        let bin = path.to_str().unwrap();
        let flags: Vec<&str> = peer.args.iter().map(String::as_str).collect();
        check_echo(bin, &flags, Listen::Tcp(0), connect);
        check_pong(bin, &flags);
        let sock = dir.path().join(format!("{}.sock", peer.name));
        check_echo(bin, &flags, Listen::Unix(sock.clone()), |_| {
            let s = UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        });
    }
}

#[test]
fn servers_echo_over_unix_streams() {
    for (bin, flags) in [(ASYNCNET, &[][..]), (ASYNCNET, &["--recv"]), (TOKIO, &[])] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        check_echo(bin, flags, Listen::Unix(path.clone()), |_| {
            let s = UnixStream::connect(&path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        });
    }
}

#[test]
fn servers_echo_udp() {
    for bin in [ASYNCNET, TOKIO] {
        let (mut server, port) = start(bin, &[], &Listen::Udp(0));
        let socks: Vec<UdpSocket> = (0..4)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.connect(("127.0.0.1", port)).unwrap();
                s
            })
            .collect();
        let mut buf = [0u8; 2048];
        for round in 0..20u8 {
            // Several datagrams in flight at once, one per socket, then
            // their echoes, each to its own sender.
            for (i, s) in socks.iter().enumerate() {
                s.send(&[b'a' + (i as u8 + round) % 26; 64]).unwrap();
            }
            for (i, s) in socks.iter().enumerate() {
                let n = s.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[b'a' + (i as u8 + round) % 26; 64]);
            }
        }
        // Sizes from empty to larger than the loadgen's, whole each time.
        for size in [0usize, 1, 9, 1000, 1472] {
            let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            socks[0].send(&msg).unwrap();
            let n = socks[0].recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &msg[..], "size {size}");
        }
        // A sender that went away before its echo must not take the server
        // down (on Linux its echo draws an ICMP error).
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        gone.send_to(b"bye", ("127.0.0.1", port)).unwrap();
        drop(gone);
        thread::sleep(Duration::from_millis(50));
        socks[1].send(b"still there").unwrap();
        let n = socks[1].recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"still there");
        assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
    }
    let out = std::process::Command::new(ASYNCNET)
        .args(["--lines", "--udp", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--lines over UDP is refused");
}

/// Runs the TLS load generator in `mode` against `bin` (with `flags`)
/// serving a fresh certificate, the client pinning that one (or, with
/// `other_cert`, another).
fn tls_run(bin: &str, flags: &[&str], mode: Mode, other_cert: bool) -> io::Result<loadgen::Report> {
    let files = IdentityFiles::generate().unwrap();
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let args = [flags, &["--cert", &cert, "--key", &key]].concat();
    let (_server, port) = start(bin, &args, &Listen::Tcp(0));
    let pinned = if other_cert {
        IdentityFiles::generate().unwrap()
    } else {
        files
    };
    let s = Settings {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        config: certs::client_config(&pinned.cert).unwrap(),
        mode,
        conns: if mode == Mode::Handshake { 4 } else { 8 },
        span: Span {
            warmup: Duration::from_millis(100),
            secs: Duration::from_millis(300),
            count: None,
        },
    };
    tls::run(&s, |_| {})
}

#[test]
fn tls_servers_serve() {
    let asyncnet = env!("CARGO_BIN_EXE_tls_echo_asyncnet");
    let bins = [
        (asyncnet, &[][..]),
        (asyncnet, &["--accept-tls"]),
        (env!("CARGO_BIN_EXE_tls_echo_tokio"), &[]),
    ];
    for (bin, flags) in bins {
        for mode in [Mode::Echo { size: 1024 }, Mode::Handshake] {
            let r = tls_run(bin, flags, mode, false).unwrap();
            assert!(r.ops > 0, "{bin} {mode:?}");
            assert_eq!(r.errors, 0, "{bin} {mode:?}: {:?}", r.first_error);
            assert_eq!(r.idle_conns(), 0, "{bin} {mode:?}");
        }
    }
    let e = tls_run(asyncnet, &[], Mode::Echo { size: 16 }, true).unwrap_err();
    assert!(e.to_string().contains("pinned"), "{e}");
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

fn http_connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(port);
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Reads one response: its status, its head (lower case), then
/// `Content-Length` bytes of body (none if `head`, the answer to a `HEAD`).
fn response(r: &mut BufReader<TcpStream>, head: bool) -> (u16, String, Vec<u8>) {
    let mut all = String::new();
    while !all.ends_with("\r\n\r\n") {
        assert!(r.read_line(&mut all).unwrap() > 0, "{all:?}");
    }
    let all = all.to_ascii_lowercase();
    assert!(all.starts_with("http/1."), "{all:?}");
    let len = all.split("\r\ncontent-length: ").nth(1).expect("a length");
    let len: usize = len.split("\r\n").next().unwrap().parse().unwrap();
    let mut body = vec![0; if head { 0 } else { len }];
    r.read_exact(&mut body).unwrap();
    (all[9..12].parse().unwrap(), all, body)
}

/// Reads a `Hello, World!` response (without its body if `head`); returns
/// its head.
fn hello(r: &mut BufReader<TcpStream>, head: bool) -> String {
    let (status, all, body) = response(r, head);
    assert_eq!(status, 200, "{all}");
    assert!(all.contains("\r\ncontent-type: text/plain\r\n"), "{all}");
    assert!(all.contains("\r\ncontent-length: 13\r\n"), "{all}");
    assert_eq!(body, if head { &b""[..] } else { b"Hello, World!" });
    all
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

/// Keep-alive, pipelining, request bodies, `Connection: close`, HTTP/1.0,
/// 400 for a malformed request line, many connections at once.
fn check_http(bin: &str) -> (Spawned, u16) {
    let (server, port) = start(bin, &[], &Listen::Tcp(0));
    let (mut w, mut r) = http_connect(port);
    // Three requests in one write; the HEAD in the middle shows the order.
    let mut batch = GET.repeat(2);
    batch.extend_from_slice(b"HEAD /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    batch.extend_from_slice(GET);
    w.write_all(&batch).unwrap();
    for head in [false, false, true, false] {
        hello(&mut r, head);
    }
    // A body in two parts, the second after a pause; then a small body with
    // the next request right behind it: consumed, not taken for a request.
    let body = vec![b'x'; 100_000];
    w.write_all(b"POST /upload HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    w.write_all(&body[..30_000]).unwrap();
    thread::sleep(Duration::from_millis(50));
    w.write_all(&body[30_000..]).unwrap();
    hello(&mut r, false);
    w.write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    hello(&mut r, false);
    hello(&mut r, false);
    w.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(hello(&mut r, false).contains("\r\nconnection: close\r\n"));
    assert!(closed(&mut r), "still open after Connection: close");
    // HTTP/1.0 closes unless it asks for keep-alive.
    let (mut w, mut r) = http_connect(port);
    w.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    hello(&mut r, false);
    assert!(closed(&mut r), "HTTP/1.0 still open");
    let (mut w, mut r) = http_connect(port);
    for _ in 0..2 {
        w.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        assert!(hello(&mut r, false).contains("\r\nconnection: keep-alive\r\n"));
    }
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
    ] {
        let (mut w, mut r) = http_connect(port);
        w.write_all(bad).unwrap();
        assert_eq!(response(&mut r, false).0, 400, "{bad:?}");
        assert!(closed(&mut r), "{bad:?}: still open after a 400");
    }
    let mut conns: Vec<_> = (0..20).map(|_| http_connect(port)).collect();
    for _ in 0..3 {
        conns
            .iter_mut()
            .for_each(|(w, _)| w.write_all(GET).unwrap());
        conns.iter_mut().for_each(|(_, r)| drop(hello(r, false)));
    }
    (server, port)
}

#[test]
fn http_servers_serve() {
    let (mut server, _) = check_http(env!("CARGO_BIN_EXE_http_hyper"));
    assert!(server.try_wait().unwrap().is_none(), "http_hyper exited");
    // Ours also: lines over 8 KiB and bad lengths refused, empty lines
    // before a request line skipped, a client gone mid-request survived.
    let (mut server, port) = check_http(env!("CARGO_BIN_EXE_http_asyncnet"));
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
    for bad in [
        long.as_bytes(),
        b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
    ] {
        let (mut w, mut r) = http_connect(port);
        w.write_all(bad).unwrap();
        assert_eq!(response(&mut r, false).0, 400);
        assert!(closed(&mut r));
    }
    let (mut w, mut r) = http_connect(port);
    w.write_all(b"\r\n\r\nHEAD / HTTP/1.1\r\n\r\n").unwrap();
    hello(&mut r, true);
    let (mut w2, _) = http_connect(port);
    w2.write_all(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    drop(w2);
    w.write_all(GET).unwrap();
    hello(&mut r, false);
    assert!(server.try_wait().unwrap().is_none(), "http_asyncnet exited");
}

/// The C HTTP floor, built as the suite builds it (`cc -O2`, with the
/// floors' shared listener), serves what wrk sends: pipelined keep-alive
/// GETs, on more than one connection. (It is a floor, not a server: a HEAD
/// gets a body, so `check_http` is not for it.)
#[test]
fn c_http_floor_serves_keep_alive_gets() {
    let dir = tempfile::tempdir().unwrap();
    let mut notes = Vec::new();
    let sources = vec![Peer::source("c-floor", "http_floor.c")];
    let built = extpeers::prepare(sources, &dir, &mut notes).unwrap();
    let Some(peer) = built.first() else {
        assert!(!ci(), "cc is missing under CI: {notes:?}");
        eprintln!("skipped: {notes:?}");
        return;
    };
    let path = peer.path(Path::new("")).unwrap();
    let (mut server, port) = start(path.to_str().unwrap(), &[], &Listen::Tcp(0));
    for _ in 0..2 {
        let (mut w, mut r) = http_connect(port);
        w.write_all(&GET.repeat(3)).unwrap();
        for _ in 0..3 {
            hello(&mut r, false);
        }
        w.write_all(GET).unwrap();
        hello(&mut r, false);
    }
    assert!(server.try_wait().unwrap().is_none(), "http_floor exited");
}
