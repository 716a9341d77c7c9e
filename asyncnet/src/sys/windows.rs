//! Windows (Winsock): readiness through mio's Windows backend (AFD polling, no hand-written
//! IOCP), sockets through socket2, and `windows-sys` for the boolean options only.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::windows::io::{AsRawSocket, FromRawSocket, IntoRawSocket};

use socket2::{SockAddr, Socket};
use windows_sys::Win32::Networking::WinSock as ws;

use super::RawSocket;
use crate::SoBool;

/// Winsock 2's `SOMAXCONN` (`0x7fffffff`, winsock2.h): the provider chooses a reasonable
/// maximum. Not `windows_sys`'s `SOMAXCONN`, which is Winsock 1's (5, winsock.h): a backlog
/// of 5, where a burst of connections has its SYNs dropped and waits for their retries.
pub(crate) const SOMAXCONN: i32 = 0x7fff_ffff;

/// No `SIGPIPE` on Windows: a write to a reset peer only fails.
pub(crate) const SEND_FLAGS: std::ffi::c_int = 0;

/// An error code for tests that simulate a failed write (the number of Unix's `EIO`; which
/// error it is does not matter to them).
#[cfg(test)]
pub(crate) const EIO: i32 = 5;

/// `WSAECONNRESET`, for tests that simulate a disconnection.
#[cfg(test)]
pub(crate) const ECONNRESET: i32 = ws::WSAECONNRESET;

/// The socket's handle.
#[inline]
pub(crate) fn raw(socket: &Socket) -> RawSocket {
    socket.as_raw_socket()
}

/// An address of no family.
pub(crate) fn is_unspec(a: &SockAddr) -> bool {
    a.family() == ws::AF_UNSPEC
}

/// Per-socket set-up beyond non-blocking mode: none (no `SIGPIPE` to avoid).
pub(crate) fn prepare(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

/// Accept a connection, then make it non-blocking (socket2 makes it non-inheritable).
pub(crate) fn accept(listener: &Socket) -> io::Result<(Socket, SockAddr)> {
    let (s, a) = listener.accept()?;
    s.set_nonblocking(true)?;
    Ok((s, a))
}

/// `recv` with `MSG_PEEK`: copy the next bytes without taking them from the kernel.
pub(crate) fn peek(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    socket.peek(as_uninit(buf))
}

/// `WSARecvFrom`: one datagram into `buf`, with its sender and whether it was cut to fit
/// (socket2 turns Winsock's `WSAEMSGSIZE` into the truncation flag).
///
/// Winsock reports an ICMP "port unreachable" for an earlier send as `WSAECONNRESET` on the
/// next receive; Unix reports nothing on an unconnected socket, and no datagram was lost, so
/// it is skipped here.
pub(crate) fn recv_from(
    socket: &Socket,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<(usize, bool, SockAddr)> {
    let len = buf.len();
    let flags = if peek { ws::MSG_PEEK } else { 0 };
    loop {
        let mut bufs = [socket2::MaybeUninitSlice::new(as_uninit(buf))];
        match socket.recv_from_vectored_with_flags(&mut bufs, flags) {
            // A cut datagram filled the buffer, whatever count came with `WSAEMSGSIZE`.
            Ok((_, recv_flags, addr)) if recv_flags.is_truncated() => return Ok((len, true, addr)),
            Ok((n, _, addr)) => return Ok((n, false, addr)),
            Err(e) if e.raw_os_error() == Some(ws::WSAECONNRESET) => {}
            Err(e) => return Err(e),
        }
    }
}

fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the slice is already initialized;
    // the kernel writes only initialized bytes into it, so it stays a valid `[u8]`.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len()) }
}

/// The `(level, name)` pair of a boolean option; Windows has no `SO_REUSEPORT`.
fn level_and_name(opt: SoBool) -> io::Result<(i32, i32)> {
    Ok(match opt {
        SoBool::AcceptConn => (ws::SOL_SOCKET, ws::SO_ACCEPTCONN),
        SoBool::Broadcast => (ws::SOL_SOCKET, ws::SO_BROADCAST),
        SoBool::Debug => (ws::SOL_SOCKET, ws::SO_DEBUG),
        SoBool::DontRoute => (ws::SOL_SOCKET, ws::SO_DONTROUTE),
        SoBool::KeepAlive => (ws::SOL_SOCKET, ws::SO_KEEPALIVE),
        SoBool::OobInline => (ws::SOL_SOCKET, ws::SO_OOBINLINE),
        SoBool::ReuseAddr => (ws::SOL_SOCKET, ws::SO_REUSEADDR),
        SoBool::ReusePort => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT does not exist on Windows",
            ))
        }
        SoBool::NoDelay => (ws::IPPROTO_TCP, ws::TCP_NODELAY),
    })
}

fn last_error() -> io::Error {
    // SAFETY: no preconditions; reads this thread's last Winsock error.
    io::Error::from_raw_os_error(unsafe { ws::WSAGetLastError() })
}

/// Read a boolean (`BOOL`) socket option.
pub(crate) fn get_bool_opt(socket: &Socket, opt: SoBool) -> io::Result<bool> {
    let (level, name) = level_and_name(opt)?;
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as i32;
    // SAFETY: `value` and `len` are valid and writable, and `len` holds the size of `value`;
    // getsockopt writes at most `len` bytes into it (some options write one byte: the rest
    // stays 0). The socket is owned by `socket`, alive here.
    let r = unsafe {
        ws::getsockopt(
            socket.as_raw_socket() as ws::SOCKET,
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if r != 0 {
        Err(last_error())
    } else {
        Ok(value != 0)
    }
}

/// Set a boolean (`BOOL`) socket option.
pub(crate) fn set_bool_opt(socket: &Socket, opt: SoBool, on: bool) -> io::Result<()> {
    let (level, name) = level_and_name(opt)?;
    let value: i32 = on.into();
    // SAFETY: `value` is a valid `i32` for the duration of the call and the length passed is
    // its size; setsockopt only reads it. The socket is owned by `socket`, alive here.
    let r = unsafe {
        ws::setsockopt(
            socket.as_raw_socket() as ws::SOCKET,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as i32,
        )
    };
    if r != 0 {
        Err(last_error())
    } else {
        Ok(())
    }
}

/// Whether an accept error means the process or system is out of a resource (handles,
/// buffers): the listener is fine and should retry later.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(ws::WSAEMFILE) | Some(ws::WSAENOBUFS))
}

/// Whether an accept error concerns only the connection being accepted (it went away before
/// we took it): skip it and accept the next. Windows says `WSAECONNRESET`; Wine says
/// `WSAENOTCONN` (a listener that does not listen gets `WSAEINVAL`, not this).
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(ws::WSAECONNRESET)
            | Some(ws::WSAECONNABORTED)
            | Some(ws::WSAEINTR)
            | Some(ws::WSAENOTCONN)
    )
}

/// The disconnection errors of Nim's `SafeDisconn` flag, as Winsock reports them
/// (`WSAESHUTDOWN` where Unix says `EPIPE`; `WSAECONNABORTED` for a connection the stack
/// gave up on).
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(ws::WSAECONNRESET)
            | Some(ws::WSAECONNABORTED)
            | Some(ws::WSAENETRESET)
            | Some(ws::WSAESHUTDOWN)
    )
}

/// A non-blocking connect has started (Winsock says `WSAEWOULDBLOCK`).
pub(crate) fn is_in_progress(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(ws::WSAEWOULDBLOCK) | Some(ws::WSAEINPROGRESS)
    )
}

/// `WSAEISCONN`: a connect met a connection an earlier connect already made.
pub(crate) fn is_connected_already(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ws::WSAEISCONN)
}

/// `WSAEALREADY`: a connect met an earlier connect still under way.
pub(crate) fn is_connect_under_way(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ws::WSAEALREADY)
}

/// A socket's place in mio's Windows poller.
///
/// mio registers only its own socket types there, so the socket is wrapped, for as long as it
/// is registered, in a `mio::net::TcpStream` (any socket will do: mio uses only its handle)
/// that never closes it. mio's Windows backend reports each readiness once and polls for it
/// again only when told that an operation met `WouldBlock`: [`rearm`](PollSource::rearm) tells
/// it, each time the seam clears readiness.
#[derive(Debug, Default)]
pub(crate) struct PollSource(RefCell<Option<mio::net::TcpStream>>);

impl PollSource {
    /// Register `socket` (owned by the caller, who deregisters before closing it).
    pub(crate) fn register(
        &self,
        registry: &mio::Registry,
        socket: RawSocket,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        // SAFETY: `socket` is an open socket, owned by the caller's `Socket` for longer than
        // this wrapper lives: the wrapper is taken apart with `into_raw_socket` (which closes
        // nothing) in `deregister`, on a failed registration, or when dropped; it never
        // closes the socket.
        let std = unsafe { std::net::TcpStream::from_raw_socket(socket) };
        let mut source = mio::net::TcpStream::from_std(std);
        match registry.register(&mut source, token, interests) {
            Ok(()) => {
                *self.0.borrow_mut() = Some(source);
                Ok(())
            }
            Err(e) => {
                let _ = source.into_raw_socket();
                Err(e)
            }
        }
    }

    /// Leave the poller (before the socket is closed).
    pub(crate) fn deregister(&self, registry: &mio::Registry) {
        if let Some(mut source) = self.0.borrow_mut().take() {
            let _ = registry.deregister(&mut source);
            let _ = source.into_raw_socket();
        }
    }

    /// Have the poller report readiness again (an operation met `WouldBlock`, or a read
    /// drained the socket).
    #[inline]
    pub(crate) fn rearm(&self) {
        if let Some(source) = self.0.borrow().as_ref() {
            // mio re-arms the registration when the closure it runs reports `WouldBlock`.
            let _ = source.try_io(|| Err::<(), _>(io::ErrorKind::WouldBlock.into()));
        }
    }
}

impl Drop for PollSource {
    fn drop(&mut self) {
        if let Some(source) = self.0.get_mut().take() {
            // Not closed here: the socket belongs to its `Socket`.
            let _ = source.into_raw_socket();
        }
    }
}
