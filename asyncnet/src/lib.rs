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
//! # Write coalescing
//!
//! [`AsyncSocket::send`] does not make a system call per message. Its bytes join the
//! socket's output buffer and the send completes at once; the buffer is written, in one
//! `write`, at the first of:
//!
//! - a read on the same socket is about to wait (the replies to the requests just read
//!   leave before the task sleeps on the next request);
//! - the loop turn ends: the task waits on something else (a timer, another socket, a join
//!   handle) or has finished; and before [`wait_for`] returns;
//! - the buffer would pass [`WRITE_HIGH_WATER`] (64 KiB): that send writes at once and waits
//!   (back-pressure) until no more than the mark is queued;
//! - [`AsyncSocket::flush`], [`AsyncSocket::shutdown_write`], [`AsyncSocket::close`], or the
//!   last handle being dropped (what the kernel does not take at once is still written, as
//!   [`CLOSE_LINGER`] says, so a program that ends loses none of it).
//!
//! So a server that answers pipelined requests one `send` at a time writes once per batch,
//! and a ping-pong still costs one `read` and one `write` per round trip. Order is kept
//! (sends from several tasks are written whole, in the order they started), and so is
//! back-pressure. An error met while writing queued bytes is recorded: later sends and
//! `flush` fail with it, and the next read that waits and `close` report it once (a
//! disconnection is shown by [`AsyncSocket::is_disconnected`] instead, as `SAFE_DISCONN`
//! asks). Nim's meaning of `send` — complete when the kernel has every byte — is
//! `send(..).await` followed by [`flush`](AsyncSocket::flush)`().await`, or a send with
//! [`Flags::NONE`], which is never coalesced.
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
    call_soon, drain, has_pending_operations, poll, run_forever, set_task_failure_handler,
    sleep_async, spawn, wait_for, with_timeout, Elapsed, JoinHandle, Sleep, TaskFailure,
    TaskOutput,
};
pub use error::{DatagramTruncated, InvalidUtf8Line, LineTooLong};
pub use net::{
    dial, dial_with, resolve_host, wrap_connected_socket, wrap_socket, AsyncSocket, BufReader,
    Flags, SoBool, SocketBuilder, BUFFER_SIZE, CLOSE_LINGER, MAX_LINE_LENGTH, MAX_RESOLVERS,
    SOMAXCONN, WRITE_HIGH_WATER,
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
    ClientBuilder, HandshakeAs, ServerBuilder, TlsContext, TlsInfo, TlsVersion,
    DEFAULT_HANDSHAKE_TIMEOUT,
};
