//! Buffered, non-blocking sockets on a single-threaded event loop: Nim's `std/asyncnet`, in
//! Rust.
//!
//! Each thread has its own event loop (Nim's dispatcher), made on first use. Futures run on
//! it with [`wait_for`] (Nim's `waitFor`) and [`spawn`] (Nim's `asyncCheck`); sockets
//! ([`AsyncSocket`]) are cheap handles that belong to the thread that made them.
//!
//! ```
//! use asyncnet::{AsyncSocket, SoBool, spawn, wait_for};
//!
//! // A line echo server and a client, on one thread.
//! wait_for(async {
//!     let server = AsyncSocket::new()?;
//!     server.set_sock_opt(SoBool::ReuseAddr, true)?;
//!     server.bind_addr(0, "127.0.0.1")?;
//!     server.listen()?;
//!     let port = server.local_addr()?.1;
//!
//!     spawn(async move {
//!         let client = server.accept().await?;
//!         while let Some(line) = client.recv_line().await? {
//!             client.send(format!("{line}\r\n")).await?;
//!         }
//!         Ok::<(), std::io::Error>(())
//!     });
//!
//!     let sock = asyncnet::dial("127.0.0.1", port).await?;
//!     sock.send("hello\r\n").await?;
//!     assert_eq!(sock.recv_line().await?.as_deref(), Some("hello"));
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The [`guide`] maps every Nim proc to its Rust counterpart and lists where this crate
//! deliberately behaves differently (safer) than Nim.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod dispatch;
mod driver;
mod error;
pub mod guide;
mod net;
mod sys;
mod tls;

pub use dispatch::{
    call_soon, drain, has_pending_operations, poll, run_forever, sleep_async, spawn, wait_for,
    with_timeout, Elapsed, JoinHandle, Sleep, TaskOutput,
};
pub use error::{DatagramTruncated, InvalidUtf8Line, LineTooLong};
pub use net::{
    dial, dial_with, resolve_host, AsyncSocket, Flags, SoBool, SocketBuilder, BUFFER_SIZE,
    MAX_LINE_LENGTH, MAX_RESOLVERS, SOMAXCONN,
};
/// The TLS library, for downcasting handshake errors (`rustls::Error`).
pub use rustls;
/// Address family (`Domain::IPV4`, `Domain::IPV6`, `Domain::UNIX`), Nim's `Domain`.
pub use socket2::Domain;
/// Transport protocol (`Protocol::TCP`, `Protocol::UDP`), Nim's `Protocol`.
pub use socket2::Protocol;
/// Socket type (`SockType::STREAM`, `SockType::DGRAM`), Nim's `SockType`.
pub use socket2::Type as SockType;
pub use tls::{
    wrap_connected_socket, wrap_socket, ClientBuilder, HandshakeAs, ServerBuilder, TlsContext,
    TlsInfo, TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT,
};
