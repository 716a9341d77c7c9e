//! Every server binary keeps the peer contract: ready line, then a byte
//! echo on every connection, whatever the chunking.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use asyncnet_bench::child::Spawned;
use asyncnet_bench::parse_ready_line;

fn start(bin: &str) -> (Spawned, u16) {
    let server = Spawned::start(bin, Path::new(bin), &["0".to_string()], None).unwrap();
    let port = server
        .wait_for_line(Instant::now() + Duration::from_secs(10), parse_ready_line)
        .unwrap();
    (server, port)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn check_echo(bin: &str) {
    let (mut server, port) = start(bin);

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
