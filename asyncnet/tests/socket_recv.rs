//! `send`, `recv`, `recv_into` and the `PEEK` flag, buffered and unbuffered, on IPv4 and IPv6
//! loopback, against a plain std peer.

#[macro_use]
mod support;

use std::io::Read;
use std::time::Duration;

use asyncnet::{sleep_async, spawn, Flags, BUFFER_SIZE};
use support::{finish, put, run, settle, std_peer, Family};

fn buffered_recv_waits_for_n_bytes(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let reader = sock.clone();
        let h = spawn(async move { reader.recv(10).await });
        put(&mut peer, b"abc");
        sleep_async(Duration::from_millis(10)).await;
        settle().await;
        assert!(
            !h.is_finished(),
            "3 of 10 bytes do not complete a buffered recv"
        );
        put(&mut peer, b"defg");
        sleep_async(Duration::from_millis(5)).await;
        assert!(
            !h.is_finished(),
            "7 of 10 bytes do not complete a buffered recv"
        );
        put(&mut peer, b"hijklm");
        assert_eq!(h.await?, b"abcdefghij");
        // The two bytes past the ten stay for the next read.
        assert_eq!(sock.recv(2).await?, b"kl");
        assert_eq!(sock.recv(1).await?, b"m");
        Ok(())
    })
}

fn buffered_recv_returns_short_at_end_of_stream(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        put(&mut peer, b"tail");
        finish(&peer);
        assert_eq!(sock.recv(100).await?, b"tail");
        assert!(sock.recv(100).await?.is_empty(), "end of stream");
        assert!(sock.recv(100).await?.is_empty(), "and stays there");
        Ok(())
    })
}

fn buffered_recv_of_a_large_size_gets_everything(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let big: Vec<u8> = (0..3 * BUFFER_SIZE + 17).map(|i| (i % 251) as u8).collect();
        let expect = big.clone();
        let writer = std::thread::spawn(move || {
            put(&mut peer, &big);
            peer
        });
        let got = sock.recv(expect.len()).await?;
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "bytes in order");
        drop(writer.join().expect("writer"));
        assert!(sock.recv(1).await?.is_empty());
        Ok(())
    })
}

fn unbuffered_recv_returns_what_one_read_gives(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, false).await?;
        assert!(!sock.is_buffered());
        put(&mut peer, b"abc");
        // One segment of three bytes: one read returns it, without waiting for ten.
        assert_eq!(sock.recv(10).await?, b"abc");
        put(&mut peer, b"defgh");
        let mut got = Vec::new();
        while got.len() < 5 {
            let chunk = sock.recv(2).await?;
            assert!(!chunk.is_empty() && chunk.len() <= 2, "{chunk:?}");
            got.extend(chunk);
        }
        assert_eq!(got, b"defgh");
        finish(&peer);
        assert!(sock.recv(10).await?.is_empty(), "end of stream");
        Ok(())
    })
}

fn recv_zero_returns_empty_without_waiting(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (_peer, sock) = std_peer(fam, buffered).await?;
            assert!(sock.recv(0).await?.is_empty());
            let mut empty = [0u8; 0];
            assert_eq!(sock.recv_into(&mut empty).await?, 0);
            Ok(())
        })
    }
}

fn buffered_recv_into_fills_the_buffer(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let reader = sock.clone();
        let h = spawn(async move {
            let mut buf = [0u8; 8];
            let n = reader.recv_into(&mut buf).await?;
            Ok::<_, std::io::Error>(buf[..n].to_vec())
        });
        put(&mut peer, b"1234");
        sleep_async(Duration::from_millis(5)).await;
        assert!(!h.is_finished(), "4 of 8 bytes do not complete it");
        put(&mut peer, b"56789");
        assert_eq!(h.await?, b"12345678");
        finish(&peer);
        let mut buf = [0u8; 8];
        assert_eq!(sock.recv_into(&mut buf).await?, 1);
        assert_eq!(buf[0], b'9');
        assert_eq!(sock.recv_into(&mut buf).await?, 0, "end of stream");
        Ok(())
    })
}

fn unbuffered_recv_into_is_one_read(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, false).await?;
        put(&mut peer, b"xyz");
        let mut buf = [0u8; 8];
        assert_eq!(sock.recv_into(&mut buf).await?, 3);
        assert_eq!(&buf[..3], b"xyz");
        finish(&peer);
        assert_eq!(sock.recv_into(&mut buf).await?, 0);
        Ok(())
    })
}

fn peek_leaves_the_bytes_for_the_next_read(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"peekaboo");
            let mut peeked = Vec::new();
            // Unbuffered: one peek may show fewer bytes; all arrive as one segment here.
            while peeked.len() < 4 {
                peeked = sock.recv_with(4, Flags::PEEK).await?;
            }
            assert_eq!(peeked, b"peek");
            assert_eq!(
                sock.recv_with(4, Flags::PEEK | Flags::SAFE_DISCONN).await?,
                b"peek",
                "peeking twice shows the same bytes"
            );
            let mut buf = [0u8; 4];
            assert_eq!(sock.recv_into_with(&mut buf, Flags::PEEK).await?, 4);
            assert_eq!(&buf, b"peek");
            let mut got = Vec::new();
            while got.len() < 8 {
                let chunk = sock.recv(8 - got.len()).await?;
                assert!(!chunk.is_empty());
                got.extend(chunk);
            }
            assert_eq!(got, b"peekaboo", "nothing was consumed by the peeks");
            finish(&peer);
            assert!(
                sock.recv_with(4, Flags::PEEK).await?.is_empty(),
                "peek at end"
            );
            assert!(sock.recv(4).await?.is_empty());
            Ok(())
        })
    }
}

fn buffered_peek_waits_for_n_bytes(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let reader = sock.clone();
        let h = spawn(async move { reader.recv_with(6, Flags::PEEK).await });
        put(&mut peer, b"abc");
        sleep_async(Duration::from_millis(5)).await;
        assert!(!h.is_finished(), "a buffered peek waits for its size too");
        put(&mut peer, b"def");
        assert_eq!(h.await?, b"abcdef");
        assert!(sock.has_data_buffered(), "peeked bytes wait in the buffer");
        assert_eq!(sock.recv(6).await?, b"abcdef");
        assert!(!sock.has_data_buffered());
        Ok(())
    })
}

fn has_data_buffered_tracks_leftover_bytes(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        assert!(!sock.has_data_buffered());
        put(&mut peer, b"line one\nline two\n");
        assert_eq!(sock.recv_line().await?.as_deref(), Some("line one"));
        assert!(sock.has_data_buffered(), "the second line was read along");
        assert_eq!(sock.recv_line().await?.as_deref(), Some("line two"));
        assert!(!sock.has_data_buffered());
        Ok(())
    })
}

/// Nim's `BufferSize` rule: a buffered `recv(n)` asks the kernel for more than `n` and keeps
/// the rest, so a length-prefixed frame (a small header, then its body) costs one read.
fn buffered_recv_reads_ahead_and_keeps_the_rest(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        put(&mut peer, b"\x00\x08lengthy!rest");
        assert_eq!(sock.recv(2).await?, b"\x00\x08");
        assert!(sock.has_data_buffered(), "the body came with the header");
        let mut body = [0u8; 8];
        assert_eq!(sock.recv_into(&mut body).await?, 8);
        assert_eq!(&body, b"lengthy!");
        assert_eq!(sock.recv(4).await?, b"rest");
        assert!(!sock.has_data_buffered());
        Ok(())
    })
}

fn send_delivers_every_byte_in_order(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
        let expect = big.len();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).map(|_| all)
        });
        sock.send(&big).await?;
        sock.send(b"").await?;
        sock.send("end").await?;
        // The join below blocks this thread, and with it the loop: every byte must be in
        // the kernel first.
        sock.flush().await?;
        sock.close()?;
        let all = reader.join().expect("reader")?;
        assert_eq!(all.len(), expect + 3);
        assert!(all[..expect] == big[..], "bytes in order");
        assert_eq!(&all[expect..], b"end");
        Ok(())
    })
}

fn send_and_recv_between_two_of_our_sockets(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (a, b) = support::pair(fam, buffered).await?;
            a.send(vec![7u8; 100]).await?;
            let mut got = Vec::new();
            while got.len() < 100 {
                let chunk = b.recv(100 - got.len()).await?;
                assert!(!chunk.is_empty());
                got.extend(chunk);
            }
            assert_eq!(got, vec![7u8; 100]);
            b.send(String::from("back\n")).await?;
            assert_eq!(a.recv_line().await?.as_deref(), Some("back"));
            Ok(())
        })
    }
}

fn buffered_peek_larger_than_64_kib_waits_for_every_byte(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let size = 100_000;
        let data: Vec<u8> = (0..size).map(|i| (i % 239) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            put(&mut peer, &sent);
            finish(&peer);
            peer
        });
        // Like a buffered recv, a buffered peek waits for `size` bytes or the end.
        let peeked = sock.recv_with(size, Flags::PEEK).await?;
        assert_eq!(peeked.len(), size, "a buffered peek returned short");
        assert!(peeked == data);
        let mut buf = vec![0u8; size];
        assert_eq!(sock.recv_into_with(&mut buf, Flags::PEEK).await?, size);
        assert_eq!(sock.recv(size).await?, data, "nothing consumed");
        drop(writer.join().expect("writer"));
        Ok(())
    })
}

/// Bytes numbered from 0, so that a misplaced piece shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A read between the wake-ups of a waiting buffered `recv_into` takes the next bytes of the
/// stream (those the waiting read had so far: they wait in the socket's buffer), and the
/// waiting read goes on after them: neither read is torn, no byte is lost or read twice.
fn a_read_between_the_wake_ups_of_a_waiting_recv_into_takes_the_next_bytes(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let data = pattern(100_000);
        let reader = sock.clone();
        let big = spawn(async move {
            let mut buf = vec![0u8; 60_000];
            let n = reader.recv_into(&mut buf).await?;
            Ok::<_, std::io::Error>(buf[..n].to_vec())
        });
        put(&mut peer, &data[..20_000]);
        // The waiting read has taken bytes (and left them in the socket's buffer).
        while !sock.has_data_buffered() {
            sleep_async(Duration::from_millis(1)).await;
        }
        assert!(!big.is_finished());
        assert_eq!(sock.recv(10).await?, &data[..10]);
        put(&mut peer, &data[20_000..]);
        assert!(
            big.await? == data[10..60_010],
            "the waiting read, after the other one"
        );
        finish(&peer);
        assert!(sock.recv(100_000).await? == data[60_010..], "and the rest");
        Ok(())
    })
}

/// A buffered `recv_into` dropped after it took bytes and waited leaves them for the next
/// read, which does not count on the caller's buffer still holding them.
fn a_dropped_recv_into_that_had_waited_leaves_its_bytes_for_the_next_read(fam: Family) {
    run(async move {
        let (mut peer, sock) = std_peer(fam, true).await?;
        let data = pattern(50_000);
        let mut buf = vec![0u8; 40_000];
        put(&mut peer, &data[..30_000]);
        let cut = asyncnet::with_timeout(sock.recv_into(&mut buf), Duration::from_millis(50));
        assert!(
            cut.await.is_err(),
            "30,000 bytes of 40,000 do not complete it"
        );
        assert!(sock.has_data_buffered());
        buf.fill(0xee);
        put(&mut peer, &data[30_000..]);
        assert_eq!(sock.recv_into(&mut buf).await?, 40_000);
        assert!(buf == data[..40_000], "every byte, in order");
        assert!(sock.recv(10_000).await? == data[40_000..], "and the rest");
        Ok(())
    })
}

family_tests!(
    buffered_recv_waits_for_n_bytes,
    buffered_recv_returns_short_at_end_of_stream,
    buffered_recv_of_a_large_size_gets_everything,
    unbuffered_recv_returns_what_one_read_gives,
    recv_zero_returns_empty_without_waiting,
    buffered_recv_into_fills_the_buffer,
    unbuffered_recv_into_is_one_read,
    peek_leaves_the_bytes_for_the_next_read,
    buffered_peek_waits_for_n_bytes,
    has_data_buffered_tracks_leftover_bytes,
    buffered_recv_reads_ahead_and_keeps_the_rest,
    send_delivers_every_byte_in_order,
    send_and_recv_between_two_of_our_sockets,
    buffered_peek_larger_than_64_kib_waits_for_every_byte,
    a_read_between_the_wake_ups_of_a_waiting_recv_into_takes_the_next_bytes,
    a_dropped_recv_into_that_had_waited_leaves_its_bytes_for_the_next_read,
);

/// A task that reads with `recv_into` holds its future for as long as it waits: the future is
/// the bare poll function (the socket, the buffer, the flags, and where a buffered read that
/// could not finish stopped: a count and a 64-bit generation), no state machine around it, so that an idle
/// connection's task stays small and a wake-up touches few cache lines.
#[test]
fn the_future_of_recv_into_holds_only_the_socket_the_buffer_the_flags_and_where_it_stopped() {
    let sock = asyncnet::AsyncSocket::new().expect("a socket");
    let mut buf = [0u8; 16];
    let words = std::mem::size_of::<usize>();
    // Socket 1 word, buffer 2, flags at most 1, the count 1, the generation 8 bytes.
    let most = 5 * words + 8;
    let fut = sock.recv_into(&mut buf);
    assert!(
        std::mem::size_of_val(&fut) <= most,
        "{} bytes",
        std::mem::size_of_val(&fut)
    );
    drop(fut);
    let fut = sock.recv_into_with(&mut buf, Flags::PEEK);
    assert!(std::mem::size_of_val(&fut) <= most);
}
