//! TLS on `AsyncSocket` (Nim's SSL procs), with rustls: verification of chain and host name
//! on by default, close_notify sent on close, truncation reported.
#![forbid(unsafe_code)]

mod context;
mod session;

pub use context::{
    ClientBuilder, ServerBuilder, TlsContext, TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT,
};
pub(crate) use session::close_session;
pub use session::{wrap_connected_socket, wrap_socket, HandshakeAs, TlsInfo};
