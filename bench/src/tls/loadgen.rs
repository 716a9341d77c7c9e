//! The TLS load generator: plain mio (one thread, edge-triggered) driving rustls client
//! connections directly, so that it favours neither asyncnet nor tokio.
//!
//! Two workloads, each a warm-up then a measured window (with `on_phase` called at its start
//! and end, as in [`crate::loadgen`]):
//!
//! * [`Mode::Echo`]: `conns` TLS connections, each with one `size`-byte message in flight
//!   (its last byte is `\n`): write it, wait for the whole echo, check it, write the next.
//! * [`Mode::Handshake`]: `conns` slots in parallel, each repeating: connect, full handshake
//!   (the client never resumes a session), a 1-byte echo (so the server has finished its side
//!   of the handshake and the connection works), close_notify, wait for the server to close,
//!   close. Errors (a reset, a connection not done within [`HANDSHAKE_TIMEOUT`]) are counted
//!   and the slot starts over; the runner reports them.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::loadgen::{Phase, Report, Window};

/// A handshake slot's connection taking longer than this is abandoned (counted as an error).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The echo workload fails if no round trip completes for this long.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Ping-pong of `size`-byte messages.
    Echo { size: usize },
    /// Connect, handshake, 1-byte echo, close, repeat.
    Handshake,
}

/// What to run against whom.
#[derive(Clone, Debug)]
pub struct Settings {
    pub addr: SocketAddr,
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    pub mode: Mode,
    pub conns: usize,
    pub warmup: Duration,
    pub secs: Duration,
}

struct Conn {
    stream: TcpStream,
    tls: ClientConnection,
    /// When the current operation started.
    started: Instant,
    /// Echo bytes received for the message in flight.
    got: usize,
    /// Handshake mode: close_notify sent, waiting for the server to close.
    closing: bool,
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Conn {
    fn open(s: &Settings, poll: &Poll, token: Token) -> io::Result<Conn> {
        let mut stream = TcpStream::connect(s.addr)?;
        stream.set_nodelay(true)?;
        poll.registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        let tls =
            ClientConnection::new(s.config.clone(), s.server_name.clone()).map_err(tls_err)?;
        Ok(Conn {
            stream,
            tls,
            started: Instant::now(),
            got: 0,
            closing: false,
        })
    }

    /// Writes the session's records until none is left or the kernel is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.stream) {
                Ok(_) => {}
                // Still connecting, or the kernel is full: a writable event comes later.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                    ) =>
                {
                    return Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and decrypts everything the kernel has, appending plaintext to `plain`. Returns
    /// true at end of stream.
    fn receive(&mut self, plain: &mut Vec<u8>) -> io::Result<bool> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.tls.read_tls(&mut self.stream) {
                Ok(0) => return Ok(true),
                Ok(_) => {
                    self.tls.process_new_packets().map_err(tls_err)?;
                    loop {
                        match self.tls.reader().read(&mut buf) {
                            Ok(0) => break, // close_notify received
                            Ok(n) => plain.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The echo message of connection `i`: recognisable filler ending with `\n`.
fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..size).map(|k| b'a' + ((i + k) % 26) as u8).collect();
    if let Some(last) = m.last_mut() {
        *last = b'\n';
    }
    m
}

/// Runs the workload of `s`: warm-up, then the window.
///
/// # Errors
///
/// Echo: any connection error, a wrong echo, or no progress for [`STALL_TIMEOUT`].
/// Handshake: the first connection cannot even be opened, or nothing completed in the window.
pub fn run(s: &Settings, mut on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    if s.conns == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no connection"));
    }
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns = Vec::with_capacity(s.conns);
    let messages: Vec<Vec<u8>> = match s.mode {
        Mode::Echo { size } => (0..s.conns).map(|i| message(i, size)).collect(),
        Mode::Handshake => Vec::new(),
    };
    for i in 0..s.conns {
        let mut c = Conn::open(s, &poll, Token(i))?;
        start_op(s, &mut c, messages.get(i))?;
        conns.push(c);
    }
    let mut window = Window::new(s.conns, s.warmup, s.secs);
    let mut plain = Vec::new();
    let mut last_progress = Instant::now();
    loop {
        match poll.poll(&mut events, Some(Duration::from_millis(20))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i) else { continue };
            plain.clear();
            let r = match s.mode {
                Mode::Echo { .. } => echo_event(c, &messages[i], &mut plain),
                Mode::Handshake => handshake_event(c, &mut plain),
            };
            let now = Instant::now();
            match (s.mode, r) {
                (_, Ok(Step::Waiting)) => {}
                (Mode::Echo { .. }, Ok(Step::Done)) => {
                    window.record(i, c.started, now);
                    last_progress = now;
                    c.started = now;
                    start_op(s, c, messages.get(i))?;
                }
                (Mode::Echo { .. }, Err(e)) => {
                    return Err(io::Error::new(e.kind(), format!("connection {i}: {e}")))
                }
                (Mode::Handshake, Ok(Step::Done)) => {
                    window.record(i, c.started, now);
                    last_progress = now;
                    *c = reopen(s, &poll, i, &mut window)?;
                }
                (Mode::Handshake, Err(e)) => {
                    window.error(&e);
                    *c = reopen(s, &poll, i, &mut window)?;
                }
            }
        }
        let now = Instant::now();
        if s.mode == Mode::Handshake {
            for (i, c) in conns.iter_mut().enumerate() {
                if now.saturating_duration_since(c.started) > HANDSHAKE_TIMEOUT {
                    window.error(&io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no handshake, echo and close within {HANDSHAKE_TIMEOUT:?}"),
                    ));
                    *c = reopen(s, &poll, i, &mut window)?;
                }
            }
        }
        if now.saturating_duration_since(last_progress) > STALL_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "nothing completed for {STALL_TIMEOUT:?}{}",
                    window
                        .first_error
                        .as_ref()
                        .map(|e| format!(" (first error: {e})"))
                        .unwrap_or_default()
                ),
            ));
        }
        if let Some(report) = window.tick(now, &mut on_phase) {
            return report;
        }
    }
}

/// A fresh connection for slot `i` (the old one is dropped: closed and deregistered).
fn reopen(s: &Settings, poll: &Poll, i: usize, window: &mut Window) -> io::Result<Conn> {
    loop {
        match Conn::open(s, poll, Token(i)) {
            Ok(mut c) => {
                start_op(s, &mut c, None)?;
                return Ok(c);
            }
            // Out of ports or descriptors for a moment: count it, try again.
            Err(e) if window.errors < 1_000_000 => {
                window.error(&e);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Queues the next operation's first bytes: the message (echo) or the 1-byte probe
/// (handshake). rustls holds plaintext written during the handshake until it completes.
fn start_op(s: &Settings, c: &mut Conn, msg: Option<&Vec<u8>>) -> io::Result<()> {
    match (s.mode, msg) {
        (Mode::Echo { .. }, Some(m)) => c.tls.writer().write_all(m)?,
        (Mode::Echo { .. }, None) => unreachable!("echo connections have a message"),
        (Mode::Handshake, _) => c.tls.writer().write_all(b"\n")?,
    }
    c.flush()
}

enum Step {
    Waiting,
    Done,
}

fn echo_event(c: &mut Conn, msg: &[u8], plain: &mut Vec<u8>) -> io::Result<Step> {
    c.flush()?;
    let eof = c.receive(plain)?;
    if !plain.is_empty() {
        let end = c.got + plain.len();
        if end > msg.len() || plain[..] != msg[c.got..end] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "wrong echo (bytes differ from the message sent)",
            ));
        }
        c.got = end;
    }
    if eof {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    c.flush()?;
    if c.got == msg.len() {
        c.got = 0;
        return Ok(Step::Done);
    }
    Ok(Step::Waiting)
}

fn handshake_event(c: &mut Conn, plain: &mut Vec<u8>) -> io::Result<Step> {
    c.flush()?;
    let eof = c.receive(plain)?;
    if !plain.is_empty() {
        if c.closing || plain[..] != b"\n"[..] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "wrong echo of the 1-byte probe",
            ));
        }
        c.closing = true;
        c.tls.send_close_notify();
    }
    if eof {
        if c.closing {
            return Ok(Step::Done);
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            if c.tls.is_handshaking() {
                "the server closed the connection during the handshake"
            } else {
                "the server closed the connection before echoing"
            },
        ));
    }
    c.flush()?;
    Ok(Step::Waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_with_newline() {
        let m = message(3, 1024);
        assert_eq!(m.len(), 1024);
        assert_eq!(m[1023], b'\n');
        assert!(!m[..1023].contains(&b'\n'));
        assert_ne!(message(0, 8), message(1, 8));
    }
}
