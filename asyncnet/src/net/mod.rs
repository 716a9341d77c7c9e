//! Sockets (Nim's `asyncnet`): [`AsyncSocket`] and [`dial`].
#![forbid(unsafe_code)]

mod buffer;
mod conn;
mod datagram;
mod dial;
mod io_traits;
mod line;
mod linger;
mod options;
mod read;
mod socket;
mod unix;
mod write;

pub(crate) use buffer::BufferPool;
pub(crate) use linger::in_background as linger_in_background;
pub use write::WRITE_HIGH_WATER;

pub use dial::{dial, dial_with, resolve_host, MAX_RESOLVERS};
pub use linger::CLOSE_LINGER;
pub use options::{Flags, SoBool};
pub use socket::{AsyncSocket, SocketBuilder, BUFFER_SIZE, MAX_LINE_LENGTH, SOMAXCONN};
