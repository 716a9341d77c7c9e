//! `AsyncSocket`: creation, options, addresses, closing.
#![forbid(unsafe_code)]

#[cfg(feature = "tls")]
use std::cell::RefMut;
use std::cell::{Cell, OnceCell, Ref, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::conn::AcceptState;
use super::local::Local;
use super::options::SoBool;
use super::read::ReadState;
use super::write::WriteState;
use crate::driver::Registration;
use crate::error;
use crate::sys::{self, OwnedSocket, RawSocket, INVALID_SOCKET};
#[cfg(feature = "tls")]
use crate::tls::Tls;

/// Nim's `BufferSize`: how much a buffered read asks the kernel for at least.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// Nim's `MaxLineLength`: the default `max_length` of line reads.
///
/// The bound is per connection, not across them: a partial line stays buffered until its
/// terminator comes (nothing that arrived is dropped), so N clients that each send
/// `max_length - 1` bytes and no line break pin about N × `max_length` bytes (200 such
/// clients held 195 MB in a test). A server open to untrusted clients bounds the total with a
/// smaller `max_length` ([`recv_line_with`](AsyncSocket::recv_line_with)), a read deadline
/// that closes a client who stalls mid-line ([Deadlines](crate#deadlines)), or a cap on the
/// number of connections it serves at once.
pub const MAX_LINE_LENGTH: usize = 1_000_000;

/// The default backlog of [`AsyncSocket::listen`] (the platform's `SOMAXCONN`).
///
/// # Portability
///
/// 4096 on Linux (since 5.4), 128 on macOS and the BSDs; on Windows `0x7fffffff`, which asks
/// the provider for a reasonable maximum.
pub const SOMAXCONN: i32 = sys::SOMAXCONN;

/// A buffered, non-blocking socket on this thread's event loop (Nim's `AsyncSocket`).
///
/// A cheap handle: clones share one socket, so one task may read while another writes (as
/// with Nim's `ref` type). The socket closes when [`close`](AsyncSocket::close) is called or
/// the last clone is dropped. It belongs to the thread that made it (`!Send`).
#[derive(Clone)]
pub struct AsyncSocket {
    pub(crate) inner: Rc<Inner>,
}

/// One socket's state, each part owned by the module that uses it.
pub(crate) struct Inner {
    /// The socket's place in the poller: every system call on the socket goes through this
    /// seam (`transport.rs`).
    pub(super) io: Registration,
    /// This thread's buffer pool and scratch buffer.
    pub(super) local: Rc<Local>,
    /// `None` once closed.
    socket: RefCell<Option<Socket>>,
    /// Address family, fixed at creation.
    pub(super) domain: Domain,
    /// Stream or datagram, fixed at creation.
    pub(super) sock_type: Type,
    /// Received bytes not yet asked for, end of stream, buffered or not (`read.rs`).
    pub(super) read: ReadState,
    /// The output queue and what happened to it (`write.rs`).
    pub(super) write: WriteState,
    /// What few sockets need, made on first need (see [`Rare`]).
    rare: OnceCell<Box<Rare>>,
}

/// The parts of a socket that most sockets never use: TLS, a listener's accept back-off, a
/// descriptor number lent through `AsFd`. They live out of line, made on first need and
/// then kept, so that a plain connection pays one word for all three: its state stays
/// small (memory per idle connection, and cache lines touched per operation when
/// thousands of connections take turns).
pub(super) struct Rare {
    /// TLS: the context `wrap_socket` set, then the session (boxed: it is over a kilobyte,
    /// and moves out to the linger task at close).
    #[cfg(feature = "tls")]
    pub(super) tls: RefCell<Option<Box<Tls>>>,
    /// Listeners only: the last resource error `accept` rode out, and its back-off
    /// (`conn.rs`).
    pub(super) accept: RefCell<AcceptState>,
    /// The descriptor number lent through `AsFd` (`INVALID_SOCKET`: never): it stays
    /// allocated until the last handle is gone (`convert.rs`).
    pub(super) lent: Cell<RawSocket>,
}

impl Default for Rare {
    fn default() -> Rare {
        Rare {
            #[cfg(feature = "tls")]
            tls: RefCell::new(None),
            accept: RefCell::default(),
            lent: Cell::new(INVALID_SOCKET),
        }
    }
}

impl Inner {
    /// The rare parts, made now if this is their first need.
    pub(super) fn rare(&self) -> &Rare {
        self.rare.get_or_init(Box::default)
    }

    /// The rare parts, if they were ever needed.
    #[inline]
    pub(super) fn rare_if_made(&self) -> Option<&Rare> {
        self.rare.get().map(|r| &**r)
    }

    /// The descriptor number lent through `AsFd`, or `INVALID_SOCKET` if none was.
    pub(super) fn lent(&self) -> RawSocket {
        self.rare_if_made().map_or(INVALID_SOCKET, |r| r.lent.get())
    }

    /// Whether the socket has a TLS context or session.
    #[cfg(feature = "tls")]
    #[inline]
    pub(super) fn has_tls(&self) -> bool {
        self.rare_if_made()
            .is_some_and(|r| r.tls.borrow().is_some())
    }

    /// The TLS context or session, if any, borrowed.
    #[cfg(feature = "tls")]
    #[inline]
    pub(super) fn tls(&self) -> Option<Ref<'_, Tls>> {
        let cell = &self.rare_if_made()?.tls;
        Ref::filter_map(cell.borrow(), |t| t.as_deref()).ok()
    }

    /// The TLS context or session, if any, borrowed mutably.
    #[cfg(feature = "tls")]
    #[inline]
    pub(super) fn tls_mut(&self) -> Option<RefMut<'_, Tls>> {
        let cell = &self.rare_if_made()?.tls;
        RefMut::filter_map(cell.borrow_mut(), |t| t.as_deref_mut()).ok()
    }

    /// Take the TLS context or session out of the socket.
    #[cfg(feature = "tls")]
    pub(super) fn take_tls(&self) -> Option<Box<Tls>> {
        self.rare_if_made()?.tls.borrow_mut().take()
    }

    /// Give the socket a TLS context or session (replacing any).
    #[cfg(feature = "tls")]
    pub(super) fn set_tls(&self, tls: Tls) {
        *self.rare().tls.borrow_mut() = Some(Box::new(tls));
    }
}

impl fmt::Debug for AsyncSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("AsyncSocket")
            .field("fd", &self.fd())
            .field("domain", &i.domain)
            .field("type", &i.sock_type)
            .field("buffered", &i.read.buffered.get())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Options for creating a socket (Nim's `newAsyncSocket` parameters).
///
/// Defaults as in Nim: IPv4, stream, TCP, buffered, not inheritable (close-on-exec).
#[derive(Debug, Clone)]
pub struct SocketBuilder {
    domain: Domain,
    sock_type: Type,
    protocol: Option<Protocol>,
    buffered: bool,
    inheritable: bool,
}

impl SocketBuilder {
    /// The address family (`Domain::IPV4`, `Domain::IPV6`, `Domain::UNIX`, ...).
    pub fn domain(mut self, domain: Domain) -> Self {
        self.domain = domain;
        self
    }

    /// The socket type (`SockType::STREAM`, `SockType::DGRAM`, ...). Setting it clears a
    /// protocol chosen before, so the OS picks the default protocol of the type.
    pub fn sock_type(mut self, sock_type: Type) -> Self {
        self.sock_type = sock_type;
        self.protocol = None;
        self
    }

    /// The protocol (`Protocol::TCP`, ...); by default the OS's default for the type.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Buffered reads (the default): reads ask the kernel for more than requested and keep
    /// the rest; `recv(n)` waits for `n` bytes or end-of-stream. Unbuffered: each read is one
    /// system call for at most what was asked, and `recv(n)` returns what it gave.
    pub fn buffered(mut self, buffered: bool) -> Self {
        self.buffered = buffered;
        self
    }

    /// Whether child processes inherit the descriptor (default: no, close-on-exec).
    ///
    /// # Portability
    ///
    /// On Windows the socket handle's `HANDLE_FLAG_INHERIT` (socket2's `set_no_inherit`).
    pub fn inheritable(mut self, inheritable: bool) -> Self {
        self.inheritable = inheritable;
        self
    }

    /// Create the socket and register it with this thread's event loop.
    ///
    /// # Errors
    ///
    /// The OS's error from `socket(2)` (unsupported family or protocol, out of descriptors).
    pub fn build(self) -> io::Result<AsyncSocket> {
        let socket = Socket::new(self.domain, self.sock_type, self.protocol)?;
        if self.inheritable {
            #[cfg(unix)]
            socket.set_cloexec(false)?;
            #[cfg(windows)]
            socket.set_no_inherit(false)?;
        }
        AsyncSocket::adopt(socket, self.domain, self.sock_type, self.buffered)
    }
}

impl AsyncSocket {
    /// A new IPv4 TCP socket, buffered (Nim's `newAsyncSocket()`).
    ///
    /// # Errors
    ///
    /// The OS's error from `socket(2)`, e.g. out of file descriptors.
    pub fn new() -> io::Result<AsyncSocket> {
        AsyncSocket::builder().build()
    }

    /// Options for a socket of another family, type or protocol, or unbuffered. The protocol
    /// defaults to the OS's choice for the family and type (TCP for an IP stream).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Domain};
    /// let s = AsyncSocket::builder().domain(Domain::IPV6).buffered(false).build()?;
    /// assert!(!s.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> SocketBuilder {
        SocketBuilder {
            domain: Domain::IPV4,
            sock_type: Type::STREAM,
            // The OS default: TCP for an IP stream, UDP for an IP datagram, none for Unix.
            protocol: None,
            buffered: true,
            inheritable: false,
        }
    }

    /// A socket from raw C constants (Nim's `cint` overload), close-on-exec.
    ///
    /// # Portability
    ///
    /// The constants are the platform's: `AF_INET6` is 10 on Linux, 30 on macOS, 28 on
    /// FreeBSD and 23 on Windows (`Domain::IPV6` knows; prefer [`builder`](AsyncSocket::builder)).
    ///
    /// # Errors
    ///
    /// The OS's error from `socket(2)` for an unknown combination.
    pub fn new_raw(
        domain: std::ffi::c_int,
        sock_type: std::ffi::c_int,
        protocol: std::ffi::c_int,
        buffered: bool,
    ) -> io::Result<AsyncSocket> {
        let protocol = (protocol != 0).then(|| Protocol::from(protocol));
        let (domain, sock_type) = (Domain::from(domain), Type::from(sock_type));
        let socket = Socket::new(domain, sock_type, protocol)?;
        AsyncSocket::adopt(socket, domain, sock_type, buffered)
    }

    /// Adopt an open socket descriptor (Nim's `newAsyncSocket(fd)`), e.g. from
    /// `std::net::TcpListener::into()` or inherited from a parent process.
    ///
    /// The socket takes ownership: it is switched to non-blocking mode, registered with this
    /// thread's loop, and closed with the `AsyncSocket`. Its close-on-exec flag is left as it
    /// is. Family and type are read from the descriptor.
    ///
    /// # Portability
    ///
    /// Takes an `OwnedFd` on Unix and an `OwnedSocket` on Windows
    /// ([`OwnedSocket`] is the one or the other); the standard library's
    /// sockets convert into either with `.into()`. On Windows an unbound socket has no local
    /// address, so only a bound (or connected) socket can be adopted.
    ///
    /// # Errors
    ///
    /// `fd` is not a socket, or the loop cannot register it.
    pub fn from_fd(fd: OwnedSocket, buffered: bool) -> io::Result<AsyncSocket> {
        let socket = Socket::from(fd);
        let domain = socket.local_addr()?.domain();
        let sock_type = socket.r#type()?;
        let connected = socket.peer_addr().is_ok();
        let s = AsyncSocket::adopt(socket, domain, sock_type, buffered)?;
        s.inner.write.connected.set(connected);
        Ok(s)
    }

    pub(crate) fn adopt(
        socket: Socket,
        domain: Domain,
        sock_type: Type,
        buffered: bool,
    ) -> io::Result<AsyncSocket> {
        socket.set_nonblocking(true)?;
        sys::prepare(&socket)?;
        Self::register(socket, domain, sock_type, buffered)
    }

    /// Register a socket that is already non-blocking.
    pub(crate) fn register(
        socket: Socket,
        domain: Domain,
        sock_type: Type,
        buffered: bool,
    ) -> io::Result<AsyncSocket> {
        super::convert::prepare()?;
        let io = Registration::new(&crate::dispatch::driver()?, sys::raw(&socket))?;
        let sock = AsyncSocket {
            inner: Rc::new(Inner {
                io,
                local: super::local::local(),
                socket: RefCell::new(Some(socket)),
                domain,
                sock_type,
                read: ReadState::new(buffered),
                write: WriteState::default(),
                rare: OnceCell::new(),
            }),
        };
        // An event fetches the socket's state into the cache with its readiness, ahead of
        // the task that reads it (the driver's "Many connections"): the whole block, the
        // `Rc`'s counts too (a send's deferral clones it).
        let hint = sys::Lines::of_rc(&sock.inner, std::mem::size_of::<Inner>());
        sock.inner.io.set_hint(hint);
        Ok(sock)
    }

    /// Bind to `address:port` (Nim's `bindAddr`). An empty `address` means every interface
    /// of the socket's family (`0.0.0.0` or `::`); port 0 lets the OS choose.
    ///
    /// A host name is resolved here, blocking the loop for the lookup; pass an IP literal to
    /// avoid that.
    ///
    /// # Errors
    ///
    /// The address does not resolve to the socket's family, or `bind(2)` fails (in use,
    /// permission).
    pub fn bind_addr(&self, port: u16, address: &str) -> io::Result<()> {
        let addr = if address.is_empty() {
            match self.inner.domain {
                d if d == Domain::IPV6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                d if d == Domain::IPV4 => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an empty address needs an IPv4 or IPv6 socket",
                    ))
                }
            }
        } else {
            let addrs = super::resolve::resolve_blocking(address, port)?;
            let fit = self.family_map();
            addrs.into_iter().find_map(fit).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{address} has no address of the socket's family"),
                )
            })?
        };
        self.socket()?.bind(&SockAddr::from(addr))
    }

    /// Mark the socket as accepting connections, with the platform's `SOMAXCONN` backlog
    /// (Nim's `listen()`).
    ///
    /// # Errors
    ///
    /// The OS's error from `listen(2)`.
    pub fn listen(&self) -> io::Result<()> {
        self.listen_backlog(SOMAXCONN)
    }

    /// [`listen`](AsyncSocket::listen) with an explicit backlog.
    ///
    /// # Errors
    ///
    /// The OS's error from `listen(2)`.
    pub fn listen_backlog(&self, backlog: i32) -> io::Result<()> {
        self.socket()?.listen(backlog)
    }

    /// Read a boolean option (Nim's `getSockOpt`).
    ///
    /// # Portability
    ///
    /// On Windows through Winsock's `getsockopt`; [`SoBool::ReusePort`] has no Windows
    /// counterpart and fails with `Unsupported` (the guide's "Platforms" table lists the rest).
    ///
    /// # Errors
    ///
    /// The socket is closed, or the option does not apply to it (e.g. `NoDelay` on UDP);
    /// `Unsupported` for an option the platform does not have.
    pub fn get_sock_opt(&self, opt: SoBool) -> io::Result<bool> {
        sys::get_bool_opt(&*self.socket()?, opt)
    }

    /// Set a boolean option (Nim's `setSockOpt`).
    ///
    /// # Errors
    ///
    /// The socket is closed, the option is read-only (`AcceptConn`), does not apply, or needs
    /// privileges (`Debug` on Linux); `Unsupported` for an option the platform does not have
    /// (`ReusePort` on Windows: see [`get_sock_opt`](AsyncSocket::get_sock_opt)).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, SoBool};
    /// let s = AsyncSocket::new()?;
    /// s.set_sock_opt(SoBool::ReuseAddr, true)?;
    /// assert!(s.get_sock_opt(SoBool::ReuseAddr)?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_sock_opt(&self, opt: SoBool, value: bool) -> io::Result<()> {
        sys::set_bool_opt(&*self.socket()?, opt, value)
    }

    /// The local address as text and port (Nim's `getLocalAddr`). IPv4-mapped IPv6 addresses
    /// are shown as plain IPv4 (`127.0.0.1`, not `::ffff:127.0.0.1`). For a Unix socket: its
    /// path and port 0; `""` if it is unnamed; `@name` for a Linux abstract name.
    ///
    /// # Portability
    ///
    /// An unbound socket has the unspecified address and port 0 on Unix; on Windows it has no
    /// address at all: an error (`WSAEINVAL`, kind `InvalidInput`).
    ///
    /// # Errors
    ///
    /// The socket is closed; on Windows, it is not bound.
    pub fn local_addr(&self) -> io::Result<(String, u16)> {
        addr_text(&self.socket()?.local_addr()?)
    }

    /// The peer's address as text and port (Nim's `getPeerAddr`), in the same form as
    /// [`local_addr`](AsyncSocket::local_addr).
    ///
    /// # Errors
    ///
    /// The socket is closed, not connected, or not an IP socket.
    pub fn peer_addr(&self) -> io::Result<(String, u16)> {
        addr_text(&self.socket()?.peer_addr()?)
    }

    /// The local address, typed.
    ///
    /// # Errors
    ///
    /// As [`local_addr`](AsyncSocket::local_addr).
    pub fn local_socket_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.socket()?.local_addr()?)
    }

    /// The peer's address, typed.
    ///
    /// # Errors
    ///
    /// As [`peer_addr`](AsyncSocket::peer_addr).
    pub fn peer_socket_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.socket()?.peer_addr()?)
    }

    /// The OS descriptor (Nim's `getFd`), or [`INVALID_SOCKET`] once
    /// closed (Nim's `osInvalidSocket`).
    ///
    /// # Portability
    ///
    /// A file descriptor (`RawFd`, -1 once closed) on Unix; a Winsock `SOCKET` (`RawSocket`,
    /// `!0` once closed) on Windows: [`RawSocket`] is the one or the other.
    pub fn fd(&self) -> RawSocket {
        self.inner
            .socket
            .borrow()
            .as_ref()
            .map_or(INVALID_SOCKET, sys::raw)
    }

    /// Whether [`close`](AsyncSocket::close) was called (Nim's `isClosed`).
    pub fn is_closed(&self) -> bool {
        self.inner.io.is_closed()
    }

    /// Whether this socket buffers reads.
    pub fn is_buffered(&self) -> bool {
        self.inner.read.buffered.get()
    }

    /// Whether received bytes wait in the socket's buffer, so that a read can complete
    /// without the kernel (Nim's `hasDataBuffered`).
    pub fn has_data_buffered(&self) -> bool {
        !self.inner.read.buf.borrow().is_empty() || self.tls_has_plaintext()
    }

    /// Whether a send found the peer gone (reset or broken pipe). Sends after that fail
    /// with `BrokenPipe`; receives return what was buffered, then end-of-stream.
    pub fn is_disconnected(&self) -> bool {
        self.inner.write.is_disconnected()
    }

    /// Shut down the writing half (`shutdown(SHUT_WR)`): the peer reads end-of-stream once it
    /// has every byte sent before (on TLS, close_notify goes first). Bytes the kernel does
    /// not take at once are written by a background task, which then shuts down. Sends still
    /// waiting (back-pressure) fail, and the part of their message not yet written is
    /// dropped. Reading goes on.
    ///
    /// # Errors
    ///
    /// The socket is closed or not connected.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.socket()?;
        if self.inner.write.shut.replace(true) {
            return Ok(());
        }
        self.try_flush_now();
        self.fail_waiting_sends(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the socket was shut down for writing before these bytes were sent",
        ));
        // A send the io_uring driver made must complete before the end of the stream (one
        // kernel entry lets it finish now: no turn may come before the caller blocks).
        if self.owes_bytes() || !self.inner.io.finish_sending_now() {
            self.shutdown_in_background();
            return Ok(());
        }
        // On TLS the peer must read close_notify before the end of the stream, or it sees a
        // truncation.
        self.tls_send_close_notify();
        if self.owes_bytes() {
            self.shutdown_in_background();
            return Ok(());
        }
        self.socket()?.shutdown(std::net::Shutdown::Write)
    }

    /// Close the socket (Nim's `close`). Idempotent.
    ///
    /// Bytes of completed (or dropped) sends that are still queued are written, as
    /// [`CLOSE_LINGER`](crate::CLOSE_LINGER) says (the kernel itself finishes sending after
    /// `close(2)` the same way); on TLS, close_notify follows them. To know that every byte
    /// reached the kernel, await [`flush`](AsyncSocket::flush) before closing.
    ///
    /// A TLS 1.3 client that closes soon after its handshake (within about one handshake's
    /// time, and at least 250 ms) also keeps the descriptor open that way, its sending side
    /// ended, until the server's session tickets arrive or the server closes (1 s at most):
    /// tickets arriving after `close(2)` would make the kernel answer with a reset, which
    /// destroys the bytes still on their way to the server (OpenSSL issue 10880, "Data loss
    /// with TLS 1.3").
    ///
    /// Every operation waiting on the socket (in any task) completes with an error of kind
    /// `NotConnected`; a send still waiting (back-pressure) fails, and the part of its message
    /// not yet written is dropped. The descriptor leaves the poller before it is closed, so
    /// its number cannot be reused while still registered. Bytes received but not read are
    /// discarded.
    ///
    /// # Errors
    ///
    /// An error met earlier while writing queued bytes that no call has reported yet (the
    /// socket is closed all the same). A disconnection is no such error: see
    /// [`is_disconnected`](AsyncSocket::is_disconnected).
    pub fn close(&self) -> io::Result<()> {
        let inner = &self.inner;
        if inner.io.is_closed() {
            return Ok(());
        }
        self.try_flush_now();
        self.fail_waiting_sends(error::closed());
        let report = inner.write.take_unreported_error();
        if let Some(socket) = inner.socket.borrow_mut().take() {
            // Handles remain (this one at least): a lent number must stay allocated.
            let (socket, unsent, shared) = if inner.lent() != INVALID_SOCKET {
                let unsent = inner.io.deregister(sys::raw(&socket));
                let (socket, shared) = super::convert::retire_lent(socket);
                (socket, unsent, shared)
            } else {
                (Some(socket), Vec::new(), false)
            };
            if let Some(socket) = socket {
                inner.finish_closed(socket, unsent, shared);
            }
        }
        inner.read.buf.borrow_mut().clear();
        report.map_or(Ok(()), Err)
    }

    /// Close at once, as a reset: queued output is discarded (no linger task, no TLS
    /// close_notify) and `SO_LINGER` 0 makes `close(2)` send a reset. For a server closing
    /// the connections left at its shutdown deadline (`serve.rs`).
    pub(crate) fn reset(&self) {
        let inner = &self.inner;
        if inner.io.is_closed() {
            return;
        }
        inner.write.buf.borrow_mut().discard(&inner.local.pool);
        #[cfg(feature = "tls")]
        inner.take_tls();
        if let Some(socket) = inner.socket.borrow_mut().take() {
            // Best effort: without it the peer sees an orderly end instead of a reset.
            let _ = socket.set_linger(Some(std::time::Duration::ZERO));
            // A send the driver made is cancelled; what it did not send is dropped.
            drop(inner.io.deregister(sys::raw(&socket)));
            if inner.lent() != INVALID_SOCKET {
                // The lent handle stays: closing the duplicate may not end the connection.
                if let (Some(dup), true) = super::convert::retire_lent(socket) {
                    let _ = dup.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        inner.read.buf.borrow_mut().clear();
    }

    /// Take the descriptor out of the socket (see `convert.rs`): the poller forgets it and the
    /// socket is closed without touching the descriptor.
    pub(super) fn take_socket(&self) -> Option<Socket> {
        let socket = self.inner.socket.borrow_mut().take()?;
        // `into_fd` refuses while the driver's send is in flight: nothing is unsent.
        let unsent = self.inner.io.deregister(sys::raw(&socket));
        debug_assert!(unsent.is_empty());
        Some(socket)
    }

    /// The "closed" error once the socket is closed (cheaper than borrowing the socket).
    #[inline]
    pub(crate) fn check_open(&self) -> io::Result<()> {
        if self.inner.io.is_closed() {
            return Err(error::closed());
        }
        Ok(())
    }

    /// The open socket's descriptor number.
    pub(super) fn inner_socket_fd(&self) -> Option<RawSocket> {
        self.inner.socket.borrow().as_ref().map(sys::raw)
    }

    /// The OS socket, or the "closed" error.
    #[inline]
    pub(crate) fn socket(&self) -> io::Result<Ref<'_, Socket>> {
        Ref::filter_map(self.inner.socket.borrow(), Option::as_ref).map_err(|_| error::closed())
    }

    /// An address as this socket's family can use it: as is when the families match; an
    /// IPv4 address as IPv4-mapped IPv6 (`::ffff:a.b.c.d`) on a dual-stack IPv6 socket;
    /// `None` for an IPv6 address on an IPv4 socket, or an IPv4 one on an IPv6-only socket.
    pub(crate) fn family_map(&self) -> impl Fn(SocketAddr) -> Option<SocketAddr> {
        let domain = self.inner.domain;
        let dual = domain == Domain::IPV6 && self.reaches_ipv4();
        move |a| match a {
            SocketAddr::V4(v4) if dual => Some(SocketAddr::new(
                IpAddr::V6(v4.ip().to_ipv6_mapped()),
                v4.port(),
            )),
            SocketAddr::V4(_) if domain == Domain::IPV4 => Some(a),
            SocketAddr::V6(_) if domain == Domain::IPV6 => Some(a),
            _ => None,
        }
    }

    /// Whether this socket reaches IPv4 peers: an IPv4 socket, or an IPv6 one that is not
    /// IPv6-only (dual stack: Linux's default for IPv6 sockets, not Windows').
    pub(crate) fn reaches_ipv4(&self) -> bool {
        match self.inner.domain {
            d if d == Domain::IPV4 => true,
            d if d == Domain::IPV6 => self
                .socket()
                .and_then(|s| s.only_v6())
                .is_ok_and(|only| !only),
            _ => false,
        }
    }

    /// Whether the socket is a byte stream (a short read means the kernel had no more).
    pub(crate) fn is_stream(&self) -> bool {
        self.inner.sock_type == Type::STREAM
    }
}

impl Inner {
    /// The socket is closed: leave the poller before the descriptor closes, then finish the
    /// queued bytes (every send that queued them has completed or was dropped) and say
    /// goodbye on TLS, in the background (`linger.rs`).
    ///
    /// `unsent`: bytes a send of the driver took and did not send (when the socket left the
    /// poller already); they go first. `shared`: a lent handle still refers to the socket, so
    /// the connection is ended by a shutdown, not by closing `socket` (see `linger::finish`).
    fn finish_closed(&self, socket: Socket, mut unsent: Vec<u8>, shared: bool) {
        unsent.extend(self.io.deregister(sys::raw(&socket)));
        let rest = self.write.buf.borrow_mut().take_pending();
        #[cfg(feature = "tls")]
        super::linger::finish(
            self.io.driver(),
            socket,
            unsent,
            rest,
            self.take_tls(),
            shared,
        );
        #[cfg(not(feature = "tls"))]
        super::linger::finish(self.io.driver(), socket, unsent, rest, shared);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: leave the poller before the descriptor closes, then
        // finish the queued bytes (every send that queued them has completed or was
        // dropped) and say goodbye on TLS.
        if let Some(socket) = self.socket.get_mut().take() {
            // The last handle: no borrow of a lent number can be left.
            self.finish_closed(socket, Vec::new(), false);
        } else if self.lent() != INVALID_SOCKET {
            super::convert::release_lent(self.lent());
        }
    }
}

/// Two handles are equal when they are clones of one socket (as Nim compares `ref`s).
impl PartialEq for AsyncSocket {
    fn eq(&self, other: &AsyncSocket) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for AsyncSocket {}

fn ip_addr(a: SockAddr) -> io::Result<SocketAddr> {
    a.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket address"))
}

/// The text form of an address: IPv4-mapped IPv6 shown as IPv4; for Unix sockets the path
/// (`""` when unnamed, `@name` for an abstract name) and port 0.
pub(crate) fn addr_text(a: &SockAddr) -> io::Result<(String, u16)> {
    let mut text = String::new();
    let port = addr_text_into(a, &mut text)?;
    Ok((text, port))
}

/// [`addr_text`] into a caller's string (cleared first; no allocation once it has grown).
pub(crate) fn addr_text_into(a: &SockAddr, out: &mut String) -> io::Result<u16> {
    use std::fmt::Write;
    out.clear();
    if let Some(ip) = a.as_socket() {
        let _ = write!(out, "{}", ip.ip().to_canonical());
        return Ok(ip.port());
    }
    // An unnamed Unix peer comes back from the kernel as an empty address: no family at all.
    if a.domain() == Domain::UNIX || sys::is_unspec(a) {
        #[cfg(unix)]
        if let Some(path) = a.as_pathname() {
            out.push_str(&path.to_string_lossy());
        } else if let Some(name) = a.as_abstract_namespace() {
            out.push('@');
            out.push_str(&String::from_utf8_lossy(name));
        }
        return Ok(0);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "address of an unknown family",
    ))
}

#[cfg(test)]
mod tests {
    /// Every socket has one, idle connections too: with the `Rc`'s counts, 200 bytes fit a
    /// 224-byte block of glibc's allocator (with TLS, the accept back-off and the lent
    /// number inline it was 232 bytes, a 256-byte block). Per operation it is also fewer
    /// cache lines to touch when thousands of connections take turns.
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn a_sockets_state_fits_in_200_bytes() {
        assert!(std::mem::size_of::<super::Inner>() <= 200);
    }
}
