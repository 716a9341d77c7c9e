//! Conversions between [`AsyncSocket`] and the standard library's sockets and descriptors, so
//! that `socket2::SockRef::from(&sock)` (keepalive intervals, TTL, buffer sizes,
//! `IPV6_V6ONLY`, multicast, ...) needs no `unsafe`, and sockets made elsewhere can be adopted.
//!
//! The one module of `net` with `unsafe` code: lending the descriptor (`AsFd`) soundly.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
#[cfg(unix)]
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
#[cfg(windows)]
use std::os::windows::io::{
    AsRawHandle, AsRawSocket, AsSocket, BorrowedSocket, FromRawSocket, IntoRawSocket, OwnedHandle,
    OwnedSocket, RawSocket,
};
use std::rc::Rc;
use std::sync::OnceLock;

use socket2::{Domain, Socket, Type};

use super::socket::AsyncSocket;
use crate::sys;

#[cfg(unix)]
impl AsRawFd for AsyncSocket {
    /// As [`fd`](AsyncSocket::fd): -1 once closed.
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

#[cfg(windows)]
impl AsRawSocket for AsyncSocket {
    /// As [`fd`](AsyncSocket::fd): `INVALID_SOCKET` once closed.
    fn as_raw_socket(&self) -> RawSocket {
        self.fd()
    }
}

/// The null device (`/dev/null`; `NUL` on Windows), lent by sockets closed before anything
/// borrowed their descriptor: no socket, so a socket call through it fails with `ENOTSOCK`
/// (`WSAENOTSOCK`).
#[cfg(unix)]
static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
#[cfg(windows)]
static DEV_NULL: OnceLock<OwnedHandle> = OnceLock::new();

#[cfg(unix)]
const NULL_DEVICE: &str = "/dev/null";
#[cfg(windows)]
const NULL_DEVICE: &str = "NUL";

/// Open [`DEV_NULL`] (with the process's first socket, so that lending never needs a free
/// descriptor later).
pub(super) fn prepare() -> io::Result<()> {
    if DEV_NULL.get().is_none() {
        let null = File::open(NULL_DEVICE)?.into();
        let _ = DEV_NULL.set(null);
    }
    Ok(())
}

#[cfg(unix)]
fn not_a_socket() -> BorrowedFd<'static> {
    DEV_NULL
        .get()
        .expect("opened before the first socket was made")
        .as_fd()
}

#[cfg(unix)]
impl AsFd for AsyncSocket {
    /// The socket's descriptor, for `socket2::SockRef::from(&sock)` and other calls the
    /// socket does not offer itself. Options set this way apply to the socket; reading or
    /// writing through it bypasses the socket's buffers (don't).
    ///
    /// A descriptor once lent keeps its number until the last handle of the socket is gone:
    /// [`close`](AsyncSocket::close) then points the number at `/dev/null` (the connection
    /// itself closes as usual), so a borrow never reaches a file that reused it. Through a
    /// closed socket, socket calls fail with `ENOTSOCK` ("Socket operation on non-socket").
    fn as_fd(&self) -> BorrowedFd<'_> {
        let lent = self.inner.lent();
        let raw = match self.inner_socket_fd() {
            Some(raw) => raw,
            None if lent != sys::INVALID_SOCKET => lent,
            None => return not_a_socket(),
        };
        self.inner.rare().lent.set(raw);
        // SAFETY: `raw` stays an open descriptor for as long as any handle of the socket
        // lives, and so for the borrow, which cannot outlive `self`: the socket holds it open
        // until `close`, which for a lent number (`lent` is set just above) calls
        // `retire_lent` instead of closing it, and the number is closed only by
        // `release_lent`, from the drop of the socket's last handle.
        unsafe { BorrowedFd::borrow_raw(raw) }
    }
}

#[cfg(windows)]
fn not_a_socket() -> BorrowedSocket<'static> {
    let null = DEV_NULL
        .get()
        .expect("opened before the first socket was made");
    // SAFETY: the handle of the null device stays open for the whole program (a static that
    // is never dropped) and is not `INVALID_SOCKET`; Winsock calls through it fail with
    // `WSAENOTSOCK`, as socket calls through `/dev/null` fail on Unix.
    unsafe { BorrowedSocket::borrow_raw(null.as_raw_handle() as RawSocket) }
}

#[cfg(windows)]
impl AsSocket for AsyncSocket {
    /// The socket's handle, for `socket2::SockRef::from(&sock)` and other calls the socket
    /// does not offer itself. Options set this way apply to the socket; reading or writing
    /// through it bypasses the socket's buffers (don't).
    ///
    /// # Portability
    ///
    /// Windows cannot point a handle elsewhere (no `dup2`): a handle once lent stays the
    /// socket's until the last handle of the `AsyncSocket` is gone. [`close`](AsyncSocket::close)
    /// of a lent socket still ends the connection as on Unix (its queued bytes written, then
    /// a shutdown of both directions), but calls through the handle reach that shut-down
    /// socket, not `WSAENOTSOCK`, until then. Through a socket closed before anything
    /// borrowed it, calls fail with `WSAENOTSOCK`.
    fn as_socket(&self) -> BorrowedSocket<'_> {
        let lent = self.inner.lent();
        let raw = match self.inner_socket_fd() {
            Some(raw) => raw,
            None if lent != sys::INVALID_SOCKET => lent,
            None => return not_a_socket(),
        };
        self.inner.rare().lent.set(raw);
        // SAFETY: `raw` stays an open socket for as long as any handle of the socket lives,
        // and so for the borrow, which cannot outlive `self`: the socket holds it open until
        // `close`, which for a lent handle (`lent` is set just above) calls `retire_lent`
        // instead of closing it, and the handle is closed only by `release_lent`, from the
        // drop of the socket's last handle.
        unsafe { BorrowedSocket::borrow_raw(raw) }
    }
}

/// Close a socket whose handle was lent ([`AsSocket`]): the handle stays open until
/// [`release_lent`] (Windows has no `dup2` to point it elsewhere), and so does the socket.
/// Returns a duplicate of the socket to finish writing with, if one could be made, and
/// `true`: the handle kept refers to the socket, so closing the duplicate does not end the
/// connection; its caller ends it with a shutdown. (Without a duplicate it is ended here.)
#[cfg(windows)]
pub(super) fn retire_lent(socket: Socket) -> (Option<Socket>, bool) {
    let dup = socket.try_clone().ok();
    if dup.is_none() {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
    let _kept_until_release = socket.into_raw_socket();
    (dup, true)
}

/// Close the handle a lent, closed socket kept (the socket's last handle is gone, and with it
/// every borrow).
#[cfg(windows)]
pub(super) fn release_lent(raw: RawSocket) {
    // SAFETY: `raw` came from `retire_lent`'s `into_raw_socket`, is owned by the socket being
    // dropped, and is closed here once; no borrow is left (they cannot outlive a handle).
    drop(unsafe { OwnedSocket::from_raw_socket(raw) });
}

/// Close a socket whose number was lent ([`AsFd`]): the number stays allocated, pointing at
/// `/dev/null` (or, out of descriptors, still at the socket), until [`release_lent`].
/// Returns a duplicate of the socket (the same connection, another number) to finish writing
/// with, if one could be made, and whether the number kept still refers to the socket (out
/// of descriptors), so that closing the duplicate would not end the connection: its caller
/// then ends it with a shutdown. (Without a duplicate it is ended here.)
#[cfg(unix)]
pub(super) fn retire_lent(socket: Socket) -> (Option<Socket>, bool) {
    let dup = socket.try_clone().ok();
    let mut shared = true;
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: `null` and the socket's number are open descriptors owned here; dup2 makes
        // the number refer to /dev/null in one step (the socket loses this reference; `dup`
        // keeps it alive).
        shared = unsafe { libc::dup2(null.as_raw_fd(), socket.as_raw_fd()) } < 0;
    }
    if dup.is_none() && shared {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
    let _kept_until_release = socket.into_raw_fd();
    (dup, shared)
}

/// Close the number a lent, closed socket kept (the socket's last handle is gone, and with it
/// every borrow).
#[cfg(unix)]
pub(super) fn release_lent(raw: RawFd) {
    // SAFETY: `raw` came from `retire_lent`'s `into_raw_fd`, is owned by the socket being
    // dropped, and is closed here once; no borrow is left (they cannot outlive a handle).
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
}

/// The kind of std socket a descriptor is converted into: its family and type must match.
fn check_kind(s: &AsyncSocket, domains: &[Domain], ty: Type, what: &str) -> io::Result<()> {
    let (domain, sock_type) = (s.inner.domain, s.inner.sock_type);
    if domains.contains(&domain) && sock_type == ty {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the socket is not a {what} ({domain:?}, {sock_type:?})"),
    ))
}

impl AsyncSocket {
    /// Take the descriptor back out (the way out of [`from_fd`](AsyncSocket::from_fd)): the
    /// socket leaves the loop, and the descriptor, still non-blocking, is the caller's.
    ///
    /// # Errors
    ///
    /// `InvalidInput`, and the socket is left as it was, if that would lose or break
    /// something: other handles (clones) of the socket exist; received bytes wait in its
    /// buffer; sent bytes wait in its queue (await [`flush`](AsyncSocket::flush) first); it
    /// is TLS. The "closed" error once closed.
    ///
    /// # Portability
    ///
    /// An `OwnedFd` on Unix, an `OwnedSocket` on Windows ([`OwnedSocket`](crate::OwnedSocket)).
    pub fn into_fd(self) -> io::Result<sys::OwnedSocket> {
        self.socket()?;
        let refuse = |why: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("into_fd: {why}"),
            ))
        };
        if Rc::strong_count(&self.inner) > 1 {
            return refuse("other handles of the socket exist");
        }
        // The io_uring driver may hold bytes received ahead: it stops, and they count as
        // buffered.
        if self.has_data_buffered() || !self.inner.io.stop_receiving() {
            return refuse("received bytes wait in the socket's buffer");
        }
        if self.owes_bytes() || self.inner.io.sending() {
            return refuse("sent bytes wait in the socket's queue (flush first)");
        }
        #[cfg(feature = "tls")]
        if self.is_ssl() {
            return refuse("the socket is TLS");
        }
        match self.take_socket() {
            Some(socket) => Ok(socket.into()),
            None => Err(crate::error::closed()),
        }
    }
}

macro_rules! std_conversions {
    ($($std:ty => [$($domain:expr),+], $ty:expr, $what:literal;)+) => {$(
        impl TryFrom<$std> for AsyncSocket {
            type Error = io::Error;

            /// Adopt the socket, buffered (as [`from_fd`](AsyncSocket::from_fd)).
            fn try_from(s: $std) -> io::Result<AsyncSocket> {
                AsyncSocket::from_fd(sys::OwnedSocket::from(s), true)
            }
        }

        impl TryFrom<AsyncSocket> for $std {
            type Error = io::Error;

            /// Take the socket back out (see [`into_fd`](AsyncSocket::into_fd)); its family
            /// and type must be this one's. The socket stays non-blocking.
            fn try_from(s: AsyncSocket) -> io::Result<$std> {
                check_kind(&s, &[$($domain),+], $ty, $what)?;
                Ok(<$std>::from(s.into_fd()?))
            }
        }
    )+};
}

std_conversions! {
    TcpStream => [Domain::IPV4, Domain::IPV6], Type::STREAM, "TCP stream";
    TcpListener => [Domain::IPV4, Domain::IPV6], Type::STREAM, "TCP listener";
    UdpSocket => [Domain::IPV4, Domain::IPV6], Type::DGRAM, "UDP socket";
}

#[cfg(unix)]
std_conversions! {
    UnixStream => [Domain::UNIX], Type::STREAM, "Unix stream";
    UnixListener => [Domain::UNIX], Type::STREAM, "Unix listener";
    UnixDatagram => [Domain::UNIX], Type::DGRAM, "Unix datagram socket";
}
