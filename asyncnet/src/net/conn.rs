//! Accepting and connecting.
#![forbid(unsafe_code)]

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

use super::socket::{addr_text, AsyncSocket};
use super::transport::Started;
use crate::dispatch::{sleep_until, Sleep};
use crate::driver::Direction;
use crate::sys;

/// First and longest wait of an accept that ran out of descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// A listener's memory of resource errors (made on the first one).
#[derive(Debug, Default)]
pub(crate) struct AcceptState {
    /// The last resource error `accept` rode out, until taken.
    error: Option<io::Error>,
    /// How long the last back-off waited (0 after a success).
    backoff: Duration,
}

impl AsyncSocket {
    /// Accept one connection (Nim's `accept`). The new socket is buffered if this one is.
    ///
    /// When the process or system runs out of descriptors or memory (`EMFILE`, `ENFILE`,
    /// `ENOBUFS`, `ENOMEM`), the call does not fail: it records the error (see
    /// [`take_accept_error`](AsyncSocket::take_accept_error)), waits (5 ms, doubling up to
    /// 0.5 s) and tries again, so a plain accept loop survives and serves again once
    /// descriptors are free. A connection that was reset before it could be taken is skipped
    /// where the OS reports it so (`ECONNABORTED`); Linux hands it over, and its first read
    /// is the end of the stream.
    ///
    /// # Errors
    ///
    /// The socket is closed (also while waiting: `NotConnected`), not listening, or another
    /// OS error. `TimedOut`: a deadline (the call's, or the listener's read deadline) passed
    /// while it waited; no connection is lost ([Deadlines](crate#deadlines)).
    ///
    /// # Cancel safety
    ///
    /// Nothing is lost: a connection is taken from the kernel only in the poll that returns
    /// it. On a listener wrapped for TLS ([`wrap_socket`](crate::wrap_socket)), the future
    /// also runs the new client's handshake; dropped then, it drops that one client.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?; // connected to `client`
    ///     assert_eq!(peer.peer_addr()?, client.local_addr()?);
    ///     client.send("hi\n").await?;
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("hi"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn accept(&self) -> io::Result<AsyncSocket> {
        Ok(self.accept_socket_addr().await?.1)
    }

    /// Accept one connection and return the peer's address as text with the socket
    /// (Nim's `acceptAddr`). The text is as [`peer_addr`](AsyncSocket::peer_addr) gives it
    /// (for a Unix socket, the peer's path, usually `""`: clients are rarely bound).
    ///
    /// # Errors
    ///
    /// As [`accept`](AsyncSocket::accept).
    ///
    /// # Cancel safety
    ///
    /// As [`accept`](AsyncSocket::accept): nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let _client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     // The peer's address as text, ready for a log line (its port: `peer_addr`).
    ///     let (address, peer) = server.accept_addr().await?;
    ///     assert_eq!(address, "127.0.0.1");
    ///     assert_eq!(peer.peer_addr()?.0, address);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn accept_addr(&self) -> io::Result<(String, AsyncSocket)> {
        let (addr, socket) = self.accept_raw().await?;
        Ok((addr_text(&addr)?.0, socket))
    }

    /// Accept one connection and return the peer's address, typed (`None` for peers without
    /// an IP address).
    ///
    /// # Errors
    ///
    /// As [`accept`](AsyncSocket::accept).
    ///
    /// # Cancel safety
    ///
    /// As [`accept`](AsyncSocket::accept): nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     // A `SocketAddr`, nothing to parse: e.g. to count connections per IP address.
    ///     let (from, _peer) = server.accept_socket_addr().await?;
    ///     let from: SocketAddr = from.expect("a TCP peer has an IP address");
    ///     assert!(from.ip().is_loopback());
    ///     assert_eq!(from, client.local_socket_addr()?);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn accept_socket_addr(&self) -> io::Result<(Option<SocketAddr>, AsyncSocket)> {
        let (addr, socket) = self.accept_raw().await?;
        Ok((addr.as_socket(), socket))
    }

    /// The last resource error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) that `accept` met
    /// and rode out by waiting, or the last TLS handshake that failed in `accept`, taken so
    /// that the next call reports only newer ones.
    pub fn take_accept_error(&self) -> Option<io::Error> {
        self.inner.rare_if_made()?.accept.borrow_mut().error.take()
    }

    fn accept_state(&self) -> std::cell::RefMut<'_, AcceptState> {
        self.inner.rare().accept.borrow_mut()
    }

    async fn accept_raw(&self) -> io::Result<(SockAddr, AsyncSocket)> {
        loop {
            let mut backoff: Option<Sleep> = None;
            let (socket, addr) = poll_fn(|cx| self.poll_accept(cx, &mut backoff)).await?;
            let inner = &self.inner;
            let buffered = inner.read.buffered.get();
            let client = AsyncSocket::register(socket, inner.domain, inner.sock_type, buffered)?;
            client.inner.write.connected.set(true);
            match self.accept_tls(&client).await {
                None | Some(Ok(())) => return Ok((addr, client)),
                Some(Err(e)) => {
                    // That client failed its handshake: drop it, keep listening.
                    self.accept_state().error = Some(e);
                    // Nothing was sent on it: there is no write error to report.
                    let _ = client.close();
                }
            }
        }
    }

    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
        backoff: &mut Option<Sleep>,
    ) -> Poll<io::Result<(Socket, SockAddr)>> {
        loop {
            if let Some(sleep) = backoff.as_mut() {
                ready!(Pin::new(sleep).poll(cx));
                *backoff = None;
            }
            match ready!(self.poll_accept_once(cx)) {
                Ok(pair) => {
                    if let Some(rare) = self.inner.rare_if_made() {
                        rare.accept.borrow_mut().backoff = Duration::ZERO;
                    }
                    return Poll::Ready(Ok(pair));
                }
                Err(e) if sys::is_transient_accept_error(&e) => {}
                Err(e) if sys::is_resource_exhaustion(&e) => {
                    // The pending connection stays in the kernel's queue and no new edge
                    // will come for it: retry on a timer, not on readiness (and no later than
                    // the read deadline, which the retry then meets).
                    let mut state = self.accept_state();
                    let wait = (state.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    state.backoff = wait;
                    state.error = Some(e);
                    drop(state);
                    self.inner.io.check_deadline(Direction::Read)?;
                    *backoff = Some(sleep_until(self.backoff_until(wait, Direction::Read)));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Connect to `address:port` (Nim's `connect`). A host name is resolved off the loop's
    /// thread, and its addresses of the socket's family are tried one after another, the
    /// next when one fails.
    ///
    /// What Happy Eyeballs (RFC 8305) can mean for one socket of a fixed family: an IPv4
    /// socket looks up A records only (no AAAA query it could not use), an IPv6-only socket
    /// (Windows' default) AAAA only; a dual-stack IPv6 socket (Linux's default) looks up AAAA
    /// and A in parallel, starts on the first answer (waiting up to
    /// [`RESOLUTION_DELAY`](crate::RESOLUTION_DELAY) for AAAA if A comes first) and tries the
    /// addresses interleaved, IPv6 first (IPv4 ones IPv4-mapped). The attempts cannot
    /// overlap: one socket makes one connection at a time, so an address that never answers
    /// costs the OS's connect timeout before the next is tried, as in Nim. To race the
    /// addresses, each on a socket of its own, use [`dial`](crate::dial) or
    /// [`Dialer`](crate::Dialer).
    ///
    /// # Errors
    ///
    /// Resolution fails (the resolver's error; for a name without an address of the
    /// family looked up, kind `NotFound`); an IP literal of the other family on an IPv4
    /// socket (`AddrNotAvailable`); every attempt fails (the last attempt's error, e.g.
    /// `ConnectionRefused`, as in Nim); the socket is closed (also while waiting:
    /// `NotConnected`). `TimedOut`: a deadline (the call's, or the socket's write deadline,
    /// and the read deadline in a TLS handshake) passed while it waited
    /// ([Deadlines](crate#deadlines)). `InvalidInput`: the socket is already connected to
    /// another peer. On a wrapped socket, the handshake's errors (see
    /// [`wrap_connected_socket`](crate::wrap_connected_socket)).
    ///
    /// # Cancel safety
    ///
    /// Lookups under way are abandoned. Dropping the future (or a deadline passing) leaves
    /// the attempt under way going on in the kernel: a later connect with the same address
    /// takes it up (waits for it, or finds it done), one with another address fails once it
    /// has connected; to give up, close the socket. A TLS handshake cut off leaves the socket
    /// unusable (later operations fail with `NotConnected`, saying so); close it.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = AsyncSocket::new()?;
    ///     client.connect("localhost", server.local_addr()?.1).await?;
    ///     assert_eq!(client.peer_addr()?, server.local_addr()?);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn connect(&self, address: &str, port: u16) -> io::Result<()> {
        self.try_in_turn(address, port, async |addr| {
            self.connect_sockaddr(&addr).await
        })
        .await?;
        self.finish_tls_connect(address).await
    }

    /// Connect to one address.
    ///
    /// # Errors
    ///
    /// The OS's error for this attempt (refused, unreachable, ...), or the socket is closed
    /// (also while the attempt waits: `NotConnected`).
    ///
    /// # Cancel safety
    ///
    /// As [`connect`](AsyncSocket::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let addr = server.local_socket_addr()?; // e.g. "127.0.0.1:8080".parse().unwrap()
    ///     // One address, no name resolution, one attempt.
    ///     let client = AsyncSocket::new()?;
    ///     client.connect_addr(addr).await?;
    ///     assert_eq!(client.peer_socket_addr()?, addr);
    ///
    ///     // The attempt's own error: a port bound by nobody listening refuses.
    ///     let bound = AsyncSocket::new()?;
    ///     bound.bind_addr(0, "127.0.0.1")?;
    ///     let other = AsyncSocket::new()?;
    ///     let refused = other.connect_addr(bound.local_socket_addr()?).await;
    ///     assert_eq!(refused.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn connect_addr(&self, addr: SocketAddr) -> io::Result<()> {
        self.connect_sockaddr(&SockAddr::from(addr)).await?;
        self.finish_tls_connect(&addr.ip().to_string()).await
    }

    /// The end of a back-off of `wait` on a timer, no later than the deadline of `dir`.
    fn backoff_until(&self, wait: Duration, dir: Direction) -> Instant {
        let until = Instant::now() + wait;
        self.inner
            .io
            .deadline(dir)
            .map_or(until, |at| until.min(at))
    }

    /// Connect to any address (IP or Unix).
    pub(crate) async fn connect_sockaddr(&self, addr: &SockAddr) -> io::Result<()> {
        let mut wait = BACKOFF_MIN;
        let connected = loop {
            match self.start_connect(addr) {
                Err(e)
                    if addr.domain() == socket2::Domain::UNIX
                        && e.kind() == io::ErrorKind::WouldBlock =>
                {
                    // A Unix stream answers EAGAIN when the listener's backlog is full: no
                    // connect is under way, so there is nothing to wait on but time (within
                    // the write deadline).
                    self.inner.io.check_deadline(Direction::Write)?;
                    sleep_until(self.backoff_until(wait, Direction::Write)).await;
                    wait = (wait * 2).min(BACKOFF_MAX);
                }
                r => break r?,
            }
        };
        if matches!(connected, Started::Pending | Started::Earlier(true)) {
            poll_fn(|cx| self.poll_connected(cx)).await?;
        }
        if let Started::Earlier(_) = connected {
            // Connected by an earlier attempt that timed out or was dropped: to this peer?
            let peer = self.socket()?.peer_addr()?;
            if peer.as_socket() != addr.as_socket() || !same_path(&peer, addr) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the socket is already connected, to {} (by an earlier connect)",
                        addr_text(&peer).map_or_else(|_| "?".into(), |(a, p)| format!("{a}:{p}"))
                    ),
                ));
            }
        }
        self.inner.write.connected.set(true);
        Ok(())
    }
}

/// Whether two Unix-domain addresses name the same path (true for two addresses of another
/// domain, which `as_socket` compares).
#[cfg(unix)]
fn same_path(a: &SockAddr, b: &SockAddr) -> bool {
    a.as_pathname() == b.as_pathname()
}

/// No Unix-domain sockets here: only `as_socket` compares.
#[cfg(not(unix))]
fn same_path(_: &SockAddr, _: &SockAddr) -> bool {
    true
}
