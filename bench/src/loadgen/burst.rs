//! The bursty echo workload: connections that are mostly quiet. Each connection, as a client
//! of a chat or game server does, sends a burst of `burst` messages (one write each, back to
//! back), waits for every echo, then thinks for a random time (exponentially distributed,
//! mean `think`, as independent users are) before its next burst. At any moment only part of
//! the connections has a burst in flight, so the server sees a changing subset of them per
//! wait, sleeps between bursts when it keeps up, and finds a connection's state cold again
//! at its next burst: what a ping-pong of always-busy connections never shows.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Poll;

use super::{connect, invalid, pump, register, run, Phase, Report, Slot, Span, Window};

/// Settings of the bursty echo workload (TCP).
#[derive(Clone, Debug)]
pub struct Bursts {
    pub addr: SocketAddr,
    pub conns: usize,
    /// Bytes per message (the last one is `\n`).
    pub size: usize,
    /// Messages per burst.
    pub burst: usize,
    /// Mean think time between a burst's last echo and the next burst.
    pub think: Duration,
    pub span: Span,
}

/// Longest think time drawn, in means (the exponential's tail is cut there).
const THINK_CAP: f64 = 10.0;

/// One connection: a burst in flight, or thinking.
struct Client {
    stream: TcpStream,
    size: usize,
    burst: usize,
    think: Duration,
    /// The burst: `n` messages of `size` bytes, one after the other.
    msg: Vec<u8>,
    /// Messages in the burst in flight (fewer than `burst` only at the end of a phase).
    n: usize,
    written: usize,
    buf: Vec<u8>,
    read: usize,
    sent_at: Instant,
    seq: u64,
    busy: bool,
    /// Thinking until then (no burst in flight).
    resume: Option<Instant>,
    /// xorshift64* state, seeded per connection.
    rng: u64,
}

impl Client {
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (x as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// An exponentially distributed think time, mean `think`, cut at [`THINK_CAP`] means.
    fn think_time(&mut self) -> Duration {
        let d = (-self.uniform().ln()).min(THINK_CAP);
        self.think.mul_f64(d)
    }

    /// Writes what is left of the burst, one message per write; stops at WouldBlock.
    fn flush(&mut self) -> io::Result<()> {
        let total = self.n * self.size;
        let (msg, written, stream, size) =
            (&self.msg, &mut self.written, &mut self.stream, self.size);
        if *written < total {
            pump(|| {
                // Up to the end of the current message: one write per message, as an
                // application that sends them one by one does.
                let end = (*written / size + 1) * size;
                let n = stream.write(&msg[*written..end])?;
                *written += n;
                Ok((n, *written == total))
            })?;
        }
        Ok(())
    }

    /// Starts a burst if the phase allows one.
    fn start(&mut self, w: &mut Window) -> io::Result<()> {
        let n = w.take(self.burst as u64) as usize;
        if n == 0 {
            return Ok(());
        }
        self.seq += 1;
        let size = self.size;
        for (m, chunk) in self.msg.chunks_mut(size).take(n).enumerate() {
            for (k, b) in chunk[..size - 1].iter_mut().enumerate() {
                *b = b'a' + ((k as u64 + self.seq + m as u64) % 26) as u8;
            }
            chunk[size - 1] = b'\n';
        }
        (self.n, self.written, self.read, self.busy) = (n, 0, 0, true);
        self.sent_at = Instant::now();
        self.flush()
    }
}

impl Slot for Client {
    fn ready(&mut self, i: usize, w: &mut Window) -> io::Result<()> {
        if self.busy {
            self.flush()?;
            let total = self.n * self.size;
            let (buf, read, stream) = (&mut self.buf, &mut self.read, &mut self.stream);
            let full = pump(|| {
                let n = stream.read(&mut buf[*read..total])?;
                *read += n;
                Ok((n, *read == total))
            })?;
            if !full {
                return Ok(());
            }
            if self.buf[..total] != self.msg[..total] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the echo differs from the burst sent",
                ));
            }
            // Every message of the burst counts; the latency is the burst's.
            w.record(i, self.n as u64, Some(self.sent_at));
            self.busy = false;
            let at = Instant::now() + self.think_time();
            self.resume = Some(at);
            w.wake_at(i, at);
            return Ok(());
        }
        match self.resume {
            // Readiness (or the first kick) while thinking: not yet.
            Some(at) if Instant::now() < at => Ok(()),
            _ => {
                self.resume = None;
                self.start(w)
            }
        }
    }
}

/// Bursty echo over TCP (see the module documentation). Operations are messages echoed;
/// latencies are per burst (first write to last echoed byte).
pub fn echo_bursts(cfg: &Bursts, on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    if cfg.conns == 0 || cfg.size == 0 || cfg.burst == 0 {
        return Err(invalid("conns, size and burst must be at least 1"));
    }
    let mut poll = Poll::new()?;
    let mut slots = (0..cfg.conns)
        .map(|i| {
            Ok(Client {
                stream: register(&poll, connect(&cfg.addr)?, i)?,
                size: cfg.size,
                burst: cfg.burst,
                think: cfg.think,
                msg: vec![0; cfg.size * cfg.burst],
                n: 0,
                written: 0,
                buf: vec![0; cfg.size * cfg.burst],
                read: 0,
                sent_at: Instant::now(),
                seq: i as u64,
                busy: false,
                resume: None,
                rng: 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let warm = (cfg.conns * cfg.burst) as u64;
    run(&mut poll, &mut slots, &cfg.span, warm, on_phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A blocking echo server on a thread, one thread per connection.
    fn echo_server(conns: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming().take(conns) {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn counts_every_message_of_every_burst_and_thinks_between_bursts() {
        let cfg = Bursts {
            addr: echo_server(4),
            conns: 4,
            size: 64,
            burst: 8,
            think: Duration::from_millis(20),
            span: Span {
                warmup: Duration::ZERO,
                secs: Duration::ZERO,
                count: Some(160),
            },
        };
        let started = Instant::now();
        let r = echo_bursts(&cfg, |_| {}).unwrap();
        assert_eq!((r.ops, r.idle_conns()), (160, 0));
        // 20 bursts over 4 connections after a warm-up burst each: each connection thinks
        // about 5 times (mean 20 ms) in the counted part alone.
        assert_eq!(r.latency_ns.len(), 20, "one latency per burst");
        assert!(
            started.elapsed() >= Duration::from_millis(20),
            "no think time at all"
        );
    }
}
