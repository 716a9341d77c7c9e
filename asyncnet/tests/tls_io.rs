//! Every read and write of the core, unchanged over TLS: `send`, buffered `recv` (waits for
//! `n` bytes), `recv_into`, `recv_line`/`recv_line_into` with `max_length`, `PEEK`,
//! `has_data_buffered`, 10 MB each way; close_notify (clean end) against truncation (a close
//! without it); ten concurrent clients; cancel safety.
// rcgen, which makes their certificates, is not a dev-dependency on macOS (see Cargo.toml).
#![cfg(not(target_os = "macos"))]

#[macro_use]
mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use asyncnet::{spawn, with_timeout, wrap_socket, AsyncSocket, Flags, LineTooLong};
use support::{run, settle};
use tls_support::*;

const SHORT: Duration = Duration::from_millis(5);

/// Send `pieces` one `send` (one TLS record or more) at a time, letting the reader run in
/// between.
async fn send_pieces(s: &AsyncSocket, pieces: &[&[u8]]) -> io::Result<()> {
    for p in pieces {
        s.send(p).await?;
        settle().await;
    }
    Ok(())
}

#[test]
fn buffered_recv_waits_for_n_bytes_across_records() {
    let pki = Pki::new();
    run(async {
        // The accepted side writes: it has no unread bytes that would make close a reset.
        let (reader, writer) = tls_pair(&pki).await?;
        let r = reader.clone();
        let task = spawn(async move { r.recv(11).await });
        send_pieces(&writer, &[b"he", b"llo", b" ", b"wor", b"ld!!"]).await?;
        assert_eq!(task.await?, b"hello world");
        assert_eq!(reader.recv(2).await?, b"!!");
        writer.close()?;
        // At a clean end, a buffered recv returns nothing.
        assert_eq!(reader.recv_with(10, Flags::NONE).await?, b"");
        Ok(())
    })
}

#[test]
fn recv_returns_fewer_bytes_only_at_the_clean_end() {
    let pki = Pki::new();
    run(async {
        let (reader, writer) = tls_pair(&pki).await?;
        writer.send("short").await?;
        writer.close()?;
        assert_eq!(reader.recv_with(100, Flags::NONE).await?, b"short");
        assert_eq!(reader.recv_with(100, Flags::NONE).await?, b"");
        Ok(())
    })
}

#[test]
fn recv_into_fills_the_buffer_across_records() {
    let pki = Pki::new();
    run(async {
        let (reader, writer) = tls_pair(&pki).await?;
        let r = reader.clone();
        let task = spawn(async move {
            let mut buf = [0u8; 12];
            let n = r.recv_into(&mut buf).await?;
            Ok::<_, io::Error>(buf[..n].to_vec())
        });
        send_pieces(&writer, &[b"0123", b"45", b"6789ab", b"cdef"]).await?;
        assert_eq!(task.await?, b"0123456789ab");
        let mut rest = [0u8; 4];
        assert_eq!(reader.recv_into(&mut rest).await?, 4);
        assert_eq!(&rest, b"cdef");
        writer.close()?;
        assert_eq!(
            reader.recv_into_with(&mut rest, Flags::NONE).await?,
            0,
            "clean end"
        );
        Ok(())
    })
}

const SAMPLE: &[u8] = b"one\r\ntwo\n\n\r\nlone\rcr\nlast";
const LINES: [&str; 5] = ["one", "two", "", "", "lone\rcr"];

#[test]
fn recv_line_reads_lines_split_across_records_byte_by_byte() {
    let pki = Pki::new();
    run(async {
        let (reader, writer) = tls_pair(&pki).await?;
        let r = reader.clone();
        let task = spawn(async move {
            let mut out = Vec::new();
            while let Some(l) = r.recv_line_with(Flags::NONE, 100).await? {
                out.push(l);
            }
            Ok::<_, io::Error>(out)
        });
        // One record per byte.
        let pieces: Vec<&[u8]> = SAMPLE.chunks(1).collect();
        send_pieces(&writer, &pieces).await?;
        writer.close()?;
        let mut want: Vec<String> = LINES.map(String::from).to_vec();
        want.push("last".into());
        assert_eq!(task.await?, want);
        Ok(())
    })
}

#[test]
fn recv_line_into_appends_lines_from_one_record() {
    let pki = Pki::new();
    run(async {
        let (reader, writer) = tls_pair(&pki).await?;
        writer.send(SAMPLE).await?;
        writer.close()?;
        let mut got = Vec::new();
        loop {
            let mut buf = String::from(">");
            if !reader
                .recv_line_into_with(&mut buf, Flags::NONE, 100)
                .await?
            {
                assert_eq!(buf, ">", "nothing appended at the end");
                break;
            }
            got.push(buf[1..].to_owned());
        }
        assert_eq!(got, ["one", "two", "", "", "lone\rcr", "last"]);
        Ok(())
    })
}

#[test]
fn an_over_long_line_is_refused_and_its_bytes_stay_buffered() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        client.send("123456\r\nok\n").await?;
        let e = server
            .recv_line_with(Flags::default(), 5)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            source::<LineTooLong>(&e),
            Some(&LineTooLong { max_length: 5 })
        );
        // recv_line_into: the same refusal, nothing appended.
        let mut buf = String::from("x");
        let e = server
            .recv_line_into_with(&mut buf, Flags::default(), 5)
            .await
            .unwrap_err();
        assert!(source::<LineTooLong>(&e).is_some());
        assert_eq!(buf, "x");
        assert!(server.has_data_buffered());
        // The bytes are all still there.
        assert_eq!(server.recv(8).await?, b"123456\r\n");
        assert_eq!(
            server.recv_line_with(Flags::default(), 5).await?.as_deref(),
            Some("ok")
        );
        // A line of exactly max_length passes.
        client.send("12345\n").await?;
        assert_eq!(
            server.recv_line_with(Flags::default(), 5).await?.as_deref(),
            Some("12345")
        );
        Ok(())
    })
}

#[test]
fn peek_recv_and_peek_line_leave_the_bytes_for_the_next_read() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        let s = server.clone();
        let peeker = spawn(async move { s.recv_with(6, Flags::PEEK).await });
        send_pieces(&client, &[b"fir", b"st line\n", b"second\n"]).await?;
        assert_eq!(
            peeker.await?,
            b"first ",
            "a buffered peek waits for n bytes"
        );
        assert_eq!(server.recv_with(6, Flags::PEEK).await?, b"first ");
        assert_eq!(
            server.recv_line_with(Flags::PEEK, 100).await?.as_deref(),
            Some("first line")
        );
        let mut buf = String::new();
        assert!(
            server
                .recv_line_into_with(&mut buf, Flags::PEEK, 100)
                .await?
        );
        assert_eq!(buf, "first line");
        assert_eq!(server.recv_line().await?.as_deref(), Some("first line"));
        assert_eq!(
            server.recv_line_with(Flags::PEEK, 100).await?.as_deref(),
            Some("second")
        );
        assert_eq!(server.recv(7).await?, b"second\n");
        Ok(())
    })
}

#[test]
fn has_data_buffered_is_true_while_decrypted_bytes_wait() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        assert!(!server.has_data_buffered());
        client.send("a\nb\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("a"));
        assert!(
            server.has_data_buffered(),
            "\"b\\n\" is decrypted and waits"
        );
        assert_eq!(server.recv_line().await?.as_deref(), Some("b"));
        assert!(!server.has_data_buffered());

        // Bytes left inside the TLS session (a read smaller than the record) count too.
        client.send("xyz").await?;
        assert_eq!(server.recv(1).await?, b"x");
        assert!(server.has_data_buffered(), "\"yz\" waits");
        // And a read served from them needs no new record.
        assert_eq!(server.recv(2).await?, b"yz");
        assert!(!server.has_data_buffered());
        Ok(())
    })
}

#[test]
fn an_unbuffered_socket_reads_buffered_once_tls() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let ctx = pki.client_ctx();
        let c = spawn(async move {
            let s = AsyncSocket::builder().buffered(false).build()?;
            wrap_socket(&ctx, &s)?;
            s.connect("localhost", port).await?;
            Ok::<_, io::Error>(s)
        });
        let server = listener.accept().await?;
        let client = c.await?;
        assert!(client.is_buffered(), "TLS reads are buffered");
        let s = server.clone();
        let w = spawn(async move { send_pieces(&s, &[b"ab", b"cd", b"ef"]).await });
        assert_eq!(
            client.recv(6).await?,
            b"abcdef",
            "recv(n) waits for n bytes"
        );
        w.await?;
        Ok(())
    })
}

const TEN_MB: usize = 10 * 1024 * 1024;

#[test]
fn ten_megabytes_go_each_way_intact() {
    let pki = Pki::new();
    run_long(async {
        let (client, server) = tls_pair(&pki).await?;
        let data = pattern(TEN_MB);
        let s = server.clone();
        let echo = spawn(async move {
            let got = s.recv(TEN_MB).await?;
            // Send back reversed, so the way back is checked on different bytes.
            let back: Vec<u8> = got.iter().rev().copied().collect();
            s.send(&back).await?;
            Ok::<_, io::Error>(got)
        });
        client.send(&data).await?;
        let back = client.recv(TEN_MB).await?;
        let got = echo.await?;
        assert!(got == data, "10 MB arrived intact at the server");
        assert!(
            back.iter().rev().eq(data.iter()),
            "10 MB arrived intact at the client"
        );
        Ok(())
    })
}

#[test]
fn ten_megabytes_each_way_at_the_same_time() {
    let pki = Pki::new();
    run_long(async {
        let (client, server) = tls_pair(&pki).await?;
        let up = pattern(TEN_MB);
        let down: Vec<u8> = up.iter().map(|b| b ^ 0x5a).collect();
        let (c2, s2) = (client.clone(), server.clone());
        let (up2, down2) = (up.clone(), down.clone());
        let c_send = spawn(async move { c2.send(&up2).await });
        let s_send = spawn(async move { s2.send(&down2).await });
        let (c3, s3) = (client.clone(), server.clone());
        let c_recv = spawn(async move { c3.recv(TEN_MB).await });
        let s_recv = spawn(async move { s3.recv(TEN_MB).await });
        c_send.await?;
        s_send.await?;
        assert!(s_recv.await? == up, "client to server intact");
        assert!(c_recv.await? == down, "server to client intact");
        Ok(())
    })
}

#[test]
fn sends_from_several_tasks_are_never_interleaved() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        let mut tasks = Vec::new();
        for t in 0..4u8 {
            let c = client.clone();
            tasks.push(spawn(async move {
                let msg = vec![b'a' + t; 300_000];
                c.send(&msg).await
            }));
        }
        let s = server.clone();
        let reader = spawn(async move { s.recv(1_200_000).await });
        for t in tasks {
            t.await?;
        }
        let got = reader.await?;
        for chunk in got.chunks(300_000) {
            assert!(chunk.iter().all(|&b| b == chunk[0]), "a message was cut");
        }
        Ok(())
    })
}

// ---- ends: close_notify and truncation --------------------------------------------------------

#[test]
fn close_sends_close_notify_and_the_peer_sees_a_clean_end() {
    let pki = Pki::new();
    run(async {
        // Flags::NONE: a reset would be an error here, so only close_notify passes.
        let (client, server) = tls_pair(&pki).await?;
        server.send("last line\nno newline").await?;
        server.close()?;
        let line = |s: &AsyncSocket| {
            let s = s.clone();
            async move { s.recv_line_with(Flags::NONE, 100).await }
        };
        assert_eq!(line(&client).await?.as_deref(), Some("last line"));
        assert_eq!(line(&client).await?.as_deref(), Some("no newline"));
        assert_eq!(line(&client).await?, None, "a clean end is None");
        assert_eq!(
            client.recv_with(10, Flags::NONE).await?,
            b"",
            "and empty for recv"
        );
        let mut buf = [0u8; 4];
        assert_eq!(client.recv_into_with(&mut buf, Flags::NONE).await?, 0);
        Ok(())
    })
}

/// The client of a TLS 1.3 connection gets session tickets it never asked to read. A client
/// that only sends and then closes must still deliver every byte and its close_notify: if
/// `close` leaves those tickets unread in the kernel, the kernel answers the close with a
/// reset, which throws away what it had not transmitted yet and the close_notify.
#[test]
fn a_client_that_only_sends_then_closes_delivers_everything_and_a_clean_end() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        let s = server.clone();
        let reader = spawn(async move {
            let mut lines = Vec::new();
            while let Some(l) = s.recv_line_with(Flags::NONE, 100).await? {
                lines.push(l);
            }
            Ok::<_, io::Error>(lines)
        });
        for i in 0..20 {
            client.send(format!("line {i}\n")).await?;
            settle().await;
        }
        client.close()?;
        let got = reader.await;
        let want: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        match got {
            Ok(lines) => assert_eq!(lines, want),
            Err(e) => panic!(
                "the server got an error instead of 20 lines and close_notify: {e} (kind {:?})",
                e.kind()
            ),
        }
        Ok(())
    })
}

/// The race behind OpenSSL's "Data loss with TLS 1.3" (issues 7948, 10880): a TLS 1.3 server
/// sends its session tickets once it has the client's last handshake flight. A client that
/// sends and closes at once can have closed its descriptor before they arrive; its kernel
/// answers them with a reset, which throws away the bytes it had not transmitted yet. Here
/// the server holds its tickets back 100 ms, not reading meanwhile, to open that window wide:
/// the close must wait for them, and the server must read every byte and a clean end. Both
/// ways a socket ends: closed inside the loop (a background task finishes it), and dropped
/// after `wait_for` returned (the drop finishes it, blocking).
#[test]
fn a_client_that_closes_before_the_session_tickets_arrive_still_delivers_everything() {
    let pki = Pki::new();
    // More than the server's kernel takes unread: the rest waits in the client's kernel.
    let data = pattern(1_000_000);
    for inside_the_loop in [true, false] {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let peer = server_with_late_tickets(raw_server_config(&pki.server, false), tcp);
        let client = run(async {
            let client = tls_connect(&pki.client_ctx(), "localhost", port).await?;
            client.send(data.clone()).await?;
            if inside_the_loop {
                client.close()?;
            }
            Ok(client)
        });
        drop(client);
        match peer.join().expect("the server thread") {
            Ok(got) => assert!(
                got == data,
                "{} bytes of {} (closed inside the loop: {inside_the_loop})",
                got.len(),
                data.len()
            ),
            Err(e) => panic!(
                "the server lost the end of the stream (closed inside the loop: \
                 {inside_the_loop}): {e} (kind {:?})",
                e.kind()
            ),
        }
    }
}

/// A server that sends no session tickets and does not close holds such a close back only
/// for its bound: `wait_for` returns while the server neither reads nor writes, and the
/// server then finds every byte and a clean end.
#[test]
fn a_close_waiting_for_session_tickets_that_never_come_ends_by_itself() {
    let pki = Pki::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let mut config = (*raw_server_config(&pki.server, false)).clone();
    config.send_tls13_tickets = 0;
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let peer = thread::spawn(move || -> io::Result<Vec<u8>> {
        let (s, _) = tcp.accept()?;
        let mut s = raw_server(std::sync::Arc::new(config), s)?;
        wait.recv().map_err(io::Error::other)?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok(got)
    });
    let ctx = pki.client_ctx();
    let (done, finished) = std::sync::mpsc::channel();
    thread::spawn(move || {
        run(async {
            let client = tls_connect(&ctx, "localhost", port).await?;
            client.send("the end\n").await?;
            client.close()
        });
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("wait_for returned while the server neither read nor closed");
    go.send(()).unwrap();
    assert_eq!(peer.join().unwrap().unwrap(), b"the end\n");
}

/// A rustls server that, after the handshake, waits 100 ms before it sends its session
/// tickets and starts reading; it returns what it read up to close_notify.
fn server_with_late_tickets(
    config: std::sync::Arc<rustls::ServerConfig>,
    tcp: TcpListener,
) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        let (s, _) = tcp.accept()?;
        let mut sock = guarded(s);
        let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        // The handshake, but for the tickets its end queues.
        while conn.is_handshaking() {
            if conn.wants_write() {
                conn.write_tls(&mut sock)?;
            } else if conn.read_tls(&mut sock)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            } else {
                conn.process_new_packets().map_err(io::Error::other)?;
            }
        }
        assert!(conn.wants_write(), "session tickets queued");
        thread::sleep(Duration::from_millis(100));
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        let mut got = Vec::new();
        rustls::StreamOwned::new(conn, sock).read_to_end(&mut got)?;
        Ok(got)
    })
}

/// A TCP reset in the middle of a TLS stream (anyone on the path can forge one) is a
/// truncation too: it must not pass for a clean end, even under the default `SAFE_DISCONN`.
#[test]
fn a_reset_under_tls_is_not_a_clean_end() {
    let pki = Pki::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let config = raw_server_config(&pki.server, false);
    let peer = thread::spawn(move || -> io::Result<()> {
        let (s, _) = tcp.accept()?;
        let mut s = raw_server(config, s)?;
        s.write_all(b"partial")?;
        s.flush()?;
        let mut go = [0u8; 2];
        s.read_exact(&mut go)?;
        socket2::SockRef::from(&s.sock).set_linger(Some(Duration::ZERO))?;
        drop(s);
        Ok(())
    });
    run(async {
        let client = tls_connect(&pki.client_ctx(), "localhost", port).await?;
        assert_eq!(client.recv(7).await?, b"partial");
        client.send("go").await?;
        join_thread(peer).await?;
        let r = client.recv(1).await;
        assert!(
            r.is_err(),
            "a reset reads as a clean end ({r:?}): the stream may have been cut"
        );
        let r = client.recv_line().await;
        assert!(r.is_err(), "recv_line after a reset: {r:?}");
        Ok(())
    })
}

#[test]
fn a_rustls_peer_sees_our_close_notify() {
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let config = raw_client_config(&pki.ca, false, None);
        let peer = thread::spawn(move || -> io::Result<Vec<u8>> {
            let mut s = raw_client(config, "localhost", port)?;
            let mut all = Vec::new();
            // read_to_end fails with UnexpectedEof on a close without close_notify.
            s.read_to_end(&mut all)?;
            Ok(all)
        });
        let server = listener.accept().await?;
        server.send("bye").await?;
        server.close()?;
        assert_eq!(join_thread(peer).await?, b"bye");
        Ok(())
    })
}

fn is_truncation(r: &io::Result<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(e) if e.kind() == io::ErrorKind::UnexpectedEof)
}

#[test]
fn a_peer_closing_without_close_notify_is_reported_as_truncation() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        client.send("whole line\ncut li").await?;
        client.flush().await?;
        // The TCP stream ends with no close_notify (behind the library's back:
        // `shutdown_write` would send close_notify first).
        tcp_shutdown_write(&client);
        assert_eq!(server.recv_line().await?.as_deref(), Some("whole line"));
        let r = server.recv_line().await;
        assert!(
            is_truncation(&r),
            "a cut stream must not pass for a line or a clean end: {r:?}"
        );
        let e = r.unwrap_err();
        assert!(e.to_string().contains("close_notify"), "{e}");

        // recv: the same, distinguishable from the clean end above.
        let (client, server) = tls_pair(&pki).await?;
        client.send("12345").await?;
        client.flush().await?;
        tcp_shutdown_write(&client);
        let r = server.recv(100).await;
        assert!(is_truncation(&r), "{r:?}");
        let (client, server) = tls_pair(&pki).await?;
        tcp_shutdown_write(&client);
        let mut buf = [0u8; 8];
        let r = server.recv_into(&mut buf).await;
        assert!(is_truncation(&r), "{r:?}");
        Ok(())
    })
}

#[test]
fn a_rustls_peer_dropping_the_tcp_connection_is_reported_as_truncation() {
    let pki = Pki::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let config = raw_server_config(&pki.server, false);
    let peer = thread::spawn(move || -> io::Result<()> {
        let (s, _) = tcp.accept()?;
        let mut s = raw_server(config, s)?;
        s.write_all(b"data then nothing")?;
        s.flush()?;
        // Wait for the client's go, then close the TCP stream without close_notify.
        let mut go = [0u8; 2];
        s.read_exact(&mut go)?;
        s.sock.shutdown(std::net::Shutdown::Both)?;
        Ok(())
    });
    run(async {
        let client = tls_connect(&pki.client_ctx(), "localhost", port).await?;
        assert_eq!(client.recv(17).await?, b"data then nothing");
        client.send("go").await?;
        let r = client.recv(1).await;
        assert!(is_truncation(&r), "{r:?}");
        join_thread(peer).await
    })
}

// ---- many clients ------------------------------------------------------------------------------

#[test]
fn ten_tls_clients_fifty_lines_each_are_all_echoed() {
    const CLIENTS: usize = 10;
    const LINES_EACH: usize = 50;
    let pki = Pki::new();
    run(async {
        let listener = tls_listener(&pki.server_ctx())?;
        let port = port_of(&listener);
        let server = spawn(async move {
            for _ in 0..CLIENTS {
                let c = listener.accept().await?;
                assert!(c.tls_info().is_some());
                spawn(async move {
                    while let Some(line) = c.recv_line().await? {
                        c.send(format!("{line}\r\n")).await?;
                    }
                    Ok::<(), io::Error>(())
                });
            }
            Ok::<(), io::Error>(())
        });
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let ctx = pki.client_ctx();
            clients.push(spawn(async move {
                let s = tls_connect(&ctx, "localhost", port).await?;
                let reader = s.clone();
                let r = spawn(async move {
                    let mut got = Vec::new();
                    for _ in 0..LINES_EACH {
                        got.push(reader.recv_line().await?.expect("echo"));
                    }
                    Ok::<_, io::Error>(got)
                });
                for j in 0..LINES_EACH {
                    s.send(format!("client {i} line {j}\n")).await?;
                }
                let got = r.await?;
                s.close()?;
                Ok::<_, io::Error>((i, got))
            }));
        }
        for c in clients {
            let (i, got) = c.await?;
            let want: Vec<String> = (0..LINES_EACH)
                .map(|j| format!("client {i} line {j}"))
                .collect();
            assert_eq!(got, want);
        }
        server.await?;
        Ok(())
    })
}

// ---- cancel safety -----------------------------------------------------------------------------

#[test]
fn a_dropped_recv_line_loses_nothing_over_tls() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        client.send("hello, ").await?;
        while !server.has_data_buffered() {
            let r = with_timeout(server.recv_line(), SHORT).await;
            assert!(r.is_err(), "half a line completed a read: {r:?}");
        }
        client.send("wor").await?;
        for _ in 0..3 {
            assert!(with_timeout(server.recv_line(), SHORT).await.is_err());
        }
        client.send("ld\r\nnext\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("hello, world"));
        assert_eq!(server.recv_line().await?.as_deref(), Some("next"));
        Ok(())
    })
}

#[test]
fn a_dropped_recv_loses_nothing_over_tls() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        client.send("abc").await?;
        while !server.has_data_buffered() {
            let r = with_timeout(server.recv(6), SHORT).await;
            assert!(r.is_err(), "3 bytes completed a recv(6): {r:?}");
        }
        client.send("def").await?;
        assert_eq!(server.recv(6).await?, b"abcdef");
        Ok(())
    })
}

#[test]
fn a_dropped_send_still_delivers_the_whole_message_over_tls() {
    let pki = Pki::new();
    run_long(async {
        let (client, server) = tls_pair(&pki).await?;
        // Small kernel buffers (a fixed SO_SNDBUF/SO_RCVBUF also stops Linux growing them),
        // so that what the kernel can hold is far below the message whatever the machine.
        socket2::SockRef::from(&client).set_send_buffer_size(64 * 1024)?;
        socket2::SockRef::from(&server).set_recv_buffer_size(64 * 1024)?;
        let msg = pattern(4 * 1024 * 1024);
        // Nobody reads yet: the send cannot finish and is dropped half-way.
        let r = with_timeout(client.send(&msg), SHORT).await;
        assert!(r.is_err(), "4 MB went out with nobody reading");
        let (s, n) = (server.clone(), msg.len() + 5);
        let reader = spawn(async move { s.recv(n).await });
        client.send(b"after").await?;
        let got = reader.await?;
        assert!(got[..msg.len()] == msg[..], "the dropped send was cut");
        assert_eq!(&got[msg.len()..], b"after");
        Ok(())
    })
}

#[test]
fn shutdown_write_sends_close_notify_so_the_peer_sees_a_clean_end_and_can_still_answer() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        client.send("last words\n").await?;
        client.shutdown_write()?;
        // Flags::NONE: a reset or a missing close_notify would be an error, not an end.
        let line = server.recv_line_with(Flags::NONE, 100).await?;
        assert_eq!(line.as_deref(), Some("last words"));
        assert_eq!(server.recv_line_with(Flags::NONE, 100).await?, None);
        // Half-closed: the other direction still works.
        server.send("reply\n").await?;
        assert_eq!(client.recv_line().await?.as_deref(), Some("reply"));
        Ok(())
    })
}

#[test]
fn close_with_the_kernel_full_still_delivers_close_notify_so_the_reader_sees_a_clean_end() {
    let pki = Pki::new();
    run(async {
        let (client, server) = tls_pair(&pki).await?;
        // Fill the path: the server does not read yet, so the client's send stalls with
        // records queued in the TLS session and the kernel's buffers full.
        let sender = client.clone();
        let send = spawn(async move { sender.send(vec![7u8; 8 * 1024 * 1024]).await });
        settle().await;
        assert!(!send.is_finished(), "8 MiB fit into the kernel at once?");
        client.close()?;
        // The stalled send fails (its bytes can no longer leave) ...
        assert!(send.await.is_err());
        // ... and the reader gets what was written, then close_notify: a clean end, not a
        // truncation (Flags::NONE: a reset would be an error too).
        let mut total = 0usize;
        loop {
            let chunk = server.recv_with(64 * 1024, Flags::NONE).await?;
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.iter().all(|&b| b == 7));
            total += chunk.len();
        }
        assert!(total > 0);
        Ok(())
    })
}

/// `shutdown(SHUT_WR)` on the descriptor itself: a TCP end with no TLS close_notify.
fn tcp_shutdown_write(socket: &AsyncSocket) {
    socket2::SockRef::from(socket)
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
}
