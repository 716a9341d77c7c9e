//! Socket flags (Nim's `SocketFlag`) and boolean options (Nim's `SOBool`).
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// Flags of a send or receive call (Nim's `set[SocketFlag]`). The default is
/// [`Flags::SAFE_DISCONN`], as in Nim.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flags: disconnections are errors, reads consume.
    pub const NONE: Flags = Flags(0);
    /// Read without consuming: the bytes stay for the next read. Works for lines too.
    ///
    /// # Portability
    ///
    /// On Windows the end of a stream is reported only once the bytes before it have been
    /// read, so an unbuffered socket's peek for a line that the peer ended without a line
    /// break waits for more bytes instead of returning the partial line (seen under Wine);
    /// a buffered socket (the default) is not affected.
    pub const PEEK: Flags = Flags(1);
    /// A disconnection (`ECONNRESET`, `EPIPE`, `ENETRESET`) is not an error: a receive returns
    /// end-of-stream; a send completes, and the socket records the disconnection (see
    /// [`AsyncSocket::send`](crate::AsyncSocket::send)).
    pub const SAFE_DISCONN: Flags = Flags(2);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl Default for Flags {
    fn default() -> Flags {
        Flags::SAFE_DISCONN
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        if self.contains(Flags::PEEK) {
            set.entry(&format_args!("PEEK"));
        }
        if self.contains(Flags::SAFE_DISCONN) {
            set.entry(&format_args!("SAFE_DISCONN"));
        }
        set.finish()
    }
}

/// Boolean socket options (Nim's `SOBool`), for
/// [`get_sock_opt`](crate::AsyncSocket::get_sock_opt) and
/// [`set_sock_opt`](crate::AsyncSocket::set_sock_opt).
///
/// Each option carries its own level: unlike Nim, `NoDelay` always means `TCP_NODELAY` at
/// `IPPROTO_TCP` (Nim passes `SOL_SOCKET` by default and so sets `SO_DEBUG` instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoBool {
    /// `SO_ACCEPTCONN`: whether the socket listens (read-only).
    AcceptConn,
    /// `SO_BROADCAST`: datagrams may go to broadcast addresses.
    Broadcast,
    /// `SO_DEBUG`: kernel debugging (needs privileges to set on Linux).
    ///
    /// # Portability
    ///
    /// Windows takes it, and Microsoft's providers ignore it (Wine does not read it back).
    Debug,
    /// `SO_DONTROUTE`: bypass routing, send to directly connected hosts only.
    ///
    /// # Portability
    ///
    /// Windows takes it, and Microsoft's providers ignore it (Wine does not read it back).
    DontRoute,
    /// `SO_KEEPALIVE`: TCP keep-alive probes.
    KeepAlive,
    /// `SO_OOBINLINE`: urgent data inline with ordinary data.
    OobInline,
    /// `SO_REUSEADDR`: bind to an address in `TIME_WAIT`.
    ///
    /// # Portability
    ///
    /// Winsock's `SO_REUSEADDR` also lets a socket bind a port another socket is bound to
    /// (Windows needs no option to rebind a port in `TIME_WAIT`).
    ReuseAddr,
    /// `SO_REUSEPORT`: several sockets may bind the same address and port.
    ///
    /// # Portability
    ///
    /// Windows, illumos and Solaris have no such option: getting or setting it fails with
    /// `Unsupported`.
    ReusePort,
    /// `TCP_NODELAY`: disable Nagle's algorithm.
    NoDelay,
}

impl SoBool {
    /// Every option, in Nim's order.
    pub const ALL: [SoBool; 9] = [
        SoBool::AcceptConn,
        SoBool::Broadcast,
        SoBool::Debug,
        SoBool::DontRoute,
        SoBool::KeepAlive,
        SoBool::OobInline,
        SoBool::ReuseAddr,
        SoBool::ReusePort,
        SoBool::NoDelay,
    ];
}
