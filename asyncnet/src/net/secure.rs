//! TLS on sockets (Nim's `wrapSocket`, `wrapConnectedSocket`, `isSsl`, ...): the session
//! lives in `tls`; here it is attached to a socket and its handshake driven.
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io;
use std::time::Duration;

use super::socket::AsyncSocket;
use crate::tls::{HandshakeAs, Tls, TlsContext, TlsInfo};

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
///
/// # Examples
///
/// Both sides wrapped before use (the certificate and contexts are made as in
/// [`TlsContext`]'s example):
///
/// ```
/// use asyncnet::{spawn, wait_for, wrap_socket, AsyncSocket, TlsContext};
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
/// #     .map_err(std::io::Error::other)?;
/// # let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
/// # let server_ctx = TlsContext::server_builder(cert_pem.as_bytes(), key_pem.as_bytes()).build()?;
/// # let client_ctx = TlsContext::client_builder().add_root_pem(cert_pem.as_bytes()).build()?;
/// wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     wrap_socket(&server_ctx, &server)?;
///     let port = server.local_addr()?.1;
///     let accepted = spawn(async move { server.accept().await }); // handshake included
///
///     let client = AsyncSocket::new()?;
///     wrap_socket(&client_ctx, &client)?;
///     client.connect("localhost", port).await?; // handshake included
///     let peer = accepted.await?;
///     assert!(client.is_ssl() && peer.is_ssl());
///     peer.send("hello\r\n").await?;
///     assert_eq!(client.recv_line().await?.as_deref(), Some("hello"));
///
///     // A socket that is already connected is wrapped with `wrap_connected_socket`.
///     assert!(wrap_socket(&client_ctx, &client).is_err());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wrap_socket(ctx: &TlsContext, socket: &AsyncSocket) -> io::Result<()> {
    socket.socket()?;
    if socket.is_ssl() || socket.inner.write.connected.get() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "wrap_socket needs a socket that is neither connected nor TLS (see wrap_connected_socket)",
        ));
    }
    socket.inner.set_tls(Tls::wrapped(ctx));
    Ok(())
}

/// Start TLS on a connected socket and complete the handshake (Nim's `wrapConnectedSocket`,
/// but the handshake really completes in the call, as Nim's docs promise).
///
/// As a client, `hostname` is the name to verify the certificate against and to send as SNI
/// (never sent for an IP address, which is verified against the certificate's IP names); an
/// empty `hostname` means the peer's IP address. As a server, `hostname` is ignored.
///
/// As a server, the handshake gets the context's handshake timeout
/// ([`DEFAULT_HANDSHAKE_TIMEOUT`](crate::DEFAULT_HANDSHAKE_TIMEOUT), or
/// [`ServerBuilder::handshake_timeout`](crate::ServerBuilder::handshake_timeout)), as in
/// `accept` on a wrapped listener: a client that sends nothing, half a record, or never reads
/// the server's answer cannot hold the socket longer. As a client it gets none (as `connect`
/// on a wrapped socket): the client chose whom to call, and bounds the call the way it bounds
/// `connect`, with [`with_timeout`](crate::with_timeout).
///
/// # Errors
///
/// The context is for the other side; the handshake fails (`InvalidData` with a
/// `rustls::Error` source naming the reason, e.g. an expired or wrong-name certificate); the
/// peer closes or resets the connection during the handshake (`UnexpectedEof`); as a server,
/// the handshake takes longer than the context's handshake timeout (`TimedOut`); a deadline
/// (the call's, or the socket's read or write deadline) passes first (`TimedOut`,
/// [Deadlines](crate#deadlines)); the socket is closed, also while the handshake waits
/// (`NotConnected`). After an error the socket is unusable: every later operation fails with
/// `NotConnected` saying so; close it (dropping its last handle does too).
///
/// # Cancel safety
///
/// Dropping the future mid-handshake leaves the socket unusable, as an error does: later
/// operations fail with `NotConnected` saying so, never with a half-made session; close it.
///
/// # Examples
///
/// TLS started on plain connections, each handshake in its own task, so a slow client holds
/// up no one else (certificate and contexts as in [`TlsContext`]'s example):
///
/// ```
/// use asyncnet::{spawn, wait_for, wrap_connected_socket, AsyncSocket, HandshakeAs, TlsContext};
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
/// #     .map_err(std::io::Error::other)?;
/// # let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
/// # let server_ctx = TlsContext::server_builder(cert_pem.as_bytes(), key_pem.as_bytes()).build()?;
/// # let client_ctx = TlsContext::client_builder().add_root_pem(cert_pem.as_bytes()).build()?;
/// wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     let port = server.local_addr()?.1;
///     spawn(async move {
///         let peer = server.accept().await?; // plain TCP
///         wrap_connected_socket(&server_ctx, &peer, HandshakeAs::Server, "").await?;
///         let line = peer.recv_line().await?.unwrap_or_default();
///         peer.send(format!("{line}\r\n")).await
///     });
///
///     let client = asyncnet::dial("127.0.0.1", port).await?; // plain TCP
///     // The server's certificate is for "localhost": verify that name.
///     wrap_connected_socket(&client_ctx, &client, HandshakeAs::Client, "localhost").await?;
///     client.send("hello\r\n").await?;
///     assert_eq!(client.recv_line().await?.as_deref(), Some("hello"));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
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
    match handshake {
        HandshakeAs::Server => socket.handshake_within(ctx.handshake_timeout).await,
        HandshakeAs::Client => socket.handshake().await,
    }
}

impl AsyncSocket {
    /// Whether TLS is on (Nim's `isSsl`): wrapped and past the start of its handshake, or
    /// wrapped and waiting for `connect`/`accept`.
    pub fn is_ssl(&self) -> bool {
        self.inner.has_tls()
    }

    /// The certificates the peer presented, DER-encoded, leaf first (Nim's
    /// `getPeerCertificates`). Empty on a plain socket, before the handshake, and for a
    /// client that presented none. A client's handshake fails unless the chain verified, so on
    /// a client socket this is a verified chain (unless verification was turned off with
    /// `danger_accept_invalid_certs`); on a server, it is verified only if the context
    /// requires client certificates.
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.inner
            .tls()
            .map(|t| t.peer_certificates())
            .unwrap_or_default()
    }

    /// The negotiated protocol, cipher suite, ALPN protocol and server name (the useful part
    /// of Nim's `sslHandle`); `None` on a plain socket or before the handshake completed.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.inner.tls()?.info()
    }

    /// Create the TLS session (client: verifying `name`). Reads are buffered from now on.
    pub(super) fn start_tls(&self, ctx: &TlsContext, name: Option<&str>) -> io::Result<()> {
        self.socket()?;
        if self.inner.tls().is_some_and(|t| t.has_session()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket is already TLS",
            ));
        }
        self.inner.set_tls(Tls::start(ctx, name)?);
        self.inner.read.buffered.set(true);
        Ok(())
    }

    /// Run the handshake to its end, last flight flushed. A handshake that does not get
    /// there (it fails, times out, or the future is dropped) leaves the session unusable, and
    /// every later use of the socket says so: never a half-made session that later reads or
    /// writes would go on with silently.
    async fn handshake(&self) -> io::Result<()> {
        /// Marks the session interrupted unless the handshake finished.
        struct Unfinished<'a>(&'a AsyncSocket, bool);
        impl Drop for Unfinished<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    let refused = self.0.inner.tls_mut().map(|mut tls| {
                        tls.interrupt();
                        tls.check_usable()
                    });
                    if let Some(Err(e)) = refused {
                        // Sends would queue plaintext that nothing can ever carry.
                        self.0.refuse_sends(&e);
                    }
                }
            }
        }
        let mut guard = Unfinished(self, false);
        let r = poll_fn(|cx| self.poll_handshake(cx)).await;
        guard.1 = r.is_ok();
        r
    }

    /// [`handshake`](AsyncSocket::handshake) within `timeout` (`TimedOut` after it).
    async fn handshake_within(&self, timeout: Duration) -> io::Result<()> {
        match crate::with_timeout(self.handshake(), timeout).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake: {e}"),
            )),
        }
    }

    /// The context `wrap_socket` set, if the session has not started yet.
    fn pending_tls_context(&self) -> Option<TlsContext> {
        self.inner.tls()?.pending_context().cloned()
    }

    /// `connect` on a wrapped socket: the TCP connection is up, now the handshake.
    pub(super) async fn finish_tls_connect(&self, name: &str) -> io::Result<()> {
        if let Some(ctx) = self.pending_tls_context() {
            self.start_tls(&ctx, Some(name))?;
            self.handshake().await?;
        }
        // A connect again after one whose handshake was cut: say so, do not pass it off.
        match self.inner.tls() {
            Some(tls) => tls.check_usable(),
            None => Ok(()),
        }
    }

    /// `accept` on a wrapped listener: handshake the new client within the context's
    /// timeout. `None` for a plain listener.
    pub(super) async fn accept_tls(&self, client: &AsyncSocket) -> Option<io::Result<()>> {
        let ctx = self.pending_tls_context()?;
        if let Err(e) = client.start_tls(&ctx, None) {
            return Some(Err(e));
        }
        Some(client.handshake_within(ctx.handshake_timeout).await)
    }
}
