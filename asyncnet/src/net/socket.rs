//! `AsyncSocket`: creation, options, addresses, closing.
#![forbid(unsafe_code)]

use std::cell::{Cell, Ref, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::buffer::{ReadBuffer, WriteBuffer};
use super::options::SoBool;
use crate::driver::{Direction, Driver, IoState};
use crate::{error, sys};

/// Nim's `BufferSize`: how much a buffered read asks the kernel for at least.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// Nim's `MaxLineLength`: the default `max_length` of line reads.
pub const MAX_LINE_LENGTH: usize = 1_000_000;

/// The default backlog of [`AsyncSocket::listen`] (the platform's `SOMAXCONN`).
pub const SOMAXCONN: i32 = libc::SOMAXCONN;

/// A buffered, non-blocking socket on this thread's event loop (Nim's `AsyncSocket`).
///
/// A cheap handle: clones share one socket, so one task may read while another writes (as
/// with Nim's `ref` type). The socket closes when [`close`](AsyncSocket::close) is called or
/// the last clone is dropped. It belongs to the thread that made it (`!Send`).
#[derive(Clone)]
pub struct AsyncSocket {
    pub(crate) inner: Rc<Inner>,
}

/// Why the sending side gave up on queued bytes.
#[derive(Debug)]
pub(crate) struct SendFailure {
    /// Bytes from this sequence number on were discarded, not sent.
    pub(crate) lost_from: u64,
    pub(crate) kind: io::ErrorKind,
    pub(crate) message: String,
    /// A disconnection (which `SafeDisconn` sends do not report as an error).
    pub(crate) disconnect: bool,
    /// A call has returned it as an error (`close` and waiting reads report it only if not).
    pub(crate) reported: bool,
}

pub(crate) struct Inner {
    pub(crate) driver: Rc<Driver>,
    pub(crate) io: Rc<IoState>,
    /// `None` once closed.
    socket: RefCell<Option<Socket>>,
    fd: Cell<RawFd>,
    pub(crate) domain: Domain,
    pub(crate) sock_type: Type,
    /// Reads are buffered (always, once TLS is on: records are decrypted whole).
    pub(crate) buffered: Cell<bool>,
    /// The TLS session, once the socket is wrapped and the handshake has started (boxed:
    /// it is over a kilobyte, and most sockets never have one).
    pub(crate) tls: RefCell<Option<Box<rustls::Connection>>>,
    /// Decrypted bytes wait inside the TLS session.
    pub(crate) tls_plain: Cell<bool>,
    /// Set by `wrap_socket`: `connect` and `accept` start TLS with it.
    pub(crate) tls_ctx: RefCell<Option<Box<crate::tls::TlsContext>>>,
    /// The server name a TLS client asked for (DNS names only).
    pub(crate) tls_name: RefCell<Option<Box<str>>>,
    pub(crate) rbuf: RefCell<ReadBuffer>,
    /// A read returned 0: the peer sends nothing more.
    pub(crate) read_eof: Cell<bool>,
    pub(crate) wbuf: RefCell<WriteBuffer>,
    /// Boxed, as the TLS state: rare, and an idle connection should cost little.
    pub(crate) send_failure: RefCell<Option<Box<SendFailure>>>,
    /// A background task is writing the output buffer.
    pub(crate) flushing: Cell<bool>,
    /// The socket is on the loop's list of buffers to write before it sleeps.
    pub(crate) flush_deferred: Cell<bool>,
    /// The socket has had a peer (connected, accepted, or adopted connected): a send error
    /// then means the peer went away, not that there never was one.
    pub(crate) connected: Cell<bool>,
    /// `shutdown_write` was called: sends fail.
    pub(crate) write_shut: Cell<bool>,
    pub(crate) accept_error: RefCell<Option<io::Error>>,
    pub(crate) accept_backoff: Cell<Duration>,
}

impl fmt::Debug for AsyncSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("AsyncSocket")
            .field("fd", &i.fd.get())
            .field("domain", &i.domain)
            .field("type", &i.sock_type)
            .field("buffered", &i.buffered.get())
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
            socket.set_cloexec(false)?;
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
    /// # Errors
    ///
    /// The OS's error from `socket(2)` for an unknown combination.
    pub fn new_raw(
        domain: libc::c_int,
        sock_type: libc::c_int,
        protocol: libc::c_int,
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
    /// # Errors
    ///
    /// `fd` is not a socket, or the loop cannot register it.
    pub fn from_fd(fd: OwnedFd, buffered: bool) -> io::Result<AsyncSocket> {
        let socket = Socket::from(fd);
        let domain = socket.local_addr()?.domain();
        let sock_type = socket.r#type()?;
        let connected = socket.peer_addr().is_ok();
        let s = AsyncSocket::adopt(socket, domain, sock_type, buffered)?;
        s.inner.connected.set(connected);
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
        let driver = crate::dispatch::driver()?;
        let fd = socket.as_raw_fd();
        let io = driver.register(fd)?;
        Ok(AsyncSocket {
            inner: Rc::new(Inner {
                driver,
                io,
                socket: RefCell::new(Some(socket)),
                fd: Cell::new(fd),
                domain,
                sock_type,
                buffered: Cell::new(buffered),
                tls: RefCell::new(None),
                tls_plain: Cell::new(false),
                tls_ctx: RefCell::new(None),
                tls_name: RefCell::new(None),
                rbuf: RefCell::new(ReadBuffer::default()),
                read_eof: Cell::new(false),
                wbuf: RefCell::new(WriteBuffer::default()),
                send_failure: RefCell::new(None),
                flushing: Cell::new(false),
                flush_deferred: Cell::new(false),
                write_shut: Cell::new(false),
                connected: Cell::new(false),
                accept_error: RefCell::new(None),
                accept_backoff: Cell::new(Duration::ZERO),
            }),
        })
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
            let addrs = super::dial::resolve_blocking(address, port)?;
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
    /// # Errors
    ///
    /// The socket is closed, or the option does not apply to it (e.g. `NoDelay` on UDP).
    pub fn get_sock_opt(&self, opt: SoBool) -> io::Result<bool> {
        let (level, name) = opt.level_and_name();
        sys::get_bool_opt(self.socket()?.as_raw_fd(), level, name)
    }

    /// Set a boolean option (Nim's `setSockOpt`).
    ///
    /// # Errors
    ///
    /// The socket is closed, the option is read-only (`AcceptConn`), does not apply, or needs
    /// privileges (`Debug` on Linux).
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
        let (level, name) = opt.level_and_name();
        sys::set_bool_opt(self.socket()?.as_raw_fd(), level, name, value)
    }

    /// The local address as text and port (Nim's `getLocalAddr`). IPv4-mapped IPv6 addresses
    /// are shown as plain IPv4 (`127.0.0.1`, not `::ffff:127.0.0.1`). For a Unix socket: its
    /// path and port 0; `""` if it is unnamed; `@name` for a Linux abstract name.
    ///
    /// # Errors
    ///
    /// The socket is closed.
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

    /// The OS descriptor (Nim's `getFd`), or -1 once closed (Nim's `osInvalidSocket`).
    pub fn fd(&self) -> RawFd {
        self.inner.fd.get()
    }

    /// Whether [`close`](AsyncSocket::close) was called (Nim's `isClosed`).
    pub fn is_closed(&self) -> bool {
        self.inner.io.is_closed()
    }

    /// Whether this socket buffers reads.
    pub fn is_buffered(&self) -> bool {
        self.inner.buffered.get()
    }

    /// Whether received bytes wait in the socket's buffer, so that a read can complete
    /// without the kernel (Nim's `hasDataBuffered`).
    pub fn has_data_buffered(&self) -> bool {
        !self.inner.rbuf.borrow().is_empty() || self.inner.tls_plain.get()
    }

    /// Whether a send found the peer gone (reset or broken pipe). Sends after that fail
    /// with `BrokenPipe`; receives return what was buffered, then end-of-stream.
    pub fn is_disconnected(&self) -> bool {
        self.inner
            .send_failure
            .borrow()
            .as_ref()
            .is_some_and(|f| f.disconnect)
    }

    /// The last resource error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) that `accept` met
    /// and rode out by waiting, taken so that the next call reports only newer ones.
    pub fn take_accept_error(&self) -> Option<io::Error> {
        self.inner.accept_error.borrow_mut().take()
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
        if self.inner.write_shut.replace(true) {
            return Ok(());
        }
        self.try_flush_now();
        self.fail_waiting_sends(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the socket was shut down for writing before these bytes were sent",
        ));
        if self.owes_bytes() {
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
    /// Bytes of completed (or dropped) sends that are still queued are written: what the
    /// kernel does not take at once gets up to [`CLOSE_LINGER`](crate::CLOSE_LINGER) in a
    /// background task, which then closes the descriptor, as the kernel itself finishes
    /// sending after `close(2)`. On TLS, close_notify follows them. That task runs on the
    /// loop: a thread that closes and then blocks (or leaves the loop for good) may leave
    /// those bytes unsent. To know that every byte reached the kernel, await
    /// [`flush`](AsyncSocket::flush) before closing.
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
        let report = self.take_unreported_write_error();
        let fd = inner.fd.replace(-1);
        inner.driver.deregister(&inner.io, fd);
        let socket = inner.socket.borrow_mut().take();
        let rest = inner.wbuf.borrow_mut().take_pending();
        let conn = inner.tls.borrow_mut().take();
        if let Some(socket) = socket {
            super::linger::finish(&inner.driver, socket, rest, conn);
        }
        *inner.rbuf.borrow_mut() = ReadBuffer::default();
        report.map_or(Ok(()), Err)
    }

    /// The OS socket, or the "closed" error.
    pub(crate) fn socket(&self) -> io::Result<Ref<'_, Socket>> {
        Ref::filter_map(self.inner.socket.borrow(), Option::as_ref).map_err(|_| error::closed())
    }

    /// An address as this socket's family can use it: as is when the families match; an
    /// IPv4 address as IPv4-mapped IPv6 (`::ffff:a.b.c.d`) on an IPv6 socket, which reaches
    /// IPv4 peers unless the socket is IPv6-only (then the OS refuses, with a clear error);
    /// `None` for an IPv6 address on an IPv4 socket.
    pub(crate) fn family_map(&self) -> impl Fn(SocketAddr) -> Option<SocketAddr> {
        let domain = self.inner.domain;
        move |a| match a {
            SocketAddr::V4(v4) if domain == Domain::IPV6 => Some(SocketAddr::new(
                IpAddr::V6(v4.ip().to_ipv6_mapped()),
                v4.port(),
            )),
            SocketAddr::V4(_) if domain == Domain::IPV4 => Some(a),
            SocketAddr::V6(_) if domain == Domain::IPV6 => Some(a),
            _ => None,
        }
    }

    /// Whether the socket is a byte stream (a short read means the kernel had no more).
    pub(crate) fn is_stream(&self) -> bool {
        self.inner.sock_type == Type::STREAM
    }

    /// One `read(2)`/`recv(2)` with readiness bookkeeping: `WouldBlock` clears read readiness,
    /// and so does a short read on a stream (the kernel had no more; asking again would only
    /// cost a system call to hear `WouldBlock`). `EINTR` is retried.
    pub(crate) fn raw_read(&self, buf: &mut [u8], peek: bool) -> io::Result<usize> {
        if self.is_ssl() {
            // Reads on a TLS socket are buffered, so they never peek at the kernel. A wrapped
            // socket whose handshake never started fails here rather than read plaintext.
            return self.tls_read(buf);
        }
        let socket = self.socket()?;
        loop {
            let r = if peek {
                sys::peek(&socket, buf)
            } else {
                io::Read::read(&mut &*socket, buf)
            };
            match r {
                Ok(n) => {
                    if n > 0 && n < buf.len() && !peek && self.is_stream() {
                        self.inner.io.clear(Direction::Read);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.inner.io.clear(Direction::Read);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// One `send(2)` without `SIGPIPE`; `WouldBlock` clears write readiness. `EINTR` is retried.
    pub(crate) fn raw_write(&self, buf: &[u8]) -> io::Result<usize> {
        if self.is_ssl() {
            return self.tls_write(buf);
        }
        let socket = self.socket()?;
        loop {
            match socket.send_with_flags(buf, sys::SEND_FLAGS) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.inner.io.clear(Direction::Write);
                    }
                    return Err(e);
                }
                Ok(n) => return Ok(n),
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: leave the poller before the descriptor closes, then
        // finish the queued bytes (every send that queued them has completed or was
        // dropped) and say goodbye on TLS.
        if let Some(socket) = self.socket.get_mut().take() {
            self.driver.deregister(&self.io, socket.as_raw_fd());
            let rest = self.wbuf.get_mut().take_pending();
            let conn = self.tls.get_mut().take();
            super::linger::finish(&self.driver, socket, rest, conn);
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

impl AsRawFd for AsyncSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

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
    if a.domain() == Domain::UNIX || a.family() == libc::AF_UNSPEC as libc::sa_family_t {
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
