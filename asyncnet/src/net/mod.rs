//! Sockets (Nim's `asyncnet`): [`AsyncSocket`], [`dial()`], and TLS on sockets.
//!
//! | module | owns |
//! | --- | --- |
//! | `socket` | `AsyncSocket` and its state (`Inner`): creation, options, addresses, close |
//! | `transport` | every system call on a registered socket, plain or TLS, through the driver's seam |
//! | `read` | the receiving side (`ReadState`): `recv`, `recv_into`, lines |
//! | `line` | finding a line in bytes (pure) |
//! | `write` | the sending side (`WriteState`): `send`, `flush`, write coalescing |
//! | `buffer` | the read and write buffers and their pool (pure) |
//! | `local` | memory this thread's sockets share (the pool, the scratch buffer) |
//! | `conn` | `accept` (and its `AcceptState`), `connect` |
//! | `deadline` | per-socket read and write deadlines (kept by the driver's seam) |
//! | `datagram` | `send_to`, `recv_from` |
//! | `unix` | Unix-domain addresses, `bind_unix`, `connect_unix` |
//! | `secure` | `wrap_socket`, `wrap_connected_socket`, the session on a socket |
//! | `linger` | the end of a closed socket with bytes still owed |
//! | `serve` | `Server`: one address served by several threads, each with its own loop and listener |
//! | `resolve` | name resolution off the loop's thread |
//! | `dial` | `dial`, `Dialer`: the options of a dial |
//! | `eyeballs` | Happy Eyeballs v2 (RFC 8305): the order of a name's addresses, the race of attempts |
//! | `dial_error` | `DialError`: every address a dial tried, and why each failed |
//! | `io_traits` | `futures-io`'s `AsyncRead`/`AsyncWrite` |
//! | `options` | `Flags`, `SoBool` |
//! | `convert` | `AsFd`, `AsRawFd`, `into_fd`, to and from the standard library's sockets |
//!
//! Every file here forbids `unsafe` code but `convert.rs`, which lends the descriptor, and
//! `line.rs`, which takes an ASCII line as text without the full UTF-8 check (its one
//! `unsafe` call; the rest of it denies `unsafe`).

// `socket` first: rustdoc lists `AsyncSocket`'s inherent methods impl block by impl block in
// module order, so its page opens with creation (`new`, `builder`, ...), not with `accept`.
mod socket;

mod buffer;
mod conn;
mod convert;
mod datagram;
mod deadline;
mod dial;
mod dial_error;
mod eyeballs;
mod io_traits;
mod line;
mod linger;
mod local;
mod options;
mod read;
mod resolve;
#[cfg(feature = "tls")]
mod secure;
mod serve;
mod transport;
#[cfg(unix)]
mod unix;
mod write;

#[cfg(fuzzing)]
pub(crate) mod fuzzing;

pub use dial::{dial, dial_with, Dialer, FamilyPreference, DEFAULT_ATTEMPT_DELAY};
pub use dial_error::DialError;
pub use eyeballs::RESOLUTION_DELAY;
pub use io_traits::BufReader;
pub use linger::CLOSE_LINGER;
pub use options::{Flags, SoBool};
pub use resolve::{resolve_host, Family, ResolveFuture, Resolver, SystemResolver, MAX_RESOLVERS};
#[cfg(feature = "tls")]
pub use secure::{wrap_connected_socket, wrap_socket};
pub use serve::{ServeReport, Server, ServerHandle, ShutdownTrigger};
pub use socket::{AsyncSocket, SocketBuilder, BUFFER_SIZE, MAX_LINE_LENGTH, SOMAXCONN};
pub use write::WRITE_HIGH_WATER;

/// Helpers for the unit tests of `net`.
#[cfg(test)]
pub(crate) mod test_support {
    use std::io;

    use super::AsyncSocket;

    /// A connected pair over IPv4 loopback: (the dialled client, the accepted peer).
    pub(crate) async fn tcp_pair() -> io::Result<(AsyncSocket, AsyncSocket)> {
        let server = AsyncSocket::new()?;
        server.bind_addr(0, "127.0.0.1")?;
        server.listen()?;
        let client = crate::dial("127.0.0.1", server.local_addr()?.1).await?;
        Ok((client, server.accept().await?))
    }
}
