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

fn start_on(bin: &str, listen: &Listen) -> (Spawned, u16) {
    start_with(bin, &[], listen)
}

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

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn check_echo(bin: &str) {
    check_echo_with(bin, &[]);
}

fn check_echo_with(bin: &str, flags: &[&str]) {
    let (mut server, port) = start_with(bin, flags, &Listen::Tcp(0));

    // Small messages on several connections at once, interleaved.
    let mut conns: Vec<TcpStream> = (0..5).map(|_| connect(port)).collect();
    for round in 0..20u8 {
        for (i, c) in conns.iter_mut().enumerate() {
            let msg = [b'a' + (i as u8 + round) % 26; 64];
            c.write_all(&msg).unwrap();
            let mut back = [0u8; 64];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
        }
    }

    // A large payload written while reading, so the server's writes block
    // and must resume.
    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = connect(port);
    let mut w = c.try_clone().unwrap();
    let data = payload.clone();
    let writer = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
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

    // A client vanishing without reading must not take the server down.
    let mut rude = connect(port);
    rude.write_all(&[1u8; 100_000]).unwrap();
    drop(rude);
    drop(conns);
    let mut c = connect(port);
    c.write_all(b"still there\n").unwrap();
    let mut back = [0u8; 12];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still there\n");
    assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
}

#[test]
fn echo_tokio_echoes() {
    check_echo(env!("CARGO_BIN_EXE_echo_tokio"));
}

#[test]
fn echo_asyncnet_echoes() {
    check_echo(env!("CARGO_BIN_EXE_echo_asyncnet"));
}

fn unix_connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn check_unix_echo(bin: &str, tag: &str) {
    let dir = tempfile::Builder::new().prefix(tag).tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (mut server, _) = start_on(bin, &Listen::Unix(path.clone()));

    let mut conns: Vec<UnixStream> = (0..5).map(|_| unix_connect(&path)).collect();
    for round in 0..20u8 {
        for (i, c) in conns.iter_mut().enumerate() {
            let msg = [b'a' + (i as u8 + round) % 26; 64];
            c.write_all(&msg).unwrap();
            let mut back = [0u8; 64];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
        }
    }

    // A large payload, so the server's writes block and must resume.
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = unix_connect(&path);
    let mut w = c.try_clone().unwrap();
    let data = payload.clone();
    let writer = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
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

    drop(conns);
    let mut c = unix_connect(&path);
    c.write_all(b"still there\n").unwrap();
    let mut back = [0u8; 12];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still there\n");
    assert!(server.try_wait().unwrap().is_none(), "{bin} exited");
}

fn check_udp_echo(bin: &str) {
    let (mut server, port) = start_on(bin, &Listen::Udp(0));
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
fn echo_tokio_echoes_unix() {
    check_unix_echo(env!("CARGO_BIN_EXE_echo_tokio"), "tokio");
}

#[test]
fn echo_asyncnet_echoes_unix() {
    check_unix_echo(env!("CARGO_BIN_EXE_echo_asyncnet"), "asyncnet");
}

#[test]
fn echo_tokio_echoes_udp() {
    check_udp_echo(env!("CARGO_BIN_EXE_echo_tokio"));
}

#[test]
fn echo_asyncnet_echoes_udp() {
    check_udp_echo(env!("CARGO_BIN_EXE_echo_asyncnet"));
}

#[test]
fn asyncnet_refuses_lines_over_udp() {
    let bin = env!("CARGO_BIN_EXE_echo_asyncnet");
    let out = std::process::Command::new(bin)
        .args(["--lines", "--udp", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn echo_tokio_tuned_and_multi_thread_echo() {
    check_echo_with(env!("CARGO_BIN_EXE_echo_tokio"), &["--tuned"]);
    check_echo_with(env!("CARGO_BIN_EXE_echo_tokio"), &["--multi-thread"]);
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
    check_pong(env!("CARGO_BIN_EXE_echo_asyncnet"), &[]);
    check_pong(env!("CARGO_BIN_EXE_echo_tokio"), &[]);
    check_pong(env!("CARGO_BIN_EXE_echo_tokio"), &["--tuned"]);
    check_pong(env!("CARGO_BIN_EXE_echo_tokio"), &["--multi-thread"]);
}
