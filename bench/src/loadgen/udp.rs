//! The UDP echo workload: sockets each with one datagram in flight, resent
//! when its echo is late, every echo checked.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::Poll;

use super::{invalid, pump, register, run, Phase, Report, Slot, Span, Window};

/// Settings of the UDP echo workload.
#[derive(Clone, Debug)]
pub struct UdpEcho {
    pub addr: SocketAddr,
    /// Client sockets, each with one datagram in flight.
    pub socks: usize,
    /// Bytes per datagram (at least 9: a sequence number, filler, `\n`).
    pub size: usize,
    /// A datagram whose echo has not come back after this long is counted
    /// as lost and sent again (same sequence number).
    pub resend_after: Duration,
    pub span: Span,
}

/// The datagram with sequence number `seq`: `seq` (8 bytes, little
/// endian), then filler, then `\n`.
fn fill_datagram(buf: &mut [u8], seq: u64) {
    let n = buf.len();
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..n - 1].iter_mut().enumerate() {
        *b = b'a' + ((i as u64 + seq) % 26) as u8;
    }
    buf[n - 1] = b'\n';
}

struct Dgram {
    socket: UdpSocket,
    msg: Vec<u8>,
    /// One byte more than a datagram, to see an echo that is too long.
    buf: Vec<u8>,
    check: Vec<u8>,
    seq: u64,
    resend_after: Duration,
    /// First send of the current datagram (for the latency).
    sent_at: Instant,
    /// Last (re)send of it (for the resend timer).
    last_send: Instant,
    /// The last send hit WouldBlock: send again when writable.
    unsent: bool,
    busy: bool,
}

impl Dgram {
    /// Sends the current datagram (or marks it unsent on WouldBlock).
    fn send(&mut self) -> io::Result<()> {
        self.last_send = Instant::now();
        self.unsent = !pump(|| {
            let n = self.socket.send(&self.msg)?;
            if n != self.msg.len() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok((n, true))
        })?;
        Ok(())
    }

    /// Reads datagrams until WouldBlock; true if the echo of the current
    /// one came. Late duplicates of earlier (resent) datagrams are skipped;
    /// anything else is an error.
    fn drain(&mut self) -> io::Result<bool> {
        let mut echoed = false;
        loop {
            let n = match self.socket.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(echoed),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let got = &self.buf[..n];
            if got == self.msg.as_slice() {
                echoed = true;
                continue;
            }
            let stale = n == self.msg.len() && {
                let seq = u64::from_le_bytes(got[..8].try_into().expect("8 bytes"));
                fill_datagram(&mut self.check, seq);
                seq < self.seq && got == self.check.as_slice()
            };
            if !stale {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the echo ({n} bytes) is neither the datagram sent ({} bytes) nor an earlier one",
                        self.msg.len()
                    ),
                ));
            }
        }
    }
}

impl Slot for Dgram {
    fn ready(&mut self, i: usize, w: &mut Window) -> io::Result<()> {
        if self.unsent {
            self.send()?;
        }
        // Edge-triggered: `drain` reads until WouldBlock.
        if self.busy {
            if !self.drain()? {
                return Ok(());
            }
            w.record(i, 1, Some(self.sent_at));
            self.busy = false;
        }
        if w.take(1) == 1 {
            self.busy = true;
            self.seq += 1;
            fill_datagram(&mut self.msg, self.seq);
            self.sent_at = Instant::now();
            self.send()?;
        }
        Ok(())
    }

    fn tick(&mut self, _: usize, now: Instant, w: &mut Window) -> io::Result<()> {
        if self.busy && now.duration_since(self.last_send) >= self.resend_after {
            w.lost();
            self.send()?;
        }
        Ok(())
    }
}

/// UDP echo: each of `socks` sockets (connected to the server) sends one
/// `size`-byte datagram, waits for its echo, and sends the next one. An
/// echo missing for `resend_after` counts as lost and the datagram is sent
/// again, so a loss slows the run but never stalls it.
pub fn udp_echo(cfg: &UdpEcho, on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    if cfg.socks == 0 || cfg.size < 9 {
        return Err(invalid("socks must be at least 1 and size at least 9"));
    }
    let mut poll = Poll::new()?;
    let mut socks = (0..cfg.socks)
        .map(|i| {
            let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
            socket.connect(cfg.addr)?;
            Ok(Dgram {
                socket: register(&poll, socket, i)?,
                msg: vec![0; cfg.size],
                buf: vec![0; cfg.size + 1],
                check: vec![0; cfg.size],
                // Sequence numbers of different sockets never meet (each gets
                // only its own echoes); distinct ones only ease debugging.
                seq: (i as u64) << 40,
                resend_after: cfg.resend_after,
                sent_at: Instant::now(),
                last_send: Instant::now(),
                unsent: false,
                busy: false,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    run(&mut poll, &mut socks, &cfg.span, 1, on_phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// A blocking UDP echo server that drops the first `drop_first`
    /// datagrams, echoes every other one twice if `twice`, with one bit
    /// flipped if `corrupt`.
    fn std_udp_echo(drop_first: usize, twice: bool, corrupt: bool) -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            for seen in 1.. {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    return;
                };
                buf[n / 2] ^= u8::from(corrupt);
                for _ in 0..usize::from(seen > drop_first) * (1 + usize::from(twice)) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        });
        addr
    }

    #[test]
    fn udp_survives_losses_and_duplicates_but_not_a_wrong_echo() {
        let mut b = [0u8; 12];
        fill_datagram(&mut b, 0x0102);
        assert_eq!((&b[..8], b[11]), (&[2, 1, 0, 0, 0, 0, 0, 0][..], b'\n'));
        // (4, true): the first datagram of every socket is dropped: each is
        // resent during the warm-up, so the window must not stall.
        for (drop_first, twice) in [(0, false), (4, true)] {
            let cfg = UdpEcho {
                addr: std_udp_echo(drop_first, twice, false),
                socks: 4,
                size: 64,
                resend_after: Duration::from_millis(20),
                span: crate::loadgen::tests::span(None),
            };
            let r = udp_echo(&cfg, |_| {}).unwrap();
            // Without drops nothing is lost but what a scheduling hiccup of over 20 ms makes
            // look lost (a busy test machine: at most a resend per socket per hiccup), not
            // a share of the echoes.
            assert!(
                r.ops > 0 && (r.lost * 10 <= r.ops || drop_first > 0),
                "{r:?}"
            );
            assert_eq!((r.per_conn.len(), r.idle_conns()), (4, 0));
            let cfg = UdpEcho {
                addr: std_udp_echo(0, false, true),
                ..cfg
            };
            let err = udp_echo(&cfg, |_| {}).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }
}
