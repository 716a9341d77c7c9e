//! Write coalescing: `send` holds its bytes in the socket's output buffer and they leave
//! when a read on the socket is about to wait, when the loop turn ends (or `wait_for`
//! returns), at the high-water mark, on `flush`, `close`, `shutdown_write` or the last drop;
//! never later, never out of order, never lost. IPv4 and IPv6.

#[macro_use]
mod support;

use std::io::{self, Read};
use std::net::TcpStream;
use std::pin::Pin;
use std::thread;
use std::time::Duration;

use asyncnet::{sleep_async, spawn, wait_for, AsyncSocket, Flags, WRITE_HIGH_WATER};
use support::{oneshot, put, run, settle, std_peer, Family};

/// What the std peer can read right now without waiting.
fn available(peer: &mut TcpStream) -> Vec<u8> {
    peer.set_nonblocking(true).expect("nonblocking");
    let mut all = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("peer read: {e}"),
        }
    }
    peer.set_nonblocking(false).expect("blocking");
    all
}

/// Read exactly `n` bytes on a helper thread (with a generous timeout): the loop keeps running
/// meanwhile. Returns the bytes through a future.
fn read_on_thread(mut peer: TcpStream, n: usize) -> support::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = oneshot();
    thread::spawn(move || {
        peer.set_read_timeout(Some(support::HANG_GUARD))
            .expect("timeout");
        let mut all = vec![0u8; n];
        tx.send(peer.read_exact(&mut all).map(|()| all));
    });
    rx
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn sends_are_held_until_the_task_waits(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        for i in 0..16 {
            sock.send(format!("reply {i:02}\r\n")).await?;
        }
        assert!(
            available(&mut peer).is_empty(),
            "nothing may leave before the task waits or the turn ends"
        );
        sock.flush().await?;
        let got = available(&mut peer);
        let want: String = (0..16).map(|i| format!("reply {i:02}\r\n")).collect();
        assert_eq!(String::from_utf8_lossy(&got), want);
        Ok(())
    })
}

fn replies_leave_when_the_task_waits_for_the_next_request(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        // 16 pipelined requests in one write; the server answers each, then waits for more.
        let requests: String = (0..16).map(|i| format!("PING {i}\r\n")).collect();
        put(&mut peer, requests.as_bytes());
        let server = spawn(async move {
            let mut served = 0;
            while let Some(line) = sock.recv_line().await? {
                sock.send(format!("+{line}\r\n")).await?;
                served += 1;
            }
            Ok::<_, io::Error>(served)
        });
        // The server's recv_line waits for request 17, which only comes after all 16 replies
        // have arrived: without the flush before that wait, this would hang.
        let want: String = (0..16).map(|i| format!("+PING {i}\r\n")).collect();
        let replies = read_on_thread(peer.try_clone()?, want.len()).recv().await?;
        assert_eq!(String::from_utf8_lossy(&replies), want);
        support::finish(&peer);
        assert_eq!(server.await?, 16);
        Ok(())
    })
}

fn replies_leave_at_the_end_of_the_loop_turn(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        let reply = b"sent, then a long sleep\n";
        let rx = read_on_thread(peer, reply.len());
        // The task waits on a timer, not on the socket: the turn's end writes its bytes.
        let task = spawn(async move {
            sock.send(reply).await?;
            sleep_async(Duration::from_secs(3600)).await;
            Ok::<_, io::Error>(())
        });
        assert_eq!(rx.recv().await?, reply);
        task.abort();
        Ok(())
    })
}

/// A read that waits writes its socket's queue and takes back the socket's place on the
/// turn-end list: a later send on that socket must take a place again.
fn a_send_after_a_read_wrote_the_queue_still_leaves_at_the_end_of_the_turn(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        let reader = spawn({
            let sock = sock.clone();
            async move {
                sock.send("first\n").await?;
                sock.recv_line().await
            }
        });
        assert_eq!(
            read_on_thread(peer.try_clone()?, 6).recv().await?,
            b"first\n"
        );
        // Another task sends on the same socket, then waits on a timer, not on the socket.
        let writer = spawn({
            let sock = sock.clone();
            async move {
                sock.send("second\n").await?;
                sleep_async(Duration::from_secs(3600)).await;
                Ok::<_, io::Error>(())
            }
        });
        assert_eq!(
            read_on_thread(peer.try_clone()?, 7).recv().await?,
            b"second\n"
        );
        writer.abort();
        support::finish(&peer);
        assert_eq!(reader.await?, None);
        Ok(())
    })
}

/// Only the last place on the turn-end list is taken back by a read that waits: sends on
/// another socket, before or after, still leave at the end of the turn.
fn a_read_that_waits_leaves_other_sockets_queues_to_the_end_of_the_turn(fam: Family) {
    for read_first_sent in [true, false] {
        run(async move {
            let (peer_a, a) = std_peer(fam, true).await?;
            let (peer_b, b) = std_peer(fam, true).await?;
            let task = spawn(async move {
                if read_first_sent {
                    a.send("to a\n").await?;
                    b.send("to b\n").await?;
                } else {
                    b.send("to b\n").await?;
                    a.send("to a\n").await?;
                }
                // Waits: writes a's queue; b's waits for the end of the turn.
                a.recv_line().await?;
                Ok::<_, io::Error>(b)
            });
            let got_a = read_on_thread(peer_a.try_clone()?, 5).recv().await?;
            let got_b = read_on_thread(peer_b.try_clone()?, 5).recv().await?;
            assert_eq!((&got_a[..], &got_b[..]), (&b"to a\n"[..], &b"to b\n"[..]));
            support::finish(&peer_a);
            task.await?;
            Ok(())
        });
    }
}

fn wait_for_returns_with_the_bytes_in_the_kernel(fam: Family) {
    let (mut peer, sock) = run(std_peer(fam, true));
    wait_for(async { sock.send("before returning\n").await }).expect("send");
    // Outside the loop now: nothing else will ever write the bytes.
    let mut got = [0u8; 17];
    peer.set_read_timeout(Some(support::HANG_GUARD))
        .expect("timeout");
    peer.read_exact(&mut got).expect("the bytes were written");
    assert_eq!(&got, b"before returning\n");
}

fn the_high_water_mark_writes_without_waiting_for_the_task(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let first = pattern(WRITE_HIGH_WATER / 2);
        sock.send(&first).await?;
        assert!(available(&mut peer).is_empty(), "under the mark: held");
        let second = pattern(WRITE_HIGH_WATER);
        sock.send(&second).await?;
        // Past the mark: written at once, at most the mark left queued.
        let got = available(&mut peer);
        assert!(
            got.len() >= first.len() + second.len() - WRITE_HIGH_WATER,
            "only {} bytes left before the task waited",
            got.len()
        );
        let mut all = got;
        sock.flush().await?;
        all.extend(available(&mut peer));
        let mut want = first;
        want.extend(&second);
        assert!(all == want, "the bytes arrived whole and in order");
        Ok(())
    })
}

fn a_send_without_safe_disconn_is_not_coalesced(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        sock.send("coalesced, ").await?;
        sock.send_with("then written through\n", Flags::NONE)
            .await?;
        // The kernel has both, in order, before the task ever waited.
        assert_eq!(available(&mut peer), b"coalesced, then written through\n");
        Ok(())
    })
}

fn close_delivers_coalesced_bytes_then_ends_the_stream(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        sock.send("last words\n").await?;
        sock.close()?;
        let mut all = Vec::new();
        peer.read_to_end(&mut all)?;
        assert_eq!(all, b"last words\n");
        Ok(())
    })
}

fn dropping_the_last_handle_delivers_coalesced_bytes(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        sock.send("written after the drop\n").await?;
        drop(sock);
        let mut all = Vec::new();
        peer.read_to_end(&mut all)?;
        assert_eq!(all, b"written after the drop\n");
        Ok(())
    })
}

/// A std peer that starts reading after a pause (so the tail is still ours when the socket
/// goes), then reads to the end. Returns once its thread runs: on Windows a thread that
/// starts must wait for the loader lock, which a thread that ends holds while its
/// thread-local destructors run, a loop's last blocking writes among them (up to
/// `CLOSE_LINGER`), so a reader that had not started by then would start too late to read.
fn late_reader(mut peer: TcpStream) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    let (started, running) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        started.send(()).expect("late_reader waits for this");
        thread::sleep(Duration::from_millis(200));
        peer.set_read_timeout(Some(support::HANG_GUARD))?;
        let mut all = Vec::new();
        peer.read_to_end(&mut all).map(|_| all)
    });
    running.recv().expect("the reader thread started");
    reader
}

/// Connect, and queue `big` behind a send that is then dropped (its bytes are committed):
/// more than the kernel holds while nobody reads.
async fn queued(fam: Family, big: Vec<u8>) -> io::Result<(TcpStream, AsyncSocket)> {
    let (peer, sock) = std_peer(fam, true).await?;
    let h = spawn({
        let sock = sock.clone();
        async move { sock.send(big).await }
    });
    settle().await;
    assert!(!h.is_finished(), "16 MiB fit into the kernel at once?");
    h.abort(); // dropped mid-send: its bytes are committed
    Ok((peer, sock))
}

/// What a [`late_reader`] got must be `expected`, whole and in order.
fn assert_all_arrived(reader: thread::JoinHandle<io::Result<Vec<u8>>>, expected: &[u8]) {
    let got = reader.join().expect("reader thread").expect("peer read");
    assert_eq!(
        got.len(),
        expected.len(),
        "bytes that arrived before the end"
    );
    assert!(got == expected, "every byte arrived, in order");
}

fn close_finishes_what_the_kernel_could_not_take_in_the_background(fam: Family) {
    run(async move {
        // More than the kernel's buffers hold while nobody reads: the tail is still queued
        // when close is called, and must arrive once the peer reads.
        let big = pattern(16 * 1024 * 1024);
        let (peer, sock) = queued(fam, big.clone()).await?;
        sock.close()?;
        let got = read_on_thread(peer, big.len()).recv().await?;
        assert!(got == big, "every byte arrived, in order");
        Ok(())
    })
}

fn a_thread_that_ends_after_wait_for_loses_nothing_it_closed_with(fam: Family) {
    let big = pattern(16 * 1024 * 1024);
    let expected = big.clone();
    // The whole program of this thread: queue more than the kernel holds, close, return.
    // Its loop is torn down when the thread ends, so the tail must be in the kernel by the
    // time `wait_for` returns.
    let reader = support::in_fresh_thread(move || {
        wait_for(async move {
            let (peer, sock) = queued(fam, big).await?;
            let reader = late_reader(peer);
            sock.close()?;
            io::Result::Ok(reader)
        })
    })
    .expect("the closing thread")
    .expect("connect, queue and close");
    assert_all_arrived(reader, &expected);
}

fn a_socket_dropped_after_wait_for_returned_delivers_its_queued_bytes(fam: Family) {
    let big = pattern(16 * 1024 * 1024);
    let expected = big.clone();
    let reader = support::in_fresh_thread(move || {
        let (peer, sock) = wait_for(queued(fam, big)).expect("connect and queue");
        let reader = late_reader(peer);
        // Outside the loop, as at the end of `main`: no loop turn is coming.
        drop(sock);
        reader
    })
    .expect("the dropping thread");
    assert_all_arrived(reader, &expected);
}

fn a_thread_whose_loop_ends_mid_linger_still_delivers(fam: Family) {
    let big = pattern(16 * 1024 * 1024);
    let expected = big.clone();
    let reader = support::in_fresh_thread(move || {
        let (peer, sock) = wait_for(queued(fam, big)).expect("connect and queue");
        let reader = late_reader(peer);
        // Closed inside the loop, which then runs one turn only (`poll`, not `wait_for`):
        // the background write is unfinished when the thread ends.
        drop(spawn(async move { sock.close() }));
        asyncnet::poll(Some(Duration::ZERO)).expect("one turn");
        asyncnet::poll(Some(Duration::ZERO)).expect("one turn");
        reader
    })
    .expect("the closing thread");
    assert_all_arrived(reader, &expected);
}

fn shutdown_write_delivers_coalesced_bytes_before_the_end(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        sock.send("one\n").await?;
        sock.send("two\n").await?;
        sock.shutdown_write()?;
        let mut all = Vec::new();
        peer.read_to_end(&mut all)?;
        assert_eq!(all, b"one\ntwo\n");
        // Reading goes on after the half-close.
        put(&mut peer, b"still open\n");
        assert_eq!(sock.recv_line().await?.as_deref(), Some("still open"));
        Ok(())
    })
}

fn a_dropped_flush_loses_nothing(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        let big = pattern(8 * 1024 * 1024);
        let rx = {
            // Not read yet: the flush below must wait.
            let (go, start) = std::sync::mpsc::channel::<()>();
            let (tx, rx) = oneshot();
            let mut peer = peer;
            let n = big.len();
            thread::spawn(move || {
                let _ = start.recv();
                let mut all = vec![0u8; n];
                tx.send(peer.read_exact(&mut all).map(|()| all));
            });
            // Queue it all (a dropped send commits its bytes), then drop a flush mid-way.
            let r = asyncnet::with_timeout(sock.send(&big), Duration::from_millis(20)).await;
            assert!(r.is_err(), "8 MiB fit into the kernel at once?");
            let r = asyncnet::with_timeout(sock.flush(), Duration::from_millis(20)).await;
            assert!(r.is_err(), "the flush should still be waiting");
            go.send(()).ok();
            rx
        };
        let got = rx.recv().await?;
        assert!(got == big, "the loop finished the bytes on its own");
        Ok(())
    })
}

fn a_flush_that_finds_the_peer_gone_is_an_error_and_close_is_not(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        support::reset(peer);
        // Wait for the reset to arrive (end of stream under SAFE_DISCONN).
        assert!(sock.recv(1).await?.is_empty());
        sock.send("into the void").await?;
        let e = sock.flush().await.expect_err("the bytes were lost");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
        assert!(sock.is_disconnected());
        // A disconnection is a state (is_disconnected), not an error, for close.
        sock.close()?;
        Ok(())
    })
}

fn async_write_coalesces_and_flush_writes(fam: Family) {
    use futures_io::AsyncWrite;
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let mut w = sock.clone();
        for part in [&b"a"[..], b"b", b"c"] {
            let n = std::future::poll_fn(|cx| Pin::new(&mut w).poll_write(cx, part)).await?;
            assert_eq!(n, 1);
        }
        assert!(available(&mut peer).is_empty(), "held until flushed");
        std::future::poll_fn(|cx| Pin::new(&mut w).poll_flush(cx)).await?;
        assert_eq!(available(&mut peer), b"abc");
        Ok(())
    })
}

fn sends_of_many_tasks_interleave_whole_messages_only(fam: Family) {
    run(async move {
        let (peer, sock) = std_peer(fam, true).await?;
        let tasks = 50;
        let per_task = 40;
        let msg_len = 1000;
        let mut handles = Vec::new();
        for t in 0..tasks {
            let sock = sock.clone();
            handles.push(spawn(async move {
                for m in 0..per_task {
                    let mut msg = format!("{t:03}:{m:03}:").into_bytes();
                    msg.resize(msg_len - 1, b'a' + (t % 26) as u8);
                    msg.push(b'\n');
                    sock.send(msg).await?;
                    if m % 7 == 0 {
                        sleep_async(Duration::from_millis(1)).await;
                    }
                }
                Ok::<(), io::Error>(())
            }));
        }
        let rx = read_on_thread(peer, tasks * per_task * msg_len);
        for h in handles {
            h.await?;
        }
        let all = rx.recv().await?;
        let mut next = vec![0usize; tasks];
        for line in all.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert_eq!(line.len(), msg_len - 1, "a message was cut or merged");
            let head = std::str::from_utf8(&line[..8]).expect("header");
            let t: usize = head[..3].parse().expect("task");
            let m: usize = head[4..7].parse().expect("seq");
            assert_eq!(m, next[t], "task {t}'s messages out of order");
            assert!(line[8..].iter().all(|&b| b == b'a' + (t % 26) as u8));
            next[t] += 1;
        }
        assert!(next.iter().all(|&n| n == per_task));
        Ok(())
    })
}

#[test]
fn a_send_on_a_closed_or_unconnected_socket_fails_at_once() {
    run(async {
        let never = AsyncSocket::new()?;
        let e = never.send("x").await.expect_err("never connected");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        let e = never.flush().await.map(|()| "flushed nothing");
        assert!(e.is_ok(), "nothing to flush: {e:?}");
        never.close()?;
        let e = never.send("x").await.expect_err("closed");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        let e = never.flush().await.expect_err("closed");
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        Ok(())
    })
}

family_tests!(
    sends_are_held_until_the_task_waits,
    replies_leave_when_the_task_waits_for_the_next_request,
    replies_leave_at_the_end_of_the_loop_turn,
    a_send_after_a_read_wrote_the_queue_still_leaves_at_the_end_of_the_turn,
    a_read_that_waits_leaves_other_sockets_queues_to_the_end_of_the_turn,
    wait_for_returns_with_the_bytes_in_the_kernel,
    the_high_water_mark_writes_without_waiting_for_the_task,
    a_send_without_safe_disconn_is_not_coalesced,
    close_delivers_coalesced_bytes_then_ends_the_stream,
    dropping_the_last_handle_delivers_coalesced_bytes,
    close_finishes_what_the_kernel_could_not_take_in_the_background,
    a_thread_that_ends_after_wait_for_loses_nothing_it_closed_with,
    a_socket_dropped_after_wait_for_returned_delivers_its_queued_bytes,
    a_thread_whose_loop_ends_mid_linger_still_delivers,
    shutdown_write_delivers_coalesced_bytes_before_the_end,
    a_dropped_flush_loses_nothing,
    a_flush_that_finds_the_peer_gone_is_an_error_and_close_is_not,
    async_write_coalesces_and_flush_writes,
    sends_of_many_tasks_interleave_whole_messages_only,
);
