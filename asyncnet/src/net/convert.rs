//! Conversions between [`AsyncSocket`] and the standard library's sockets and descriptors, so
//! that `socket2::SockRef::from(&sock)` (keepalive intervals, TTL, buffer sizes,
//! `IPV6_V6ONLY`, multicast, ...) needs no `unsafe`, and sockets made elsewhere can be adopted.
//!
//! The one module of `net` with `unsafe` code: lending the descriptor (`AsFd`) soundly.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::rc::Rc;
use std::sync::OnceLock;

use socket2::{Domain, Socket, Type};

use super::socket::AsyncSocket;

impl AsRawFd for AsyncSocket {
    /// As [`fd`](AsyncSocket::fd): -1 once closed.
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

/// `/dev/null`, lent by sockets closed before anything borrowed their descriptor: no socket,
/// so a socket call through it fails with `ENOTSOCK`.
static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();

/// Open [`DEV_NULL`] (with the process's first socket, so that lending never needs a free
/// descriptor later).
pub(super) fn prepare() -> io::Result<()> {
    if DEV_NULL.get().is_none() {
        let null = OwnedFd::from(File::open("/dev/null")?);
        let _ = DEV_NULL.set(null);
    }
    Ok(())
}

fn not_a_socket() -> BorrowedFd<'static> {
    DEV_NULL
        .get()
        .expect("opened before the first socket was made")
        .as_fd()
}

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
        let lent = self.inner.lent.get();
        let raw = match self.inner_socket_fd() {
            Some(raw) => raw,
            None if lent >= 0 => lent,
            None => return not_a_socket(),
        };
        self.inner.lent.set(raw);
        // SAFETY: `raw` stays an open descriptor for as long as any handle of the socket
        // lives, and so for the borrow, which cannot outlive `self`: the socket holds it open
        // until `close`, which for a lent number (`lent` is set just above) calls
        // `retire_lent` instead of closing it, and the number is closed only by
        // `release_lent`, from the drop of the socket's last handle.
        unsafe { BorrowedFd::borrow_raw(raw) }
    }
}

/// Close a socket whose number was lent ([`AsFd`]): the number stays allocated, pointing at
/// `/dev/null` (or, out of descriptors, still at the socket), until [`release_lent`].
/// Returns a duplicate of the socket (the same connection, another number) to finish writing
/// with, if one could be made.
pub(super) fn retire_lent(socket: Socket) -> Option<Socket> {
    let dup = socket.try_clone().ok();
    let raw = socket.into_raw_fd();
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: `null` and `raw` are open descriptors owned here; dup2 makes `raw` refer to
        // /dev/null in one step (the socket loses this reference; `dup` keeps it alive).
        unsafe { libc::dup2(null.as_raw_fd(), raw) };
    }
    dup
}

/// Close the number a lent, closed socket kept (the socket's last handle is gone, and with it
/// every borrow).
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
    pub fn into_fd(self) -> io::Result<OwnedFd> {
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
        if self.has_data_buffered() {
            return refuse("received bytes wait in the socket's buffer");
        }
        if self.owes_bytes() {
            return refuse("sent bytes wait in the socket's queue (flush first)");
        }
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
                AsyncSocket::from_fd(OwnedFd::from(s), true)
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
    UnixStream => [Domain::UNIX], Type::STREAM, "Unix stream";
    UnixListener => [Domain::UNIX], Type::STREAM, "Unix listener";
    UnixDatagram => [Domain::UNIX], Type::DGRAM, "Unix datagram socket";
}
