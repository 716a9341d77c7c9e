//! The load generator's workloads. Deliberately built on plain `mio` (one
//! thread, edge-triggered readiness), neither on asyncnet nor on tokio, so it
//! favours no server.
//!
//! A workload runs a warm-up, then a measured window, and calls `on_phase`
//! at the start and at the end of that window (the `loadgen` binary prints
//! `measure-start` / `measure-end` there, which the runner uses to sample
//! the server's CPU time over exactly that window).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::stats::Histogram;

/// Where the measured window is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    MeasureStart,
    MeasureEnd,
}

/// What a workload measured in its window.
#[derive(Clone, Debug)]
pub struct Report {
    /// Round trips completed inside the window.
    pub round_trips: u64,
    /// The window's actual length.
    pub window: Duration,
    /// Latency of those round trips, in nanoseconds.
    pub latency_ns: Histogram,
    /// Sum of those latencies, in nanoseconds (for the mean).
    pub latency_sum_ns: u128,
    /// Round trips completed in the window, per connection (fairness: a
    /// server that starves some connections shows zeros here).
    pub per_conn: Vec<u64>,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.round_trips as f64 / self.window.as_secs_f64()
    }

    /// Mean latency in microseconds. With every connection always having
    /// one message in flight it is about `conns / per_sec()` (Little's law).
    pub fn mean_us(&self) -> f64 {
        if self.round_trips == 0 {
            return 0.0;
        }
        self.latency_sum_ns as f64 / self.round_trips as f64 / 1e3
    }

    /// Connections that completed no round trip in the window.
    pub fn idle_conns(&self) -> usize {
        self.per_conn.iter().filter(|&&n| n == 0).count()
    }
}

/// Settings of the echo ping-pong workload.
#[derive(Clone, Debug)]
pub struct PingPong {
    pub addr: SocketAddr,
    pub conns: usize,
    /// Bytes per message (the last one is `\n`, so line-based echo servers
    /// work too).
    pub size: usize,
    pub warmup: Duration,
    pub secs: Duration,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Conn {
    stream: TcpStream,
    msg: Vec<u8>,
    written: usize,
    buf: Vec<u8>,
    read: usize,
    sent_at: Instant,
    seq: u64,
    /// Round trips completed in the measured window.
    window_rts: u64,
}

impl Conn {
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

/// Echo ping-pong: each of `conns` connections sends one `size`-byte
/// message, waits for all of it to come back, and sends the next one.
pub fn echo_pingpong(cfg: &PingPong, mut on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    if cfg.conns == 0 || cfg.size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "conns and size must be at least 1",
        ));
    }
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(cfg.conns);
    let now = Instant::now();
    for i in 0..cfg.conns {
        let std = StdTcpStream::connect_timeout(&cfg.addr, CONNECT_TIMEOUT)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            msg: vec![0; cfg.size],
            written: 0,
            buf: vec![0; cfg.size],
            read: 0,
            sent_at: now,
            seq: i as u64,
            window_rts: 0,
        });
    }
    for c in &mut conns {
        c.next_message(Instant::now());
        c.flush()?;
    }

    let mut events = Events::with_capacity(1024);
    let mut hist = Histogram::new();
    let mut round_trips = 0u64;
    let mut latency_sum_ns = 0u128;
    let measure_at = Instant::now() + cfg.warmup;
    let mut end_at = measure_at + cfg.secs;
    let mut window_start: Option<Instant> = None;
    loop {
        let now = Instant::now();
        match window_start {
            None if now >= measure_at => {
                hist.clear();
                round_trips = 0;
                latency_sum_ns = 0;
                conns.iter_mut().for_each(|c| c.window_rts = 0);
                window_start = Some(now);
                end_at = now + cfg.secs;
                on_phase(Phase::MeasureStart);
                continue;
            }
            Some(start) if now >= end_at => {
                on_phase(Phase::MeasureEnd);
                if round_trips == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no round trip completed in the measured window",
                    ));
                }
                return Ok(Report {
                    round_trips,
                    window: now - start,
                    latency_ns: hist,
                    latency_sum_ns,
                    per_conn: conns.iter().map(|c| c.window_rts).collect(),
                });
            }
            _ => {}
        }
        let next = if window_start.is_some() {
            end_at
        } else {
            measure_at
        };
        match poll.poll(&mut events, Some(next.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.written < c.msg.len() {
                c.flush()?;
            }
            // Edge-triggered: read until WouldBlock or a full echo. After a
            // full echo the socket is drained (one message in flight per
            // connection), so the next echo brings a new edge.
            if c.fill()? {
                let done = Instant::now();
                if window_start.is_some() {
                    let ns = (done - c.sent_at).as_nanos();
                    round_trips += 1;
                    c.window_rts += 1;
                    latency_sum_ns += ns;
                    hist.record(u64::try_from(ns).unwrap_or(u64::MAX));
                }
                c.next_message(done);
                c.flush()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A blocking thread-per-connection echo server, for testing the client.
    fn std_echo_server(conns: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming().take(conns) {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn pingpong_against_std_echo() {
        let addr = std_echo_server(3);
        let cfg = PingPong {
            addr,
            conns: 3,
            size: 64,
            warmup: Duration::from_millis(50),
            secs: Duration::from_millis(200),
        };
        let mut phases = Vec::new();
        let r = echo_pingpong(&cfg, |p| phases.push(p)).unwrap();
        assert_eq!(phases, [Phase::MeasureStart, Phase::MeasureEnd]);
        assert!(r.round_trips > 0);
        assert_eq!(r.latency_ns.count(), r.round_trips);
        assert_eq!(r.per_conn.len(), 3);
        assert_eq!(r.per_conn.iter().sum::<u64>(), r.round_trips);
        assert_eq!(r.idle_conns(), 0);
        assert!(r.mean_us() > 0.0);
        assert!(r.window >= Duration::from_millis(200));
        assert!(r.per_sec() > 0.0);
    }

    #[test]
    fn detects_a_closed_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || drop(l.accept().unwrap()));
        let cfg = PingPong {
            addr,
            conns: 1,
            size: 8,
            warmup: Duration::from_millis(10),
            secs: Duration::from_secs(5),
        };
        let err = echo_pingpong(&cfg, |_| {}).unwrap_err();
        t.join().unwrap();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );
    }
}
