//! Cancel safety under random schedules: two tasks write one connection and a third reads
//! it, each doing a random sequence of operations, and each operation is dropped after a
//! random number of polls (before the first, after one, after a few), cut by the socket's
//! deadline (set for that operation, sometimes passed already), or run to its end. At the
//! end the bytes read must be the bytes sent, in order, none lost and none twice.
//!
//! `socket_cancel.rs` drops one kind of future at one chosen point; this mixes every kind at
//! whatever points a schedule reaches: a line read dropped half-way, a peek, a `recv_into`
//! that splits a UTF-8 character, a line read that meets its other half (an invalid line,
//! whose bytes come back in the error), a `BufReader` dropped with bytes it showed and nobody
//! consumed, sends dropped before, during and after back-pressure from two tasks at once.
//! What each operation promises when dropped is in its docs ("Cancel safety", and the crate
//! docs' "Deadlines"): a read loses nothing, a send dropped before its first poll sends
//! nothing and one dropped (or timed out) later sends its whole message, an `AsyncWrite`
//! write that did not complete took nothing. The connection's kernel buffers are small, so
//! that sends wait and reads find the stream in pieces; writers and reader pause now and
//! then, so that each side in turn waits for the other. TCP sockets, buffered and not, TLS,
//! and Unix stream sockets.
//!
//! Datagrams the same way: numbered datagrams (UDP, and Unix datagram sockets, whose short
//! queue makes sends wait) sent and received by every datagram call, each maybe dropped or
//! timed out, some received into a buffer too small (cut, in the error); each arrives at most
//! once, in order, unchanged (or its first bytes, when cut), every one whose send completed
//! arrives, and none whose send was never polled or timed out (not sent, the docs say).
//! `accept_schedules.rs` does the same for `accept`.
//!
//! And resets: the stream schedules again, with one end closing with `SO_LINGER` 0 at a
//! random moment; every operation on the other end ends (the end of the stream, or an error
//! that says the connection is gone), and the reader has a prefix of what was sent.
//!
//! Schedules are seeded; a failure names the seed (the loopback's timing decides the rest,
//! so a seed is a schedule of operations, not of arrivals). Every test runs on both drivers
//! in CI (`ASYNCNET_DRIVER=io_uring`), so this covers the io_uring driver's cancellation of
//! receives and sends in flight as well, and under Wine the Windows poller's.

#[macro_use]
mod support;
#[path = "support/schedule.rs"]
mod schedule;
// rcgen, which makes the TLS certificates, is not a dev-dependency on macOS (see Cargo.toml).
#[cfg(all(feature = "tls", not(target_os = "macos")))]
#[path = "support/tls.rs"]
mod tls_support;

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::Duration;

use asyncnet::{
    sleep_async, spawn, AsyncSocket, DatagramTruncated, Flags, InvalidUtf8Line, JoinHandle, SoBool,
};
use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use schedule::{at_most, pause, seeds, timed_out, Rng, TICK};
use support::{pair, run, source_of, udp_bound, Family};

/// The kernel's send and receive buffers of the connection (it may double them).
const KERNEL_BUFFER: usize = 32 * 1024;

/// Messages each writer sends.
const MESSAGES: usize = 60;

/// A writer's message: text of lines ended by `\n` or `\r\n` (never another `\r`: a line read
/// strips the one before `\n`, so streams are compared with every `\r` set aside, which
/// loses nothing only if no other `\r` is there), with two- and three-byte
/// characters; mostly short, some of a few KiB, a few over the output buffer's high-water
/// mark (64 KiB), which makes their sends wait.
fn message(rng: &mut Rng, letter: u8) -> Vec<u8> {
    let size = match rng.below(16) {
        0 => 64 * 1024 + rng.below(128 * 1024),
        1..=3 => 1 + rng.below(8 * 1024),
        _ => 1 + rng.below(200),
    };
    let mut m = Vec::with_capacity(size + 3);
    while m.len() < size {
        match rng.below(64) {
            0 => m.extend_from_slice(b"\r\n"),
            1 | 2 => m.push(b'\n'),
            3 => m.extend_from_slice("é".as_bytes()),
            4 => m.extend_from_slice("€".as_bytes()),
            n => m.push(letter + (n % 8) as u8),
        }
    }
    m
}

/// What the writers sent, in the order the kernel is to see it.
type Sent = Rc<RefCell<Vec<u8>>>;

/// `fut`, a send of `msg`: on its first poll the message is as good as sent (queued whole,
/// ahead of any send that starts later), so the model takes it then.
async fn recorded<F: Future>(fut: F, msg: &[u8], sent: &Sent) -> F::Output {
    let mut fut = pin!(fut);
    let mut first = true;
    poll_fn(|cx| {
        let r = fut.as_mut().poll(cx);
        if std::mem::take(&mut first) {
            sent.borrow_mut().extend_from_slice(msg);
        }
        r
    })
    .await
}

/// One writer: `MESSAGES` messages by `send`, `send_with(NONE)` or `AsyncWrite`, each maybe
/// dropped, with dropped `flush`es between them.
async fn write_randomly(sock: AsyncSocket, seed: u64, letter: u8, sent: Sent) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut writer = sock.clone();
    for _ in 0..MESSAGES {
        // Now and then a pause, so that the reader catches up and its reads wait.
        if rng.below(3) != 0 {
            sleep_async(pause(&mut rng)).await;
        }
        let msg = message(&mut rng, letter);
        let polls = rng.polls();
        // The socket's write deadline, for this operation: one that times out is as good as
        // dropped (a send's message is queued whole all the same).
        let deadline = rng.deadline();
        sock.set_write_deadline(deadline);
        match rng.below(8) {
            0 => {
                // Whatever a completed write took is sent; one that did not complete (or
                // failed: `io::Write`'s rule) took nothing.
                let write = poll_fn(|cx| Pin::new(&mut writer).poll_write(cx, &msg));
                if let Some(n) = timed_out(at_most(write, polls).await)? {
                    sent.borrow_mut().extend_from_slice(&msg[..n]);
                }
            }
            1 => {
                let send = recorded(sock.send_with(&msg, Flags::NONE), &msg, &sent);
                timed_out(at_most(send, polls).await)?;
            }
            2 => {
                timed_out(at_most(sock.flush(), polls).await)?;
            }
            _ => {
                let send = recorded(sock.send(&msg), &msg, &sent);
                timed_out(at_most(send, polls).await)?;
            }
        }
        if deadline.is_some() {
            sock.set_write_deadline(None);
        }
    }
    Ok(())
}

/// What the reader took, and what its peeks saw.
#[derive(Default)]
struct Read {
    bytes: Vec<u8>,
    /// `\r`s in `bytes` (a peek's place in the stream without them).
    crs: usize,
    /// Each peek: where in the stream without `\r`s it looked, and what it saw.
    peeks: Vec<(usize, Vec<u8>)>,
}

impl Read {
    fn add(&mut self, bytes: &[u8]) {
        self.crs += bytes.iter().filter(|&&b| b == b'\r').count();
        self.bytes.extend_from_slice(bytes);
    }

    /// A line, with the `\n` its read took off (a `\r` before it is not told apart: the
    /// stream is compared without `\r`s).
    fn add_line(&mut self, line: &[u8]) {
        self.add(line);
        self.bytes.push(b'\n');
    }

    fn peeked(&mut self, bytes: Vec<u8>) {
        self.peeks.push((self.bytes.len() - self.crs, bytes));
    }
}

/// A line read's result, with the bytes of a line that is not UTF-8 (which the read
/// consumed and reported) apart from other errors.
fn line_read<T>(r: Option<io::Result<T>>) -> Option<io::Result<Result<T, Vec<u8>>>> {
    r.map(|r| match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match source_of::<InvalidUtf8Line>(&e) {
            Some(line) => Ok(Err(line.bytes.clone())),
            None => Err(e),
        },
    })
}

/// The reader: random reads, each maybe dropped, until the end of the stream.
async fn read_randomly(sock: &AsyncSocket, seed: u64) -> io::Result<Read> {
    let read = RefCell::default();
    read_randomly_into(sock, seed, &read).await?;
    Ok(read.into_inner())
}

/// [`read_randomly`] into `read`, which keeps what was read when a read fails.
async fn read_randomly_into(sock: &AsyncSocket, seed: u64, read: &RefCell<Read>) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut reader = sock.clone();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // Now and then a pause, so that the kernel's buffers fill and sends wait.
        if rng.below(16) == 0 {
            sleep_async(pause(&mut rng)).await;
        }
        let polls = rng.polls();
        // The socket's read deadline, for this operation: one that times out is as good as
        // dropped.
        let deadline = rng.deadline();
        sock.set_read_deadline(deadline);
        let end = match rng.below(8) {
            0 => match timed_out(at_most(sock.recv(rng.read_size()), polls).await)? {
                Some(bytes) => {
                    read.borrow_mut().add(&bytes);
                    bytes.is_empty()
                }
                None => false,
            },
            1 => {
                let n = rng.read_size();
                match timed_out(at_most(sock.recv_into(&mut buf[..n]), polls).await)? {
                    Some(r) => {
                        read.borrow_mut().add(&buf[..r]);
                        r == 0
                    }
                    None => false,
                }
            }
            2 => match timed_out(line_read(at_most(sock.recv_line(), polls).await))? {
                Some(Ok(Some(line))) => {
                    read.borrow_mut().add_line(line.as_bytes());
                    false
                }
                Some(Ok(None)) => true,
                Some(Err(invalid)) => {
                    read.borrow_mut().add_line(&invalid);
                    false
                }
                None => false,
            },
            3 => {
                // It appends, and only when it completes.
                let mut line = String::from("kept");
                let r = line_read(at_most(sock.recv_line_into(&mut line), polls).await);
                match timed_out(r)? {
                    Some(Ok(true)) => {
                        assert!(line.starts_with("kept"), "seed {seed:#x}: {line:?}");
                        read.borrow_mut().add_line(&line.as_bytes()[4..]);
                        false
                    }
                    Some(Ok(false)) => true,
                    Some(Err(invalid)) => {
                        assert_eq!(line, "kept", "seed {seed:#x}: a failed read appended");
                        read.borrow_mut().add_line(&invalid);
                        false
                    }
                    None => {
                        assert_eq!(line, "kept", "seed {seed:#x}: a dropped read appended");
                        false
                    }
                }
            }
            4 => {
                let n = rng.read_size();
                let peek = sock.recv_with(n, Flags::PEEK);
                if let Some(bytes) = timed_out(at_most(peek, polls).await)? {
                    read.borrow_mut().peeked(bytes);
                }
                false
            }
            5 => {
                let n = rng.read_size();
                let op = poll_fn(|cx| Pin::new(&mut reader).poll_read(cx, &mut buf[..n]));
                match timed_out(at_most(op, polls).await)? {
                    Some(r) => {
                        read.borrow_mut().add(&buf[..r]);
                        r == 0
                    }
                    None => false,
                }
            }
            _ => {
                // A `BufReader` that consumes part of what it shows, then is dropped: the
                // rest goes back to the socket.
                let mut br = sock.buf_reader();
                let op = poll_fn(|cx| Pin::new(&mut br).poll_fill_buf(cx).map_ok(<[u8]>::to_vec));
                match timed_out(at_most(op, polls).await)? {
                    Some(shown) => {
                        let n = if shown.is_empty() {
                            0
                        } else {
                            rng.below(shown.len() as u64 + 1)
                        };
                        Pin::new(&mut br).consume(n);
                        read.borrow_mut().add(&shown[..n]);
                        shown.is_empty()
                    }
                    None => false,
                }
            }
        };
        if deadline.is_some() {
            sock.set_read_deadline(None);
        }
        if end {
            return Ok(());
        }
    }
}

/// `bytes` without `\r`s.
fn without_crs(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(|&b| b != b'\r').collect()
}

/// The connection a schedule runs on.
#[derive(Clone, Copy, Debug)]
enum Connection {
    Buffered,
    Unbuffered,
    #[cfg(all(feature = "tls", not(target_os = "macos")))]
    Tls,
    /// A Unix stream socket (both ends buffered).
    #[cfg(unix)]
    Unix,
}

impl Connection {
    fn is_tcp(self) -> bool {
        #[cfg(unix)]
        if let Connection::Unix = self {
            return false;
        }
        true
    }

    /// `(client, server)`: the writers' end and the reader's.
    async fn open(self) -> io::Result<(AsyncSocket, AsyncSocket)> {
        match self {
            Connection::Buffered => pair(Family::V4, true).await,
            Connection::Unbuffered => pair(Family::V4, false).await,
            #[cfg(all(feature = "tls", not(target_os = "macos")))]
            Connection::Tls => tls_support::tls_pair(&tls_support::Pki::new()).await,
            #[cfg(unix)]
            Connection::Unix => {
                let path = support::TempSocketPath::new("schedule");
                let listener = support::unix_socket(asyncnet::SockType::STREAM)?;
                listener.bind_unix(path.path())?;
                listener.listen()?;
                let client = support::unix_socket(asyncnet::SockType::STREAM)?;
                client.connect_unix(path.path()).await?;
                Ok((client, listener.accept().await?))
            }
        }
    }
}

/// A schedule's connection, `(client, server)`, with its two writers started on the client:
/// what they send goes to the returned model.
async fn open_and_write(
    connection: Connection,
    seed: u64,
) -> io::Result<(
    AsyncSocket,
    AsyncSocket,
    Sent,
    [JoinHandle<io::Result<()>>; 2],
)> {
    let (client, server) = connection.open().await?;
    // Small kernel buffers: large sends wait (back-pressure), and reads find the stream in
    // many pieces.
    socket2::SockRef::from(&client).set_send_buffer_size(KERNEL_BUFFER)?;
    socket2::SockRef::from(&server).set_recv_buffer_size(KERNEL_BUFFER)?;
    if connection.is_tcp() {
        client.set_sock_opt(SoBool::NoDelay, true)?;
    }
    let sent: Sent = Rc::default();
    let writers = [(seed ^ 1, b'a'), (seed ^ 2, b'A')]
        .map(|(s, letter)| spawn(write_randomly(client.clone(), s, letter, sent.clone())));
    Ok((client, server, sent, writers))
}

fn a_random_schedule_of_dropped_operations_keeps_the_stream_whole(connection: Connection) {
    for seed in seeds() {
        run(async move {
            let (client, server, sent, writers) = open_and_write(connection, seed).await?;
            let closer = spawn({
                let sent = sent.clone();
                async move {
                    for w in writers {
                        w.await?;
                    }
                    // The last line ends, so that every line read sees its `\n`.
                    client.send(b"\n").await?;
                    sent.borrow_mut().push(b'\n');
                    client.close()
                }
            });
            let read = read_randomly(&server, seed).await?;
            closer.await?;
            // The end stays the end.
            assert_eq!(server.recv_line().await?, None, "seed {seed:#x}");
            let expected = without_crs(&sent.borrow());
            let got = without_crs(&read.bytes);
            if got != expected {
                let at = got
                    .iter()
                    .zip(&expected)
                    .take_while(|(a, b)| a == b)
                    .count();
                panic!(
                    "seed {seed:#x} ({connection:?}): read {} bytes (no CRs) of {} sent, \
                     the first difference at {at}: read {:?}, sent {:?}",
                    got.len(),
                    expected.len(),
                    String::from_utf8_lossy(&got[at..got.len().min(at + 40)]),
                    String::from_utf8_lossy(&expected[at..expected.len().min(at + 40)]),
                );
            }
            for (at, peek) in &read.peeks {
                let peek = without_crs(peek);
                let there = &expected[*at..expected.len().min(at + peek.len())];
                assert_eq!(
                    peek, there,
                    "seed {seed:#x}: a peek at {at} saw other bytes"
                );
            }
            Ok(())
        });
    }
}

/// Whether `e` is how a connection's reset shows: the peer's reset (or, on TLS, the end
/// without close_notify), or the writing end finding the peer gone.
fn is_reset(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// A reset by one end at a random moment of a schedule: every operation on either end ends,
/// with the end of the stream or an error that says the connection is gone, never a hang or
/// a panic; the reader has read a prefix of what was sent.
fn a_reset_at_a_random_moment_ends_every_operation(connection: Connection) {
    for seed in seeds() {
        run(async move {
            let mut rng = Rng::new(seed ^ 4);
            let (client, server, sent, writers) = open_and_write(connection, seed).await?;
            let read = Rc::new(RefCell::new(Read::default()));
            let reader = spawn({
                let (server, read) = (server.clone(), read.clone());
                async move { read_randomly_into(&server, seed, &read).await }
            });
            sleep_async(Duration::from_micros(rng.below(30_000) as u64)).await;
            // `SO_LINGER` 0: the close is a reset. The last handle goes with it (on Windows
            // a lent handle's socket is closed, and so reset, only then; `close` before that
            // ends the connection with a shutdown).
            let reset = |s: AsyncSocket| -> io::Result<()> {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))
            };
            if rng.below(2) == 0 {
                for w in writers {
                    w.abort();
                }
                reset(client)?;
                // The reader ends: the end of the stream, or an error that says why, behind
                // which what did arrive stays buffered (TLS: `UnexpectedEof`, whose docs say
                // a read of at most that many bytes still returns it).
                if let Err(e) = reader.await {
                    assert!(is_reset(&e), "seed {seed:#x} ({connection:?}): {e:?}");
                    while server.has_data_buffered() {
                        let byte = server.recv(1).await?;
                        read.borrow_mut().add(&byte);
                    }
                }
                let got = without_crs(&read.borrow().bytes);
                let sent = without_crs(&sent.borrow());
                // A partial last line comes as a line: the `\n` after it is the reader's.
                let got = match got.strip_suffix(b"\n") {
                    Some(cut) if !sent.starts_with(&got) => cut.to_vec(),
                    _ => got,
                };
                assert!(
                    sent.starts_with(&got),
                    "seed {seed:#x} ({connection:?}): read {} bytes, not a prefix of the {} sent",
                    got.len(),
                    sent.len()
                );
            } else {
                reader.abort();
                reset(server)?;
                // The writers end: done, or an error that says the peer is gone.
                for w in writers {
                    if let Err(e) = w.await {
                        assert!(is_reset(&e), "seed {seed:#x} ({connection:?}): {e:?}");
                    }
                }
                drop(client);
            }
            Ok(())
        });
    }
}

/// Datagrams each schedule sends.
const DATAGRAMS: usize = 300;

/// Datagrams the sender lets be on their way at most (sent and not yet received), so that
/// the receiver's kernel buffer never overflows: a datagram the kernel drops would be no loss
/// of ours.
const WINDOW: usize = 24;

/// What came of one datagram's send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Not polled, or timed out by the write deadline (not sent, the docs say): it must not
    /// arrive.
    NotSent,
    /// Dropped after a poll: sent whole or not at all.
    Either,
    /// Completed: it must arrive.
    Sent,
}

/// Where the datagrams go.
#[derive(Clone, Debug)]
enum To {
    Ip(std::net::SocketAddr),
    /// A Unix datagram socket's path (whose queue is short: sends wait).
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

impl To {
    /// A send of `data` there: `send_to` or `send_to_addr` (`pick`) to an IP address,
    /// `send_to_unix` to a path.
    async fn send(&self, sock: &AsyncSocket, data: &[u8], pick: bool) -> io::Result<()> {
        match self {
            To::Ip(to) if pick => sock.send_to(&to.ip().to_string(), to.port(), data).await,
            To::Ip(to) => sock.send_to_addr(*to, data).await,
            #[cfg(unix)]
            To::Unix(path) => sock.send_to_unix(path, data).await,
        }
    }
}

/// The sender: `DATAGRAMS` numbered datagrams, each maybe dropped or timed out, then an end
/// marker. Returns each one's fate and bytes.
async fn send_datagrams(
    sock: AsyncSocket,
    to: To,
    seed: u64,
    received: Rc<RefCell<Vec<usize>>>,
) -> io::Result<Vec<(Fate, Vec<u8>)>> {
    let mut rng = Rng::new(seed);
    let mut sent = Vec::new();
    // Datagrams surely sent: each one arrives, so the wait below always ends (of those that
    // may have been sent, few are on their way at once).
    let mut surely = 0;
    for seq in 0..DATAGRAMS {
        while surely > received.borrow().len() + WINDOW {
            sleep_async(TICK).await;
        }
        if rng.below(4) == 0 {
            sleep_async(pause(&mut rng)).await;
        }
        let mut data = format!("{seq}:").into_bytes();
        data.extend((0..rng.below(600)).map(|_| rng.below(256) as u8));
        let polls = rng.polls();
        let deadline = rng.deadline();
        sock.set_write_deadline(deadline);
        let r = at_most(to.send(&sock, &data, rng.below(2) == 0), polls).await;
        sock.set_write_deadline(None);
        let fate = match r {
            None if polls == Some(0) => Fate::NotSent,
            None => Fate::Either,
            Some(Ok(())) => Fate::Sent,
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Fate::NotSent,
            Some(Err(e)) => return Err(e),
        };
        surely += usize::from(fate == Fate::Sent);
        sent.push((fate, data));
    }
    to.send(&sock, b"end", false).await?;
    Ok(sent)
}

/// The receiver: random datagram reads, each maybe dropped or timed out, until the end
/// marker. Returns what arrived, in order; every peek is checked against the datagram that
/// arrives next.
async fn receive_datagrams(
    sock: &AsyncSocket,
    seed: u64,
    ip: bool,
    received: Rc<RefCell<Vec<usize>>>,
) -> io::Result<Vec<Vec<u8>>> {
    let mut rng = Rng::new(seed);
    let mut got = Vec::new();
    let mut peeked: Option<Vec<u8>> = None;
    let mut buf = [0u8; 2048];
    loop {
        if rng.below(16) == 0 {
            sleep_async(pause(&mut rng)).await;
        }
        let polls = rng.polls();
        sock.set_read_deadline(rng.deadline());
        let datagram = match rng.below(4) {
            0 => {
                // Now and then a buffer smaller than the datagram: it comes cut, in the error,
                // and is consumed.
                let size = if rng.below(4) == 0 {
                    8 + rng.below(56)
                } else {
                    buf.len()
                };
                match at_most(sock.recv_from(size), polls).await {
                    Some(Err(e)) if source_of::<DatagramTruncated>(&e).is_some() => {
                        source_of::<DatagramTruncated>(&e).map(|t| t.data.clone())
                    }
                    r => timed_out(r)?.map(|d| d.0),
                }
            }
            // (`recv_from_addr` gives IP addresses only.)
            n @ 1..=2 if n == 1 || !ip => {
                let (mut address, mut port) = (String::new(), 0);
                let op = sock.recv_from_into(&mut buf, &mut address, &mut port);
                timed_out(at_most(op, polls).await)?.map(|n| buf[..n].to_vec())
            }
            2 => timed_out(at_most(sock.recv_from_addr(&mut buf), polls).await)?
                .map(|(n, _)| buf[..n].to_vec()),
            _ => {
                let peek = sock.recv_from_with(buf.len(), Flags::PEEK);
                if let Some((d, _, _)) = timed_out(at_most(peek, polls).await)? {
                    if let Some(p) = &peeked {
                        assert_eq!(p, &d, "seed {seed:#x}: two peeks saw different datagrams");
                    }
                    peeked = Some(d);
                }
                None
            }
        };
        sock.set_read_deadline(None);
        let Some(d) = datagram else { continue };
        if let Some(p) = peeked.take() {
            assert!(
                p.starts_with(&d),
                "seed {seed:#x}: a peek saw another datagram than the next"
            );
        }
        if d == b"end" {
            return Ok(got);
        }
        let seq = d.iter().position(|&b| b == b':').map(|i| &d[..i]);
        let seq = seq.and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
        received.borrow_mut().push(seq.unwrap_or(usize::MAX));
        got.push(d);
    }
}

/// `DATAGRAMS` sent from `sender` to `receiver` (at `to`) under a schedule, and the checks.
fn datagram_schedules(open: impl Fn() -> io::Result<(AsyncSocket, AsyncSocket, To)>) {
    for seed in seeds() {
        run(async {
            let (sender, receiver, to) = open()?;
            let ip = matches!(to, To::Ip(_));
            let received = Rc::new(RefCell::new(Vec::new()));
            let sending = spawn(send_datagrams(sender, to, seed, received.clone()));
            let got = receive_datagrams(&receiver, seed ^ 3, ip, received.clone()).await?;
            let sent = sending.await?;
            // In order, each once, each as sent, and exactly those that had to arrive and
            // any of those that might.
            let mut next = 0;
            for (i, d) in got.iter().enumerate() {
                let seq = received.borrow()[i];
                assert!(
                    seq < DATAGRAMS && seq >= next,
                    "seed {seed:#x}: datagram {seq} arrived after {next}: repeated, out of order \
                     or not ours"
                );
                for (skipped, (fate, _)) in sent.iter().enumerate().take(seq).skip(next) {
                    assert_ne!(
                        *fate,
                        Fate::Sent,
                        "seed {seed:#x}: datagram {skipped}, sent, never arrived"
                    );
                }
                let (fate, bytes) = &sent[seq];
                assert_ne!(
                    *fate,
                    Fate::NotSent,
                    "seed {seed:#x}: datagram {seq} was not sent"
                );
                // Whole, or cut by a small buffer (the datagram's first bytes).
                assert!(
                    d == bytes || (d.len() < bytes.len() && bytes.starts_with(d)),
                    "seed {seed:#x}: datagram {seq} arrived changed"
                );
                next = seq + 1;
            }
            for (skipped, (fate, _)) in sent.iter().enumerate().skip(next) {
                assert_ne!(
                    *fate,
                    Fate::Sent,
                    "seed {seed:#x}: datagram {skipped}, sent, lost"
                );
            }
            Ok(())
        });
    }
}

#[test]
fn a_random_schedule_of_dropped_datagram_operations_loses_and_repeats_no_datagram() {
    datagram_schedules(|| {
        let receiver = udp_bound(Family::V4)?;
        let to = std::net::SocketAddr::from(([127, 0, 0, 1], receiver.local_addr()?.1));
        Ok((udp_bound(Family::V4)?, receiver, To::Ip(to)))
    });
}

/// On Unix datagram sockets, whose queue holds a few datagrams only (Linux: 10 by default),
/// so that sends wait and are dropped while they wait.
#[test]
#[cfg(unix)]
fn a_random_schedule_of_dropped_unix_datagram_operations_loses_and_repeats_no_datagram() {
    let path = support::TempSocketPath::new("datagrams");
    datagram_schedules(|| {
        let _ = std::fs::remove_file(path.path());
        let receiver = support::unix_socket(asyncnet::SockType::DGRAM)?;
        receiver.bind_unix(path.path())?;
        let sender = support::unix_socket(asyncnet::SockType::DGRAM)?;
        Ok((sender, receiver, To::Unix(path.path().to_owned())))
    });
}

/// Generate `mod NAME { fn buffered(); fn unbuffered(); fn tls(); fn unix(); }` tests
/// calling `fn NAME(Connection)` (TLS where it is built, Unix where it exists).
macro_rules! connection_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::Connection;

                #[test]
                fn buffered() {
                    super::$name(Connection::Buffered)
                }

                #[test]
                fn unbuffered() {
                    super::$name(Connection::Unbuffered)
                }

                #[test]
                #[cfg(all(feature = "tls", not(target_os = "macos")))]
                fn tls() {
                    super::$name(Connection::Tls)
                }

                #[test]
                #[cfg(unix)]
                fn unix() {
                    super::$name(Connection::Unix)
                }
            }
        )*
    };
}

connection_tests!(
    a_random_schedule_of_dropped_operations_keeps_the_stream_whole,
    a_reset_at_a_random_moment_ends_every_operation,
);
