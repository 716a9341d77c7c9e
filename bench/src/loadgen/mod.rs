//! The load generator's workloads. Deliberately built on plain `mio` (one
//! thread, edge-triggered readiness), neither on asyncnet nor on tokio, so it
//! favours no server.
//!
//! A workload runs a warm-up, then a measured window, and calls `on_phase`
//! at the start and at the end of that window (the `loadgen` binary prints
//! `measure-start` / `measure-end` there, which the runner uses to sample
//! the server's CPU time over exactly that window).
//!
//! The stream ping-pong also has a fixed-size mode (`count`): one round
//! trip per connection as a warm-up, then exactly `count` round trips, with
//! `on_phase` called while every connection is quiet (nothing in flight):
//! the system call pass ([`crate::syscalls`]) attaches `strace` to the
//! server in between and so counts the calls of exactly those round trips.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};

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

/// What a workload measured in its window.
#[derive(Clone, Debug)]
pub struct Report {
    /// Operations (round trips; TLS handshake: connections) completed inside the window.
    pub ops: u64,
    /// The window's actual length.
    pub window: Duration,
    /// Latency of those round trips, in nanoseconds.
    pub latency_ns: Histogram,
    /// Sum of those latencies, in nanoseconds (for the mean).
    pub latency_sum_ns: u128,
    /// Round trips completed in the window, per connection (fairness: a
    /// server that starves some connections shows zeros here).
    pub per_conn: Vec<u64>,
    /// UDP: datagrams resent in the window because no echo came back in
    /// time (lost, or very late). Always 0 for stream workloads.
    pub lost: u64,
    /// TLS handshakes: connections that failed in the window, and the first error.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// Mean latency in microseconds. With every connection always having
    /// one message in flight it is about `conns / per_sec()` (Little's law).
    pub fn mean_us(&self) -> f64 {
        if self.ops == 0 {
            return 0.0;
        }
        self.latency_sum_ns as f64 / self.ops as f64 / 1e3
    }

    /// Connections that completed no round trip in the window.
    pub fn idle_conns(&self) -> usize {
        self.per_conn.iter().filter(|&&n| n == 0).count()
    }
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
    pub warmup: Duration,
    pub secs: Duration,
    /// Fixed-size run instead of the timed window: after one round trip per
    /// connection, exactly this many round trips (`warmup` and `secs` are
    /// then unused); every connection is quiet when `on_phase` is called.
    pub count: Option<u64>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The warm-up, then the measured window: what is counted in it, and when
/// it starts and ends (every load generator's, TLS included).
pub(crate) struct Window {
    secs: Duration,
    measure_at: Instant,
    end_at: Instant,
    start: Option<Instant>,
    hist: Histogram,
    ops: u64,
    latency_sum_ns: u128,
    per_conn: Vec<u64>,
    lost: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Window {
    pub(crate) fn new(conns: usize, warmup: Duration, secs: Duration) -> Window {
        let measure_at = Instant::now() + warmup;
        Window {
            secs,
            measure_at,
            end_at: measure_at + secs,
            start: None,
            hist: histogram(),
            ops: 0,
            latency_sum_ns: 0,
            per_conn: vec![0; conns],
            lost: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Counts a failed operation (TLS handshakes), keeping the first error.
    pub(crate) fn error(&mut self, e: &io::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    /// Starts or ends the window when it is time (calling `on_phase`). At
    /// the end, returns the report, or an error if nothing completed.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        on_phase: &mut impl FnMut(Phase),
    ) -> Option<io::Result<Report>> {
        match self.start {
            None if now >= self.measure_at => {
                self.hist.reset();
                self.ops = 0;
                self.latency_sum_ns = 0;
                self.per_conn.iter_mut().for_each(|c| *c = 0);
                self.lost = 0;
                self.errors = 0;
                self.first_error = None;
                self.start = Some(now);
                self.end_at = now + self.secs;
                on_phase(Phase::MeasureStart);
                None
            }
            Some(start) if now >= self.end_at => {
                on_phase(Phase::MeasureEnd);
                if self.ops == 0 {
                    return Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing completed in the measured window",
                    )));
                }
                Some(Ok(Report {
                    ops: self.ops,
                    window: now - start,
                    latency_ns: std::mem::replace(&mut self.hist, histogram()),
                    latency_sum_ns: self.latency_sum_ns,
                    per_conn: std::mem::take(&mut self.per_conn),
                    lost: self.lost,
                    errors: self.errors,
                    first_error: self.first_error.take(),
                }))
            }
            _ => None,
        }
    }

    /// When `tick` has something to do next.
    fn next_deadline(&self) -> Instant {
        if self.start.is_some() {
            self.end_at
        } else {
            self.measure_at
        }
    }

    /// Counts an operation of connection `conn` (if inside the window).
    pub(crate) fn record(&mut self, conn: usize, sent_at: Instant, done: Instant) {
        if self.start.is_some() {
            let ns = (done - sent_at).as_nanos();
            self.ops += 1;
            self.per_conn[conn] += 1;
            self.latency_sum_ns += ns;
            self.hist
                .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
        }
    }

    fn in_window(&self) -> bool {
        self.start.is_some()
    }
}

/// Waits for events until `deadline` (none: no timeout). EINTR is no event.
fn poll_until(poll: &mut Poll, events: &mut Events, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    match poll.poll(events, Some(left)) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        r => r,
    }
}

struct Conn<S> {
    stream: S,
    msg: Vec<u8>,
    written: usize,
    buf: Vec<u8>,
    read: usize,
    sent_at: Instant,
    seq: u64,
}

impl<S: Read + Write> Conn<S> {
    fn new(stream: S, size: usize, seq: u64) -> Self {
        Conn {
            stream,
            msg: vec![0; size],
            written: 0,
            buf: vec![0; size],
            read: 0,
            sent_at: Instant::now(),
            seq,
        }
    }

    /// Fills `msg` with message number `seq` and resets the cursors.
    fn next_message(&mut self, now: Instant) {
        self.seq += 1;
        let n = self.msg.len();
        for (i, b) in self.msg[..n - 1].iter_mut().enumerate() {
            *b = b'a' + ((i as u64 + self.seq) % 26) as u8;
        }
        self.msg[n - 1] = b'\n';
        self.written = 0;
        self.read = 0;
        self.sent_at = now;
    }

    /// Writes what is left of the message; stops at WouldBlock.
    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.msg.len() {
            match self.stream.write(&self.msg[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads until the whole echo is in or WouldBlock; true when complete.
    fn fill(&mut self) -> io::Result<bool> {
        while self.read < self.buf.len() {
            match self.stream.read(&mut self.buf[self.read..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                Ok(n) => self.read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.buf != self.msg {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the echo differs from the message sent",
            ));
        }
        Ok(true)
    }
}

/// Echo ping-pong over TCP or a Unix stream socket: each of `conns`
/// connections sends one `size`-byte message, waits for all of it to come
/// back, and sends the next one.
pub fn echo_pingpong(cfg: &PingPong, on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    if cfg.conns == 0 || cfg.size == 0 || cfg.count == Some(0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "conns, size and count must be at least 1",
        ));
    }
    match &cfg.target {
        Target::Tcp(addr) => {
            let streams = (0..cfg.conns)
                .map(|_| {
                    let std = StdTcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?;
                    std.set_nodelay(true)?;
                    std.set_nonblocking(true)?;
                    Ok(TcpStream::from_std(std))
                })
                .collect::<io::Result<Vec<_>>>()?;
            pingpong_streams(streams, cfg, on_phase)
        }
        Target::Unix(path) => {
            let streams = (0..cfg.conns)
                .map(|_| {
                    let std = StdUnixStream::connect(path)?;
                    std.set_nonblocking(true)?;
                    Ok(UnixStream::from_std(std))
                })
                .collect::<io::Result<Vec<_>>>()?;
            pingpong_streams(streams, cfg, on_phase)
        }
    }
}

fn pingpong_streams<S: Read + Write + Source>(
    streams: Vec<S>,
    cfg: &PingPong,
    mut on_phase: impl FnMut(Phase),
) -> io::Result<Report> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, mut stream) in streams.into_iter().enumerate() {
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn::new(stream, cfg.size, i as u64));
    }
    if let Some(count) = cfg.count {
        return pingpong_counted(&mut poll, &mut conns, count, on_phase);
    }
    for c in &mut conns {
        c.next_message(Instant::now());
        c.flush()?;
    }

    let mut events = Events::with_capacity(1024);
    let mut window = Window::new(conns.len(), cfg.warmup, cfg.secs);
    loop {
        if let Some(report) = window.tick(Instant::now(), &mut on_phase) {
            return report;
        }
        poll_until(&mut poll, &mut events, window.next_deadline())?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            if c.written < c.msg.len() {
                c.flush()?;
            }
            // Edge-triggered: read until WouldBlock or a full echo. After a
            // full echo the socket is drained (one message in flight per
            // connection), so the next echo brings a new edge.
            if c.fill()? {
                let done = Instant::now();
                window.record(i, c.sent_at, done);
                c.next_message(done);
                c.flush()?;
            }
        }
    }
}

/// The fixed-size ping-pong: one round trip per connection (the server has
/// then accepted and served every connection), `on_phase(MeasureStart)`,
/// exactly `count` round trips, `on_phase(MeasureEnd)`; nothing is in
/// flight at either call.
fn pingpong_counted<S: Read + Write + Source>(
    poll: &mut Poll,
    conns: &mut [Conn<S>],
    count: u64,
    mut on_phase: impl FnMut(Phase),
) -> io::Result<Report> {
    drive(poll, conns, conns.len() as u64, |_, _, _| {})?;
    on_phase(Phase::MeasureStart);
    let start = Instant::now();
    let mut hist = histogram();
    let mut latency_sum_ns = 0u128;
    let mut per_conn = vec![0u64; conns.len()];
    drive(poll, conns, count, |i, sent, done| {
        let ns = (done - sent).as_nanos();
        hist.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
        latency_sum_ns += ns;
        per_conn[i] += 1;
    })?;
    let window = start.elapsed();
    on_phase(Phase::MeasureEnd);
    Ok(Report {
        ops: count,
        window,
        latency_ns: hist,
        latency_sum_ns,
        per_conn,
        lost: 0,
        errors: 0,
        first_error: None,
    })
}

/// Exactly `budget` round trips over `conns`: each connection starts one
/// while any are left to start; returns once all are complete, so every
/// connection is quiet. `record(conn, sent_at, done_at)` per round trip.
fn drive<S: Read + Write + Source>(
    poll: &mut Poll,
    conns: &mut [Conn<S>],
    budget: u64,
    mut record: impl FnMut(usize, Instant, Instant),
) -> io::Result<()> {
    let mut started = 0u64;
    let mut done = 0u64;
    let mut active = vec![false; conns.len()];
    for (c, a) in conns.iter_mut().zip(&mut active) {
        if started == budget {
            break;
        }
        c.next_message(Instant::now());
        c.flush()?;
        started += 1;
        *a = true;
    }
    let mut events = Events::with_capacity(1024);
    while done < budget {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        for ev in events.iter() {
            let i = ev.token().0;
            // A quiet connection has nothing to read (its last echo is
            // complete) nor to write: an event for it is only an edge.
            if !active[i] {
                continue;
            }
            let c = &mut conns[i];
            if c.written < c.msg.len() {
                c.flush()?;
            }
            if c.fill()? {
                let now = Instant::now();
                done += 1;
                record(i, c.sent_at, now);
                if started < budget {
                    c.next_message(now);
                    c.flush()?;
                    started += 1;
                } else {
                    active[i] = false;
                }
            }
        }
    }
    Ok(())
}

/// The `idle` workload: opens `conns` TCP connections to `addr` one after
/// another, each exchanging one `size`-byte echo (blocking, every step
/// bounded by `timeout`), and returns them open, with how long it took.
pub fn idle_conns(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    timeout: Duration,
) -> io::Result<(Vec<StdTcpStream>, Duration)> {
    if conns == 0 || size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "conns and size must be at least 1",
        ));
    }
    let started = Instant::now();
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
    Ok((out, started.elapsed()))
}

mod udp;
pub use udp::{udp_echo, UdpEcho};

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

    fn cfg(target: Target, conns: usize, count: Option<u64>) -> PingPong {
        let (warmup, secs) = (Duration::from_millis(50), Duration::from_millis(200));
        PingPong {
            target,
            conns,
            size: 64,
            warmup,
            secs,
            count,
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
    fn counted_pingpong_is_exact() {
        let addr = std_echo_server(6);
        let mut phases = Vec::new();
        let r = echo_pingpong(&cfg(Target::Tcp(addr), 3, Some(100)), |p| phases.push(p)).unwrap();
        assert_eq!(phases, [Phase::MeasureStart, Phase::MeasureEnd]);
        assert_eq!((r.ops, r.latency_ns.len(), r.idle_conns()), (100, 100, 0));
        assert_eq!(r.per_conn.iter().sum::<u64>(), 100);
        // Fewer round trips than connections: some stay unused.
        let r = echo_pingpong(&cfg(Target::Tcp(addr), 3, Some(2)), |_| {}).unwrap();
        assert_eq!((r.ops, r.idle_conns()), (2, 1));
        assert!(echo_pingpong(&cfg(Target::Tcp(addr), 3, Some(0)), |_| {}).is_err());
    }

    #[test]
    fn idle_connections_stay_open() {
        let addr = std_echo_server(5);
        let (conns, took) = idle_conns(addr, 5, 16, Duration::from_secs(5)).unwrap();
        assert_eq!(conns.len(), 5);
        assert!(took > Duration::ZERO);
        assert!(idle_conns(addr, 0, 16, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn detects_a_closed_server() {
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
