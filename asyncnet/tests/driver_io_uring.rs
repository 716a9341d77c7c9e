//! The driver a loop runs on is the one asked for (by `use_driver` or `ASYNCNET_DRIVER`), or,
//! where io_uring cannot serve, the poll driver with the reason reported; and the io_uring
//! driver's own promises: a closed socket lets go of its connection at once (no later loop
//! turn needed), sockets opened and closed by the thousand leave nothing behind, bytes
//! received ahead (multishot receive) come out whole and in order, a peer that floods a
//! socket nobody reads meets flow control (not our memory), taking the descriptor out
//! never loses a byte received ahead, and bytes of a send on the ring still in flight when
//! the socket ends arrive whole, first, and once.
//!
//! CI runs the whole suite twice, the second time with `ASYNCNET_DRIVER=io_uring`; there the
//! first test fails if io_uring does not really run.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use asyncnet::{
    driver_kind, io_uring_support, use_driver, wait_for, with_timeout, AsyncSocket, DriverKind,
    DRIVER_ENV,
};
use support::{in_ci, run, settle, std_peer, Family};

#[test]
fn the_driver_asked_for_runs_or_the_reason_is_reported() {
    let asked = std::env::var(DRIVER_ENV).unwrap_or_default();
    if asked == "io_uring" {
        match io_uring_support() {
            Ok(()) => assert_eq!(driver_kind(), DriverKind::IoUring),
            Err(why) if in_ci() && cfg!(uring) => {
                panic!("CI asked for the io_uring driver, and it cannot run here: {why}")
            }
            Err(why) => eprintln!("skipped: io_uring cannot run here ({why}); poll runs"),
        }
    }
    let on_fresh_thread = |kind| {
        std::thread::spawn(move || {
            use_driver(kind).unwrap();
            driver_kind()
        })
        .join()
        .unwrap()
    };
    assert_eq!(on_fresh_thread(DriverKind::Poll), DriverKind::Poll);
    let uring = on_fresh_thread(DriverKind::IoUring);
    match io_uring_support() {
        Ok(()) => assert_eq!(uring, DriverKind::IoUring),
        Err(why) => {
            assert_eq!(uring, DriverKind::Poll, "the fallback");
            assert!(!why.to_string().is_empty());
        }
    }
}

/// The tests of this file run one at a time: some count the process's descriptors.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` on a fresh thread whose loop runs on io_uring where it can (Linux: CI fails if it
/// cannot), on the poll driver elsewhere: the properties these tests check hold on both, and
/// the io_uring driver is where they are hardest to keep.
fn on_fresh_loop<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let kind = match io_uring_support() {
        Ok(()) => DriverKind::IoUring,
        Err(why) => {
            assert!(
                !(in_ci() && cfg!(uring)),
                "io_uring cannot run on this CI machine: {why}"
            );
            DriverKind::Poll
        }
    };
    let _serial = serial();
    std::thread::spawn(move || {
        use_driver(kind).unwrap();
        assert_eq!(driver_kind(), kind);
        f()
    })
    .join()
    .expect("the test's thread panicked")
}

/// A removed poll holds its socket open until the kernel has finished the removal: the
/// driver makes it finish at once, so the peer sees the end of the stream while the loop is
/// not running.
#[test]
fn a_closed_socket_reaches_its_peer_without_another_loop_turn() {
    on_fresh_loop(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let sock = wait_for(async move {
            let s = AsyncSocket::new()?;
            s.connect("127.0.0.1", port).await?;
            s.send(b"bye").await?;
            Ok::<_, std::io::Error>(s)
        })
        .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        drop(sock);
        // Only a guard against a hang: the end arrives at once.
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got)
            .expect("the end of the stream, not a timeout");
        assert_eq!(got, b"bye");
    });
}

/// Sockets opened and closed by the thousand on io_uring: each one's connection ends (the
/// ring let go of each socket), and later ones are served normally (slots reused with new
/// generations).
#[test]
fn a_thousand_sockets_opened_and_closed_all_end_and_slots_are_reused() {
    on_fresh_loop(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        for round in 0..1000 {
            let sock = wait_for(async move {
                let s = AsyncSocket::new()?;
                s.connect("127.0.0.1", port).await?;
                Ok::<_, std::io::Error>(s)
            })
            .unwrap();
            let (mut peer, _) = listener.accept().unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            std::io::Write::write_all(&mut peer, b"ping\r\n").unwrap();
            let line = wait_for(sock.recv_line()).unwrap();
            assert_eq!(line.as_deref(), Some("ping"), "round {round}");
            sock.close().unwrap();
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest)
                .unwrap_or_else(|e| panic!("round {round}: no end of stream: {e}"));
        }
    });
}

/// A peer sends 32 MB in uneven writes to a socket that reads in small pieces with pauses;
/// meanwhile a second phase leaves the socket unread: the peer's writer must stall (flow
/// control: bytes received ahead stop at a bound) and every byte must come out in order.
#[test]
fn bytes_received_ahead_come_out_in_order_and_an_unread_socket_holds_the_peer_back() {
    on_fresh_loop(|| {
        run(async {
            let (mut peer, sock) = std_peer(Family::V4, true).await?;
            const TOTAL: usize = 32 << 20;
            let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
            let sent = data.clone();
            let writer = std::thread::spawn(move || {
                let mut off = 0;
                let mut step = 1;
                while off < TOTAL {
                    let n = (step * 7919 % 100_000 + 1).min(TOTAL - off);
                    peer.write_all(&sent[off..off + n]).expect("peer write");
                    off += n;
                    step += 1;
                }
                peer
            });
            // Read the first megabyte, so that the socket receives ahead.
            let mut got = Vec::with_capacity(TOTAL);
            while got.len() < 1 << 20 {
                got.extend(sock.recv(1 + got.len() % 5000).await?);
            }
            // Now nobody reads for a while: the writer cannot finish (32 MB is far more than
            // the kernel's buffers and the bound on bytes received ahead).
            asyncnet::sleep_async(Duration::from_millis(300)).await;
            assert!(
                !writer.is_finished(),
                "32 MB went somewhere while nobody read: received ahead without bound?"
            );
            while got.len() < TOTAL {
                let chunk = sock.recv(TOTAL - got.len()).await?;
                assert!(!chunk.is_empty(), "early end after {} bytes", got.len());
                got.extend(chunk);
            }
            let peer = writer.join().expect("writer");
            drop(peer);
            assert!(got == data, "every byte, in order");
            assert_eq!(sock.recv(10).await?, b"", "then the end");
            Ok(())
        })
    });
}

/// An unbuffered socket that waited for bytes receives ahead (io_uring); `into_fd` then
/// refuses while a byte received ahead waits unread, and, once it is read, hands over a
/// descriptor from which the next bytes are read by the std stream: nothing lost, nothing
/// twice. (On the poll driver the bytes stay in the kernel and the std stream reads them.)
#[test]
fn into_fd_never_loses_a_byte_received_ahead() {
    on_fresh_loop(|| {
        run(async {
            let (mut peer, sock) = std_peer(Family::V4, false).await?;
            // A read that waits (and is dropped): the socket receives ahead from now on.
            assert!(with_timeout(sock.recv(5), Duration::from_millis(50))
                .await
                .is_err());
            peer.write_all(b"hello")?;
            // The bytes reach the driver's inbox (not the socket's buffer: it is unbuffered).
            for _ in 0..100 {
                settle().await;
                asyncnet::sleep_async(Duration::from_millis(1)).await;
            }
            assert!(!sock.has_data_buffered());
            if driver_kind() == DriverKind::IoUring {
                let e = sock
                    .into_fd()
                    .expect_err("bytes received ahead wait: refused");
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            } else {
                // The poll driver receives nothing ahead: the bytes are still the kernel's.
                let mut std_stream = TcpStream::from(sock.into_fd()?);
                std_stream.set_nonblocking(false)?;
                std_stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut got = [0u8; 5];
                std_stream.read_exact(&mut got)?;
                assert_eq!(&got, b"hello");
            }
            Ok(())
        })
    });
    on_fresh_loop(|| {
        run(async {
            let (mut peer, sock) = std_peer(Family::V4, false).await?;
            assert!(with_timeout(sock.recv(5), Duration::from_millis(50))
                .await
                .is_err());
            peer.write_all(b"hello")?;
            assert_eq!(sock.recv(5).await?, b"hello");
            let fd = sock.into_fd()?;
            let mut std_stream = TcpStream::from(fd);
            std_stream.set_nonblocking(false)?;
            std_stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            peer.write_all(b" world")?;
            let mut rest = [0u8; 6];
            std_stream.read_exact(&mut rest)?;
            assert_eq!(&rest, b" world");
            Ok(())
        })
    });
}

#[cfg(any(target_os = "linux", windows))]
fn open_fds() -> usize {
    support::open_descriptors()
}

/// The count once closed sockets are let go (Windows lets go at the next loop turns).
#[cfg(any(target_os = "linux", windows))]
async fn wait_for_settled(expected: usize) -> usize {
    support::open_descriptors_settled(expected).await
}

/// Clients connect by the hundred to a listener that accepts ahead: the connections taken
/// ahead stay bounded (the rest wait in the kernel's backlog, as for a listener nobody
/// accepts on), every one is accepted, oldest first, and a listener closed with connections
/// taken ahead closes them: no descriptor leaks.
/// (It counts descriptors: Linux and Windows, where the tests know how.)
#[cfg(any(target_os = "linux", windows))]
#[test]
fn connections_accepted_ahead_are_bounded_in_order_and_closed_with_their_listener() {
    on_fresh_loop(|| {
        run(async {
            let server = AsyncSocket::new()?;
            server.bind_addr(0, "127.0.0.1")?;
            server.listen_backlog(1024)?;
            let port = server.local_addr()?.1;
            // An accept that waits: the listener accepts ahead from now on.
            assert!(with_timeout(server.accept(), Duration::from_millis(20))
                .await
                .is_err());
            let before = open_fds();
            let burst = |n: usize| -> Vec<TcpStream> {
                (0..n)
                    .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
                    .collect()
            };
            let wait_turns = || async {
                for _ in 0..50 {
                    settle().await;
                    asyncnet::sleep_async(Duration::from_millis(2)).await;
                }
            };
            // A burst that comes while the loop sleeps may be taken ahead whole (the kernel
            // accepts all it has in one go); past the bound, accepting ahead stops...
            let mut clients = burst(200);
            wait_turns().await;
            let held = open_fds() - before - clients.len();
            if driver_kind() == DriverKind::IoUring {
                assert!(held > 0, "nothing taken ahead: the test proves nothing");
            }
            // ...so a second burst waits in the kernel's backlog.
            clients.extend(burst(200));
            wait_turns().await;
            let held_now = open_fds() - before - clients.len();
            assert!(
                held_now <= held,
                "{held} connections taken ahead, then {held_now}: unbounded"
            );
            for (i, client) in clients.iter().enumerate() {
                let (_addr, accepted) = server.accept_addr().await?;
                assert_eq!(
                    accepted.peer_socket_addr()?,
                    client.local_addr()?,
                    "connection {i} out of order"
                );
            }
            // Taken ahead again, then the listener closes.
            let more: Vec<TcpStream> = (0..20)
                .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
                .collect();
            for _ in 0..50 {
                settle().await;
                asyncnet::sleep_async(Duration::from_millis(2)).await;
            }
            drop(clients);
            let with_listener = open_fds();
            server.close()?;
            // The listener and the connections it took ahead (io_uring: all 20).
            let taken_ahead = if driver_kind() == DriverKind::IoUring {
                more.len()
            } else {
                0
            };
            assert_eq!(
                wait_for_settled(with_listener - 1 - taken_ahead).await,
                with_listener - 1 - taken_ahead
            );
            for mut c in more {
                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut buf = [0u8; 1];
                // Closed by us before any accept: an end of stream or a reset, never a hang.
                let r = c.read(&mut buf);
                assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
                if let Err(e) = &r {
                    assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "a hang");
                }
            }
            Ok(())
        })
    });
}

/// A peer sends its last bytes and its end together, and the poll reports both before the
/// first read: that read takes the bytes (and, io_uring, starts receiving ahead), the next
/// one the end. (The hang-up reported before receiving ahead began once kept reads "ready"
/// while the inbox was empty: the read spun and the loop never turned again.) The body runs
/// on a thread of its own, watched from here, so that a spin fails the test instead of
/// hanging it.
#[test]
fn bytes_and_the_end_sent_together_are_read_then_the_end_not_spun_on() {
    let kind = match io_uring_support() {
        Ok(()) => DriverKind::IoUring,
        Err(_) => DriverKind::Poll,
    };
    let (done, watch) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use_driver(kind).unwrap();
        let r = std::panic::catch_unwind(|| {
            run(async {
                for round in 0..20 {
                    let (mut peer, sock) = std_peer(Family::V4, round % 2 == 0).await?;
                    peer.write_all(b"last words")?;
                    peer.shutdown(std::net::Shutdown::Write)?;
                    // Let the poll report the bytes and the hang-up first.
                    asyncnet::sleep_async(Duration::from_millis(5)).await;
                    let mut got = Vec::new();
                    loop {
                        let chunk = sock.recv(4).await?;
                        if chunk.is_empty() {
                            break;
                        }
                        got.extend(chunk);
                    }
                    assert_eq!(got, b"last words", "round {round}");
                }
                Ok(())
            })
        });
        let _ = done.send(r.is_ok());
    });
    // Only a guard against the spin: the rounds take milliseconds.
    let ok = watch
        .recv_timeout(Duration::from_secs(60))
        .expect("a read spun on an empty inbox: the loop never turned again");
    assert!(ok, "the body failed (see its panic above)");
}

/// `len` bytes of a pattern from byte `start` of it on; its period, 251, is prime to every
/// power-of-two chunk, so a chunk out of place or sent twice shows.
fn pattern_from(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(|i| (i % 251) as u8).collect()
}

/// How a socket with a send in flight (on io_uring, a send on the ring that waits for room)
/// ends in [`a_send_in_flight_arrives_whole_first_and_once_however_the_socket_ends`].
#[derive(Clone, Copy, Debug)]
enum End {
    Close,
    ShutdownWrite,
    Flush,
    DropOutsideTheLoop,
}

/// 4 MiB at a time sent to a peer that reads nothing yet, until the kernel fills and (on
/// io_uring) a send on the ring, which owns a copy of up to 256 KiB, waits for room, the rest
/// queued behind it.
/// Then the socket ends while that send is in flight: closed (its request is cancelled and
/// what it did not send goes first in the linger), shut down for writing (the end of the
/// stream waits for it), flushed (the flush waits for its completion), or dropped after the
/// loop returned (its bytes are finished blocking). Each way, the peer reads every byte in
/// order, once, then the end of the stream.
#[test]
fn a_send_in_flight_arrives_whole_first_and_once_however_the_socket_ends() {
    for end in [
        End::Close,
        End::ShutdownWrite,
        End::Flush,
        End::DropOutsideTheLoop,
    ] {
        on_fresh_loop(move || {
            let (peer, sock, expected) = run(async move {
                let (peer, sock) = std_peer(Family::V4, false).await?;
                // 4 MiB at a time until one waits for room (the kernel's buffers, autotuned,
                // may take more than 4 MiB at once: it happened under Wine). That one is
                // dropped while it waits: its bytes are committed, still sent.
                let mut expected = Vec::new();
                for _ in 0..16 {
                    let chunk = pattern_from(expected.len(), 4 << 20);
                    let r = with_timeout(sock.send(&chunk), Duration::from_millis(50)).await;
                    expected.extend_from_slice(&chunk);
                    if r.is_err() {
                        return Ok((peer, sock, expected));
                    }
                }
                panic!("64 MiB fit in the kernel at once, with no reader?")
            });
            let reader = std::thread::spawn(move || {
                // Late: the send is surely waiting for room when the socket ends.
                std::thread::sleep(Duration::from_millis(100));
                let mut peer = peer;
                peer.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut got = Vec::new();
                peer.read_to_end(&mut got).map(|_| got)
            });
            match end {
                End::Close => run(async move { sock.close() }),
                End::ShutdownWrite => run(async move {
                    sock.shutdown_write()?;
                    // The socket stays open (reading goes on) while the peer reads it all.
                    asyncnet::sleep_async(Duration::from_millis(300)).await;
                    Ok(())
                }),
                End::Flush => run(async move {
                    sock.flush().await?;
                    sock.close()
                }),
                End::DropOutsideTheLoop => drop(sock),
            }
            let got = reader.join().unwrap().expect("read to the end");
            assert_eq!(got.len(), expected.len(), "{end:?}: every byte, once");
            assert!(got == expected, "{end:?}: in order");
        });
    }
}

/// Sends of every size from one byte to 100 KiB, in a random order, against a reader that
/// pauses now and then: the output buffer is written out whole, in part (a short send, the
/// rest behind it), while a send is in flight, and past the high-water mark. On io_uring a
/// write of at least a page hands the output buffer itself to the ring instead of a copy
/// (and gets an empty one back), smaller ones copy: the peer must read every byte in order,
/// once, whichever way each write went.
#[test]
fn output_buffers_written_by_copy_or_handed_over_arrive_whole_and_in_order() {
    for seed in [0x9e37_79b9_7f4a_7c15_u64, 0x2545_f491_4f6c_dd1d] {
        on_fresh_loop(move || {
            let (peer, sock) = run(async { std_peer(Family::V4, false).await });
            let reader = std::thread::spawn(move || {
                let mut peer = peer;
                peer.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut got = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                let mut pauses = seed;
                loop {
                    match peer.read(&mut chunk) {
                        Ok(0) => return Ok(got),
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                        Err(e) => return Err(e),
                    }
                    pauses ^= pauses << 7;
                    pauses ^= pauses >> 9;
                    if pauses % 16 == 0 {
                        // Let the kernel's buffers fill: short sends, sends waiting for room.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            });
            let sent = run(async move {
                let mut rng = seed;
                let mut sent = 0usize;
                for i in 0..600 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let len = match rng % 4 {
                        0 => 1 + (rng >> 8) as usize % 64,
                        1 => 1 + (rng >> 8) as usize % 4096,
                        _ => 1 + (rng >> 8) as usize % (100 * 1024),
                    };
                    sock.send(pattern_from(sent, len)).await?;
                    sent += len;
                    if i % 7 == 0 {
                        // A loop turn: what is queued is written out.
                        asyncnet::sleep_async(Duration::ZERO).await;
                    }
                }
                sock.close()?;
                Ok(sent)
            });
            let got = reader.join().unwrap().expect("read to the end");
            assert_eq!(got.len(), sent, "seed {seed:#x}: every byte, once");
            let expected = pattern_from(0, sent);
            let first_bad = got.iter().zip(&expected).position(|(a, b)| a != b);
            assert_eq!(first_bad, None, "seed {seed:#x}: in order");
        });
    }
}
