//! The platform layer: the socket calls that neither `mio` nor `socket2` offer, the error
//! codes the socket code tells apart, and the types of raw handles. Everything OS-specific
//! lives here: `unix.rs` (Linux, macOS, the BSDs), `uring.rs` (io_uring, Linux) and `windows.rs`
//! (Winsock).

#[cfg(not(any(unix, windows)))]
compile_error!("asyncnet supports Unix-like systems (Linux, macOS, the BSDs) and Windows");

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(uring)]
pub(crate) mod uring;

mod prefetch;
pub(crate) use prefetch::{Lines, PREFETCH_FROM};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

/// The OS's handle of a socket, as [`AsyncSocket::fd`](crate::AsyncSocket::fd) returns it.
///
/// # Portability
///
/// A file descriptor (`std::os::fd::RawFd`, an `i32`) on Unix; a Winsock `SOCKET`
/// (`std::os::windows::io::RawSocket`, a `u64`) on Windows.
#[cfg(unix)]
pub type RawSocket = std::os::fd::RawFd;
/// The OS's handle of a socket, as [`AsyncSocket::fd`](crate::AsyncSocket::fd) returns it.
///
/// # Portability
///
/// A file descriptor (`std::os::fd::RawFd`, an `i32`) on Unix; a Winsock `SOCKET`
/// (`std::os::windows::io::RawSocket`, a `u64`) on Windows.
#[cfg(windows)]
pub type RawSocket = std::os::windows::io::RawSocket;

/// An owned socket handle, as [`AsyncSocket::from_fd`](crate::AsyncSocket::from_fd) takes it
/// and [`AsyncSocket::into_fd`](crate::AsyncSocket::into_fd) gives it back.
///
/// # Portability
///
/// `std::os::fd::OwnedFd` on Unix; `std::os::windows::io::OwnedSocket` on Windows. The
/// standard library's sockets convert into either with `From`.
#[cfg(unix)]
pub type OwnedSocket = std::os::fd::OwnedFd;
/// An owned socket handle, as [`AsyncSocket::from_fd`](crate::AsyncSocket::from_fd) takes it
/// and [`AsyncSocket::into_fd`](crate::AsyncSocket::into_fd) gives it back.
///
/// # Portability
///
/// `std::os::fd::OwnedFd` on Unix; `std::os::windows::io::OwnedSocket` on Windows. The
/// standard library's sockets convert into either with `From`.
#[cfg(windows)]
pub type OwnedSocket = std::os::windows::io::OwnedSocket;

/// What [`AsyncSocket::fd`](crate::AsyncSocket::fd) returns once the socket is closed (Nim's
/// `osInvalidSocket`): -1 on Unix, `INVALID_SOCKET` (`!0`) on Windows.
#[cfg(unix)]
pub const INVALID_SOCKET: RawSocket = -1;
/// What [`AsyncSocket::fd`](crate::AsyncSocket::fd) returns once the socket is closed (Nim's
/// `osInvalidSocket`): -1 on Unix, `INVALID_SOCKET` (`!0`) on Windows.
#[cfg(windows)]
pub const INVALID_SOCKET: RawSocket = !0;
