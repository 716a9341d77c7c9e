//! The `bulk` workload: one TCP connection streaming through a byte-echo
//! server, measured in MB/s (1 MB = 10^6 bytes) and server CPU per MB.
//!
//! The load generator keeps writing `chunk`-byte pieces of a known byte
//! stream (see [`Pattern`]) while reading the echo back and checking every
//! byte of it. The bytes written but not yet echoed are bounded by
//! `in_flight`, so the client never stops reading while the server, whose
//! writes block on a full socket, stops reading in turn: no deadlock
//! against the server's back-pressure, whatever its buffer sizes.
//!
//! ```text
//!  stream offset:  0 ........ received ........ sent ........>
//!                  |  echoed  |  in flight      |  not yet written
//!                             |<- <= in_flight ->|
//! ```
//!
//! Every peer that echoes bytes serves it unchanged: nothing in it is
//! line-based or message-based.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::loadgen::Phase;
use crate::peers::Peer;
use crate::suite::Sample;
use crate::workload::{self, field, parse_kv, RoundConfig, Transport, Workload};

/// Default bytes per write.
pub const CHUNK: usize = 64 * 1024;
/// Default bound on the bytes written and not yet echoed.
pub const IN_FLIGHT: usize = 1 << 20;

/// A byte stream the receiver can check at any offset: byte `i` is
/// `period_bytes[i % period]`, pseudo-random bytes with a period longer
/// than the bytes ever in flight, so a lost, repeated or reordered piece
/// shows as a mismatch.
///
/// The bytes are stored twice in a row, so the `len <= period` bytes from
/// any offset are one contiguous slice (written without a copy).
#[derive(Clone, Debug)]
pub struct Pattern {
    bytes: Vec<u8>,
    period: usize,
}

impl Pattern {
    /// A pattern of period `period` (at least 1).
    pub fn new(period: usize) -> Pattern {
        let period = period.max(1);
        let mut bytes = Vec::with_capacity(2 * period);
        // xorshift64*: fast, and no period of its own that short.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while bytes.len() < period {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            let take = word.len().min(period - bytes.len());
            bytes.extend_from_slice(&word[..take]);
        }
        bytes.extend_from_within(..period);
        Pattern { bytes, period }
    }

    /// The period for a stream of `chunk`-byte reads and writes with at
    /// most `in_flight` bytes unechoed: longer than any shift the echo
    /// could show, and than any one read or write.
    pub fn period_for(chunk: usize, in_flight: usize) -> usize {
        in_flight.max(chunk) + chunk + 1
    }

    pub fn period(&self) -> usize {
        self.period
    }

    /// The `len` bytes of the stream from `offset` (`len` at most the period).
    pub fn at(&self, offset: u64, len: usize) -> &[u8] {
        assert!(len <= self.period, "{len} bytes exceed the period");
        let start = (offset % self.period as u64) as usize;
        &self.bytes[start..start + len]
    }

    /// Checks that `got` is the stream from `offset`; the error names the
    /// first byte that differs.
    pub fn check(&self, offset: u64, got: &[u8]) -> io::Result<()> {
        let want = self.at(offset, got.len());
        match got.iter().zip(want).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(i) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the echo differs from the bytes sent at stream offset {}",
                    offset + i as u64
                ),
            )),
        }
    }
}

/// Settings of the bulk client.
#[derive(Clone, Debug)]
pub struct Bulk {
    pub addr: SocketAddr,
    /// Bytes per write (and the read buffer's size).
    pub chunk: usize,
    /// Bytes written and not yet echoed, at most.
    pub in_flight: usize,
    pub warmup: Duration,
    pub secs: Duration,
    /// Fixed-size run instead of the timed window: one `in_flight` worth of
    /// bytes as a warm-up, then exactly this many bytes; nothing is in
    /// flight when `on_phase` is called (`warmup` and `secs` are unused).
    pub count: Option<u64>,
}

/// What the bulk client measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkReport {
    /// Bytes echoed (and checked) in the window.
    pub bytes: u64,
    pub window: Duration,
    /// The client's `read` and `write` calls that moved bytes in the window.
    pub reads: u64,
    pub writes: u64,
}

impl BulkReport {
    /// Echoed MB (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.window.as_secs_f64()
    }
}

/// The client's one connection and where the stream stands.
struct Stream {
    socket: TcpStream,
    pattern: Pattern,
    chunk: usize,
    in_flight: u64,
    /// Bytes written so far, and the most that may be written.
    sent: u64,
    limit: u64,
    /// Bytes echoed and checked so far.
    received: u64,
    buf: Vec<u8>,
    reads: u64,
    writes: u64,
}

impl Stream {
    /// Writes while the in-flight bound and the limit allow; stops at
    /// WouldBlock. True if anything was written.
    fn pump_writes(&mut self) -> io::Result<bool> {
        let mut wrote = false;
        loop {
            let room = self.in_flight - (self.sent - self.received);
            let n = (self.chunk as u64).min(room).min(self.limit - self.sent) as usize;
            if n == 0 {
                return Ok(wrote);
            }
            match self.socket.write(self.pattern.at(self.sent, n)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    self.sent += k as u64;
                    self.writes += 1;
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(wrote),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and checks until WouldBlock. True if anything was read.
    fn pump_reads(&mut self) -> io::Result<bool> {
        let mut got = false;
        loop {
            match self.socket.read(&mut self.buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                Ok(n) => {
                    if self.received + n as u64 > self.sent {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the server sent more bytes than it was sent",
                        ));
                    }
                    self.pattern.check(self.received, &self.buf[..n])?;
                    self.received += n as u64;
                    self.reads += 1;
                    got = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and writes until neither makes progress: then the socket is
    /// drained and every write either blocked or waits for echoes (so the
    /// next edge will come).
    fn pump(&mut self) -> io::Result<()> {
        loop {
            let read = self.pump_reads()?;
            let wrote = self.pump_writes()?;
            if !read && !wrote {
                return Ok(());
            }
        }
    }

    /// Ends the stream cleanly: no more writes, every byte in flight
    /// echoed, then a half-close and the server's end of stream, so the
    /// server never writes into a closed connection (a server that does
    /// not ignore SIGPIPE would die of it). Bounded by `deadline`.
    fn close(&mut self, poll: &mut Poll, events: &mut Events, deadline: Instant) -> io::Result<()> {
        self.limit = self.sent;
        self.run_until(poll, events, self.sent, Some(deadline))?;
        if self.received < self.sent {
            return Ok(());
        }
        self.socket.shutdown(std::net::Shutdown::Write)?;
        let mut byte = [0u8; 1];
        loop {
            match self.socket.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the server sent more bytes than it was sent",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            match poll.poll(events, Some(deadline - now)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => r?,
            }
        }
    }

    /// Streams until `received` reaches `until` (or `deadline` passes).
    fn run_until(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        until: u64,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        self.pump()?;
        while self.received < until {
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(());
                    }
                    Some(d - now)
                }
                None => None,
            };
            match poll.poll(events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r?,
            }
            if !events.is_empty() {
                self.pump()?;
            }
        }
        Ok(())
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the clean end of the stream may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams through the echo server at `cfg.addr`: a warm-up, then the
/// measured window (or the fixed-size run), calling `on_phase` at its start
/// and end; then ends the stream cleanly (every byte in flight echoed, a
/// half-close, the server's end of stream; at most 10 s).
pub fn bulk(cfg: &Bulk, mut on_phase: impl FnMut(Phase)) -> io::Result<BulkReport> {
    if cfg.chunk == 0 || cfg.in_flight == 0 || cfg.count == Some(0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "chunk, in_flight and count must be at least 1",
        ));
    }
    let std = StdTcpStream::connect_timeout(&cfg.addr, CONNECT_TIMEOUT)?;
    std.set_nodelay(true)?;
    std.set_nonblocking(true)?;
    let mut socket = TcpStream::from_std(std);
    let mut poll = Poll::new()?;
    poll.registry().register(
        &mut socket,
        Token(0),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let mut s = Stream {
        socket,
        pattern: Pattern::new(Pattern::period_for(cfg.chunk, cfg.in_flight)),
        chunk: cfg.chunk,
        in_flight: cfg.in_flight as u64,
        sent: 0,
        limit: u64::MAX,
        received: 0,
        buf: vec![0; cfg.chunk],
        reads: 0,
        writes: 0,
    };
    let mut events = Events::with_capacity(16);
    if let Some(count) = cfg.count {
        // Warm-up: one in-flight window's worth, fully echoed.
        s.limit = cfg.in_flight as u64;
        s.run_until(&mut poll, &mut events, s.limit, None)?;
        on_phase(Phase::MeasureStart);
        let (start, from, reads, writes) = (Instant::now(), s.received, s.reads, s.writes);
        s.limit = s.sent + count;
        s.run_until(&mut poll, &mut events, s.limit, None)?;
        let window = start.elapsed();
        on_phase(Phase::MeasureEnd);
        let report = BulkReport {
            bytes: s.received - from,
            window,
            reads: s.reads - reads,
            writes: s.writes - writes,
        };
        // The system call pass stops the server before letting the client
        // go on: the connection may be gone, and the figures are in.
        let _ = s.close(&mut poll, &mut events, Instant::now() + CLOSE_TIMEOUT);
        return Ok(report);
    }
    let measure_at = Instant::now() + cfg.warmup;
    s.run_until(&mut poll, &mut events, u64::MAX, Some(measure_at))?;
    on_phase(Phase::MeasureStart);
    let (start, from, reads, writes) = (Instant::now(), s.received, s.reads, s.writes);
    s.run_until(&mut poll, &mut events, u64::MAX, Some(start + cfg.secs))?;
    let end = Instant::now();
    on_phase(Phase::MeasureEnd);
    if s.received == from {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no byte was echoed in the measured window",
        ));
    }
    let report = BulkReport {
        bytes: s.received - from,
        window: end - start,
        reads: s.reads - reads,
        writes: s.writes - writes,
    };
    s.close(&mut poll, &mut events, Instant::now() + CLOSE_TIMEOUT)?;
    Ok(report)
}

/// The `loadgen` arguments of the bulk workload (the target and the span
/// are added per round).
pub fn workload(chunk: usize, in_flight: usize) -> Workload {
    Workload::new(
        Transport::Tcp,
        "bulk",
        &[("chunk", chunk), ("in-flight", in_flight)],
    )
}

/// Runs one timed bulk round against `peer` (one operation: one MB echoed);
/// every process started here is killed before this returns.
pub fn run_round(
    peer: &Peer,
    chunk: usize,
    in_flight: usize,
    cfg: &RoundConfig,
) -> io::Result<Sample> {
    let window = workload::measured_round(peer, &workload(chunk, in_flight), cfg)?;
    let kv = parse_kv(&window.result);
    let mb = field::<f64>(&kv, "ops")? / 1e6;
    let mut s = window.sample(mb, field(&kv, "rate")?);
    if window.both_idle() {
        s.warnings.push(workload::both_idle_warning());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn pattern_slices_wrap_and_check() {
        let p = Pattern::new(1000);
        assert_eq!(p.period(), 1000);
        assert_eq!(p.at(0, 10), p.at(1000, 10));
        assert_eq!(p.at(995, 10)[5..], p.at(0, 5)[..]);
        assert!(p.check(123, p.at(123, 500)).is_ok());
        // A shift of a few bytes, or of one byte, is seen.
        assert!(p.check(123, p.at(127, 500)).is_err());
        let mut bad = p.at(7, 100).to_vec();
        bad[42] ^= 0x80;
        let e = p.check(7, &bad).unwrap_err();
        assert!(e.to_string().contains("offset 49"), "{e}");
        assert!(Pattern::period_for(64, 1 << 20) > 1 << 20);
        assert!(Pattern::period_for(1 << 20, 64) > 2 << 20);
    }

    /// A blocking echo server with a small buffer, so the client's
    /// in-flight bound and the server's back-pressure both matter; `corrupt`
    /// flips one byte after that many bytes.
    fn echo_server(corrupt: Option<usize>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut buf = [0u8; 1500];
                    let mut seen = 0usize;
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if let Some(at) = corrupt {
                            if (seen..seen + n).contains(&at) {
                                buf[at - seen] ^= 1;
                            }
                        }
                        seen += n;
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn cfg(addr: SocketAddr) -> Bulk {
        Bulk {
            addr,
            chunk: 16 * 1024,
            in_flight: 64 * 1024,
            warmup: Duration::from_millis(20),
            secs: Duration::from_millis(150),
            count: None,
        }
    }

    #[test]
    fn ends_the_stream_cleanly() {
        // A server that echoes, and reports how its connection ended: the
        // client must let it write every echo, then half-close.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut echoed = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Ok(echoed),
                    Ok(n) => {
                        s.write_all(&buf[..n])?;
                        echoed += n as u64;
                    }
                    Err(e) => return Err(e),
                }
            }
        });
        let mut phases = Vec::new();
        let r = bulk(&cfg(addr), |p| phases.push(p)).unwrap();
        assert_eq!(phases, [Phase::MeasureStart, Phase::MeasureEnd]);
        assert!(r.bytes > 0 && r.reads > 0 && r.writes > 0 && r.mb_per_sec() > 0.0);
        let echoed: io::Result<u64> = server.join().unwrap();
        assert!(echoed.unwrap() > 0);
    }

    #[test]
    fn a_corrupted_echo_is_an_error() {
        // Past the warm-up, inside the counted part.
        let c = Bulk {
            count: Some(1 << 20),
            ..cfg(echo_server(Some(300_000)))
        };
        let e = bulk(&c, |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("offset 300000"), "{e}");
    }

    #[test]
    fn a_closed_server_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || drop(l.accept().unwrap()));
        let e = bulk(&cfg(addr), |_| {}).unwrap_err();
        t.join().unwrap();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            ),
            "{e}"
        );
    }
}
