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
//! line-based or message-based. The operations counted are bytes.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Poll;

use super::{connect, invalid, pump, register, run, Phase, Report, Slot, Span, Window};

/// Default bytes per write.
pub const CHUNK: usize = 64 * 1024;
/// Default bound on the bytes written and not yet echoed.
pub const IN_FLIGHT: usize = 1 << 20;

/// A byte stream the receiver can check at any offset: byte `i` is
/// `period_bytes[i % period]`, pseudo-random bytes with a period longer
/// than the bytes ever in flight, so a lost, repeated or reordered piece
/// shows as a mismatch. The bytes are stored twice in a row, so the
/// `len <= period` bytes from any offset are one contiguous slice.
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
    pub span: Span,
}

/// The client's one connection and where the stream stands.
struct Stream {
    socket: TcpStream,
    pattern: Pattern,
    chunk: u64,
    in_flight: u64,
    /// Bytes written so far, and the most that may be written before asking
    /// the window for more.
    sent: u64,
    limit: u64,
    /// Bytes echoed and checked so far.
    received: u64,
    buf: Vec<u8>,
}

fn more_than_sent() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the server sent more bytes than it was sent",
    )
}

impl Slot for Stream {
    /// Reads (checking) and writes (within the bounds) until neither makes
    /// progress: then the socket is drained and every write either blocked
    /// or waits for echoes, so the next edge will come.
    fn ready(&mut self, i: usize, w: &mut Window) -> io::Result<()> {
        loop {
            let before = (self.sent, self.received);
            let s = &mut *self;
            pump(|| {
                let n = s.socket.read(&mut s.buf)?;
                if s.received + n as u64 > s.sent {
                    return Err(more_than_sent());
                }
                s.pattern.check(s.received, &s.buf[..n])?;
                s.received += n as u64;
                w.record(i, n as u64, None);
                Ok((n, false))
            })?;
            loop {
                let room = (self.in_flight - (self.sent - self.received)).min(self.chunk);
                if self.limit == self.sent {
                    self.limit += w.take(room);
                }
                let n = room.min(self.limit - self.sent) as usize;
                if n == 0 {
                    break;
                }
                match self.socket.write(self.pattern.at(self.sent, n)) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(k) => self.sent += k as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if (self.sent, self.received) == before {
                return Ok(());
            }
        }
    }

    /// Once every byte in flight is echoed: a half-close, then the server's
    /// end of stream, so the server never writes into a closed connection (a
    /// server that does not ignore SIGPIPE would die of it).
    fn close(&mut self) -> io::Result<()> {
        if self.received < self.sent {
            return Ok(());
        }
        self.socket.shutdown(std::net::Shutdown::Write)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.socket.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(more_than_sent()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Streams through the echo server at `cfg.addr` for `cfg.span` (the
/// fixed-size warm-up: `in_flight` bytes); timed, it then ends the stream
/// cleanly (every byte in flight echoed, a half-close, the server's end of
/// stream).
pub fn bulk(cfg: &Bulk, on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    if cfg.chunk == 0 || cfg.in_flight == 0 {
        return Err(invalid("chunk and in_flight must be at least 1"));
    }
    let mut poll = Poll::new()?;
    // The period: longer than any shift the echo could show, and than any
    // one read or write.
    let period = cfg.in_flight.max(cfg.chunk) + cfg.chunk + 1;
    let mut s = [Stream {
        socket: register(&poll, connect(&cfg.addr)?, 0)?,
        pattern: Pattern::new(period),
        chunk: cfg.chunk as u64,
        in_flight: cfg.in_flight as u64,
        sent: 0,
        limit: 0,
        received: 0,
        buf: vec![0; cfg.chunk],
    }];
    run(&mut poll, &mut s, &cfg.span, cfg.in_flight as u64, on_phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn pattern_slices_wrap_and_check() {
        let p = Pattern::new(1000);
        assert_eq!(p.at(0, 10), p.at(1000, 10));
        assert_eq!(p.at(995, 10)[5..], p.at(0, 5)[..]);
        assert!(p.check(123, p.at(123, 500)).is_ok());
        // A shift of a few bytes, or of one byte, is seen.
        assert!(p.check(123, p.at(127, 500)).is_err());
        let mut bad = p.at(7, 100).to_vec();
        bad[42] ^= 0x80;
        let e = p.check(7, &bad).unwrap_err();
        assert!(e.to_string().contains("offset 49"), "{e}");
    }

    /// A blocking echo server with a small buffer, so the client's in-flight
    /// bound and the server's back-pressure both matter; `corrupt` flips one
    /// byte after that many bytes. Its thread returns how many bytes it
    /// echoed once the client half-closed.
    fn echo_server(corrupt: Option<usize>) -> (SocketAddr, thread::JoinHandle<io::Result<usize>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept()?;
            let mut buf = [0u8; 1500];
            let mut seen = 0usize;
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    return Ok(seen);
                }
                if let Some(at) = corrupt.filter(|at| (seen..seen + n).contains(at)) {
                    buf[at - seen] ^= 1;
                }
                seen += n;
                s.write_all(&buf[..n])?;
            }
        });
        (addr, t)
    }

    fn cfg(addr: SocketAddr, count: Option<u64>) -> Bulk {
        Bulk {
            addr,
            chunk: 16 * 1024,
            in_flight: 64 * 1024,
            span: crate::loadgen::tests::span(count),
        }
    }

    #[test]
    fn ends_the_stream_cleanly() {
        // The client must let the server write every echo, then half-close.
        let (addr, server) = echo_server(None);
        let mut phases = Vec::new();
        let r = bulk(&cfg(addr, None), |p| phases.push(p)).unwrap();
        assert_eq!(phases, [Phase::MeasureStart, Phase::MeasureEnd]);
        assert!(r.ops > 0 && r.per_sec() > 0.0);
        assert!(server.join().unwrap().unwrap() as u64 >= r.ops);
    }

    #[test]
    fn counted_and_corrupted_and_closed() {
        let (addr, _) = echo_server(None);
        let r = bulk(&cfg(addr, Some(300_017)), |_| {}).unwrap();
        assert_eq!(r.ops, 300_017);
        // Past the warm-up, inside the counted part.
        let (addr, _) = echo_server(Some(300_000));
        let e = bulk(&cfg(addr, Some(1 << 20)), |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("offset 300000"), "{e}");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || drop(l.accept().unwrap()));
        let e = bulk(&cfg(addr, None), |_| {}).unwrap_err();
        t.join().unwrap();
        use io::ErrorKind::*;
        assert!(
            matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe),
            "{e}"
        );
    }
}
