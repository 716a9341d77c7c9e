//! Entry points for the fuzz targets in `fuzz/`: built only under `--cfg fuzzing` (which
//! cargo-fuzz sets), hidden from the documentation, no part of the API.
#![forbid(unsafe_code)]
#![allow(missing_docs)]

use std::io::{self, Read, Write};
use std::sync::Arc;

pub use crate::net::fuzzing::{addr_text_ip, addr_text_unix, Buffers, FrontRecord, LineReader};
use crate::tls::{Config, Step, Tls};
use crate::{TlsContext, DEFAULT_HANDSHAKE_TIMEOUT};

/// A client context from a rustls configuration the builder cannot make (TLS 1.2 only).
pub fn client_context(config: Arc<rustls::ClientConfig>) -> TlsContext {
    TlsContext {
        config: Config::Client(config),
        handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
    }
}

/// What a TLS handshake needs next (the drive loop's `Step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStep {
    Write,
    Read,
    Done,
}

/// A socket's TLS session, sans-IO: the functions `net/transport.rs` drives, over any pipe.
#[derive(Debug)]
pub struct TlsSession(Tls);

impl TlsSession {
    /// A client verifying `name`, or (`None`) a server.
    pub fn start(ctx: &TlsContext, name: Option<&str>) -> io::Result<TlsSession> {
        Tls::start(ctx, name).map(TlsSession)
    }
    pub fn handshake_step(&self) -> io::Result<HandshakeStep> {
        Ok(match self.0.handshake_step()? {
            Step::Write => HandshakeStep::Write,
            Step::Read => HandshakeStep::Read,
            Step::Done => HandshakeStep::Done,
        })
    }
    pub fn read_records(&mut self, pipe: &mut (impl Read + Write)) -> io::Result<usize> {
        self.0.read_records(pipe)
    }
    pub fn write_records(&mut self, pipe: &mut (impl Read + Write)) -> io::Result<()> {
        self.0.write_records(pipe)
    }
    pub fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.0.read_plain(buf)
    }
    pub fn has_plaintext(&self) -> bool {
        self.0.has_plaintext()
    }
    pub fn write_plain(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_plain(buf)
    }
    pub fn send_close_notify(&mut self) -> bool {
        self.0.send_close_notify()
    }
}
