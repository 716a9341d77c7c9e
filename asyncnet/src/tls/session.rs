//! The TLS drive loop: rustls is sans-IO, so the socket moves its records.
//!
//! ```text
//!  recv: plaintext in the session? take it : read_tls(socket) -> process_new_packets -> again
//!  send: write_tls(queued records) -> writer().write(plaintext) -> write_tls(new records)
//! ```
//!
//! Readiness rule: read readiness is cleared only when the session has no plaintext left *and*
//! the socket said `WouldBlock`; when processing leaves plaintext in the session, readiness is
//! set again, so a reader never parks on bytes that already arrived.
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};
use socket2::Socket;

use super::context::{Config, TlsContext};
use crate::driver::{Direction, Driver};
use crate::net::AsyncSocket;
use crate::sys;

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

/// The socket as rustls's byte pipe: reads and writes go straight to the kernel.
pub(crate) struct Wire<'a>(pub(crate) &'a Socket);

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut &*self.0).read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_with_flags(buf, sys::SEND_FLAGS)
    }
    /// rustls hands over all its queued records at once: one `sendmsg` for them all.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.send_vectored_with_flags(bufs, sys::SEND_FLAGS)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How long a closed TLS socket may wait for the kernel to take its last records
/// (close_notify) before its descriptor is closed anyway.
pub(crate) const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// The end of a TLS socket whose handle was closed or dropped: take the records the peer sent
/// that nobody read (TLS 1.3 session tickets, typically: closing a socket with unread bytes
/// makes the kernel answer with a reset, which would destroy our last records on their way),
/// encrypt and send `rest` (plaintext that completed sends queued), send close_notify, and
/// close the descriptor. Records the kernel cannot take at once get [`CLOSE_NOTIFY_WAIT`]
/// (with plaintext, [`CLOSE_LINGER`](crate::CLOSE_LINGER)) in a background task.
pub(crate) fn close_session(
    driver: &Rc<Driver>,
    socket: Socket,
    mut conn: Box<Connection>,
    rest: Vec<u8>,
) {
    if conn.is_handshaking() {
        return;
    }
    for _ in 0..64 {
        match conn.read_tls(&mut Wire(&socket)) {
            Ok(n) if n > 0 && conn.process_new_packets().is_ok() => {}
            _ => break,
        }
    }
    let limit = if rest.is_empty() {
        CLOSE_NOTIFY_WAIT
    } else {
        crate::CLOSE_LINGER
    };
    let mut pos = 0;
    let mut notified = false;
    crate::net::linger_in_background(driver, socket, limit, move |s| loop {
        if pos < rest.len() {
            // The session takes plaintext up to its buffer limit; the records go below.
            pos += conn.writer().write(&rest[pos..])?;
        } else if !notified {
            conn.send_close_notify();
            notified = true;
        }
        if !conn.wants_write() {
            if notified {
                return Ok(true);
            }
            continue;
        }
        match conn.write_tls(&mut Wire(s)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    });
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

/// Wrap an unconnected socket (Nim's `wrapSocket`): a later [`connect`](AsyncSocket::connect)
/// completes only after the TLS handshake (verifying the server's chain and the name given to
/// `connect`), and every socket that [`accept`](AsyncSocket::accept) returns from a wrapped
/// listener has completed its handshake.
///
/// An accepting handshake that fails or takes longer than the context's handshake timeout
/// drops that client only: `accept` records the error (see
/// [`take_accept_error`](AsyncSocket::take_accept_error)) and goes on with the next one.
/// Handshakes in `accept` run one after another; a server that must not let one slow client
/// delay the next can accept a plain socket and call [`wrap_connected_socket`] in a task.
///
/// Reads on a TLS socket are buffered, whatever the socket was made with.
///
/// # Errors
///
/// `InvalidInput` if the socket is already connected or already TLS.
pub fn wrap_socket(ctx: &TlsContext, socket: &AsyncSocket) -> io::Result<()> {
    socket.socket()?;
    if socket.is_ssl() || socket.inner.connected.get() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "wrap_socket needs a socket that is neither connected nor TLS (see wrap_connected_socket)",
        ));
    }
    *socket.inner.tls_ctx.borrow_mut() = Some(Box::new(ctx.clone()));
    Ok(())
}

/// Start TLS on a connected socket and complete the handshake (Nim's `wrapConnectedSocket`,
/// but the handshake really completes in the call, as Nim's docs promise).
///
/// As a client, `hostname` is the name to verify the certificate against and to send as SNI
/// (never sent for an IP address, which is verified against the certificate's IP names); an
/// empty `hostname` means the peer's IP address. As a server, `hostname` is ignored.
///
/// # Errors
///
/// The context is for the other side; the handshake fails (`InvalidData` with a
/// `rustls::Error` source naming the reason, e.g. an expired or wrong-name certificate); the
/// peer closes during the handshake (`UnexpectedEof`).
///
/// # Cancel safety
///
/// Dropping the future mid-handshake leaves the socket unusable; close it.
pub async fn wrap_connected_socket(
    ctx: &TlsContext,
    socket: &AsyncSocket,
    handshake: HandshakeAs,
    hostname: &str,
) -> io::Result<()> {
    let name = match handshake {
        HandshakeAs::Server => None,
        HandshakeAs::Client if hostname.is_empty() => Some(socket.peer_addr()?.0),
        HandshakeAs::Client => Some(hostname.to_owned()),
    };
    socket.start_tls(ctx, name.as_deref())?;
    socket.handshake().await
}

impl AsyncSocket {
    /// Whether TLS is on (Nim's `isSsl`): wrapped and past the start of its handshake, or
    /// wrapped and waiting for `connect`/`accept`.
    pub fn is_ssl(&self) -> bool {
        self.inner.tls.borrow().is_some() || self.inner.tls_ctx.borrow().is_some()
    }

    /// The certificates the peer presented, DER-encoded, leaf first (Nim's
    /// `getPeerCertificates`). Empty on a plain socket, before the handshake, and for a
    /// client that presented none. A client's handshake fails unless the chain verified, so on
    /// a client socket this is a verified chain (unless verification was turned off with
    /// `danger_accept_invalid_certs`); on a server, it is verified only if the context
    /// requires client certificates.
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        let tls = self.inner.tls.borrow();
        let Some(conn) = tls.as_ref() else {
            return Vec::new();
        };
        conn.peer_certificates()
            .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default()
    }

    /// The negotiated protocol, cipher suite, ALPN protocol and server name (the useful part
    /// of Nim's `sslHandle`); `None` on a plain socket or before the handshake completed.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        let tls = self.inner.tls.borrow();
        let conn = tls.as_ref()?;
        if conn.is_handshaking() {
            return None;
        }
        let server_name = match &**conn {
            Connection::Server(s) => s.server_name().map(str::to_owned),
            Connection::Client(_) => self.inner.tls_name.borrow().as_deref().map(str::to_owned),
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

    /// Create the TLS session (client: verifying `name`).
    pub(crate) fn start_tls(&self, ctx: &TlsContext, name: Option<&str>) -> io::Result<()> {
        self.socket()?;
        if self.inner.tls.borrow().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket is already TLS",
            ));
        }
        let conn: Connection = match (&ctx.config, name) {
            (Config::Client(config), Some(name)) => {
                let server = server_name(name)?;
                if let ServerName::DnsName(d) = &server {
                    *self.inner.tls_name.borrow_mut() = Some(d.as_ref().into());
                }
                ClientConnection::new(config.clone(), server)
                    .map_err(tls_error)?
                    .into()
            }
            (Config::Server(config), None) => ServerConnection::new(config.clone())
                .map_err(tls_error)?
                .into(),
            (Config::Client(_), None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a client context cannot accept",
                ))
            }
            (Config::Server(_), Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a server context cannot connect",
                ))
            }
        };
        *self.inner.tls.borrow_mut() = Some(Box::new(conn));
        self.inner.buffered.set(true);
        Ok(())
    }

    /// Run the handshake to its end, last flight flushed.
    pub(crate) async fn handshake(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io_state = &self.inner.io;
        loop {
            let (handshaking, wants_write, wants_read) = {
                let tls = self.inner.tls.borrow();
                let conn = tls.as_ref().ok_or_else(no_session)?;
                (conn.is_handshaking(), conn.wants_write(), conn.wants_read())
            };
            if !handshaking {
                return self.poll_tls_flush(cx);
            }
            if wants_write {
                if !io_state.is_ready(Direction::Write) {
                    ready!(io_state.poll_ready(Direction::Write, cx))?;
                }
                match self.write_records() {
                    Ok(()) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if !wants_read {
                return Poll::Ready(Err(io::Error::other("TLS handshake stalled")));
            }
            if !io_state.is_ready(Direction::Read) {
                ready!(io_state.poll_ready(Direction::Read, cx))?;
            }
            match self.read_records() {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Read records from the kernel and process them. Returns what `read(2)` returned.
    /// A protocol error is sent to the peer as an alert (best effort) and returned.
    fn read_records(&self) -> io::Result<usize> {
        let socket = self.socket()?;
        let mut tls = self.inner.tls.borrow_mut();
        let conn = tls.as_mut().ok_or_else(no_session)?;
        let n = loop {
            match conn.read_tls(&mut Wire(&socket)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.inner.io.clear(Direction::Read);
                    }
                    return Err(e);
                }
            }
        };
        match conn.process_new_packets() {
            Ok(state) => {
                if state.plaintext_bytes_to_read() > 0 {
                    self.inner.tls_plain.set(true);
                    self.inner.io.set_ready(Direction::Read);
                }
            }
            Err(e) => {
                // Tell the peer why (rustls queued the alert behind any earlier records),
                // then fail.
                while conn.wants_write() {
                    if conn.write_tls(&mut Wire(&socket)).is_err() {
                        break;
                    }
                }
                return Err(tls_error(e));
            }
        }
        // Answers the peer may be owed (key updates, session tickets): best effort now; the
        // next send or flush writes what the kernel does not take.
        while conn.wants_write() {
            match conn.write_tls(&mut Wire(&socket)) {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(n)
    }

    /// Write the session's queued records until none is left or the kernel is full.
    pub(crate) fn write_records(&self) -> io::Result<()> {
        let socket = self.socket()?;
        let mut tls = self.inner.tls.borrow_mut();
        let conn = tls.as_mut().ok_or_else(no_session)?;
        while conn.wants_write() {
            match conn.write_tls(&mut Wire(&socket)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.inner.io.clear(Direction::Write);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Decrypted bytes into `buf`: 0 means the peer closed with close_notify; a close without
    /// it is an `UnexpectedEof` error (the data may have been cut by an attacker).
    pub(crate) fn tls_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let r = {
                let mut tls = self.inner.tls.borrow_mut();
                let conn = tls.as_mut().ok_or_else(no_session)?;
                let r = conn.reader().read(buf);
                if r.is_ok() {
                    // How much plaintext is left (no I/O; an error here is sticky in rustls
                    // and comes back from the next read).
                    let left = conn
                        .process_new_packets()
                        .map_or(0, |st| st.plaintext_bytes_to_read());
                    self.inner.tls_plain.set(left > 0);
                }
                r
            };
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.inner.tls_plain.set(false);
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the TLS connection without close_notify: the data may be truncated",
                    ));
                }
                Err(e) => return Err(e),
            }
            // No plaintext: more records are needed. At end of stream, rustls decides above
            // whether it was clean. A reset is never a clean end on TLS, whatever the flags:
            // anyone on the path can forge one to cut the stream.
            match self.read_records() {
                Err(e) if sys::is_disconnect(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the TLS connection was reset before close_notify ({e}): the data may be truncated"),
                    ))
                }
                r => {
                    r?;
                }
            }
        }
    }

    /// Encrypt what the session takes of `buf` and write the records the kernel takes.
    pub(crate) fn tls_write(&self, buf: &[u8]) -> io::Result<usize> {
        // Records of earlier sends go first.
        self.write_records()?;
        let n = {
            let mut tls = self.inner.tls.borrow_mut();
            let conn = tls.as_mut().ok_or_else(no_session)?;
            conn.writer().write(buf)?
        };
        match self.write_records() {
            Ok(()) => {}
            // The records wait in the session; `poll_tls_flush` finishes them.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Wait until every record of the session has been written.
    pub(crate) fn poll_tls_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io_state = &self.inner.io;
        loop {
            let pending = self
                .inner
                .tls
                .borrow()
                .as_ref()
                .is_some_and(|c| c.wants_write());
            if !pending {
                return Poll::Ready(Ok(()));
            }
            if !io_state.is_ready(Direction::Write) {
                ready!(io_state.poll_ready(Direction::Write, cx))?;
            }
            match self.write_records() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Queue close_notify (once the handshake is done) and write what the kernel takes now;
    /// `poll_tls_flush` writes the rest. Reading goes on (a half-close).
    pub(crate) fn tls_send_close_notify(&self) {
        let queued = {
            let mut tls = self.inner.tls.borrow_mut();
            match tls.as_mut() {
                Some(conn) if !conn.is_handshaking() => {
                    conn.send_close_notify();
                    true
                }
                _ => false,
            }
        };
        if queued {
            let _ = self.write_records();
        }
    }

    /// `connect` on a wrapped socket: the TCP connection is up, now the handshake.
    pub(crate) async fn finish_tls_connect(&self, name: &str) -> io::Result<()> {
        let ctx = self.inner.tls_ctx.borrow().as_deref().cloned();
        if let Some(ctx) = ctx {
            self.start_tls(&ctx, Some(name))?;
            self.handshake().await?;
        }
        Ok(())
    }

    /// `accept` on a wrapped listener: handshake the new client within the context's
    /// timeout. `None` for a plain listener.
    pub(crate) async fn accept_tls(&self, client: &AsyncSocket) -> Option<io::Result<()>> {
        let ctx = self.inner.tls_ctx.borrow().as_deref().cloned()?;
        let r = async {
            client.start_tls(&ctx, None)?;
            client.handshake().await
        };
        Some(match crate::with_timeout(r, ctx.handshake_timeout).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake: {e}"),
            )),
        })
    }
}
