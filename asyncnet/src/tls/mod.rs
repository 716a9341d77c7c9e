//! TLS with rustls (Nim's SSL procs): contexts, and the sans-IO drive loop of a session.
//! Verification of chain and host name on by default, close_notify sent on close,
//! truncation reported. This module moves records through a byte pipe it is given; it knows
//! nothing of sockets or of how to wait (`net` does).
#![forbid(unsafe_code)]

mod context;
mod session;

#[cfg(fuzzing)]
pub(crate) use context::Config;
pub use context::{
    ClientBuilder, ServerBuilder, TlsContext, TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT,
};
pub(crate) use session::{truncated, Closer, Step, Tls};
pub use session::{HandshakeAs, TlsInfo};
