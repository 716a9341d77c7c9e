//! `SAFE_DISCONN`: a peer that resets the connection is end-of-stream for receives and a
//! recorded disconnection for sends; without the flag both are errors. IPv4 and IPv6.

#[macro_use]
mod support;

use std::io;

use asyncnet::{AsyncSocket, Flags, MAX_LINE_LENGTH};
use support::{put, reset, run, std_peer, Family};

/// A socket of ours whose std peer has reset the connection (reads wait for the reset to
/// arrive: it makes the socket readable).
async fn reset_by_peer(fam: Family, buffered: bool) -> io::Result<AsyncSocket> {
    let (peer, sock) = std_peer(fam, buffered).await?;
    reset(peer);
    Ok(sock)
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

#[test]
fn the_default_flags_are_safe_disconn() {
    assert_eq!(Flags::default(), Flags::SAFE_DISCONN);
    assert!(Flags::default().contains(Flags::SAFE_DISCONN));
    assert!(!Flags::default().contains(Flags::PEEK));
    let both = Flags::PEEK | Flags::SAFE_DISCONN;
    assert!(both.contains(Flags::PEEK) && both.contains(Flags::SAFE_DISCONN));
    assert!(!Flags::NONE.contains(Flags::SAFE_DISCONN));
    assert_eq!(format!("{both:?}"), "{PEEK, SAFE_DISCONN}");
}

fn recv_from_a_reset_peer_is_end_of_stream_with_safe_disconn(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let sock = reset_by_peer(fam, buffered).await?;
            assert!(sock.recv(10).await?.is_empty(), "reset is end-of-stream");
            assert!(sock.recv(10).await?.is_empty());
            assert_eq!(sock.recv_line().await?, None);
            Ok(())
        })
    }
}

fn recv_from_a_reset_peer_is_an_error_without_safe_disconn(fam: Family) {
    if support::skip_resets_under_wine() {
        return;
    }
    for buffered in [true, false] {
        run(async move {
            let sock = reset_by_peer(fam, buffered).await?;
            let e = sock
                .recv_with(10, Flags::NONE)
                .await
                .expect_err("reset without SAFE_DISCONN");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
            Ok(())
        })
    }
}

fn recv_into_from_a_reset_peer(fam: Family) {
    if support::skip_resets_under_wine() {
        return;
    }
    for buffered in [true, false] {
        run(async move {
            let sock = reset_by_peer(fam, buffered).await?;
            let mut buf = [0u8; 8];
            let e = sock
                .recv_into_with(&mut buf, Flags::NONE)
                .await
                .expect_err("reset without SAFE_DISCONN");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");

            let sock = reset_by_peer(fam, buffered).await?;
            assert_eq!(sock.recv_into(&mut buf).await?, 0);
            Ok(())
        })
    }
}

fn recv_line_from_a_reset_peer(fam: Family) {
    if support::skip_resets_under_wine() {
        return;
    }
    for buffered in [true, false] {
        run(async move {
            let sock = reset_by_peer(fam, buffered).await?;
            let e = sock
                .recv_line_with(Flags::NONE, MAX_LINE_LENGTH)
                .await
                .expect_err("reset without SAFE_DISCONN");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");

            let sock = reset_by_peer(fam, buffered).await?;
            assert_eq!(sock.recv_line().await?, None, "reset is end-of-stream");
            Ok(())
        })
    }
}

fn peek_at_a_reset_peer(fam: Family) {
    if support::skip_resets_under_wine() {
        return;
    }
    for buffered in [true, false] {
        run(async move {
            let sock = reset_by_peer(fam, buffered).await?;
            assert!(sock
                .recv_with(4, Flags::PEEK | Flags::SAFE_DISCONN)
                .await?
                .is_empty());
            let sock = reset_by_peer(fam, buffered).await?;
            let e = sock
                .recv_with(4, Flags::PEEK)
                .await
                .expect_err("reset without SAFE_DISCONN");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
            Ok(())
        })
    }
}

fn bytes_received_before_the_reset_are_read_first_when_buffered(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        put(&mut peer, b"before\n");
        // Take the line into our buffer before the reset can discard it in the kernel.
        assert_eq!(
            sock.recv_line_with(Flags::PEEK, 100).await?.as_deref(),
            Some("before")
        );
        reset(peer);
        assert_eq!(sock.recv_line().await?.as_deref(), Some("before"));
        assert_eq!(sock.recv_line().await?, None);
        Ok(())
    })
}

/// Wait until the reset has reached our socket (the read side reports it as end-of-stream).
async fn see_reset(sock: &AsyncSocket) -> io::Result<()> {
    assert!(sock.recv(1).await?.is_empty());
    Ok(())
}

fn send_to_a_reset_peer_completes_with_safe_disconn_then_fails(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let sock = reset_by_peer(fam, buffered).await?;
            see_reset(&sock).await?;
            assert!(!sock.is_disconnected());
            // Coalesced: the send completes at once; writing its bytes finds the peer gone,
            // which flush reports as an error (bytes were lost) and the socket records.
            sock.send("into the void").await?;
            let e = sock.flush().await.expect_err("the bytes were lost");
            assert!(is_disconnect(&e), "{e} ({:?})", e.kind());
            assert!(sock.is_disconnected(), "writing found the peer gone");
            let e = sock.send("again").await.expect_err("peer is gone");
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
            let e = sock
                .send_with("and again", Flags::SAFE_DISCONN)
                .await
                .expect_err("still gone");
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
            // Receiving still reports end-of-stream, and closing works.
            assert!(sock.recv(1).await?.is_empty());
            sock.close()?;
            Ok(())
        })
    }
}

fn send_to_a_reset_peer_errors_without_safe_disconn(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let sock = reset_by_peer(fam, buffered).await?;
            see_reset(&sock).await?;
            let e = sock
                .send_with("into the void", Flags::NONE)
                .await
                .expect_err("send to a reset peer without SAFE_DISCONN");
            assert!(is_disconnect(&e), "{e} ({:?})", e.kind());
            let e = sock.send("again").await.expect_err("peer is gone");
            assert!(is_disconnect(&e), "{e} ({:?})", e.kind());
            Ok(())
        })
    }
}

fn a_send_that_fills_the_pipe_to_a_peer_that_then_resets(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        // More than the kernel buffers hold: the send waits on the queue, then the peer resets.
        let big = vec![0x5au8; 32 * 1024 * 1024];
        let sender = sock.clone();
        let h = asyncnet::spawn(async move { sender.send(big).await });
        asyncnet::sleep_async(std::time::Duration::from_millis(20)).await;
        reset(peer);
        h.await?;
        assert!(sock.is_disconnected());
        let e = sock.send("x").await.expect_err("peer is gone");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");

        let (peer, sock) = std_peer(fam, true).await?;
        let big = vec![0x5au8; 32 * 1024 * 1024];
        let sender = sock.clone();
        let h = asyncnet::spawn(async move { sender.send_with(big, Flags::NONE).await });
        asyncnet::sleep_async(std::time::Duration::from_millis(20)).await;
        reset(peer);
        let e = h.await.expect_err("without SAFE_DISCONN the send fails");
        assert!(is_disconnect(&e), "{e} ({:?})", e.kind());
        Ok(())
    })
}

fn send_on_a_socket_that_never_connected_is_an_error(fam: Family) {
    run(async move {
        // Linux answers EPIPE here, but no peer went away: there never was one.
        let never = support::socket(fam, true)?;
        let e = never.send("lost?").await.expect_err("not connected");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        let listening = support::listener(fam)?;
        let e = listening.send("lost?").await.expect_err("a listener");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        Ok(())
    })
}

family_tests!(
    recv_from_a_reset_peer_is_end_of_stream_with_safe_disconn,
    recv_from_a_reset_peer_is_an_error_without_safe_disconn,
    recv_into_from_a_reset_peer,
    recv_line_from_a_reset_peer,
    peek_at_a_reset_peer,
    bytes_received_before_the_reset_are_read_first_when_buffered,
    send_to_a_reset_peer_completes_with_safe_disconn_then_fails,
    send_to_a_reset_peer_errors_without_safe_disconn,
    a_send_that_fills_the_pipe_to_a_peer_that_then_resets,
    send_on_a_socket_that_never_connected_is_an_error,
);
