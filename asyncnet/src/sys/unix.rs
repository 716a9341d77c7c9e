//! Unix (Linux, macOS, the BSDs, illumos): the few socket calls that neither `mio` nor `socket2`
//! offer, each a small wrapper that turns `-1` into `io::Error`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{SockAddr, Socket};

use super::RawSocket;
use crate::SoBool;

/// The platform's `SOMAXCONN`.
pub(crate) const SOMAXCONN: i32 = libc::SOMAXCONN;

/// `EIO`, for tests that simulate a failed write.
#[cfg(test)]
pub(crate) const EIO: i32 = libc::EIO;

/// `ECONNRESET`, for tests that simulate a disconnection.
#[cfg(test)]
pub(crate) const ECONNRESET: i32 = libc::ECONNRESET;

/// The socket's descriptor.
#[inline]
pub(crate) fn raw(socket: &Socket) -> RawSocket {
    socket.as_raw_fd()
}

/// An address of no family: what the kernel returns for an unnamed Unix peer.
pub(crate) fn is_unspec(a: &SockAddr) -> bool {
    a.family() == libc::AF_UNSPEC as libc::sa_family_t
}

/// The `(level, name)` pair of a boolean option, for `getsockopt`/`setsockopt`; `Unsupported`
/// for an option the system lacks.
fn level_and_name(opt: SoBool) -> io::Result<(libc::c_int, libc::c_int)> {
    use libc::*;
    Ok(match opt {
        SoBool::AcceptConn => (SOL_SOCKET, SO_ACCEPTCONN),
        SoBool::Broadcast => (SOL_SOCKET, SO_BROADCAST),
        SoBool::Debug => (SOL_SOCKET, SO_DEBUG),
        SoBool::DontRoute => (SOL_SOCKET, SO_DONTROUTE),
        SoBool::KeepAlive => (SOL_SOCKET, SO_KEEPALIVE),
        SoBool::OobInline => (SOL_SOCKET, SO_OOBINLINE),
        SoBool::ReuseAddr => (SOL_SOCKET, SO_REUSEADDR),
        #[cfg(not(any(target_os = "illumos", target_os = "solaris")))]
        SoBool::ReusePort => (SOL_SOCKET, SO_REUSEPORT),
        #[cfg(any(target_os = "illumos", target_os = "solaris"))]
        SoBool::ReusePort => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT does not exist on illumos and Solaris",
            ))
        }
        SoBool::NoDelay => (IPPROTO_TCP, TCP_NODELAY),
    })
}

pub(crate) use imp::{accept, prepare, SEND_FLAGS};

/// Systems with `MSG_NOSIGNAL` and `accept4`.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos"
))]
mod imp {
    use std::io;

    use socket2::{SockAddr, Socket};

    /// A write to a reset peer must return `EPIPE`, never raise `SIGPIPE` in a host program
    /// that did not ignore it.
    pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

    /// Per-socket set-up beyond non-blocking mode: none needed here.
    pub(crate) fn prepare(_socket: &Socket) -> io::Result<()> {
        Ok(())
    }

    /// Accept a connection as a non-blocking, close-on-exec socket, in one system call
    /// instead of three (accept, fcntl CLOEXEC, ioctl FIONBIO).
    pub(crate) fn accept(listener: &Socket) -> io::Result<(Socket, SockAddr)> {
        listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    }
}

/// macOS and other systems without `MSG_NOSIGNAL`/`accept4`.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos"
)))]
mod imp {
    use std::io;

    use socket2::{SockAddr, Socket};

    /// No `MSG_NOSIGNAL`: `prepare` sets `SO_NOSIGPIPE` on each socket instead.
    pub(crate) const SEND_FLAGS: libc::c_int = 0;

    /// Per-socket set-up beyond non-blocking mode: no `SIGPIPE` on writes to a reset peer.
    pub(crate) fn prepare(socket: &Socket) -> io::Result<()> {
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        socket.set_nosigpipe(true)?;
        let _ = socket;
        Ok(())
    }

    /// Accept a connection, then make it non-blocking (socket2 sets close-on-exec).
    pub(crate) fn accept(listener: &Socket) -> io::Result<(Socket, SockAddr)> {
        let (s, a) = listener.accept()?;
        s.set_nonblocking(true)?;
        prepare(&s)?;
        Ok((s, a))
    }
}

/// `recv(2)` with `MSG_PEEK`: copy the next bytes without taking them from the kernel.
pub(crate) fn peek(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call,
    // and `recv` writes at most that many; the descriptor is owned by `socket`, alive here.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Read a boolean (`int`) socket option.
pub(crate) fn get_bool_opt(socket: &Socket, opt: SoBool) -> io::Result<bool> {
    let (level, name) = level_and_name(opt)?;
    get_int_opt(socket.as_raw_fd(), level, name)
}

/// Set a boolean (`int`) socket option.
pub(crate) fn set_bool_opt(socket: &Socket, opt: SoBool, on: bool) -> io::Result<()> {
    let (level, name) = level_and_name(opt)?;
    set_int_opt(socket.as_raw_fd(), level, name, on)
}

fn get_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid, writable, and `len` holds the size of `value`;
    // getsockopt writes at most `len` bytes into it.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value != 0)
    }
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: `value` is a valid `c_int` for the duration of the call and the length passed
    // is its size; setsockopt only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether an accept error means the process or system is out of a resource (descriptors,
/// buffers, memory): the listener is fine and should retry later.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Whether an accept error concerns only the connection being accepted (it went away before
/// we took it): skip it and accept the next.
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::EPROTO) | Some(libc::EINTR) | Some(libc::EPERM)
    )
}

/// The disconnection errors of Nim's `SafeDisconn` flag.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ENETRESET)
    )
}

/// `EINPROGRESS`: a non-blocking connect has started.
pub(crate) fn is_in_progress(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINPROGRESS)
}

/// `EISCONN`: a connect met a connection an earlier connect already made.
pub(crate) fn is_connected_already(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EISCONN)
}

/// `EALREADY`: a connect met an earlier connect still under way.
pub(crate) fn is_connect_under_way(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EALREADY)
}

/// `recvmsg(2)`: one datagram into `buf`, with its sender and whether it was cut to fit.
pub(crate) fn recv_from(
    socket: &Socket,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<(usize, bool, SockAddr)> {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the slice is already initialized;
    // the kernel writes only initialized bytes into it, so it stays a valid `[u8]`.
    let uninit: &mut [std::mem::MaybeUninit<u8>] =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len()) };
    let mut bufs = [socket2::MaybeUninitSlice::new(uninit)];
    let flags = if peek { libc::MSG_PEEK } else { 0 };
    let (n, recv_flags, addr) = socket.recv_from_vectored_with_flags(&mut bufs, flags)?;
    Ok((n, recv_flags.is_truncated(), addr))
}
