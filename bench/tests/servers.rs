//! Every server binary keeps the peer contract: ready line, then a byte
//! echo on every connection, whatever the chunking (TCP and Unix stream),
//! or every datagram back to its sender (UDP).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use asyncnet_bench::child::Spawned;
use asyncnet_bench::{parse_ready_line, parse_ready_path, Listen};

fn start_with(bin: &str, flags: &[&str], listen: &Listen) -> (Spawned, u16) {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend(listen.to_args());
    let server = Spawned::start(bin, Path::new(bin), &args, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = match listen {
        Listen::Unix(path) => {
            let got = server.wait_for_line(deadline, parse_ready_path).unwrap();
            assert_eq!(&got, path);
            0
        }
        _ => server.wait_for_line(deadline, parse_ready_line).unwrap(),
    };
    (server, port)
}

const ASYNCNET: &str = env!("CARGO_BIN_EXE_echo_asyncnet");
const TOKIO: &str = env!("CARGO_BIN_EXE_echo_tokio");

/// A TCP or Unix stream.
trait Stream: Read + Write + Send + Sized + 'static {
    fn dup(&self) -> Self;
    fn close_write(&self);
}

impl Stream for TcpStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn close_write(&self) {
        self.shutdown(std::net::Shutdown::Write).unwrap();
    }
}

impl Stream for UnixStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn close_write(&self) {
        self.shutdown(std::net::Shutdown::Write).unwrap();
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn unix_connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The server `bin` (started with `flags` on `listen`) echoes: small messages on several
/// connections at once, interleaved; a large payload written while reading (so the server's
/// writes block and must resume); and a client vanishing without reading does not take it
/// down.
fn check_echo<S: Stream>(bin: &str, flags: &[&str], listen: Listen, connect: impl Fn(u16) -> S) {
    let (mut server, port) = start_with(bin, flags, &listen);
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
    let (w, data) = (c.dup(), payload.clone());
    let writer = thread::spawn(move || {
        let mut w = w;
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

#[test]
fn servers_echo_over_tcp() {
    check_echo(ASYNCNET, &[], Listen::Tcp(0), connect);
    check_echo(TOKIO, &[], Listen::Tcp(0), connect);
    check_echo(TOKIO, &["--tuned"], Listen::Tcp(0), connect);
    check_echo(TOKIO, &["--multi-thread"], Listen::Tcp(0), connect);
}

#[test]
fn servers_echo_over_unix_streams() {
    for bin in [ASYNCNET, TOKIO] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        check_echo(bin, &[], Listen::Unix(path.clone()), |_| {
            unix_connect(&path)
        });
    }
}

fn check_udp_echo(bin: &str) {
    let (mut server, port) = start_with(bin, &[], &Listen::Udp(0));
    let socks: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let mut buf = [0u8; 2048];
    for round in 0..20u8 {
        // Several datagrams in flight at once, one per socket, then their
        // echoes, each to its own sender.
        for (i, s) in socks.iter().enumerate() {
            let msg = [b'a' + (i as u8 + round) % 26; 64];
            s.send_to(&msg, ("127.0.0.1", port)).unwrap();
        }
        for (i, s) in socks.iter().enumerate() {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(from.port(), port);
            assert_eq!(&buf[..n], &[b'a' + (i as u8 + round) % 26; 64]);
        }
    }
    // Sizes from empty to larger than the loadgen's, whole each time.
    for size in [0usize, 1, 9, 1000, 1472] {
        let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        socks[0].send_to(&msg, ("127.0.0.1", port)).unwrap();
        let (n, _) = socks[0].recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &msg[..], "size {size}");
    }
    // A sender that went away before its echo must not take the server
    // down (on Linux its echo draws an ICMP error).
    let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
    gone.send_to(b"bye", ("127.0.0.1", port)).unwrap();
    drop(gone);
    thread::sleep(Duration::from_millis(50));
    socks[1]
        .send_to(b"still there", ("127.0.0.1", port))
        .unwrap();
    let (n, _) = socks[1].recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still there");
    assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
}

#[test]
fn servers_echo_udp() {
    check_udp_echo(ASYNCNET);
    check_udp_echo(TOKIO);
}

#[test]
fn asyncnet_refuses_lines_over_udp() {
    let out = std::process::Command::new(ASYNCNET)
        .args(["--lines", "--udp", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--pong`: one `+PONG\r\n` per line, whether the lines come one at a time,
/// pipelined in one write, or split across writes.
fn check_pong(bin: &str, flags: &[&str]) {
    let mut all = vec!["--pong"];
    all.extend_from_slice(flags);
    let (mut server, port) = start_with(bin, &all, &Listen::Tcp(0));
    let mut c = connect(port);
    let expect = |c: &mut TcpStream, n: usize| {
        let mut back = vec![0u8; 7 * n];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, b"+PONG\r\n".repeat(n));
    };
    c.write_all(b"PING\r\n").unwrap();
    expect(&mut c, 1);
    c.write_all(&b"PING\r\n".repeat(16)).unwrap();
    expect(&mut c, 16);
    c.write_all(b"PI").unwrap();
    thread::sleep(Duration::from_millis(50));
    c.write_all(b"NG\r\nPING\r\n").unwrap();
    expect(&mut c, 2);
    assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
}

#[test]
fn servers_pong() {
    check_pong(ASYNCNET, &[]);
    check_pong(TOKIO, &[]);
    check_pong(TOKIO, &["--tuned"]);
    check_pong(TOKIO, &["--multi-thread"]);
}
