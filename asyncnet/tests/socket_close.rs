//! Closing a socket while another task waits on it ends that wait with `NotConnected`, never a
//! hang: `recv`, `recv_into`, `recv_line`, peeks, `accept`, and a `send` blocked on a full
//! pipe (whose cut-off message must not be reported as sent). A half-close during a send must
//! not pass the bytes it cut off as sent either. IPv4 and IPv6.

#[macro_use]
mod support;

use std::io;
use std::time::Duration;

use asyncnet::{sleep_async, spawn, AsyncSocket, JoinHandle, TaskOutput};
use support::{listener, put, run, settle, std_peer, Family};

/// Close `sock` once `waiter` is parked on it, and return what the waiter got.
async fn close_under<T: TaskOutput>(sock: &AsyncSocket, waiter: JoinHandle<T>) -> T {
    settle().await;
    assert!(!waiter.is_finished(), "the operation should be waiting");
    sock.close().expect("nothing to report at close");
    waiter.await
}

fn expect_not_connected<T: std::fmt::Debug>(r: io::Result<T>) {
    let e = r.expect_err("a closed socket");
    assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
}

fn close_ends_a_waiting_recv(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (_peer, sock) = std_peer(fam, buffered).await?;
            let s = sock.clone();
            let h = spawn(async move { s.recv(10).await });
            expect_not_connected(close_under(&sock, h).await);
            Ok(())
        })
    }
}

fn close_ends_a_recv_that_has_part_of_its_bytes(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        put(&mut peer, b"abc");
        let s = sock.clone();
        let h = spawn(async move { s.recv(10).await });
        sleep_async(Duration::from_millis(5)).await;
        expect_not_connected(close_under(&sock, h).await);
        assert!(!sock.has_data_buffered(), "close discards unread bytes");
        Ok(())
    })
}

fn close_ends_a_waiting_recv_into(fam: Family) {
    run(async move {
        let (_peer, sock) = std_peer(fam, true).await?;
        let s = sock.clone();
        let h = spawn(async move {
            let mut buf = [0u8; 16];
            s.recv_into(&mut buf).await
        });
        expect_not_connected(close_under(&sock, h).await);
        Ok(())
    })
}

fn close_ends_a_waiting_recv_line(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"half a li");
            let s = sock.clone();
            let h = spawn(async move { s.recv_line().await });
            sleep_async(Duration::from_millis(5)).await;
            expect_not_connected(close_under(&sock, h).await);
            Ok(())
        })
    }
}

fn close_ends_a_waiting_peek(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (_peer, sock) = std_peer(fam, buffered).await?;
            let s = sock.clone();
            let h = spawn(async move { s.recv_line_with(asyncnet::Flags::PEEK, 100).await });
            expect_not_connected(close_under(&sock, h).await);
            Ok(())
        })
    }
}

fn close_ends_a_waiting_accept(fam: Family) {
    run(async move {
        let server = listener(fam)?;
        let s = server.clone();
        let h = spawn(async move { s.accept().await.map(|_| ()) });
        expect_not_connected(close_under(&server, h).await);
        Ok(())
    })
}

fn close_ends_every_waiter_at_once(fam: Family) {
    run(async move {
        let (_peer, sock) = std_peer(fam, true).await?;
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let s = sock.clone();
                spawn(async move { s.recv_line().await.map(|_| ()) })
            })
            .collect();
        settle().await;
        sock.close()?;
        for h in waiters {
            expect_not_connected(h.await);
        }
        Ok(())
    })
}

fn close_ends_a_send_blocked_on_a_full_pipe(fam: Family) {
    run(async move {
        let (_peer, sock) = std_peer(fam, true).await?;
        let s = sock.clone();
        let h = spawn(async move { s.send(vec![1u8; 32 * 1024 * 1024]).await });
        sleep_async(Duration::from_millis(10)).await;
        let r = close_under(&sock, h).await;
        let e = r.expect_err("the queue was discarded");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        Ok(())
    })
}

fn a_task_closing_its_own_socket_ends_the_readers_of_another_task(fam: Family) {
    run(async move {
        let (a, b) = support::pair(fam, true).await?;
        let reader = a.clone();
        let r = spawn(async move { reader.recv_line().await.map(|_| ()) });
        let closer = a.clone();
        let c = spawn(async move {
            sleep_async(Duration::from_millis(5)).await;
            closer.close().expect("nothing to report at close");
        });
        c.await;
        expect_not_connected(r.await);
        // The peer sees end of stream.
        assert_eq!(b.recv_line().await?, None);
        Ok(())
    })
}

fn the_descriptor_of_a_closed_socket_can_be_reused_at_once(fam: Family) {
    run(async move {
        for _ in 0..20 {
            let (peer, sock) = support::pair(fam, true).await?;
            let s = sock.clone();
            let h = spawn(async move { s.recv(1).await });
            settle().await;
            sock.close()?;
            // New sockets may take the same numbers; the old waiter must not see their events.
            let (p2, s2) = support::pair(fam, true).await?;
            p2.send("x").await?;
            expect_not_connected(h.await);
            assert_eq!(s2.recv(1).await?, b"x");
            drop(peer);
        }
        Ok(())
    })
}

fn shutdown_write_during_a_send_never_passes_lost_bytes_off_as_sent(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        let size = 32 * 1024 * 1024;
        let s = sock.clone();
        let h = spawn(async move { s.send(vec![1u8; size]).await });
        sleep_async(Duration::from_millis(10)).await;
        assert!(!h.is_finished(), "32 MiB fit into the kernel at once?");
        let shutdown = sock.shutdown_write();
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut peer, &mut all).map(|_| all.len())
        });
        let sent = h.await;
        // Joined without blocking the loop: on io_uring the bytes a send on the ring holds
        // (counted as written, as bytes in the kernel are) reach the peer, and the end of
        // the stream follows them, only while the loop runs.
        while !reader.is_finished() {
            sleep_async(Duration::from_millis(2)).await;
        }
        let delivered = reader.join().expect("reader")?;
        // Either the half-close or the send must say that the message was cut; a send
        // may report success only if every byte reached the peer.
        assert!(
            shutdown.is_err() || sent.is_err() || delivered == size,
            "shutdown_write {shutdown:?}, send {sent:?}, but the peer got {delivered} of {size} \
             bytes (is_disconnected: {})",
            sock.is_disconnected()
        );
        Ok(())
    })
}

family_tests!(
    close_ends_a_waiting_recv,
    close_ends_a_recv_that_has_part_of_its_bytes,
    close_ends_a_waiting_recv_into,
    close_ends_a_waiting_recv_line,
    close_ends_a_waiting_peek,
    close_ends_a_waiting_accept,
    close_ends_every_waiter_at_once,
    close_ends_a_send_blocked_on_a_full_pipe,
    shutdown_write_during_a_send_never_passes_lost_bytes_off_as_sent,
    a_task_closing_its_own_socket_ends_the_readers_of_another_task,
    the_descriptor_of_a_closed_socket_can_be_reused_at_once,
);
