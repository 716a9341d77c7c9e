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
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Registry, Token};
use rustls::{ClientConfig, ClientConnection};

use crate::loadgen::{invalid, Phase, Report, Slot, Span, Window};

/// A handshake slot's connection taking longer than this is abandoned (counted as an error).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    pub mode: Mode,
    pub conns: usize,
    pub span: Span,
}

struct Conn {
    s: Rc<Settings>,
    registry: Rc<Registry>,
    stream: TcpStream,
    tls: ClientConnection,
    /// The message (handshake: the 1-byte probe).
    msg: Vec<u8>,
    /// Plaintext received and not yet checked.
    plain: Vec<u8>,
    /// When the current operation started.
    started: Instant,
    /// Echo bytes received for the message in flight.
    got: usize,
    busy: bool,
    /// Handshake mode: close_notify sent, waiting for the server to close.
    closing: bool,
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn connect(
    s: &Settings,
    registry: &Registry,
    i: usize,
) -> io::Result<(TcpStream, ClientConnection)> {
    let mut stream = TcpStream::connect(s.addr)?;
    stream.set_nodelay(true)?;
    registry.register(
        &mut stream,
        Token(i),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let tls =
        ClientConnection::new(s.config.clone(), super::certs::server_name()).map_err(tls_err)?;
    Ok((stream, tls))
}

impl Conn {
    /// Writes the session's records until none is left or the kernel is full.
    fn flush(&mut self) -> io::Result<()> {
        use io::ErrorKind::*;
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.stream) {
                // Still connecting, or the kernel is full: a writable event comes later.
                Err(e) if matches!(e.kind(), WouldBlock | NotConnected) => return Ok(()),
                Err(e) if e.kind() != Interrupted => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads and decrypts everything the kernel has into `plain`. Returns
    /// true at end of stream.
    fn receive(&mut self) -> io::Result<bool> {
        use io::ErrorKind::*;
        loop {
            match self.tls.read_tls(&mut self.stream) {
                Ok(0) => return Ok(true),
                Ok(_) => {
                    self.tls.process_new_packets().map_err(tls_err)?;
                    // Up to close_notify (Ok) or what has arrived (WouldBlock).
                    match self.tls.reader().read_to_end(&mut self.plain) {
                        Err(e) if e.kind() != WouldBlock => return Err(e),
                        _ => {}
                    }
                }
                Err(e) if e.kind() == WouldBlock => return Ok(false),
                Err(e) if e.kind() != Interrupted => return Err(e),
                Err(_) => {}
            }
        }
    }

    /// Goes on with the operation in flight: true once it is complete (echo:
    /// the whole message back; handshake: the probe back, close_notify sent,
    /// the server's close).
    fn progress(&mut self) -> io::Result<bool> {
        let handshake = self.s.mode == Mode::Handshake;
        self.flush()?;
        let eof = self.receive()?;
        let end = self.got + self.plain.len();
        if end > self.msg.len() || self.plain[..] != self.msg[self.got..end] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "wrong echo (bytes differ from the message sent)",
            ));
        }
        self.got = end;
        self.plain.clear();
        if handshake && end == 1 && !self.closing {
            self.closing = true;
            self.tls.send_close_notify();
        }
        if eof && self.closing {
            return Ok(true);
        } else if eof {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if self.tls.is_handshaking() {
                    "the server closed the connection during the handshake"
                } else {
                    "the server closed the connection"
                },
            ));
        }
        self.flush()?;
        Ok(!handshake && end == self.msg.len())
    }

    /// A fresh connection for handshake slot `i` (the old one is dropped:
    /// closed and deregistered). Out of ports or descriptors for a moment:
    /// counted, and tried again.
    fn reopen(&mut self, i: usize, w: &mut Window) -> io::Result<()> {
        loop {
            match connect(&self.s, &self.registry, i) {
                Ok((stream, tls)) => {
                    (self.stream, self.tls, self.closing) = (stream, tls, false);
                    return Ok(());
                }
                Err(e) if w.errors() < 1_000_000 => {
                    w.error(&e);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Slot for Conn {
    fn ready(&mut self, i: usize, w: &mut Window) -> io::Result<()> {
        if self.busy {
            match self.progress() {
                Ok(false) => return Ok(()),
                Ok(true) => w.record(i, 1, Some(self.started)),
                Err(e) if self.s.mode == Mode::Handshake => w.error(&e),
                Err(e) => return Err(io::Error::new(e.kind(), format!("connection {i}: {e}"))),
            }
            self.busy = false;
            if self.s.mode == Mode::Handshake {
                self.reopen(i, w)?;
            }
        }
        // rustls holds plaintext written during the handshake until it completes.
        if w.take(1) == 1 {
            (self.busy, self.got, self.started) = (true, 0, Instant::now());
            self.tls.writer().write_all(&self.msg)?;
            self.flush()?;
        }
        Ok(())
    }

    fn tick(&mut self, i: usize, now: Instant, w: &mut Window) -> io::Result<()> {
        if self.s.mode == Mode::Handshake
            && self.busy
            && now.saturating_duration_since(self.started) > HANDSHAKE_TIMEOUT
        {
            w.error(&io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no handshake, echo and close within {HANDSHAKE_TIMEOUT:?}"),
            ));
            self.busy = false;
            self.reopen(i, w)?;
            self.ready(i, w)?;
        }
        Ok(())
    }
}

/// Runs the workload of `s`: warm-up, then the window.
///
/// # Errors
///
/// Echo: any connection error, a wrong echo, or no progress for
/// [`crate::loadgen::STALL_TIMEOUT`]. Handshake: the first connections
/// cannot even be opened, or nothing completed in the window.
pub fn run(s: &Settings, on_phase: impl FnMut(Phase)) -> io::Result<Report> {
    let size = match s.mode {
        Mode::Echo { size } => size,
        Mode::Handshake => 1,
    };
    if s.conns == 0 || size == 0 || s.span.count.is_some() {
        return Err(invalid("conns and size must be at least 1, and no count"));
    }
    let mut poll = Poll::new()?;
    let registry = Rc::new(poll.registry().try_clone()?);
    let settings = Rc::new(s.clone());
    let mut conns = (0..s.conns)
        .map(|i| {
            let (stream, tls) = connect(s, &registry, i)?;
            Ok(Conn {
                s: settings.clone(),
                registry: registry.clone(),
                stream,
                tls,
                // Recognisable filler ending with `\n` (handshake: the probe).
                msg: [&vec![b'a' + (i % 26) as u8; size - 1][..], b"\n"].concat(),
                plain: Vec::new(),
                started: Instant::now(),
                got: 0,
                busy: false,
                closing: false,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    crate::loadgen::run(&mut poll, &mut conns, &s.span, 0, on_phase)
}
