//! Cancel safety: dropping a `recv_line`, `recv`, `recv_into`, `accept` or `send` future
//! half-way loses nothing. Futures are dropped by `with_timeout` running out or by
//! `JoinHandle::abort`. IPv4 and IPv6.

#[macro_use]
mod support;

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use asyncnet::{spawn, with_timeout, AsyncSocket};
use support::{port, put, run, settle, std_peer, Family};

/// Short enough to keep the suite fast; only decides how soon the future is dropped.
const SHORT: Duration = Duration::from_millis(5);

/// Drop `recv_line` futures (each after a short wait) until one of them has taken the bytes
/// sent so far into the socket's buffer, so that a later read depends on nothing being lost.
async fn drop_line_reads_until_buffered(sock: &AsyncSocket) {
    while !sock.has_data_buffered() {
        let r = with_timeout(sock.recv_line(), SHORT).await;
        assert!(r.is_err(), "half a line completed a read: {r:?}");
    }
}

fn a_dropped_recv_line_loses_nothing(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"hello, ");
            drop_line_reads_until_buffered(&sock).await;
            put(&mut peer, b"wor");
            // More bytes of the same line, and more dropped reads.
            for _ in 0..3 {
                assert!(with_timeout(sock.recv_line(), SHORT).await.is_err());
            }
            put(&mut peer, b"ld\r\nnext\n");
            assert_eq!(sock.recv_line().await?.as_deref(), Some("hello, world"));
            assert_eq!(sock.recv_line().await?.as_deref(), Some("next"));
            Ok(())
        })
    }
}

fn a_dropped_recv_line_into_leaves_the_string_alone(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            let mut buf = String::from("kept:");
            put(&mut peer, b"par");
            while !sock.has_data_buffered() {
                let r = with_timeout(sock.recv_line_into(&mut buf), SHORT).await;
                assert!(r.is_err(), "half a line completed a read: {r:?}");
            }
            assert_eq!(buf, "kept:", "a dropped read appends nothing");
            put(&mut peer, b"tial\n");
            assert!(sock.recv_line_into(&mut buf).await?);
            assert_eq!(buf, "kept:partial");
            Ok(())
        })
    }
}

fn an_aborted_recv_line_task_loses_nothing(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"first half ");
            while !sock.has_data_buffered() {
                let reader = sock.clone();
                let h = spawn(async move { reader.recv_line().await });
                asyncnet::sleep_async(SHORT).await;
                assert!(!h.is_finished(), "half a line completed a read");
                h.abort();
            }
            put(&mut peer, b"second half\n");
            assert_eq!(
                sock.recv_line().await?.as_deref(),
                Some("first half second half")
            );
            Ok(())
        })
    }
}

fn a_dropped_buffered_recv_loses_nothing(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        put(&mut peer, b"01234");
        while !sock.has_data_buffered() {
            let r = with_timeout(sock.recv(10), SHORT).await;
            assert!(r.is_err(), "5 of 10 bytes completed a buffered recv: {r:?}");
        }
        put(&mut peer, b"567");
        assert!(with_timeout(sock.recv(10), SHORT).await.is_err());
        put(&mut peer, b"89abc");
        assert_eq!(sock.recv(10).await?, b"0123456789");
        assert_eq!(sock.recv(3).await?, b"abc");
        Ok(())
    })
}

fn a_dropped_buffered_recv_into_loses_nothing(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        put(&mut peer, b"abcd");
        let mut buf = [0u8; 8];
        while !sock.has_data_buffered() {
            let r = with_timeout(sock.recv_into(&mut buf), SHORT).await;
            assert!(
                r.is_err(),
                "4 of 8 bytes completed a buffered recv_into: {r:?}"
            );
        }
        put(&mut peer, b"efgh");
        assert_eq!(sock.recv_into(&mut buf).await?, 8);
        assert_eq!(&buf, b"abcdefgh");
        Ok(())
    })
}

fn a_dropped_large_recv_loses_nothing(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let total = 1_000_000;
        let data: Vec<u8> = (0..total).map(|i| (i % 241) as u8).collect();
        let first = data[..600_000].to_vec();
        let writer = std::thread::spawn(move || {
            put(&mut peer, &first);
            peer
        });
        // Drop reads while the first part streams in.
        while !sock.has_data_buffered() || !writer.is_finished() {
            assert!(with_timeout(sock.recv(total), SHORT).await.is_err());
        }
        let mut peer = writer.join().expect("writer");
        put(&mut peer, &data[600_000..]);
        let got = sock.recv(total).await?;
        assert_eq!(got.len(), total);
        assert!(got == data, "every byte, in order");
        Ok(())
    })
}

fn a_dropped_accept_loses_no_connection(fam: Family) {
    run(async move {
        let server = support::listener(fam)?;
        // A timed-out accept, then a connection, then another accept.
        assert!(with_timeout(server.accept(), SHORT).await.is_err());
        let c1 = TcpStream::connect((fam.ip(), port(&server)))?;
        let a1 = server.accept().await?;
        assert_eq!(a1.peer_socket_addr()?, c1.local_addr()?);

        // An accept that was woken for a connection but dropped before it could take it.
        let listener = server.clone();
        let h = spawn(async move { listener.accept().await.map(|_| ()) });
        settle().await;
        let c2 = TcpStream::connect((fam.ip(), port(&server)))?;
        h.abort();
        let a2 = server.accept().await?;
        assert_eq!(a2.peer_socket_addr()?, c2.local_addr()?);

        // Several accepts waiting at once, several connections, every accept dropped.
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let listener = server.clone();
                spawn(async move { listener.accept().await.map(|_| ()) })
            })
            .collect();
        settle().await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect((fam.ip(), port(&server)))?);
        }
        for h in waiting {
            assert!(!h.is_finished());
            h.abort();
        }
        for c in &clients {
            let a = server.accept().await?;
            assert_eq!(a.peer_socket_addr()?, c.local_addr()?);
        }
        Ok(())
    })
}

/// A peer that starts reading only when told, and returns everything it read.
fn late_reader(
    mut peer: TcpStream,
    start: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let _ = start.recv();
        let mut all = Vec::new();
        peer.read_to_end(&mut all)?;
        Ok(all)
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

fn a_dropped_send_still_delivers_the_whole_message(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (peer, sock) = std_peer(fam, buffered).await?;
            socket2::SockRef::from(&peer).set_recv_buffer_size(64 * 1024)?;
            let (go, start) = std::sync::mpsc::channel();
            let reader = late_reader(peer, start);
            let big = pattern(16 * 1024 * 1024, 1);
            let r = with_timeout(sock.send(&big), Duration::from_millis(20)).await;
            assert!(r.is_err(), "16 MiB fit into the kernel at once?");
            // The reader starts late; a later send queues behind the dropped one.
            go.send(()).ok();
            sock.send("tail").await?;
            // The join below blocks this thread, and with it the loop: every byte must be
            // in the kernel before (close alone leaves the last ones to the loop).
            sock.flush().await?;
            sock.close()?;
            let all = reader.join().expect("reader")?;
            assert_eq!(all.len(), big.len() + 4);
            assert!(
                all[..big.len()] == big[..],
                "the dropped message arrived whole"
            );
            assert_eq!(&all[big.len()..], b"tail");
            Ok(())
        })
    }
}

fn an_aborted_send_task_still_delivers_the_whole_message(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        let (go, start) = std::sync::mpsc::channel();
        let reader = late_reader(peer, start);
        let big = pattern(16 * 1024 * 1024, 2);
        let sender = sock.clone();
        let message = big.clone();
        let h = spawn(async move { sender.send(message).await });
        asyncnet::sleep_async(Duration::from_millis(20)).await;
        assert!(!h.is_finished(), "16 MiB fit into the kernel at once?");
        h.abort();
        go.send(()).ok();
        // Wait for the background flush through a later send, then end the stream.
        sock.send("!").await?;
        // The join below blocks this thread, and with it the loop: every byte must be in
        // the kernel first.
        sock.flush().await?;
        sock.shutdown_write()?;
        let all = reader.join().expect("reader")?;
        assert_eq!(all.len(), big.len() + 1);
        assert!(
            all[..big.len()] == big[..],
            "the aborted message arrived whole"
        );
        assert_eq!(all[big.len()], b'!');
        Ok(())
    })
}

fn a_dropped_send_is_finished_by_the_loop_without_another_send(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let (go, start) = std::sync::mpsc::channel::<()>();
        let big = pattern(8 * 1024 * 1024, 3);
        let len = big.len();
        let (done_tx, done) = support::oneshot();
        let reader = std::thread::spawn(move || {
            let _ = start.recv();
            let mut all = vec![0u8; len];
            let r = peer.read_exact(&mut all).map(|()| all);
            done_tx.send(r);
            peer
        });
        let r = with_timeout(sock.send(&big), Duration::from_millis(20)).await;
        assert!(r.is_err(), "8 MiB fit into the kernel at once?");
        go.send(()).ok();
        // Nothing else sends: the loop alone must write the rest while we wait.
        let all = done.recv().await?;
        assert!(all == big, "the dropped message arrived whole");
        drop(reader.join().expect("reader"));
        Ok(())
    })
}

fn a_send_dropped_before_its_first_poll_sends_nothing(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let never = sock.send("never sent");
        drop(never);
        sock.send("only this").await?;
        sock.close()?;
        let mut all = Vec::new();
        peer.read_to_end(&mut all)?;
        assert_eq!(all, b"only this");
        Ok(())
    })
}

fn a_dropped_send_on_a_dropped_socket_still_delivers_then_ends_the_stream(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        let (go, start) = std::sync::mpsc::channel();
        let reader = late_reader(peer, start);
        let big = pattern(8 * 1024 * 1024, 4);
        let r = with_timeout(sock.send(&big), Duration::from_millis(20)).await;
        assert!(r.is_err(), "8 MiB fit into the kernel at once?");
        // The last handle goes; the queued bytes must still go out, then end-of-stream.
        drop(sock);
        go.send(()).ok();
        let (done_tx, done) = support::oneshot();
        let waiter = std::thread::spawn(move || done_tx.send(reader.join().expect("reader")));
        let all = done.recv().await?;
        waiter.join().expect("waiter");
        assert_eq!(all.len(), big.len());
        assert!(all == big, "the dropped message arrived whole");
        Ok(())
    })
}

family_tests!(
    a_dropped_recv_line_loses_nothing,
    a_dropped_recv_line_into_leaves_the_string_alone,
    an_aborted_recv_line_task_loses_nothing,
    a_dropped_buffered_recv_loses_nothing,
    a_dropped_buffered_recv_into_loses_nothing,
    a_dropped_large_recv_loses_nothing,
    a_dropped_accept_loses_no_connection,
    a_dropped_send_still_delivers_the_whole_message,
    an_aborted_send_task_still_delivers_the_whole_message,
    a_dropped_send_is_finished_by_the_loop_without_another_send,
    a_send_dropped_before_its_first_poll_sends_nothing,
    a_dropped_send_on_a_dropped_socket_still_delivers_then_ends_the_stream,
);
