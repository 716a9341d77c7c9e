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
//! then, so that each side in turn waits for the other. Plain sockets, buffered and not,
//! and TLS.
//!
//! Schedules are seeded; a failure names the seed (the loopback's timing decides the rest,
//! so a seed is a schedule of operations, not of arrivals). Every test runs on both drivers
//! in CI (`ASYNCNET_DRIVER=io_uring`), so this covers the io_uring driver's cancellation of
//! receives and sends in flight as well, and under Wine the Windows poller's.

#[macro_use]
mod support;
// rcgen, which makes the TLS certificates, is not a dev-dependency on macOS (see Cargo.toml).
#[cfg(all(feature = "tls", not(target_os = "macos")))]
#[path = "support/tls.rs"]
mod tls_support;

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use asyncnet::{sleep_async, spawn, AsyncSocket, Flags, InvalidUtf8Line, SoBool};
use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use support::{pair, run, source_of, Family};

/// How long an operation that is to be dropped waits for its own wake-up before it is polled
/// again anyway: short, so that a schedule runs in well under a second.
const TICK: Duration = Duration::from_micros(300);

/// Schedules per test.
const SEEDS: [u64; 6] = [
    0x9e37_79b9_7f4a_7c15,
    0x2545_f491_4f6c_dd1d,
    0xd1b5_4a32_d192_ed03,
    0x8cb9_2ba7_2f3d_8dd7,
    0x5851_f42d_4c95_7f2d,
    0x1405_7b7e_f767_814f,
];

/// The schedules to run: [`SEEDS`], and `ASYNCNET_SCHEDULES=N` more (to look for trouble by
/// hand: `ASYNCNET_SCHEDULES=1000 cargo test --test socket_cancel_schedules`).
fn seeds() -> Vec<u64> {
    let more: u64 = std::env::var("ASYNCNET_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // splitmix64 of 1, 2, ...: seeds far apart.
    let mixed = (1..=more).map(|i| {
        let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    });
    SEEDS.into_iter().chain(mixed).collect()
}

/// The kernel's send and receive buffers of the connection (it may double them).
const KERNEL_BUFFER: usize = 32 * 1024;

/// Messages each writer sends.
const MESSAGES: usize = 60;

/// xorshift64*: a schedule from a seed, the same on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    /// How many times the next operation is polled before it is dropped (`None`: until it
    /// completes). Half of all operations are dropped, a sixth before their first poll.
    fn polls(&mut self) -> Option<u32> {
        match self.below(12) {
            0 | 1 => Some(0),
            2..=4 => Some(1),
            5..=7 => Some(2 + self.below(4) as u32),
            _ => None,
        }
    }

    /// A deadline for the socket, for the next operation: mostly none, sometimes within a
    /// millisecond, sometimes passed already.
    fn deadline(&mut self) -> Option<Instant> {
        match self.below(10) {
            0 => Some(Instant::now() + Duration::from_micros(self.below(1000) as u64)),
            1 => Some(Instant::now() - Duration::from_millis(1)),
            _ => None,
        }
    }

    /// A read size: mostly small, sometimes a buffer's worth, now and then more than the
    /// kernel holds.
    fn read_size(&mut self) -> usize {
        match self.below(10) {
            0 => 1,
            1..=5 => 1 + self.below(200),
            6..=8 => 1 + self.below(16 * 1024),
            _ => 1 + self.below(256 * 1024),
        }
    }
}

/// A pause of up to two milliseconds.
fn pause(rng: &mut Rng) -> Duration {
    Duration::from_micros(rng.below(2000) as u64)
}

/// `fut` polled at most `polls` times (`None`: until it completes), then dropped: `None` if
/// it had not completed. Between two polls it waits for its own wake-up or a [`TICK`],
/// whichever comes first, so that a dropped operation may be half-way through.
async fn at_most<F: Future>(fut: F, polls: Option<u32>) -> Option<F::Output> {
    let Some(mut left) = polls else {
        return Some(fut.await);
    };
    let mut fut = pin!(fut);
    let mut tick: Option<Pin<Box<asyncnet::Sleep>>> = None;
    poll_fn(|cx| {
        if left == 0 {
            return Poll::Ready(None);
        }
        left -= 1;
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if left == 0 {
            return Poll::Ready(None);
        }
        let t = tick.insert(Box::pin(sleep_async(TICK)));
        if t.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}

/// A writer's message: text of lines ended by `\n` or `\r\n` (never another `\r`, so that a
/// line read's stripped `\r` can be told apart from a lost byte), with two- and three-byte
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
    fn take(&mut self, bytes: &[u8]) {
        self.crs += bytes.iter().filter(|&&b| b == b'\r').count();
        self.bytes.extend_from_slice(bytes);
    }

    /// A line, with the `\n` its read took off (a `\r` before it is not told apart: the
    /// stream is compared without `\r`s).
    fn take_line(&mut self, line: &[u8]) {
        self.take(line);
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

/// The outcome of an operation that may have been dropped (`None`) or timed out by the
/// socket's deadline (`TimedOut`): both `None`; any other error is the test's.
fn timed_out<T>(r: Option<io::Result<T>>) -> io::Result<Option<T>> {
    match r {
        Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Ok(None),
        Some(r) => r.map(Some),
        None => Ok(None),
    }
}

/// The reader: random reads, each maybe dropped, until the end of the stream.
async fn read_randomly(sock: &AsyncSocket, seed: u64) -> io::Result<Read> {
    let mut rng = Rng::new(seed);
    let mut read = Read::default();
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
                    read.take(&bytes);
                    bytes.is_empty()
                }
                None => false,
            },
            1 => {
                let n = rng.read_size();
                match timed_out(at_most(sock.recv_into(&mut buf[..n]), polls).await)? {
                    Some(r) => {
                        read.take(&buf[..r]);
                        r == 0
                    }
                    None => false,
                }
            }
            2 => match timed_out(line_read(at_most(sock.recv_line(), polls).await))? {
                Some(Ok(Some(line))) => {
                    read.take_line(line.as_bytes());
                    false
                }
                Some(Ok(None)) => true,
                Some(Err(invalid)) => {
                    read.take_line(&invalid);
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
                        read.take_line(&line.as_bytes()[4..]);
                        false
                    }
                    Some(Ok(false)) => true,
                    Some(Err(invalid)) => {
                        assert_eq!(line, "kept", "seed {seed:#x}: a failed read appended");
                        read.take_line(&invalid);
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
                    read.peeked(bytes);
                }
                false
            }
            5 => {
                let n = rng.read_size();
                let op = poll_fn(|cx| Pin::new(&mut reader).poll_read(cx, &mut buf[..n]));
                match timed_out(at_most(op, polls).await)? {
                    Some(r) => {
                        read.take(&buf[..r]);
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
                        read.take(&shown[..n]);
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
            return Ok(read);
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
}

impl Connection {
    /// `(client, server)`: the writers' end and the reader's.
    async fn open(self) -> io::Result<(AsyncSocket, AsyncSocket)> {
        match self {
            Connection::Buffered => pair(Family::V4, true).await,
            Connection::Unbuffered => pair(Family::V4, false).await,
            #[cfg(all(feature = "tls", not(target_os = "macos")))]
            Connection::Tls => tls_support::tls_pair(&tls_support::Pki::new()).await,
        }
    }
}

fn a_random_schedule_of_dropped_operations_keeps_the_stream_whole(connection: Connection) {
    for seed in seeds() {
        run(async move {
            let (client, server) = connection.open().await?;
            // Small kernel buffers: large sends wait (back-pressure), and reads find the
            // stream in many pieces.
            socket2::SockRef::from(&client).set_send_buffer_size(KERNEL_BUFFER)?;
            socket2::SockRef::from(&server).set_recv_buffer_size(KERNEL_BUFFER)?;
            client.set_sock_opt(SoBool::NoDelay, true)?;
            let sent: Sent = Rc::default();
            let writers = [(seed ^ 1, b'a'), (seed ^ 2, b'A')]
                .map(|(s, letter)| spawn(write_randomly(client.clone(), s, letter, sent.clone())));
            // The closer holds the writers' end's last handle: on Windows a socket whose
            // handle was lent (`SockRef` above) ends its connection only when its last handle
            // is gone (see `AsSocket for AsyncSocket`), so no other may outlive the close.
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

#[test]
fn a_random_schedule_of_dropped_operations_keeps_a_buffered_stream_whole() {
    a_random_schedule_of_dropped_operations_keeps_the_stream_whole(Connection::Buffered);
}

#[test]
fn a_random_schedule_of_dropped_operations_keeps_an_unbuffered_stream_whole() {
    a_random_schedule_of_dropped_operations_keeps_the_stream_whole(Connection::Unbuffered);
}

#[test]
#[cfg(all(feature = "tls", not(target_os = "macos")))]
fn a_random_schedule_of_dropped_operations_keeps_a_tls_stream_whole() {
    a_random_schedule_of_dropped_operations_keeps_the_stream_whole(Connection::Tls);
}
