//! The `tls_echo_server` example (its own `listen` and `serve`, included from
//! `examples/tls_echo_server.rs`) under clients that stall their handshakes: each is dropped
//! after the context's handshake timeout, and good clients are served meanwhile and after.
// rcgen, which makes their certificates, is not a dev-dependency on macOS (see Cargo.toml).
#![cfg(not(target_os = "macos"))]

mod support;
#[path = "support/tls.rs"]
mod tls_support;

#[allow(dead_code)]
#[path = "../examples/tls_echo_server.rs"]
mod example;

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use asyncnet::{spawn, AsyncSocket, TlsContext};
use support::{run, sees_the_end};
use tls_support::*;

/// A good client's round trip through the example.
async fn echoes(pki: &Pki, port: u16, line: &str) -> io::Result<()> {
    let client: AsyncSocket = tls_connect(&pki.client_ctx(), "localhost", port).await?;
    client.send(format!("{line}\n")).await?;
    assert_eq!(client.recv_line().await?.as_deref(), Some(line));
    client.close()
}

#[test]
fn stalled_handshakes_are_dropped_and_do_not_keep_the_tls_echo_server_from_serving() {
    let pki = Pki::new();
    run(async {
        let ctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .handshake_timeout(Duration::from_millis(500))
        .build()?;
        let listener = example::listen(0)?;
        let port = port_of(&listener);
        drop(spawn(example::serve(listener, ctx)));
        let mut ends = Vec::new();
        for (what, bytes) in stalled_handshakes(&pki) {
            let peer = guarded(TcpStream::connect(("127.0.0.1", port))?);
            (&peer).write_all(&bytes)?;
            ends.push((what, sees_the_end(peer)));
        }
        echoes(&pki, port, "while four clients stall").await?;
        for (what, end) in ends {
            assert!(join_thread(end).await, "{what}: the connection stayed open");
        }
        echoes(&pki, port, "after they were dropped").await?;
        Ok(())
    })
}

#[test]
fn hostile_clients_do_not_keep_the_tls_echo_server_from_serving() {
    let pki = Pki::new();
    run(async {
        let ctx = TlsContext::server_builder(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .build()?;
        let listener = example::listen(0)?;
        let port = port_of(&listener);
        drop(spawn(example::serve(listener, ctx)));
        // Garbage instead of a handshake, and a reset in the middle of one.
        let mut raw = TcpStream::connect(("127.0.0.1", port))?;
        raw.write_all(&[0x42; 10_000])?;
        drop(raw);
        let raw = TcpStream::connect(("127.0.0.1", port))?;
        (&raw).write_all(&[0x16, 0x03, 0x01])?;
        socket2::SockRef::from(&raw).set_linger(Some(Duration::ZERO))?;
        drop(raw);
        // Inside TLS: a line that is not UTF-8, a 2 MB line, a close mid-line.
        for payload in [
            &b"bad \xff\n"[..],
            &vec![b'x'; 2 << 20][..],
            &b"half a li"[..],
        ] {
            let client: AsyncSocket = tls_connect(&pki.client_ctx(), "localhost", port).await?;
            // The server may give up on the line before taking it all.
            let _ = client.send(payload).await;
            let _ = client.flush().await;
            let _ = client.close();
        }
        echoes(&pki, port, "still served").await
    })
}
