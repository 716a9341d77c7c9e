//! Bad input and attacks against TLS sockets: peers that close mid-handshake, garbage instead
//! of a ClientHello, a client that never speaks, a flood of tiny records, a corrupt record.
//! Each fails that one connection only (the listener serves the next good client), with a
//! clear error, without a panic and without unbounded memory.
// rcgen, which makes their certificates, is not a dev-dependency on macOS (see Cargo.toml).
#![cfg(not(target_os = "macos"))]

#[macro_use]
mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use asyncnet::{
    rustls, spawn, wrap_connected_socket, AsyncSocket, HandshakeAs, JoinHandle, TlsContext,
};
use support::{run, sees_the_end};
use tls_support::*;

/// Accept on `listener` in a task (a wrapped listener skips clients whose handshake fails).
fn accept_task(listener: &AsyncSocket) -> JoinHandle<io::Result<AsyncSocket>> {
    let l = listener.clone();
    spawn(async move { l.accept().await })
}

/// A good client connects and exchanges a line with what the accept task returns.
async fn good_client_is_served(
    pki: &Pki,
    port: u16,
    accepted: JoinHandle<io::Result<AsyncSocket>>,
) -> io::Result<()> {
    let client = tls_connect(&pki.client_ctx(), "localhost", port).await?;
    let server = accepted.await?;
    assert!(server.tls_info().is_some());
    client.send("good\n").await?;
    assert_eq!(server.recv_line().await?.as_deref(), Some("good"));
    server.send("served\n").await?;
    assert_eq!(client.recv_line().await?.as_deref(), Some("served"));
    Ok(())
}

#[test]
fn a_server_closing_mid_handshake_fails_connect_with_unexpected_eof() {
    let pki = Pki::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let peer = thread::spawn(move || -> io::Result<()> {
        let (s, _) = tcp.accept()?;
        let mut s = guarded(s);
        // Read the whole ClientHello record (so closing sends FIN, not a reset), then close.
        let mut header = [0u8; 5];
        s.read_exact(&mut header)?;
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        Ok(())
    });
    run(async {
        let e = tls_connect(&pki.client_ctx(), "localhost", port)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert!(e.to_string().contains("handshake"), "{e}");
        join_thread(peer).await
    })
}

#[test]
fn a_client_closing_mid_handshake_is_skipped_and_the_listener_serves_the_next() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let accepted = accept_task(&listener);
        let hello = client_hello(&pki.ca, "localhost");
        let half = TcpStream::connect(("127.0.0.1", port))?;
        write_and_finish(&half, &hello[..hello.len() / 2]);
        drop(half);
        good_client_is_served(&pki, port, accepted).await?;
        let e = listener
            .take_accept_error()
            .expect("the half handshake is recorded");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert!(listener.take_accept_error().is_none(), "taken");
        Ok(())
    })
}

#[test]
fn garbage_instead_of_a_client_hello_fails_that_connection_only() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let accepted = accept_task(&listener);
        let junk_client = TcpStream::connect(("127.0.0.1", port))?;
        let junk: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 13) as u8).collect();
        (&junk_client).write_all(&junk)?;
        good_client_is_served(&pki, port, accepted).await?;
        let e = listener
            .take_accept_error()
            .expect("the junk client is recorded");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(
            source::<rustls::Error>(&e).is_some(),
            "the rustls error is the source: {e:?}"
        );
        // The junk client was told (an alert) or dropped; either way it sees the end.
        guarded(junk_client.try_clone()?);
        let answer = drain(&junk_client);
        assert!(answer.len() < 64, "at most an alert: {answer:?}");
        Ok(())
    })
}

#[test]
fn a_plain_http_request_to_a_tls_listener_fails_that_connection_only() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let accepted = accept_task(&listener);
        let plain = TcpStream::connect(("127.0.0.1", port))?;
        (&plain).write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        good_client_is_served(&pki, port, accepted).await?;
        let e = listener.take_accept_error().expect("recorded");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        Ok(())
    })
}

#[test]
fn a_client_that_never_speaks_is_dropped_after_the_handshake_timeout() {
    let pki = Pki::new();
    run(async {
        let ctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .handshake_timeout(Duration::from_millis(200))
        .build()?;
        let listener = tls_listener(&ctx)?;
        let port = port_of(&listener);
        let accepted = accept_task(&listener);
        let silent = guarded(TcpStream::connect(("127.0.0.1", port))?);
        good_client_is_served(&pki, port, accepted).await?;
        let e = listener
            .take_accept_error()
            .expect("the silent client is recorded");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        // The silent client's connection was closed by the server.
        assert!(drain(&silent).is_empty());
        // And the listener lives on.
        let accepted = accept_task(&listener);
        good_client_is_served(&pki, port, accepted).await?;
        Ok(())
    })
}

#[test]
fn a_stalled_handshake_in_wrap_connected_socket_times_out_and_its_connection_closes() {
    let pki = Pki::new();
    run(async {
        let ctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .handshake_timeout(Duration::from_millis(200))
        .build()?;
        let listener = plain_listener()?;
        let port = port_of(&listener);
        for (what, bytes) in stalled_handshakes(&pki) {
            let peer = guarded(TcpStream::connect(("127.0.0.1", port))?);
            (&peer).write_all(&bytes)?;
            let server = listener.accept().await?;
            let e = wrap_connected_socket(&ctx, &server, HandshakeAs::Server, "")
                .await
                .expect_err(what);
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{what}: {e}");
            // Dropping the last handle closes the connection: the peer sees its end.
            let end = sees_the_end(peer);
            drop(server);
            assert!(join_thread(end).await, "{what}: the connection stayed open");
        }
        Ok(())
    })
}

#[test]
fn several_bad_clients_in_a_row_do_not_stop_the_listener() {
    let pki = Pki::new();
    run(async {
        let ctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .handshake_timeout(Duration::from_millis(200))
        .build()?;
        let listener = tls_listener(&ctx)?;
        let port = port_of(&listener);
        let accepted = accept_task(&listener);
        let hello = client_hello(&pki.ca, "localhost");
        let mut keep = Vec::new();
        for i in 0..6 {
            let s = TcpStream::connect(("127.0.0.1", port))?;
            match i % 3 {
                0 => (&s).write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])?,
                1 => write_and_finish(&s, &hello[..10]),
                _ => support::reset(s.try_clone()?),
            }
            keep.push(s);
        }
        good_client_is_served(&pki, port, accepted).await?;
        assert!(listener.take_accept_error().is_some());
        Ok(())
    })
}

/// Resident memory of this process, in kB.
fn vm_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_flood_of_tiny_records_is_read_correctly_in_bounded_memory() {
    const TOTAL: usize = 5 * 1024 * 1024;
    let pki = Pki::new();
    let data = pattern(TOTAL);
    run_long(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        // 32-byte records (27 bytes of data each): about 200 000 records.
        let config = raw_client_config(&pki.ca, false, Some(32));
        let to_send = data.clone();
        let before = vm_rss_kb();
        let peer = thread::spawn(move || -> io::Result<()> {
            let mut s = raw_client(config, "localhost", port)?;
            for chunk in to_send.chunks(64 * 1024) {
                s.write_all(chunk)?;
            }
            s.conn.send_close_notify();
            s.flush()?;
            // Read to our close_notify: closing with the session tickets unread would make
            // the kernel reset the connection and drop what it has not sent yet.
            let mut rest = Vec::new();
            s.read_to_end(&mut rest)?;
            Ok(())
        });
        let server = listener.accept().await?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut off = 0;
        let mut peak = before;
        loop {
            let n = server.recv_into(&mut buf).await?;
            if n == 0 {
                break;
            }
            assert!(off + n <= TOTAL, "more bytes than were sent");
            assert!(buf[..n] == data[off..off + n], "bytes differ at {off}");
            off += n;
            if off % (512 * 1024) < n {
                peak = peak.max(vm_rss_kb());
            }
        }
        assert_eq!(off, TOTAL, "every byte arrived");
        server.close()?;
        join_thread(peer).await?;
        peak = peak.max(vm_rss_kb());
        let grown = peak.saturating_sub(before);
        assert!(
            grown < 64 * 1024,
            "resident memory grew by {grown} kB reading 5 MB of tiny records"
        );
        Ok(())
    })
}

#[test]
fn a_corrupt_record_after_the_handshake_fails_the_read_with_invalid_data() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let config = raw_client_config(&pki.ca, false, None);
        let peer = thread::spawn(move || -> io::Result<()> {
            let mut s = raw_client(config, "localhost", port)?;
            s.write_all(b"fine\n")?;
            s.flush()?;
            // Only once the server is past accept (a bad record inside the handshake's read
            // fails the handshake instead, and accept skips the client).
            let mut ready = [0u8; 6];
            s.read_exact(&mut ready)?;
            // An application-data record whose ciphertext is made up.
            let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
            record.extend((0..0x40u8).map(|i| i.wrapping_mul(31)));
            s.sock.write_all(&record)?;
            let _ = drain(&s.sock);
            Ok(())
        });
        let server = listener.accept().await?;
        server.send("ready\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("fine"));
        let e = server.recv_line().await.unwrap_err();
        let tls = rustls_error(&e);
        assert_eq!(tls, rustls::Error::DecryptError, "{e}");
        server.close()?;
        join_thread(peer).await
    })
}

#[test]
fn a_reset_during_the_handshake_fails_it_with_unexpected_eof_as_a_close_does() {
    let pki = Pki::new();
    let hello = client_hello(&pki.ca, "localhost");
    for (what, sent) in [
        ("nothing", &hello[..0]),
        ("60 bytes of a ClientHello", &hello[..60]),
    ] {
        run(async {
            let listener = plain_listener()?;
            let mut client = TcpStream::connect(("127.0.0.1", port_of(&listener)))?;
            let ours = listener.accept().await?;
            client.write_all(sent)?;
            support::reset(client);
            let e = wrap_connected_socket(&pki.server_ctx(), &ours, HandshakeAs::Server, "")
                .await
                .expect_err("the client reset the connection");
            // It was ConnectionReset, where a close is UnexpectedEof.
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "after {what}: {e}");
            Ok(())
        });
    }
}

#[test]
fn closing_a_socket_while_its_handshake_waits_fails_the_handshake_with_not_connected() {
    let pki = Pki::new();
    run(async {
        let listener = plain_listener()?;
        let _silent = TcpStream::connect(("127.0.0.1", port_of(&listener)))?;
        let ours = listener.accept().await?;
        let (s, ctx) = (ours.clone(), pki.server_ctx());
        let handshake =
            spawn(async move { wrap_connected_socket(&ctx, &s, HandshakeAs::Server, "").await });
        asyncnet::sleep_async(Duration::from_millis(20)).await;
        ours.close()?;
        // It was InvalidInput, "not a TLS socket".
        let e = handshake.await.expect_err("closed while waiting");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        Ok(())
    });
}
