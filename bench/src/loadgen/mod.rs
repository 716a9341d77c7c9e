//! The load generator's workloads. Deliberately built on plain `mio` (one
//! thread, edge-triggered readiness), neither on asyncnet nor on tokio, so it
//! favours no server.
//!
//! Every workload is a set of slots (connections or sockets, see `Slot`),
//! each with one operation in flight (bulk: a bounded stream of bytes),
//! driven by `run`: a warm-up, then a measured window, with `on_phase`
//! called at the start and at the end of that window (the `loadgen` binary
//! prints `measure-start` / `measure-end` there, which the runner uses to
//! sample the server's CPU time over exactly that window).
//!
//! The fixed-size mode (`count`, stream echo and bulk) runs one operation
//! per slot (bulk: `in_flight` bytes) as a warm-up, then exactly `count`
//! operations (bulk: bytes), with `on_phase` called while every slot is
//! quiet (nothing in flight): the system call pass ([`crate::syscalls`])
//! attaches `strace` to the server in between and so counts the calls of
//! exactly those operations.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};

mod bulk;
mod burst;
mod udp;
pub use bulk::{bulk, Bulk, CHUNK, IN_FLIGHT};
pub use burst::{echo_bursts, Bursts};
pub use udp::{udp_echo, UdpEcho};

/// Latencies in nanoseconds, to 3 significant digits.
pub type Histogram = hdrhistogram::Histogram<u64>;

/// Latencies from 1 ns to 60 s (longer ones are counted as 60 s).
fn histogram() -> Histogram {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Where the measured window is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    MeasureStart,
    MeasureEnd,
}

/// How long a workload runs: `warmup` then a window of `secs`, or (`count`)
/// the fixed-size run (see the module documentation; `warmup` and `secs`
/// are then unused).
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub warmup: Duration,
    pub secs: Duration,
    pub count: Option<u64>,
}

/// What a workload measured in its window.
#[derive(Clone, Debug)]
pub struct Report {
    /// Operations (round trips; TLS handshake: connections; bulk: bytes
    /// echoed) completed inside the window.
    pub ops: u64,
    /// The window's actual length.
    pub window: Duration,
    /// Latency of those operations, in nanoseconds (none for bulk).
    pub latency_ns: Histogram,
    /// Operations completed in the window, per slot (fairness: a server
    /// that starves some connections shows zeros here).
    pub per_conn: Vec<u64>,
    /// UDP: datagrams resent in the window because no echo came back in
    /// time (lost, or very late).
    pub lost: u64,
    /// TLS handshakes: connections that failed in the window, and the first error.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// Mean latency in microseconds (to HdrHistogram's precision).
    pub fn mean_us(&self) -> f64 {
        self.latency_ns.mean() / 1e3
    }

    /// Slots that completed no operation in the window.
    pub fn idle_conns(&self) -> usize {
        self.per_conn.iter().filter(|&&n| n == 0).count()
    }
}

/// One connection or socket of a workload.
pub(crate) trait Slot {
    /// Handles readiness (or a kick, when nothing may be ready): goes on with
    /// the operation in flight, records it in `w` once complete, and starts
    /// the next one if [`Window::take`] allows.
    fn ready(&mut self, i: usize, w: &mut Window) -> io::Result<()>;
    /// Called every [`TICK`] or so: resends, timeouts.
    fn tick(&mut self, _i: usize, _now: Instant, _w: &mut Window) -> io::Result<()> {
        Ok(())
    }
    /// Ends the slot cleanly once nothing is in flight (timed runs only).
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How often [`Slot::tick`] runs.
const TICK: Duration = Duration::from_millis(10);
/// A workload fails if no operation completes for this long.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the clean end of a timed run may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the slots have started and done, and what is counted in the window.
pub(crate) struct Window {
    /// Operations that may be started in all (a phase's end).
    budget: u64,
    started: u64,
    done: u64,
    counting: bool,
    report: Report,
    /// Slots to kick at a time of their choosing ([`Window::wake_at`]), earliest first.
    wakeups: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Window {
    /// Grants up to `n` operations (bulk: bytes) to start: fewer once the
    /// phase's budget is spent.
    pub(crate) fn take(&mut self, n: u64) -> u64 {
        let n = n.min(self.budget - self.started);
        self.started += n;
        n
    }

    /// Counts `ops` operations of slot `conn` done, the one begun at `since`
    /// in the latencies if given.
    pub(crate) fn record(&mut self, conn: usize, ops: u64, since: Option<Instant>) {
        self.done += ops;
        if self.counting {
            let r = &mut self.report;
            r.ops += ops;
            r.per_conn[conn] += ops;
            if let Some(t) = since {
                let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                r.latency_ns.saturating_record(ns);
            }
        }
    }

    /// Counts a failed operation (TLS handshakes), keeping the first error.
    pub(crate) fn error(&mut self, e: &io::Error) {
        self.report.errors += 1;
        self.report.first_error.get_or_insert_with(|| e.to_string());
    }

    pub(crate) fn errors(&self) -> u64 {
        self.report.errors
    }

    /// Has slot `i`'s [`Slot::ready`] called (a kick) once `at` has passed.
    pub(crate) fn wake_at(&mut self, i: usize, at: Instant) {
        self.wakeups.push(Reverse((at, i)));
    }

    /// Counts a resent datagram (if in the window).
    pub(crate) fn lost(&mut self) {
        self.report.lost += u64::from(self.counting);
    }

    /// Runs the slots until `budget` more operations are done or `until` passes.
    fn drive<S: Slot>(
        &mut self,
        poll: &mut Poll,
        slots: &mut [S],
        budget: u64,
        until: Option<Instant>,
    ) -> io::Result<()> {
        self.budget = self.started.saturating_add(budget);
        for (i, s) in slots.iter_mut().enumerate() {
            s.ready(i, self)?;
        }
        let mut events = Events::with_capacity(1024);
        let (mut progress, mut done, mut next_tick) = (Instant::now(), self.done, Instant::now());
        loop {
            let now = Instant::now();
            if self.done >= self.budget || until.is_some_and(|u| now >= u) {
                return Ok(());
            }
            if self.done > done {
                (progress, done) = (now, self.done);
            } else if now - progress > STALL_TIMEOUT {
                let first = self.report.first_error.as_ref();
                let first = first.map(|e| format!(" (first error: {e})"));
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "nothing completed for {STALL_TIMEOUT:?}{}",
                        first.unwrap_or_default()
                    ),
                ));
            }
            let mut wake = until.map_or(next_tick, |u| u.min(next_tick));
            if let Some(Reverse((at, _))) = self.wakeups.peek() {
                wake = wake.min(*at);
            }
            match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r?,
            }
            for ev in events.iter() {
                slots[ev.token().0].ready(ev.token().0, self)?;
            }
            let now = Instant::now();
            while let Some(&Reverse((at, i))) = self.wakeups.peek() {
                if at > now {
                    break;
                }
                self.wakeups.pop();
                slots[i].ready(i, self)?;
            }
            if now >= next_tick {
                for (i, s) in slots.iter_mut().enumerate() {
                    s.tick(i, now, self)?;
                }
                next_tick = now + TICK;
            }
        }
    }
}

/// Runs `slots` (each registered with `poll` under its index as token) for
/// `span`: a warm-up (fixed-size: `warm` operations), the window, then (timed)
/// every operation in flight completed and each slot closed.
pub(crate) fn run<S: Slot>(
    poll: &mut Poll,
    slots: &mut [S],
    span: &Span,
    warm: u64,
    mut on_phase: impl FnMut(Phase),
) -> io::Result<Report> {
    let mut w = Window {
        budget: 0,
        started: 0,
        done: 0,
        counting: false,
        report: Report {
            ops: 0,
            window: Duration::ZERO,
            latency_ns: histogram(),
            per_conn: vec![0; slots.len()],
            lost: 0,
            errors: 0,
            first_error: None,
        },
        wakeups: BinaryHeap::new(),
    };
    let start = Instant::now();
    match span.count {
        Some(0) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "count 0")),
        Some(_) => w.drive(poll, slots, warm, None)?,
        None => w.drive(poll, slots, u64::MAX, Some(start + span.warmup))?,
    }
    on_phase(Phase::MeasureStart);
    (w.counting, w.report.errors, w.report.first_error) = (true, 0, None);
    let start = Instant::now();
    match span.count {
        Some(count) => w.drive(poll, slots, count, None)?,
        None => w.drive(poll, slots, u64::MAX, Some(start + span.secs))?,
    }
    w.report.window = start.elapsed();
    w.counting = false;
    on_phase(Phase::MeasureEnd);
    if w.report.ops == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "nothing completed in the measured window",
        ));
    }
    if span.count.is_none() {
        w.drive(poll, slots, 0, Some(Instant::now() + CLOSE_TIMEOUT))?;
        for s in slots.iter_mut() {
            s.close()?;
        }
    }
    Ok(w.report)
}

/// Registers `s` with `poll` for reading and writing under token `i`.
pub(crate) fn register<S: Source>(poll: &Poll, mut s: S, i: usize) -> io::Result<S> {
    let interest = Interest::READABLE | Interest::WRITABLE;
    poll.registry().register(&mut s, Token(i), interest)?;
    Ok(s)
}

/// An error for a bad setting.
pub(crate) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// Connects to 127.0.0.1 over TCP with `TCP_NODELAY`, non-blocking.
pub(crate) fn connect(addr: &SocketAddr) -> io::Result<TcpStream> {
    let std = StdTcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?;
    std.set_nodelay(true)?;
    std.set_nonblocking(true)?;
    Ok(TcpStream::from_std(std))
}

/// Where a stream workload connects to.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Settings of the echo ping-pong workload (TCP or Unix stream).
#[derive(Clone, Debug)]
pub struct PingPong {
    pub target: Target,
    pub conns: usize,
    /// Bytes per message (the last one is `\n`, so line-based echo servers
    /// work too).
    pub size: usize,
    pub span: Span,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One stream connection with one message in flight.
struct Echo<S> {
    stream: S,
    msg: Vec<u8>,
    written: usize,
    buf: Vec<u8>,
    read: usize,
    sent_at: Instant,
    seq: u64,
    busy: bool,
}

/// Repeats `step` (one read or write doing its own bookkeeping, returning
/// its byte count and whether the goal is reached) until the goal is reached
/// (true) or WouldBlock (false); EINTR is retried, end of stream an error.
pub(crate) fn pump(mut step: impl FnMut() -> io::Result<(usize, bool)>) -> io::Result<bool> {
    loop {
        match step() {
            Ok((0, _)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ))
            }
            Ok((_, goal)) if goal => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl<S: Read + Write> Echo<S> {
    /// Writes what is left of the message; stops at WouldBlock.
    fn flush(&mut self) -> io::Result<()> {
        let (msg, written, stream) = (&self.msg, &mut self.written, &mut self.stream);
        if *written < msg.len() {
            pump(|| {
                let n = stream.write(&msg[*written..])?;
                *written += n;
                Ok((n, *written == msg.len()))
            })?;
        }
        Ok(())
    }
}

impl<S: Read + Write> Slot for Echo<S> {
    fn ready(&mut self, i: usize, w: &mut Window) -> io::Result<()> {
        if self.busy {
            self.flush()?;
            // Edge-triggered: read until WouldBlock or a full echo. After a
            // full echo the socket is drained (one message in flight), so
            // the next echo brings a new edge.
            let (buf, read, stream) = (&mut self.buf, &mut self.read, &mut self.stream);
            let full = pump(|| {
                let n = stream.read(&mut buf[*read..])?;
                *read += n;
                Ok((n, *read == buf.len()))
            })?;
            if !full {
                return Ok(());
            }
            if self.buf != self.msg {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the echo differs from the message sent",
                ));
            }
            w.record(i, 1, Some(self.sent_at));
            self.busy = false;
        }
        if w.take(1) == 1 {
            self.seq += 1;
            let n = self.msg.len();
            for (k, b) in self.msg[..n - 1].iter_mut().enumerate() {
                *b = b'a' + ((k as u64 + self.seq) % 26) as u8;
            }
            self.msg[n - 1] = b'\n';
            (self.written, self.read, self.busy) = (0, 0, true);
            self.sent_at = Instant::now();
            self.flush()?;
        }
        Ok(())
    }
}

/// Echo ping-pong over TCP or a Unix stream socket: each of `conns`
/// connections sends one `size`-byte message, waits for all of it to come
/// back, and sends the next one.
pub fn echo_pingpong(cfg: &PingPong, on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    if cfg.conns == 0 || cfg.size == 0 {
        return Err(invalid("conns and size must be at least 1"));
    }
    fn go<S: Read + Write + Source>(
        cfg: &PingPong,
        connect: impl Fn() -> io::Result<S>,
        on_phase: impl FnMut(Phase),
    ) -> io::Result<Report> {
        let mut poll = Poll::new()?;
        let mut slots = (0..cfg.conns)
            .map(|i| {
                Ok(Echo {
                    stream: register(&poll, connect()?, i)?,
                    msg: vec![0; cfg.size],
                    written: 0,
                    buf: vec![0; cfg.size],
                    read: 0,
                    sent_at: Instant::now(),
                    seq: i as u64,
                    busy: false,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        run(&mut poll, &mut slots, &cfg.span, cfg.conns as u64, on_phase)
    }
    match &cfg.target {
        Target::Tcp(addr) => go(cfg, || connect(addr), on_phase),
        Target::Unix(path) => go(
            cfg,
            || {
                let std = StdUnixStream::connect(path)?;
                std.set_nonblocking(true)?;
                Ok(UnixStream::from_std(std))
            },
            on_phase,
        ),
    }
}

/// The `idle` workload's client (run by the suite itself): opens `conns`
/// TCP connections to `addr` one after another, each exchanging one
/// `size`-byte echo (blocking, every step bounded by `timeout`), and returns
/// them open.
pub fn idle_conns(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    timeout: Duration,
) -> io::Result<Vec<StdTcpStream>> {
    if conns == 0 || size == 0 {
        return Err(invalid("conns and size must be at least 1"));
    }
    let mut msg = vec![b'i'; size];
    msg[size - 1] = b'\n';
    let mut echo = vec![0u8; size];
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns {
        let step = |e: io::Error| io::Error::new(e.kind(), format!("connection {i}: {e}"));
        let mut s = StdTcpStream::connect_timeout(&addr, timeout).map_err(step)?;
        s.set_nodelay(true).map_err(step)?;
        s.set_read_timeout(Some(timeout)).map_err(step)?;
        s.set_write_timeout(Some(timeout)).map_err(step)?;
        s.write_all(&msg).map_err(step)?;
        s.read_exact(&mut echo).map_err(step)?;
        if echo != msg {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("connection {i}: the echo differs from the message sent"),
            ));
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// A blocking echo of one connection, on its own thread.
    fn echo(mut s: impl Read + Write + Send + 'static) {
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }

    /// A blocking thread-per-connection TCP echo server, for testing the client.
    fn std_echo_server(conns: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || l.incoming().take(conns).for_each(|s| echo(s.unwrap())));
        addr
    }

    pub(crate) fn span(count: Option<u64>) -> Span {
        let (warmup, secs) = (Duration::from_millis(50), Duration::from_millis(200));
        Span {
            warmup,
            secs,
            count,
        }
    }

    fn cfg(target: Target, conns: usize, count: Option<u64>) -> PingPong {
        let span = span(count);
        PingPong {
            target,
            conns,
            size: 64,
            span,
        }
    }

    #[test]
    fn pingpong_over_tcp_and_unix_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let l = UnixListener::bind(&path).unwrap();
        thread::spawn(move || l.incoming().take(3).for_each(|s| echo(s.unwrap())));
        for target in [Target::Tcp(std_echo_server(3)), Target::Unix(path)] {
            let mut phases = Vec::new();
            let r = echo_pingpong(&cfg(target, 3, None), |p| phases.push(p)).unwrap();
            assert_eq!(phases, [Phase::MeasureStart, Phase::MeasureEnd]);
            assert!(r.ops > 0);
            assert_eq!(r.latency_ns.len(), r.ops);
            // A loopback round trip takes microseconds, not nanoseconds.
            assert!(
                r.latency_ns.value_at_quantile(0.5) >= 1_000,
                "{:?}",
                r.latency_ns
            );
            assert_eq!(r.per_conn.iter().sum::<u64>(), r.ops);
            assert_eq!((r.per_conn.len(), r.idle_conns(), r.lost), (3, 0, 0));
            assert!(r.mean_us() > 0.0 && r.per_sec() > 0.0);
            assert!(r.window >= Duration::from_millis(200));
        }
    }

    #[test]
    fn counted_pingpong_idle_connections_and_a_closed_server() {
        let addr = std_echo_server(20);
        let mut phases = Vec::new();
        let r = echo_pingpong(&cfg(Target::Tcp(addr), 3, Some(100)), |p| phases.push(p)).unwrap();
        assert_eq!(phases, [Phase::MeasureStart, Phase::MeasureEnd]);
        assert_eq!((r.ops, r.latency_ns.len(), r.idle_conns()), (100, 100, 0));
        assert_eq!(r.per_conn.iter().sum::<u64>(), 100);
        // Fewer round trips than connections: some stay unused.
        let r = echo_pingpong(&cfg(Target::Tcp(addr), 3, Some(2)), |_| {}).unwrap();
        assert_eq!((r.ops, r.idle_conns()), (2, 1));
        assert!(echo_pingpong(&cfg(Target::Tcp(addr), 3, Some(0)), |_| {}).is_err());
        assert_eq!(
            idle_conns(addr, 5, 16, Duration::from_secs(5))
                .unwrap()
                .len(),
            5
        );
        assert!(idle_conns(addr, 0, 16, Duration::from_secs(1)).is_err());

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || drop(l.accept().unwrap()));
        let err = echo_pingpong(&cfg(Target::Tcp(addr), 1, None), |_| {}).unwrap_err();
        t.join().unwrap();
        use io::ErrorKind::*;
        assert!(
            matches!(err.kind(), UnexpectedEof | ConnectionReset | BrokenPipe),
            "{err}"
        );
    }
}
