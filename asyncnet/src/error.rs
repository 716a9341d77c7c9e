//! Errors of our own kinds, carried inside `io::Error` (kind and typed source).
#![forbid(unsafe_code)]

use std::fmt;
use std::io;

/// A line was longer than the `max_length` given to a line read.
///
/// Carried as the source of an `io::Error` of kind `InvalidData`. The line's bytes are not
/// consumed: they stay in the socket's buffer (at most `max_length + 2` bytes of them), to be
/// taken with [`recv`](crate::AsyncSocket::recv) if the caller wants them; another line read
/// fails the same way. Nothing is split or dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that was exceeded.
    pub max_length: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.max_length)
    }
}

impl std::error::Error for LineTooLong {}

/// A line that is not valid UTF-8, read by a method that returns `String`.
///
/// Carried as the source of an `io::Error` of kind `InvalidData`. The line was consumed; its
/// bytes (terminator stripped) are here, so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUtf8Line {
    /// The line's raw bytes.
    pub bytes: Vec<u8>,
}

impl fmt::Display for InvalidUtf8Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line of {} bytes is not valid UTF-8", self.bytes.len())
    }
}

impl std::error::Error for InvalidUtf8Line {}

pub(crate) fn line_too_long(max_length: usize) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LineTooLong { max_length })
}

pub(crate) fn invalid_utf8(bytes: Vec<u8>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, InvalidUtf8Line { bytes })
}

/// The error of any operation on a closed socket, including one that was waiting when the
/// socket was closed.
pub(crate) fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket is closed")
}

/// What an asyncnet future says when it must wait but no asyncnet loop drives this thread
/// (it is polled by another runtime, or by hand): nothing would ever wake it.
pub(crate) const NOT_DRIVEN: &str = "asyncnet: this future was polled outside asyncnet's event loop (by another runtime such as tokio?), so nothing would ever wake it; run asyncnet futures with asyncnet::wait_for or asyncnet::spawn, on a thread of their own next to another runtime (crate docs: \"Living next to tokio\")";

/// [`NOT_DRIVEN`] as an error of kind `Unsupported`.
pub(crate) fn not_driven() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, NOT_DRIVEN)
}

/// The error of a send after a `SafeDisconn` send found the peer gone.
pub(crate) fn disconnected() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "peer disconnected (found by an earlier send)",
    )
}

/// A datagram was larger than the buffer given to receive it: the kernel kept only the first
/// bytes and dropped the rest.
///
/// Carried as the source of an `io::Error` of kind `InvalidData`, so that a cut datagram can
/// never pass for a whole one. What was kept is here (for the `_into` forms, it is in the
/// caller's buffer and `data` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramTruncated {
    /// The bytes that were kept.
    pub data: Vec<u8>,
    /// The sender, as [`recv_from`](crate::AsyncSocket::recv_from) gives it.
    pub address: String,
    /// The sender's port (0 for Unix sockets).
    pub port: u16,
}

impl fmt::Display for DatagramTruncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "datagram from {}:{} was larger than the receive buffer and was cut",
            self.address, self.port
        )
    }
}

impl std::error::Error for DatagramTruncated {}

pub(crate) fn truncated(data: Vec<u8>, address: String, port: u16) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        DatagramTruncated {
            data,
            address,
            port,
        },
    )
}
