//! The line reader over real sockets: every way a line can be split across reads, lone `\r`,
//! `\r\n`, empty lines, end of stream mid-line, over-long lines, invalid UTF-8, `PEEK`, and
//! `recv_line_into`; buffered and unbuffered, on IPv4 and IPv6 loopback.

#[macro_use]
mod support;

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use asyncnet::{
    sleep_async, spawn, AsyncSocket, Flags, InvalidUtf8Line, LineTooLong, MAX_LINE_LENGTH,
};
use support::{finish, put, run, source_of, std_peer, Family};

/// Every kind of line in one stream.
const SAMPLE: &[u8] = b"one\r\ntwo\n\n\r\nlone\rcr\n\r\rx\r\r\nlast";

fn expected() -> Vec<String> {
    ["one", "two", "", "", "lone\rcr", "\r\rx\r", "last"]
        .map(String::from)
        .to_vec()
}

/// Read lines until end of stream.
async fn all_lines(sock: &AsyncSocket) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    while let Some(line) = sock.recv_line().await? {
        out.push(line);
    }
    // End of stream stays end of stream.
    assert_eq!(sock.recv_line().await?, None);
    Ok(out)
}

/// Read lines with `recv_line_into` until end of stream, each appended to a prefix.
async fn all_lines_into(sock: &AsyncSocket) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    loop {
        let mut buf = String::from("#");
        if !sock.recv_line_into(&mut buf).await? {
            assert_eq!(buf, "#", "nothing appended at end of stream");
            return Ok(out);
        }
        out.push(buf[1..].to_owned());
    }
}

/// Send `pieces` from the std peer, one at a time with a pause, while a task of ours reads
/// lines; then end the stream and return what the task read.
async fn feed(
    mut peer: TcpStream,
    sock: AsyncSocket,
    pieces: &[&[u8]],
    into: bool,
) -> io::Result<Vec<String>> {
    let reader = spawn(async move {
        if into {
            all_lines_into(&sock).await
        } else {
            all_lines(&sock).await
        }
    });
    for p in pieces {
        put(&mut peer, p);
        // Let the reader take this piece on its own.
        sleep_async(Duration::from_millis(1)).await;
    }
    finish(&peer);
    reader.await
}

fn a_line_split_at_every_byte_reads_the_same(fam: Family) {
    run(async move {
        for buffered in [true, false] {
            for cut in 0..=SAMPLE.len() {
                let (peer, sock) = std_peer(fam, buffered).await?;
                let got = feed(peer, sock, &[&SAMPLE[..cut], &SAMPLE[cut..]], false).await?;
                assert_eq!(got, expected(), "buffered {buffered}, cut at {cut}");
            }
        }
        Ok(())
    })
}

fn a_stream_split_twice_reads_the_same(fam: Family) {
    run(async move {
        // Every pair of cuts around the trickiest part ("\r\rx\r\r\n") and the stream's ends.
        let start = SAMPLE.len() - 12;
        for buffered in [true, false] {
            for a in start..=SAMPLE.len() {
                for b in (a..=SAMPLE.len()).step_by(3) {
                    let (peer, sock) = std_peer(fam, buffered).await?;
                    let pieces = [&SAMPLE[..a], &SAMPLE[a..b], &SAMPLE[b..]];
                    let got = feed(peer, sock, &pieces, false).await?;
                    assert_eq!(got, expected(), "buffered {buffered}, cuts {a}, {b}");
                }
            }
        }
        Ok(())
    })
}

fn a_stream_sent_byte_by_byte_reads_the_same(fam: Family) {
    run(async move {
        for buffered in [true, false] {
            for into in [false, true] {
                let (peer, sock) = std_peer(fam, buffered).await?;
                let pieces: Vec<&[u8]> = SAMPLE.chunks(1).collect();
                let got = feed(peer, sock, &pieces, into).await?;
                assert_eq!(got, expected(), "buffered {buffered}, into {into}");
            }
        }
        Ok(())
    })
}

fn a_stream_sent_at_once_reads_the_same(fam: Family) {
    run(async move {
        for buffered in [true, false] {
            for into in [false, true] {
                let (peer, sock) = std_peer(fam, buffered).await?;
                let got = feed(peer, sock, &[SAMPLE], into).await?;
                assert_eq!(got, expected(), "buffered {buffered}, into {into}");
            }
        }
        Ok(())
    })
}

fn recv_line_into_appends_to_the_callers_string(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"alpha\r\nbeta\n\ngamma");
            finish(&peer);
            let mut buf = String::from("start:");
            assert!(sock.recv_line_into(&mut buf).await?);
            assert_eq!(buf, "start:alpha");
            assert!(sock.recv_line_into(&mut buf).await?);
            assert_eq!(buf, "start:alphabeta");
            assert!(
                sock.recv_line_into(&mut buf).await?,
                "an empty line is a line"
            );
            assert_eq!(buf, "start:alphabeta");
            assert!(
                sock.recv_line_into(&mut buf).await?,
                "partial line at the end"
            );
            assert_eq!(buf, "start:alphabetagamma");
            assert!(!sock.recv_line_into(&mut buf).await?, "end of stream");
            assert_eq!(buf, "start:alphabetagamma");
            Ok(())
        })
    }
}

fn empty_lines_are_some_empty_and_end_of_stream_is_none(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"\r\n\n\r\n");
            finish(&peer);
            for _ in 0..3 {
                assert_eq!(sock.recv_line().await?.as_deref(), Some(""));
            }
            assert_eq!(sock.recv_line().await?, None);
            Ok(())
        })
    }
}

fn end_of_stream_mid_line_returns_the_partial_line_then_none(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"complete\npartial");
            finish(&peer);
            assert_eq!(sock.recv_line().await?.as_deref(), Some("complete"));
            assert_eq!(sock.recv_line().await?.as_deref(), Some("partial"));
            assert_eq!(sock.recv_line().await?, None);
            Ok(())
        })
    }
}

fn a_lone_cr_is_data_even_at_the_end(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"a\rb\n");
            assert_eq!(sock.recv_line().await?.as_deref(), Some("a\rb"));
            put(&mut peer, b"ends with cr\r");
            sleep_async(Duration::from_millis(2)).await;
            put(&mut peer, b"next byte kept\n");
            assert_eq!(
                sock.recv_line().await?.as_deref(),
                Some("ends with cr\rnext byte kept"),
                "no byte after a lone \\r is lost"
            );
            put(&mut peer, b"abc\r");
            finish(&peer);
            assert_eq!(sock.recv_line().await?.as_deref(), Some("abc\r"));
            assert_eq!(sock.recv_line().await?, None);
            Ok(())
        })
    }
}

fn peek_line_leaves_the_line_for_the_next_read(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"first\r\nsecond\n");
            for _ in 0..2 {
                assert_eq!(
                    sock.recv_line_with(Flags::PEEK, MAX_LINE_LENGTH)
                        .await?
                        .as_deref(),
                    Some("first")
                );
            }
            let mut buf = String::from(">");
            assert!(
                sock.recv_line_into_with(&mut buf, Flags::PEEK | Flags::SAFE_DISCONN, 100)
                    .await?
            );
            assert_eq!(buf, ">first");
            assert_eq!(sock.recv_line().await?.as_deref(), Some("first"));
            assert_eq!(
                sock.recv_line_with(Flags::PEEK, 100).await?.as_deref(),
                Some("second")
            );
            assert_eq!(sock.recv_line().await?.as_deref(), Some("second"));
            // A peek waits for the whole line.
            let reader = sock.clone();
            let h = spawn(async move { reader.recv_line_with(Flags::PEEK, 100).await });
            put(&mut peer, b"slow");
            sleep_async(Duration::from_millis(5)).await;
            assert!(!h.is_finished(), "half a line is not a line");
            put(&mut peer, b" line\npartial");
            assert_eq!(h.await?.as_deref(), Some("slow line"));
            assert_eq!(sock.recv_line().await?.as_deref(), Some("slow line"));
            finish(&peer);
            if cfg!(windows) && !buffered {
                // Winsock reports the end of the stream only once the bytes before it are
                // read, and a peek reads nothing: see `Flags::PEEK`'s portability note.
                // Not a skip (`skipped:`): everything above was checked.
                eprintln!("not checked on Windows: an unbuffered peek at the end of a stream");
                return Ok(());
            }
            // At end of stream a peek shows the partial line and leaves it.
            assert_eq!(
                sock.recv_line_with(Flags::PEEK, 100).await?.as_deref(),
                Some("partial")
            );
            assert_eq!(sock.recv_line().await?.as_deref(), Some("partial"));
            assert_eq!(sock.recv_line_with(Flags::PEEK, 100).await?, None);
            assert_eq!(sock.recv_line().await?, None);
            Ok(())
        })
    }
}

fn peek_line_then_recv_bytes_sees_the_line(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"peeked\nrest");
            finish(&peer);
            assert_eq!(
                sock.recv_line_with(Flags::PEEK, 100).await?.as_deref(),
                Some("peeked")
            );
            let mut got = Vec::new();
            loop {
                let chunk = sock.recv(64).await?;
                if chunk.is_empty() {
                    break;
                }
                got.extend(chunk);
            }
            assert_eq!(got, b"peeked\nrest");
            Ok(())
        })
    }
}

/// Read exactly `n` bytes (unbuffered reads may return fewer per call).
async fn recv_exact(sock: &AsyncSocket, n: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = sock.recv(n - got.len()).await?;
        if chunk.is_empty() {
            break;
        }
        got.extend(chunk);
    }
    Ok(got)
}

fn a_too_long_line_is_an_error_and_its_bytes_stay(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"0123456789ABCDEF\r\nshort\n");
            for _ in 0..2 {
                let e = sock
                    .recv_line_with(Flags::default(), 10)
                    .await
                    .expect_err("16 bytes exceed 10");
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert_eq!(
                    source_of::<LineTooLong>(&e),
                    Some(&LineTooLong { max_length: 10 }),
                    "{e}"
                );
            }
            let mut buf = String::from("keep");
            let e = sock
                .recv_line_into_with(&mut buf, Flags::default(), 10)
                .await
                .expect_err("still too long");
            assert!(source_of::<LineTooLong>(&e).is_some());
            assert_eq!(buf, "keep", "nothing appended on an error");
            // Nothing was dropped: the whole line is still there, in order.
            assert_eq!(
                recv_exact(&sock, 18).await?,
                b"0123456789ABCDEF\r\n",
                "buffered {buffered}"
            );
            assert_eq!(
                sock.recv_line_with(Flags::default(), 10).await?.as_deref(),
                Some("short")
            );
            Ok(())
        })
    }
}

fn a_line_of_exactly_the_limit_passes(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"0123456789\r\n0123456789\n01234567890\n");
            assert_eq!(
                sock.recv_line_with(Flags::default(), 10).await?.as_deref(),
                Some("0123456789")
            );
            assert_eq!(
                sock.recv_line_with(Flags::default(), 10).await?.as_deref(),
                Some("0123456789")
            );
            let e = sock
                .recv_line_with(Flags::default(), 10)
                .await
                .expect_err("11 bytes");
            assert!(source_of::<LineTooLong>(&e).is_some(), "{e}");
            assert_eq!(
                sock.recv_line_with(Flags::default(), 11).await?.as_deref(),
                Some("01234567890"),
                "a larger limit reads it"
            );
            Ok(())
        })
    }
}

/// Found by the `line_reader` fuzz target: at the end of the stream, `max_length` bytes and a
/// `\r` (which a `\n` might have followed) came back as a line one byte over the limit.
fn a_partial_line_of_the_limit_and_a_cr_at_end_of_stream_is_too_long(fam: Family) {
    for buffered in [true, false] {
        for flags in [Flags::default(), Flags::PEEK] {
            if cfg!(windows) && !buffered && flags == Flags::PEEK {
                // Windows: an unbuffered peek at the end of the stream waits for more bytes
                // (the `Flags::PEEK` Portability note).
                continue;
            }
            run(async move {
                let (mut peer, sock) = std_peer(fam, buffered).await?;
                put(&mut peer, b"0123456789\r");
                finish(&peer);
                let e = sock
                    .recv_line_with(flags, 10)
                    .await
                    .expect_err("11 bytes at the end");
                assert_eq!(
                    source_of::<LineTooLong>(&e),
                    Some(&LineTooLong { max_length: 10 }),
                    "buffered {buffered}, {flags:?}: {e}"
                );
                assert_eq!(
                    sock.recv_line_with(flags, 11).await?.as_deref(),
                    Some("0123456789\r"),
                    "its bytes stay, for a larger limit"
                );
                Ok(())
            })
        }
    }
}

fn a_too_long_line_arriving_in_pieces_is_refused(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            let reader = sock.clone();
            let h = spawn(async move { reader.recv_line_with(Flags::default(), 1000).await });
            for _ in 0..30 {
                put(&mut peer, &[b'x'; 50]);
                sleep_async(Duration::from_millis(1)).await;
            }
            let e = h
                .await
                .expect_err("1500 bytes without a newline exceed 1000");
            assert!(source_of::<LineTooLong>(&e).is_some(), "{e}");
            put(&mut peer, b"\n");
            finish(&peer);
            let rest = recv_exact(&sock, 2000).await?;
            assert_eq!(rest.len(), 1501, "every byte is still readable");
            assert!(rest[..1500].iter().all(|&b| b == b'x'));
            Ok(())
        })
    }
}

fn invalid_utf8_is_an_error_carrying_the_bytes_and_the_next_line_reads(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"\xff\xfe bad \xc3\r\nnext\n\xe2\x82\nagain\n");
            let e = sock.recv_line().await.expect_err("not UTF-8");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let bad = source_of::<InvalidUtf8Line>(&e).expect("InvalidUtf8Line source");
            assert_eq!(bad.bytes, b"\xff\xfe bad \xc3");
            assert_eq!(sock.recv_line().await?.as_deref(), Some("next"));
            let mut buf = String::from("x");
            let e = sock.recv_line_into(&mut buf).await.expect_err("not UTF-8");
            assert_eq!(
                source_of::<InvalidUtf8Line>(&e).map(|b| b.bytes.as_slice()),
                Some(&b"\xe2\x82"[..])
            );
            assert_eq!(buf, "x", "nothing appended on an error");
            assert_eq!(sock.recv_line().await?.as_deref(), Some("again"));
            // Multi-byte UTF-8 split across reads is fine.
            put(&mut peer, "h\u{e9}".as_bytes());
            put(&mut peer, b"\xc3");
            sleep_async(Duration::from_millis(2)).await;
            put(&mut peer, b"\xa9\n");
            assert_eq!(sock.recv_line().await?.as_deref(), Some("h\u{e9}\u{e9}"));
            Ok(())
        })
    }
}

fn lines_and_bytes_interleave(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"HEADER\r\n12345line two\n");
            finish(&peer);
            assert_eq!(sock.recv_line().await?.as_deref(), Some("HEADER"));
            assert_eq!(recv_exact(&sock, 5).await?, b"12345");
            assert_eq!(sock.recv_line().await?.as_deref(), Some("line two"));
            assert_eq!(sock.recv_line().await?, None);
            Ok(())
        })
    }
}

fn lines_between_our_own_sockets(fam: Family) {
    run(async move {
        let (a, b) = support::pair(fam, true).await?;
        let n = 2000;
        let writer = a.clone();
        let h = spawn(async move {
            for i in 0..n {
                writer.send(format!("line {i}\r\n")).await?;
            }
            writer.close()?;
            Ok::<_, io::Error>(())
        });
        for i in 0..n {
            assert_eq!(b.recv_line().await?, Some(format!("line {i}")));
        }
        assert_eq!(b.recv_line().await?, None);
        h.await
    })
}

/// Drop line reads (limit `max`) until one has taken the bytes sent so far into the buffer.
async fn drop_line_reads_until_buffered(sock: &AsyncSocket, max: usize) {
    while !sock.has_data_buffered() {
        let r = asyncnet::with_timeout(
            sock.recv_line_with(Flags::default(), max),
            Duration::from_millis(5),
        )
        .await;
        assert!(r.is_err(), "half a line completed a read: {r:?}");
    }
}

fn after_a_too_long_line_and_a_partial_recv_the_next_line_ends_at_its_newline(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"01234567");
            drop_line_reads_until_buffered(&sock, 10).await;
            put(&mut peer, b"89ABC\n");
            let e = sock
                .recv_line_with(Flags::default(), 10)
                .await
                .expect_err("14 bytes exceed 10");
            assert!(source_of::<LineTooLong>(&e).is_some(), "{e}");
            // Take only part of the refused line as bytes; the rest is a line of its own.
            assert_eq!(recv_exact(&sock, 10).await?, b"0123456789");
            finish(&peer);
            assert_eq!(
                sock.recv_line().await?.as_deref(),
                Some("ABC"),
                "buffered {buffered}"
            );
            assert_eq!(sock.recv_line().await?, None);
            Ok(())
        })
    }
}

fn a_line_read_after_recv_took_part_of_a_partial_line_stops_at_the_first_newline(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            put(&mut peer, b"hello wor");
            drop_line_reads_until_buffered(&sock, MAX_LINE_LENGTH).await;
            put(&mut peer, b"ld\nnext\n");
            assert_eq!(recv_exact(&sock, 3).await?, b"hel");
            if buffered {
                // A peek pulls the rest of the stream into the buffer.
                assert_eq!(sock.recv_with(11, Flags::PEEK).await?, b"lo world\nne");
            }
            assert_eq!(
                sock.recv_line().await?.as_deref(),
                Some("lo world"),
                "buffered {buffered}"
            );
            assert_eq!(sock.recv_line().await?.as_deref(), Some("next"));
            Ok(())
        })
    }
}

fn long_lines_within_the_limit_arrive_whole(fam: Family) {
    for (buffered, len) in [(true, 500_000usize), (false, 20_000)] {
        run(async move {
            let (peer, sock) = std_peer(fam, buffered).await?;
            let line: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let mut data = line.clone().into_bytes();
            data.extend_from_slice(b"\r\nafter\n");
            let writer = std::thread::spawn(move || {
                let mut peer = peer;
                put(&mut peer, &data);
                peer
            });
            assert_eq!(sock.recv_line().await?.as_deref(), Some(line.as_str()));
            assert_eq!(sock.recv_line().await?.as_deref(), Some("after"));
            drop(writer.join().expect("writer"));
            Ok(())
        })
    }
}

#[test]
fn the_default_limit_is_max_line_length() {
    run(async {
        let (peer, sock) = std_peer(Family::V4, true).await?;
        let mut data = vec![b'x'; MAX_LINE_LENGTH];
        data.extend_from_slice(b"\r\n");
        data.extend(vec![b'y'; MAX_LINE_LENGTH + 1]);
        data.push(b'\n');
        let writer = std::thread::spawn(move || {
            let mut peer = peer;
            put(&mut peer, &data);
            peer
        });
        let line = sock.recv_line().await?.expect("a line");
        assert_eq!(line.len(), MAX_LINE_LENGTH);
        let e = sock.recv_line().await.expect_err("one byte too long");
        assert_eq!(
            source_of::<LineTooLong>(&e),
            Some(&LineTooLong {
                max_length: MAX_LINE_LENGTH
            })
        );
        drop(writer.join().expect("writer"));
        Ok(())
    })
}

fn two_tasks_reading_lines_from_one_socket_get_every_line_once(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let (mut peer, sock) = std_peer(fam, buffered).await?;
            let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, g) = (sock.clone(), got.clone());
                    spawn(async move {
                        while let Some(line) = s.recv_line().await? {
                            g.borrow_mut().push(line);
                            support::yield_now().await;
                        }
                        Ok::<_, io::Error>(())
                    })
                })
                .collect();
            let n = 300;
            for i in 0..n {
                put(&mut peer, format!("line {i}\n").as_bytes());
                if i % 50 == 0 {
                    sleep_async(Duration::from_millis(1)).await;
                }
            }
            finish(&peer);
            for r in readers {
                r.await?;
            }
            let mut lines = got.borrow().clone();
            lines.sort_by_key(|l| l[5..].parse::<u32>().expect("a line number"));
            let expect: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
            assert_eq!(lines, expect, "every line exactly once, none torn");
            Ok(())
        })
    }
}

fn a_peek_on_a_socket_made_long_before_it_connected_waits_for_the_line(fam: Family) {
    for buffered in [true, false] {
        run(async move {
            let server = support::listener(fam)?;
            let client = support::socket(fam, buffered)?;
            // Let the loop poll the unconnected socket (Linux reports it hung up).
            sleep_async(Duration::from_millis(5)).await;
            client
                .connect(fam.loopback(), support::port(&server))
                .await?;
            let accepted = server.accept().await?;
            accepted.send("par").await?;
            let r = asyncnet::with_timeout(
                client.recv_line_with(Flags::PEEK, 100),
                Duration::from_millis(20),
            )
            .await;
            assert!(r.is_err(), "half a line is not a line: {r:?}");
            let r = asyncnet::with_timeout(client.recv_line(), Duration::from_millis(20)).await;
            assert!(r.is_err(), "half a line is not a line: {r:?}");
            accepted.send("tial\n").await?;
            assert_eq!(
                client.recv_line_with(Flags::PEEK, 100).await?.as_deref(),
                Some("partial")
            );
            assert_eq!(client.recv_line().await?.as_deref(), Some("partial"));
            Ok(())
        })
    }
}

family_tests!(
    a_peek_on_a_socket_made_long_before_it_connected_waits_for_the_line,
    a_line_split_at_every_byte_reads_the_same,
    a_stream_split_twice_reads_the_same,
    a_stream_sent_byte_by_byte_reads_the_same,
    a_stream_sent_at_once_reads_the_same,
    recv_line_into_appends_to_the_callers_string,
    empty_lines_are_some_empty_and_end_of_stream_is_none,
    end_of_stream_mid_line_returns_the_partial_line_then_none,
    a_lone_cr_is_data_even_at_the_end,
    peek_line_leaves_the_line_for_the_next_read,
    peek_line_then_recv_bytes_sees_the_line,
    a_too_long_line_is_an_error_and_its_bytes_stay,
    a_line_of_exactly_the_limit_passes,
    a_too_long_line_arriving_in_pieces_is_refused,
    a_partial_line_of_the_limit_and_a_cr_at_end_of_stream_is_too_long,
    invalid_utf8_is_an_error_carrying_the_bytes_and_the_next_line_reads,
    lines_and_bytes_interleave,
    lines_between_our_own_sockets,
    two_tasks_reading_lines_from_one_socket_get_every_line_once,
    long_lines_within_the_limit_arrive_whole,
    after_a_too_long_line_and_a_partial_recv_the_next_line_ends_at_its_newline,
    a_line_read_after_recv_took_part_of_a_partial_line_stops_at_the_first_newline,
);
