//! Deadlines, per call (`IoTimeout::timeout`/`deadline`) and per socket (`set_read_deadline`,
//! `set_write_deadline`), on every operation that waits: an expired deadline is `TimedOut`
//! and loses nothing (a line cut by it comes back whole, a send that timed out is delivered
//! once, in order); changing a deadline while an operation waits takes effect; and a chaos
//! run of 100,000 messages under random deadlines around the round-trip time, whose byte
//! streams must come out exactly as sent, with no descriptor left behind.

#[macro_use]
mod support;
#[cfg(all(feature = "tls", not(target_os = "macos")))]
#[path = "support/tls.rs"]
mod tls_support;

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use asyncnet::{sleep_async, spawn, wait_for, AsyncSocket, IoTimeout};
#[cfg(all(feature = "tls", not(target_os = "macos")))]
use asyncnet::{wrap_connected_socket, HandshakeAs};
use support::{pair, put, run, settle, socket, std_peer, udp_bound, udp_socket, yield_now, Family};

/// Long enough that an operation surely parks first; short enough to keep the suite fast.
const SHORT: Duration = Duration::from_millis(20);

/// The tests of this file run one at a time: the chaos test counts the process's open
/// descriptors, which the others would disturb.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn assert_timed_out<T: std::fmt::Debug>(r: io::Result<T>, what: &str) {
    match r {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
        other => panic!("{what}: expected TimedOut, got {other:?}"),
    }
}

/// How an operation is bounded: by a deadline of its own, or by the socket's.
#[derive(Clone, Copy, Debug)]
enum Bound {
    Call,
    Socket,
}

const BOUNDS: [Bound; 2] = [Bound::Call, Bound::Socket];

/// Run `op` under a deadline `SHORT` from now, the `bound` way; the socket's deadline (set
/// with `set`) is cleared after.
async fn bounded<T>(
    bound: Bound,
    set: impl Fn(Option<Instant>),
    op: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let at = Instant::now() + SHORT;
    match bound {
        Bound::Call => op.deadline(at).await,
        Bound::Socket => {
            set(Some(at));
            let r = op.await;
            set(None);
            r
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ReadOp {
    Recv,
    RecvInto,
    RecvLine,
}

async fn read_op(sock: &AsyncSocket, op: ReadOp) -> io::Result<Vec<u8>> {
    match op {
        ReadOp::Recv => sock.recv(10).await,
        ReadOp::RecvInto => {
            let mut buf = [0u8; 10];
            let n = sock.recv_into(&mut buf).await?;
            Ok(buf[..n].to_vec())
        }
        ReadOp::RecvLine => Ok(sock.recv_line().await?.unwrap_or_default().into_bytes()),
    }
}

fn every_read_times_out_under_a_deadline_and_loses_nothing(fam: Family) {
    let _serial = serial();
    for buffered in [true, false] {
        for bound in BOUNDS {
            for op in [ReadOp::Recv, ReadOp::RecvInto, ReadOp::RecvLine] {
                run(async move {
                    let (mut peer, sock) = std_peer(fam, buffered).await?;
                    let set = |at| sock.set_read_deadline(at);
                    // Nothing yet: the wait ends at the deadline.
                    assert_timed_out(bounded(bound, set, read_op(&sock, op)).await, "empty");
                    // Half of what the call needs (a buffered read waits for all 10 bytes,
                    // a line read for its end): cut by the deadline, nothing lost.
                    put(&mut peer, b"01234");
                    let wants_more = buffered || matches!(op, ReadOp::RecvLine);
                    if wants_more {
                        while !sock.has_data_buffered() {
                            let r = bounded(bound, set, read_op(&sock, op)).await;
                            assert_timed_out(r, "half");
                        }
                        put(&mut peer, b"56789\n");
                        let got = read_op(&sock, op).await?;
                        assert_eq!(got, b"0123456789", "{op:?} {bound:?} buffered={buffered}");
                    } else {
                        // Unbuffered: one system call gives what is there.
                        let got = bounded(bound, set, read_op(&sock, op)).await?;
                        assert_eq!(got, b"01234");
                    }
                    assert_eq!(sock.read_deadline(), None);
                    Ok(())
                })
            }
        }
    }
}

fn a_line_cut_by_deadlines_again_and_again_comes_back_whole(fam: Family) {
    let _serial = serial();
    for buffered in [true, false] {
        for bound in BOUNDS {
            run(async move {
                let (mut peer, sock) = std_peer(fam, buffered).await?;
                let set = |at| sock.set_read_deadline(at);
                let line = "a line that arrives in pieces, each piece cut off by a deadline";
                for piece in line.as_bytes().chunks(7) {
                    put(&mut peer, piece);
                    let r = bounded(bound, set, sock.recv_line()).await;
                    assert_timed_out(r, "half a line");
                }
                put(&mut peer, b"\r\nnext\n");
                assert_eq!(sock.recv_line().await?.as_deref(), Some(line));
                assert_eq!(sock.recv_line().await?.as_deref(), Some("next"));
                Ok(())
            })
        }
    }
}

fn recv_from_times_out_and_the_datagram_still_comes(fam: Family) {
    let _serial = serial();
    for bound in BOUNDS {
        run(async move {
            let a = udp_bound(fam)?;
            let b = udp_socket(fam)?;
            let set = |at| a.set_read_deadline(at);
            assert_timed_out(bounded(bound, set, a.recv_from(64)).await, "recv_from");
            b.send_to(fam.loopback(), a.local_addr()?.1, "late").await?;
            let (data, _, _) = bounded(bound, set, a.recv_from(64)).await?;
            assert_eq!(data, b"late");
            Ok(())
        })
    }
}

fn accept_times_out_and_the_next_connection_is_still_accepted(fam: Family) {
    let _serial = serial();
    for bound in BOUNDS {
        run(async move {
            let server = support::listener(fam)?;
            let set = |at| server.set_read_deadline(at);
            assert_timed_out(bounded(bound, set, server.accept()).await, "accept");
            let client = socket(fam, true)?;
            client
                .connect(fam.loopback(), server.local_addr()?.1)
                .await?;
            let peer = bounded(bound, set, server.accept()).await?;
            assert_eq!(peer.peer_addr()?, client.local_addr()?);
            Ok(())
        })
    }
}

/// A distinct pattern per message, so that a duplicated or lost message shows.
fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 131 + j / 7) as u8).collect()
}

fn a_send_that_times_out_is_delivered_once_and_in_order(fam: Family) {
    let _serial = serial();
    for bound in BOUNDS {
        run(async move {
            let (mut peer, sock) = std_peer(fam, true).await?;
            let set = |at| sock.set_write_deadline(at);
            // The peer does not read: sends fill its window, then one waits and times out.
            let mut expected = Vec::new();
            let mut i = 0;
            loop {
                let m = message(i, 256 * 1024);
                i += 1;
                let r = bounded(bound, set, sock.send(&m)).await;
                // Sent or timed out, the message is handed over whole: expected once.
                expected.extend_from_slice(&m);
                match r {
                    Ok(()) => assert!(i < 1000, "no send ever waited"),
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                    Err(e) => return Err(e),
                }
            }
            // A flush times out too, and loses nothing.
            assert_timed_out(bounded(bound, set, sock.flush()).await, "flush");
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).map(|_| got)
            });
            // Sends after the timeout go behind it.
            let tail = message(i, 1000);
            sock.send(&tail).await?;
            expected.extend_from_slice(&tail);
            sock.flush().await?;
            sock.close()?;
            let got = reader.join().expect("reader thread")?;
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "the stream differs from what was sent");
            Ok(())
        })
    }
}

/// A listener on IPv4 loopback whose backlog is full: further SYNs go unanswered, so a
/// connect to it waits until something accepts.
struct BlackHole {
    listener: TcpListener,
    _fillers: Vec<socket2::Socket>,
}

impl BlackHole {
    fn new() -> BlackHole {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        s.listen(0).expect("listen");
        let listener: TcpListener = s.into();
        let addr = listener.local_addr().expect("local_addr");
        let fillers = (0..4)
            .map(|_| {
                let f = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .expect("socket");
                f.set_nonblocking(true).expect("nonblocking");
                let _ = f.connect(&addr.into());
                f
            })
            .collect();
        BlackHole {
            listener,
            _fillers: fillers,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("local_addr")
    }

    /// Accept everything, in a thread, until `stop`.
    fn drain(self, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            self.listener.set_nonblocking(true).expect("nonblocking");
            let mut accepted = Vec::new();
            let start = Instant::now();
            while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
                match self.listener.accept() {
                    Ok((s, _)) => accepted.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    }
}

#[test]
fn connect_times_out_on_a_black_hole_and_a_retry_takes_up_the_same_attempt() {
    let _serial = serial();
    for bound in BOUNDS {
        run(async move {
            let hole = BlackHole::new();
            let addr = hole.addr();
            let sock = AsyncSocket::new()?;
            let set = |at| sock.set_write_deadline(at);
            assert_timed_out(
                bounded(bound, set, sock.connect_addr(addr)).await,
                "connect",
            );
            // The attempt goes on in the kernel; connecting again waits for it.
            assert_timed_out(bounded(bound, set, sock.connect_addr(addr)).await, "again");
            let stop = Arc::new(AtomicBool::new(false));
            let drainer = hole.drain(stop.clone());
            // The SYN is sent again (after about 1 s) and now answered.
            let checks = async {
                sock.connect_addr(addr)
                    .timeout(Duration::from_secs(20))
                    .await?;
                assert_eq!(sock.peer_socket_addr()?, addr);
                // Connected: connecting to the same peer again says so; to another, it
                // refuses.
                sock.connect_addr(addr).await?;
                let other = SocketAddr::from(([127, 0, 0, 1], support::closed_port(Family::V4)));
                let e = sock.connect_addr(other).await.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
                assert!(e.to_string().contains("already connected"), "{e}");
                Ok::<(), io::Error>(())
            };
            let r = checks.await;
            // Until now the listener lives: closing it would reset a connection not yet
            // accepted.
            stop.store(true, Ordering::SeqCst);
            drainer.join().expect("drainer");
            r
        })
    }
}

#[test]
#[cfg(unix)] // Unix-domain sockets
fn a_unix_connect_to_a_full_backlog_times_out_at_the_write_deadline() {
    let _serial = serial();
    run(async {
        let path = support::TempSocketPath::new("deadline-backlog");
        let listener = support::unix_socket(asyncnet::SockType::STREAM)?;
        listener.bind_unix(path.path())?;
        listener.listen_backlog(0)?;
        // Fill the backlog: a Unix connect then answers EAGAIN, with no connect under way,
        // and the socket retries on a timer.
        let addr = socket2::SockAddr::unix(path.path())?;
        let mut fillers = Vec::new();
        loop {
            let f = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
            f.set_nonblocking(true)?;
            match f.connect(&addr) {
                Ok(()) => fillers.push(f),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            assert!(fillers.len() < 1000, "the backlog never filled");
        }
        for bound in BOUNDS {
            let sock = support::unix_socket(asyncnet::SockType::STREAM)?;
            let set = |at| sock.set_write_deadline(at);
            let r = bounded(bound, set, sock.connect_unix(path.path())).await;
            assert_timed_out(r, "unix connect");
        }
        Ok(())
    })
}

#[cfg(all(feature = "tls", not(target_os = "macos")))]
#[test]
fn a_tls_handshake_cut_by_a_deadline_leaves_a_clear_error_not_a_half_session() {
    let _serial = serial();
    let pki = tls_support::Pki::new();
    for bound in BOUNDS {
        let ctx = pki.client_ctx();
        run(async move {
            // A server that accepts and never answers the ClientHello.
            let mute = TcpListener::bind("127.0.0.1:0")?;
            let port = mute.local_addr()?.port();
            let sock = asyncnet::dial("127.0.0.1", port).await?;
            let (_held, _) = mute.accept()?;
            let set = |at| sock.set_read_deadline(at);
            let hs = wrap_connected_socket(&ctx, &sock, HandshakeAs::Client, "localhost");
            assert_timed_out(bounded(bound, set, hs).await, "handshake");
            for e in [
                sock.send("x").await.unwrap_err(),
                sock.recv(1).await.unwrap_err(),
                sock.recv_line().await.unwrap_err(),
            ] {
                assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
                assert!(e.to_string().contains("did not finish"), "{e}");
            }
            Ok(())
        })
    }
}

#[cfg(all(feature = "tls", not(target_os = "macos")))]
#[test]
fn a_tls_session_obeys_socket_deadlines_and_loses_nothing() {
    let _serial = serial();
    let pki = tls_support::Pki::new();
    run(async move {
        let (client, server) = tls_support::tls_pair(&pki).await?;
        server.set_read_deadline(Some(Instant::now() + SHORT));
        client.send("hel").await?;
        client.flush().await?;
        assert_timed_out(server.recv_line().await, "tls recv_line");
        server.set_read_deadline(None);
        client.send("lo\n").await?;
        assert_eq!(server.recv_line().await?.as_deref(), Some("hello"));
        Ok(())
    })
}

#[test]
fn changing_a_deadline_while_an_operation_waits_takes_effect() {
    let _serial = serial();
    run(async {
        let (client, sock) = pair(Family::V4, true).await?;
        // No deadline while it waits; one set meanwhile ends the wait.
        let reader = sock.clone();
        let h = spawn(async move { reader.recv_line().await });
        settle().await;
        sock.set_read_deadline(Some(Instant::now() + SHORT));
        assert_timed_out(h.await, "a deadline set while waiting");
        // A deadline already passed, set while waiting: the wait ends at once.
        sock.set_read_deadline(None);
        let reader = sock.clone();
        let h = spawn(async move { reader.recv_line().await });
        settle().await;
        sock.set_read_deadline(Some(Instant::now()));
        let r = h.timeout(Duration::from_secs(5)).await;
        assert_timed_out(r, "a passed deadline set while waiting");
        // Cleared (or moved later) while waiting: the old deadline no longer counts.
        for later in [None, Some(Instant::now() + Duration::from_secs(60))] {
            sock.set_read_deadline(Some(Instant::now() + SHORT));
            let reader = sock.clone();
            let h = spawn(async move { reader.recv_line().await });
            settle().await;
            sock.set_read_deadline(later);
            sleep_async(SHORT * 3).await;
            assert!(
                !h.is_finished(),
                "the old deadline ended the wait ({later:?})"
            );
            client.send("on time\n").await?;
            assert_eq!(h.await?.as_deref(), Some("on time"));
        }
        // Writes: a waiting send, then a deadline.
        sock.set_read_deadline(None);
        let writer = client.clone();
        let h = spawn(async move {
            let big = vec![1u8; 1 << 20];
            loop {
                writer.send(&big).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        });
        sleep_async(SHORT).await;
        assert!(!h.is_finished(), "the peer reads nothing: the sender waits");
        client.set_write_deadline(Some(Instant::now()));
        assert_timed_out(h.timeout(Duration::from_secs(5)).await, "send");
        Ok(())
    })
}

#[test]
fn a_passed_deadline_still_lets_what_is_buffered_be_read() {
    let _serial = serial();
    run(async {
        let (client, sock) = pair(Family::V4, true).await?;
        client.send("one\ntwo\n").await?;
        assert_eq!(sock.recv_line().await?.as_deref(), Some("one"));
        sock.set_read_deadline(Some(Instant::now()));
        // Buffered: no wait, so the deadline does not stop it.
        assert_eq!(sock.recv_line().await?.as_deref(), Some("two"));
        assert_timed_out(sock.recv_line().await, "nothing buffered");
        // A send that fits the output buffer does not wait either.
        client.set_write_deadline(Some(Instant::now()));
        client.send("three\n").await?;
        sock.set_read_deadline(None);
        assert_eq!(sock.recv_line().await?.as_deref(), Some("three"));
        Ok(())
    })
}

/// A loop with no timer armed reads no clock, so its time of the last turn may be old when
/// a deadline that has already passed is set: the read must still time out (at the next
/// turn, when the deadline's timer, due already, fires). No hang guard of `run` here: it is
/// a timer itself; a watchdog thread ends the process instead if the read never returns.
#[test]
fn a_deadline_already_passed_times_out_on_a_loop_that_had_no_timer() {
    let _serial = serial();
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            while !done.load(Ordering::Acquire) {
                if Instant::now() > until {
                    eprintln!("a read past its deadline did not return in 60 s");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    wait_for(async {
        let (client, sock) = pair(Family::V4, true).await.unwrap();
        client.send("a\n").await.unwrap();
        assert_eq!(sock.recv_line().await.unwrap().as_deref(), Some("a"));
        // The loop's last look at the clock grows old while nothing wakes it.
        std::thread::sleep(Duration::from_millis(50));
        sock.set_read_deadline(Some(Instant::now() - Duration::from_millis(10)));
        assert_timed_out(sock.recv_line().await, "a deadline passed before the read");
        // Nothing was lost: a later line still comes.
        sock.set_read_deadline(None);
        client.send("b\n").await.unwrap();
        assert_eq!(sock.recv_line().await.unwrap().as_deref(), Some("b"));
    });
    done.store(true, Ordering::Release);
    watchdog.join().unwrap();
}

/// Counts this thread's allocations (the tests of this file run one at a time).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the count is a
// thread-local `Cell` with a const initializer, which never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout` (the caller's contract).
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// `n` round trips of a 4-byte message whose read waits; `mode`: 0 no deadline, 1 the
/// socket's (set before every read, Go's idle-timeout idiom), 2 the call's.
async fn echo_rounds(
    client: &AsyncSocket,
    server: &AsyncSocket,
    mode: u8,
    n: usize,
) -> io::Result<()> {
    let mut buf = [0u8; 64];
    for _ in 0..n {
        client.send(b"ping").await?;
        let far = Instant::now() + Duration::from_secs(600);
        let got = match mode {
            0 => server.recv_into(&mut buf).await?,
            1 => {
                server.set_read_deadline(Some(far));
                server.recv_into(&mut buf).await?
            }
            _ => server.recv_into(&mut buf).deadline(far).await?,
        };
        assert_eq!(&buf[..got], b"ping");
    }
    Ok(())
}

#[test]
fn a_deadline_that_never_fires_costs_no_allocation_per_operation() {
    let _serial = serial();
    run(async {
        let (client, server) = pair(Family::V4, false).await?;
        let mut per_mode = Vec::new();
        for mode in [0, 1, 2] {
            echo_rounds(&client, &server, mode, 200).await?; // warm: buffers, timer maps
            let before = allocations();
            echo_rounds(&client, &server, mode, 2000).await?;
            per_mode.push(allocations() - before);
        }
        eprintln!("allocations in 2,000 waiting reads (none, socket, call): {per_mode:?}");
        assert_eq!(
            per_mode[1], per_mode[0],
            "socket deadline vs none, allocations in 2,000 reads that wait"
        );
        assert_eq!(
            per_mode[2], per_mode[0],
            "call deadline vs none, allocations in 2,000 reads that wait"
        );
        Ok(())
    })
}

family_tests!(
    every_read_times_out_under_a_deadline_and_loses_nothing,
    a_line_cut_by_deadlines_again_and_again_comes_back_whole,
    recv_from_times_out_and_the_datagram_still_comes,
    accept_times_out_and_the_next_connection_is_still_accepted,
    a_send_that_times_out_is_delivered_once_and_in_order,
);

// ---- the chaos test ----

/// xorshift64*: a seeded, reproducible stream of numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One message of the chaos stream.
#[derive(Debug, PartialEq)]
enum Msg {
    /// Printable bytes, sent with `\n`, read with `recv_line`.
    Line(String),
    /// A 2-byte length and a body, read with `recv`.
    Frame(Vec<u8>),
    /// A large body (past the output buffer's high-water mark), read with `recv_into`.
    Large(Vec<u8>),
}

impl Msg {
    /// The `i`th message of the stream of `rng`.
    fn generate(rng: &mut Rng, i: usize) -> Msg {
        match rng.below(1000) {
            0..=1 => Msg::Large(message(i, 128 * 1024 + rng.below(896 * 1024) as usize)),
            2..=299 => Msg::Frame(message(i, rng.below(1024) as usize)),
            _ => {
                let len = rng.below(120) as usize;
                Msg::Line(
                    (0..len)
                        .map(|j| char::from(b' ' + ((i + j) % 94) as u8))
                        .collect(),
                )
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Msg::Line(s) => format!("{s}\n").into_bytes(),
            Msg::Frame(b) => {
                let mut v = (b.len() as u16).to_be_bytes().to_vec();
                v.extend_from_slice(b);
                v
            }
            Msg::Large(b) => b.clone(),
        }
    }
}

/// A deadline around the round trip on loopback: passed already, tens of microseconds,
/// or a few milliseconds away.
fn chaos_deadline(rng: &mut Rng) -> Instant {
    let now = Instant::now();
    match rng.below(8) {
        0..=2 => now
            .checked_sub(Duration::from_micros(rng.below(100)))
            .unwrap_or(now),
        3..=5 => now + Duration::from_micros(rng.below(100)),
        _ => now + Duration::from_micros(rng.below(3000)),
    }
}

/// Operations run under deadlines, and how many timed out.
#[derive(Default)]
struct Counts {
    ops: Cell<u64>,
    timed_out: Cell<u64>,
    /// Sends that timed out (their messages were handed over all the same).
    sends_timed_out: Cell<u64>,
}

/// Run `op` under a random deadline, per call or per socket (`set`); `None` if it timed out.
async fn chaos_op<T>(
    rng: &mut Rng,
    counts: &Counts,
    set: impl Fn(Option<Instant>),
    op: impl Future<Output = io::Result<T>>,
) -> io::Result<Option<T>> {
    let at = chaos_deadline(rng);
    counts.ops.set(counts.ops.get() + 1);
    let r = if rng.below(2) == 0 {
        set(None);
        op.deadline(at).await
    } else {
        set(Some(at));
        op.await
    };
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            counts.timed_out.set(counts.timed_out.get() + 1);
            // Let the loop turn before trying again (a passed deadline does not wait).
            yield_now().await;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Send `m` under a random deadline: sent or timed out, it is handed over whole, once.
async fn chaos_send(sock: &AsyncSocket, m: &Msg, rng: &mut Rng, counts: &Counts) -> io::Result<()> {
    let set = |at| sock.set_write_deadline(at);
    let bytes = m.bytes();
    if chaos_op(rng, counts, set, sock.send(&bytes))
        .await?
        .is_none()
    {
        counts.sends_timed_out.set(counts.sends_timed_out.get() + 1);
    }
    if rng.below(64) == 0 {
        chaos_op(rng, counts, set, sock.flush()).await?;
    }
    Ok(())
}

/// Receive the next message, expected to be `m`, retrying under random deadlines.
async fn chaos_recv(sock: &AsyncSocket, m: &Msg, rng: &mut Rng, counts: &Counts) -> io::Result<()> {
    let set = |at| sock.set_read_deadline(at);
    let got = loop {
        let r = match m {
            Msg::Line(_) => chaos_op(rng, counts, set, sock.recv_line())
                .await?
                .map(|l| Msg::Line(l.unwrap_or_else(|| "<end>".into()))),
            Msg::Frame(b) => chaos_op(rng, counts, set, sock.recv(2 + b.len()))
                .await?
                .map(|v| {
                    let len = usize::from(u16::from_be_bytes([v[0], v[1]]));
                    assert_eq!(len + 2, v.len(), "a frame's header");
                    Msg::Frame(v[2..].to_vec())
                }),
            Msg::Large(b) => {
                let mut buf = vec![0; b.len()];
                chaos_op(rng, counts, set, sock.recv_into(&mut buf))
                    .await?
                    .map(|n| {
                        buf.truncate(n);
                        Msg::Large(buf)
                    })
            }
        };
        if let Some(got) = r {
            break got;
        }
    };
    assert!(&got == m, "the stream differs from what was sent");
    Ok(())
}

/// How many messages the client sends (each is sent, received, echoed and received back:
/// four operations under deadlines, plus every retry).
const CHAOS_MESSAGES: usize = 100_000;
/// How far the client may run ahead of the echoes it has read (a protocol's window).
const WINDOW: usize = 32;

/// Open descriptors (Linux) or handles (Windows) once the loop is at rest: see
/// `support::open_descriptors_at_rest`. Elsewhere 0 (not counted).
#[cfg(any(target_os = "linux", windows))]
fn open_fds_at_rest() -> usize {
    wait_for(support::open_descriptors_at_rest())
}
#[cfg(not(any(target_os = "linux", windows)))]
fn open_fds_at_rest() -> usize {
    0
}

/// Open descriptors (Linux) or handles (Windows) once closed sockets are let go, see
/// `support::open_descriptors_settled`. Elsewhere 0 (not counted).
#[cfg(any(target_os = "linux", windows))]
fn open_fds_settled(expected: usize) -> usize {
    wait_for(support::open_descriptors_settled(expected))
}
#[cfg(not(any(target_os = "linux", windows)))]
fn open_fds_settled(_expected: usize) -> usize {
    0
}

#[test]
fn chaos_of_random_deadlines_keeps_both_byte_streams_exact_and_leaks_no_descriptor() {
    let _serial = serial();
    const SEED: u64 = 0x5EED_DEAD_11E5;
    // The loop's own descriptors, and what the process opens with its first socket, exist
    // before the count.
    run(async { pair(Family::V4, true).await.map(drop) });
    let fds_before = open_fds_at_rest();
    let started = Instant::now();
    support::raise_task_failures();
    // A guard against hangs only (the run takes seconds), generous for a loaded machine.
    let body = async {
        let (a, b) = pair(Family::V4, true).await?;
        // Small kernel buffers: large messages meet back-pressure, so sends wait too.
        for s in [&a, &b] {
            let raw = socket2::SockRef::from(s);
            raw.set_send_buffer_size(64 * 1024)?;
            raw.set_recv_buffer_size(64 * 1024)?;
        }
        let counts = Rc::new(Counts::default());
        let echoed = Rc::new(Cell::new(0usize));

        // B: receives every message under deadlines and echoes it under deadlines.
        let echo = {
            let (b, counts) = (b.clone(), counts.clone());
            spawn(async move {
                let mut stream = Rng(SEED);
                let mut rng = Rng(SEED ^ 1);
                for i in 0..CHAOS_MESSAGES {
                    let m = Msg::generate(&mut stream, i);
                    chaos_recv(&b, &m, &mut rng, &counts).await?;
                    chaos_send(&b, &m, &mut rng, &counts).await?;
                }
                b.set_deadline(None);
                assert_eq!(b.recv_line().await?, None, "bytes past the last message");
                b.flush().await?;
                b.shutdown_write()
            })
        };
        // A's reader: every echo, in order.
        let reader = {
            let (a, counts, echoed) = (a.clone(), counts.clone(), echoed.clone());
            spawn(async move {
                let mut stream = Rng(SEED);
                let mut rng = Rng(SEED ^ 2);
                for i in 0..CHAOS_MESSAGES {
                    let m = Msg::generate(&mut stream, i);
                    chaos_recv(&a, &m, &mut rng, &counts).await?;
                    echoed.set(i + 1);
                }
                a.set_read_deadline(None);
                assert!(a.recv(1).await?.is_empty(), "bytes past the last echo");
                Ok::<(), io::Error>(())
            })
        };
        // A's writer: every message, sent once (a send that timed out was handed over).
        let mut stream = Rng(SEED);
        let mut rng = Rng(SEED ^ 3);
        for i in 0..CHAOS_MESSAGES {
            while i - echoed.get() >= WINDOW {
                yield_now().await;
            }
            let m = Msg::generate(&mut stream, i);
            chaos_send(&a, &m, &mut rng, &counts).await?;
        }
        a.set_write_deadline(None);
        a.flush().await?;
        a.shutdown_write()?;
        echo.await?;
        reader.await?;
        assert!(!a.has_data_buffered() && !b.has_data_buffered());
        a.close()?;
        b.close()?;
        Ok::<_, io::Error>(Rc::try_unwrap(counts).ok().expect("tasks done"))
    };
    let counts = wait_for(body.timeout(Duration::from_secs(300))).expect("the chaos run");
    let (ops, timed_out) = (counts.ops.get(), counts.timed_out.get());
    eprintln!(
        "chaos: {CHAOS_MESSAGES} messages, {ops} operations under deadlines, {timed_out} timed \
         out ({} of them sends), {:?}",
        counts.sends_timed_out.get(),
        started.elapsed()
    );
    assert!(ops >= 4 * CHAOS_MESSAGES as u64);
    assert!(
        timed_out > 0 && counts.sends_timed_out.get() > 0,
        "no deadline fired on a read or on a send: the test proves nothing"
    );
    // Closed sockets may still be handing bytes to the kernel: let the loop finish them.
    wait_for(async {});
    assert_eq!(
        open_fds_settled(fds_before),
        fds_before,
        "descriptors left open"
    );
}
