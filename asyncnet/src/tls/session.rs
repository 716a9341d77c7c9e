//! The TLS drive loop: rustls is sans-IO, so records move through a byte pipe we give it.
//!
//! This module knows nothing of sockets, readiness or the loop: every function takes the pipe
//! (`W: Read + Write`: the socket, non-blocking, or an in-memory pipe in tests) and returns
//! the pipe's `WouldBlock` to its caller, which decides how to wait (`net/transport.rs`,
//! through the driver's seam).
//!
//! ```text
//!  read:  plaintext in the session? take it : read_records(pipe) -> process -> again
//!  write: write_records (queued first) -> session.write(plaintext) -> write_records
//!  close: drain the peer's records -> rest of the plaintext -> close_notify -> records
//!         -> (a TLS 1.3 client soon after its handshake) the server's session tickets
//! ```
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};

use super::context::{Config, TlsContext};

/// Which side of the handshake a socket takes (Nim's `SslHandshakeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeAs {
    /// `handshakeAsClient`: we connected; we verify the server.
    Client,
    /// `handshakeAsServer`: we accepted; we present our certificate.
    Server,
}

/// What was negotiated on a TLS socket (the useful part of Nim's `sslHandle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `"TLSv1_3"` or `"TLSv1_2"`.
    pub protocol_version: String,
    /// The cipher suite, e.g. `"TLS13_AES_256_GCM_SHA384"`.
    pub cipher_suite: String,
    /// The ALPN protocol both sides chose, if any.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The server name: for a client, the name it asked for (and verified); for a server, the
    /// SNI name the client sent. `None` for IP addresses and clients that sent none.
    pub server_name: Option<String>,
}

/// How long a closed TLS socket may wait for the kernel to take its last records
/// (close_notify) before its descriptor is closed anyway.
pub(crate) const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// How long after its handshake a TLS 1.3 client that closes waits, at least, for the server's
/// session tickets (see [`Closer::wait_for_peer_until`]); longer after a slow handshake, up to
/// [`CLOSE_NOTIFY_WAIT`].
const TICKETS_WAIT: Duration = Duration::from_millis(250);

/// What the handshake needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Records to write ([`Tls::write_records`]).
    Write,
    /// Records to read ([`Tls::read_records`]; 0 bytes means the peer closed).
    Read,
    /// The handshake is over (its last flight may still be queued).
    Done,
}

/// A socket's TLS part: the context `wrap_socket` gave it, then the session.
pub(crate) struct Tls {
    /// Set by `wrap_socket`: `connect` and `accept` start a session with it.
    ctx: Option<TlsContext>,
    /// The session, once the handshake has started.
    conn: Option<Connection>,
    /// The server name a client asked for (DNS names only).
    name: Option<Box<str>>,
    /// Decrypted bytes wait in the session.
    plain: bool,
    /// A protocol error met after data that is still to be read: reported once that data is
    /// (so that a good record and a bad one in the same read do not lose the good one).
    failed: Option<rustls::Error>,
    /// The handshake stopped before its end (it failed, timed out, or its future was
    /// dropped): the session is unusable, and every later use says so.
    interrupted: bool,
    /// A client's handshake: when it started, until it ends.
    started: Option<Instant>,
    /// A TLS 1.3 client: until when the server's session tickets may still be on their way
    /// (set at the end of the handshake).
    tickets_due: Option<Instant>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("started", &self.conn.is_some())
            .field("plain", &self.plain)
            .finish()
    }
}

/// A rustls error as an `io::Error` of kind `InvalidData`, the rustls error as its source
/// (downcast to `rustls::Error` to see, e.g., `CertificateError::Expired`).
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn no_session() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "the socket is wrapped for TLS but its handshake never ran (connect or accept first)",
    )
}

fn interrupted() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the TLS handshake on this socket did not finish (it failed, timed out or was \
         dropped): the socket is unusable; close it",
    )
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

/// `[::1]` → `::1`: names as `connect` takes them, as rustls takes them.
fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid TLS server name: {e}"),
        )
    })
}

impl Tls {
    /// Wrapped, waiting for `connect` or `accept` to start the session.
    pub(crate) fn wrapped(ctx: &TlsContext) -> Tls {
        Tls {
            ctx: Some(ctx.clone()),
            conn: None,
            name: None,
            plain: false,
            failed: None,
            interrupted: false,
            started: None,
            tickets_due: None,
        }
    }

    /// A session as a client verifying `name` (`Some`) or as a server (`None`).
    pub(crate) fn start(ctx: &TlsContext, name: Option<&str>) -> io::Result<Tls> {
        let mut dns_name = None;
        let conn: Connection = match (&ctx.config, name) {
            (Config::Client(config), Some(name)) => {
                let server = server_name(name)?;
                if let ServerName::DnsName(d) = &server {
                    dns_name = Some(d.as_ref().into());
                }
                ClientConnection::new(config.clone(), server)
                    .map_err(tls_error)?
                    .into()
            }
            (Config::Server(config), None) => ServerConnection::new(config.clone())
                .map_err(tls_error)?
                .into(),
            (Config::Client(_), None) => return Err(invalid("a client context cannot accept")),
            (Config::Server(_), Some(_)) => return Err(invalid("a server context cannot connect")),
        };
        let started = matches!(conn, Connection::Client(_)).then(Instant::now);
        Ok(Tls {
            ctx: None,
            conn: Some(conn),
            name: dns_name,
            plain: false,
            failed: None,
            interrupted: false,
            started,
            tickets_due: None,
        })
    }

    /// The context `wrap_socket` set, for `connect`/`accept` to start the session with.
    pub(crate) fn pending_context(&self) -> Option<&TlsContext> {
        self.ctx.as_ref().filter(|_| self.conn.is_none())
    }

    /// The session, unless its handshake was interrupted.
    fn session(&self) -> io::Result<&Connection> {
        match &self.conn {
            _ if self.interrupted => Err(interrupted()),
            Some(conn) => Ok(conn),
            None => Err(no_session()),
        }
    }

    /// [`session`](Tls::session), to change.
    fn session_mut(&mut self) -> io::Result<&mut Connection> {
        match &mut self.conn {
            _ if self.interrupted => Err(interrupted()),
            Some(conn) => Ok(conn),
            None => Err(no_session()),
        }
    }

    /// The handshake stopped before its end: from now on every use of the session fails.
    pub(crate) fn interrupt(&mut self) {
        self.interrupted = true;
    }

    /// The error of a session whose handshake was interrupted.
    pub(crate) fn check_usable(&self) -> io::Result<()> {
        if self.interrupted {
            return Err(interrupted());
        }
        Ok(())
    }

    /// Whether the session has started (the socket is past `wrap_socket`'s wait).
    pub(crate) fn has_session(&self) -> bool {
        self.conn.is_some()
    }

    /// Decrypted bytes wait in the session (a read needs no I/O).
    pub(crate) fn has_plaintext(&self) -> bool {
        self.plain
    }

    /// Records wait in the session for the pipe.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.wants_write())
    }

    /// What the handshake needs next.
    ///
    /// # Errors
    ///
    /// No session; the session wants neither to read nor to write while still handshaking.
    pub(crate) fn handshake_step(&self) -> io::Result<Step> {
        let conn = self.session()?;
        Ok(if !conn.is_handshaking() {
            Step::Done
        } else if conn.wants_write() {
            Step::Write
        } else if conn.wants_read() {
            Step::Read
        } else {
            return Err(io::Error::other("TLS handshake stalled"));
        })
    }

    /// Read records from `pipe` and process them. Returns what the pipe's read returned (0:
    /// the pipe's end). A protocol error is sent to the peer as an alert (best effort) and
    /// returned: at once during the handshake, after the data that came before it otherwise
    /// (from [`read_plain`](Tls::read_plain), once that data is read).
    pub(crate) fn read_records(&mut self, pipe: &mut impl PipeIo) -> io::Result<usize> {
        self.check_usable()?;
        let conn = self.conn.as_mut().ok_or_else(no_session)?;
        let n = conn.read_tls(pipe)?;
        match conn.process_new_packets() {
            Ok(state) => {
                if state.plaintext_bytes_to_read() > 0 {
                    self.plain = true;
                }
            }
            Err(e) => {
                // Tell the peer why (rustls queued the alert behind any earlier records).
                while conn.wants_write() && conn.write_tls(pipe).is_ok() {}
                if conn.is_handshaking() {
                    return Err(tls_error(e));
                }
                // Records before the bad one may have brought data: it is read first, and
                // the error comes after it (`read_plain`).
                self.plain = true;
                self.failed = Some(e);
                return Ok(n);
            }
        }
        // Answers the peer may be owed (key updates, session tickets): best effort now; the
        // next send or flush writes what the pipe does not take.
        while conn.wants_write() && conn.write_tls(pipe).is_ok() {}
        if self.started.is_some() && !conn.is_handshaking() {
            self.handshake_over(Instant::now());
        }
        Ok(n)
    }

    /// A client's handshake has just ended: a TLS 1.3 server sends its session tickets when
    /// it has our last flight, about one more handshake's time from now. Until then (at least
    /// [`TICKETS_WAIT`], at most [`CLOSE_NOTIFY_WAIT`]) they may still be on their way.
    fn handshake_over(&mut self, now: Instant) {
        let Some(started) = self.started.take() else {
            return;
        };
        let tls13 = self.conn.as_ref().and_then(|c| c.protocol_version())
            == Some(rustls::ProtocolVersion::TLSv1_3);
        if tls13 {
            let wait = (2 * now.duration_since(started)).clamp(TICKETS_WAIT, CLOSE_NOTIFY_WAIT);
            self.tickets_due = Some(now + wait);
        }
    }

    /// Write queued records to `pipe` until none is left; the pipe's `WouldBlock` (full) is
    /// returned as is.
    pub(crate) fn write_records(&mut self, pipe: &mut impl PipeIo) -> io::Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        while conn.wants_write() {
            conn.write_tls(pipe)?;
        }
        Ok(())
    }

    /// Take decrypted bytes into `buf`: `Some(n)`, where 0 means the peer closed with
    /// close_notify; `None` when the session needs more records first.
    ///
    /// # Errors
    ///
    /// The stream ended without close_notify (`UnexpectedEof`: the data may have been cut by
    /// an attacker); the session failed earlier.
    pub(crate) fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.check_usable()?;
        let conn = self.conn.as_mut().ok_or_else(no_session)?;
        match conn.reader().read(buf) {
            Ok(n) => {
                // How much plaintext is left (no I/O; an error here is sticky in rustls and
                // comes back from the next read).
                let left = conn
                    .process_new_packets()
                    .map_or(0, |st| st.plaintext_bytes_to_read());
                // After a failure rustls says nothing more: the data left, if any, is read on.
                self.plain = left > 0 || (self.failed.is_some() && n > 0);
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.plain = false;
                match &self.failed {
                    Some(failed) => Err(tls_error(failed.clone())),
                    None => Ok(None),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(truncated(
                "the peer closed the TLS connection without close_notify",
            )),
            Err(e) => Err(e),
        }
    }

    /// Encrypt what the session takes of `buf` (0 when its buffer is full: write records
    /// first).
    pub(crate) fn write_plain(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.session_mut()?.writer().write(buf)
    }

    /// Queue close_notify, once the handshake is done. Returns whether it was queued.
    pub(crate) fn send_close_notify(&mut self) -> bool {
        match self.conn.as_mut() {
            Some(conn) if !conn.is_handshaking() => {
                conn.send_close_notify();
                true
            }
            _ => false,
        }
    }

    /// The certificates the peer presented, DER, leaf first.
    pub(crate) fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.conn
            .as_ref()
            .and_then(|c| c.peer_certificates())
            .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default()
    }

    /// What was negotiated; `None` before the handshake completed.
    pub(crate) fn info(&self) -> Option<TlsInfo> {
        let conn = self.conn.as_ref()?;
        if conn.is_handshaking() {
            return None;
        }
        let server_name = match conn {
            Connection::Server(s) => s.server_name().map(str::to_owned),
            Connection::Client(_) => self.name.as_deref().map(str::to_owned),
        };
        Some(TlsInfo {
            protocol_version: conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            alpn_protocol: conn.alpn_protocol().map(<[u8]>::to_vec),
            server_name,
        })
    }

    /// The end of the session of a socket that was closed: `None` if there is nothing to say
    /// (no session, or still handshaking), else a [`Closer`] that sends `rest` (plaintext of
    /// completed sends) and close_notify.
    pub(crate) fn into_closer(self, rest: Vec<u8>) -> Option<Closer> {
        let conn = self.conn?;
        if conn.is_handshaking() {
            return None;
        }
        Some(Closer {
            conn,
            rest,
            pos: 0,
            notified: false,
            tickets_due: self.tickets_due,
        })
    }
}

/// A reset or an end without close_notify: never a clean end on TLS, whatever the flags
/// (anyone on the path can forge one to cut the stream).
pub(crate) fn truncated(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{what}: the data may be truncated"),
    )
}

/// The pipe a session moves its records through.
pub(crate) trait PipeIo: Read + Write {}
impl<T: Read + Write> PipeIo for T {}

/// The last records of a closed TLS socket.
pub(crate) struct Closer {
    conn: Connection,
    rest: Vec<u8>,
    pos: usize,
    notified: bool,
    /// See [`Tls::tickets_due`].
    tickets_due: Option<Instant>,
}

impl Closer {
    /// How long the pipe may take to accept the records: [`CLOSE_NOTIFY_WAIT`] for
    /// close_notify alone, `with_plaintext` when plaintext is still to be sent.
    pub(crate) fn limit(&self, with_plaintext: Duration) -> Duration {
        if self.rest.is_empty() {
            CLOSE_NOTIFY_WAIT
        } else {
            with_plaintext
        }
    }

    /// Take the records the peer sent that nobody read (TLS 1.3 session tickets, typically):
    /// closing a socket with unread bytes makes the kernel answer with a reset, which would
    /// destroy our last records on their way.
    pub(crate) fn drain_incoming(&mut self, pipe: &mut impl PipeIo) {
        for _ in 0..64 {
            match self.conn.read_tls(pipe) {
                Ok(n) if n > 0 && self.conn.process_new_packets().is_ok() => {}
                _ => break,
            }
        }
    }

    /// Until when the socket should stay open after close_notify, reading what the peer
    /// sends: `Some` for a TLS 1.3 client that has no session ticket yet and closes within
    /// one handshake's time or so of its handshake (at least [`TICKETS_WAIT`]).
    ///
    /// A TLS 1.3 server sends its tickets once it has our last handshake flight. A client
    /// that sends, then closes, can have closed its descriptor before they arrive: its
    /// kernel then answers them with a reset and throws away what it had not transmitted
    /// yet, close_notify included. (OpenSSL issues 7948 and 10880: "Data loss with TLS
    /// 1.3".) Waiting, bounded, until they come (or the peer closes) avoids that; a server
    /// that sends none costs that bound, once, and only when the close follows the handshake
    /// this closely.
    pub(crate) fn wait_for_peer_until(&self, now: Instant) -> Option<Instant> {
        let Connection::Client(client) = &self.conn else {
            return None;
        };
        self.tickets_due
            .filter(|&due| due > now && client.tls13_tickets_received() == 0)
    }

    /// Read and discard what the peer sent: `Ok(true)` once anything came (the session
    /// tickets: a server sends them before anything else after its handshake) or the peer
    /// closed, `Ok(false)` while the pipe is empty (`WouldBlock`).
    ///
    /// The bytes are not given to the session: after our close_notify, rustls must not be
    /// asked to process records (a bad one would trip its debug assertion that a fatal alert
    /// goes out once; close_notify counts as one). A short read has emptied the pipe for now:
    /// it ends the call (a blocking pipe would otherwise wait on for more).
    pub(crate) fn read_peer(&mut self, pipe: &mut impl PipeIo) -> io::Result<bool> {
        let mut sink = [0u8; 4096];
        let mut came = false;
        loop {
            match pipe.read(&mut sink) {
                Ok(n) if n < sink.len() => return Ok(true),
                Ok(_) => came = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(came),
                Err(e) => return Err(e),
            }
        }
    }

    /// Move what the pipe takes: `Ok(true)` once close_notify is out, `Ok(false)` when the
    /// pipe is full (`WouldBlock`), `Err` to give up.
    pub(crate) fn step(&mut self, pipe: &mut impl PipeIo) -> io::Result<bool> {
        loop {
            if self.pos < self.rest.len() {
                // The session takes plaintext up to its buffer limit; the records go below.
                self.pos += self.conn.writer().write(&self.rest[self.pos..])?;
            } else if !self.notified {
                self.conn.send_close_notify();
                self.notified = true;
            }
            if !self.conn.wants_write() {
                if self.notified {
                    return Ok(true);
                }
                continue;
            }
            match self.conn.write_tls(pipe) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
#[cfg(not(target_os = "macos"))] // rcgen: see Cargo.toml
mod tests;
