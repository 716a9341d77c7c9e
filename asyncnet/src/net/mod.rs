//! Sockets (Nim's `asyncnet`): [`AsyncSocket`] and [`dial`].
#![forbid(unsafe_code)]

mod buffer;
mod conn;
mod datagram;
mod dial;
mod io_traits;
mod line;
mod options;
mod read;
mod socket;
mod unix;
mod write;

pub use dial::{dial, dial_with, resolve_host, MAX_RESOLVERS};
pub use options::{Flags, SoBool};
pub use socket::{AsyncSocket, SocketBuilder, BUFFER_SIZE, MAX_LINE_LENGTH, SOMAXCONN};
