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
//! Each public async method documents its errors, what dropping its future loses (its
//! "Cancel safety", ideally nothing) and has an example. The [`guide`] maps every Nim proc to
//! its Rust counterpart and lists where this crate deliberately behaves differently (safer)
//! than Nim. The [How-to](#how-to) section below shows common programs: a TLS client,
//! timeouts, framing, one loop per core, multicast, living next to tokio.
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
//! # Deadlines
//!
//! Every operation that waits can be bounded, in two ways:
//!
//! - **per call**: `op.timeout(duration)` or `op.deadline(instant)` ([`IoTimeout`]), on one
//!   operation or on an `async` block of several, returns the operation's own `io::Result`;
//!   [`with_timeout`] and [`with_deadline`] do the same for any future;
//! - **per socket**, as Go's `SetReadDeadline`/`SetWriteDeadline`:
//!   [`AsyncSocket::set_read_deadline`] bounds every later wait to receive (`recv`,
//!   `recv_into`, `recv_line`, `recv_from`, `accept`, the reads of a TLS handshake) and
//!   [`AsyncSocket::set_write_deadline`] every wait to send (`send` and `flush` under
//!   back-pressure, `send_to`, `connect`, the writes of a TLS handshake), for every clone of
//!   the socket, until changed or cleared ([`AsyncSocket::set_deadline`] sets both). A change
//!   takes effect at once for the operations already waiting.
//!
//! The rule is the same both ways:
//!
//! - **A deadline bounds waiting.** Past it, an operation that would have to wait fails with
//!   an `io::Error` of kind `TimedOut`; one that can complete at once still does (its bytes
//!   are buffered; a send fits the output buffer). A socket's deadline is looked at only
//!   when an operation is about to wait, never on the way of one that does not.
//! - **It loses nothing.** Bytes that arrived before the deadline stay in the socket's
//!   buffer and the next read starts from them, so a line or a `recv(n)` cut by a deadline
//!   comes back whole. A `send` that times out has handed over its whole message: the wait
//!   that timed out was for room (back-pressure), and the message stays queued and is
//!   written exactly once, after what was sent before it and before what is sent after, so
//!   **do not send it again** (to stop writing to a stuck peer, close the socket: queued
//!   bytes then get [`CLOSE_LINGER`]). A `flush` that times out leaves the queue as it was,
//!   still being written. The queued bytes of completed sends are written in the background
//!   whatever the deadlines say. (Through [`AsyncWrite`](futures_io::AsyncWrite),
//!   `poll_write` keeps `io::Write`'s rule instead: an error means none of that buffer was
//!   taken.) `accept` takes no connection it does not return; a datagram
//!   is sent or received whole, or not at all.
//! - **`connect`**: an attempt that timed out goes on in the kernel. Calling `connect` again
//!   with the same address takes up that attempt (waits for it, or finds it done); with
//!   another, it fails with `InvalidInput` once the first has connected. To give up, close
//!   the socket.
//! - **TLS handshake** (in `connect` or `accept` of a wrapped socket, or
//!   [`wrap_connected_socket`]): one that times out (or fails, or whose future is dropped)
//!   leaves the socket unusable, and every later operation fails with `NotConnected` saying
//!   so, never with a half-made session going on silently. Close it.
//! - **Cost.** A deadline that never fires costs no system call and no allocation per
//!   operation. A socket's deadline is compared, when an operation is about to wait, with
//!   the time the loop read at its last turn (no clock read of its own; a deadline that
//!   passed since is caught at the next turn), and has one timer per socket and direction,
//!   armed lazily: a deadline moved later (the common "now + 30 s" before each read) keeps
//!   the timer armed for the earlier one, which re-arms itself when it comes. A per-call
//!   deadline keeps one entry in the loop's timer map while its operation waits, and reads
//!   the clock when it is polled.
//!
//! Nim's `withTimeout` leaves the operation running, its bytes to whoever reads next; Go's
//! deadlines fail even an operation whose bytes are already there.
//!
//! ```
//! use std::io;
//! use std::time::{Duration, Instant};
//! use asyncnet::{wait_for, AsyncSocket, IoTimeout};
//!
//! /// One request line, answered; the client has 10 s for the whole exchange.
//! async fn serve_one(client: &AsyncSocket) -> io::Result<()> {
//!     client.set_deadline(Some(Instant::now() + Duration::from_secs(10)));
//!     if let Some(line) = client.recv_line().await? {
//!         client.send(format!("{line}\r\n")).await?;
//!         client.flush().await?;
//!     }
//!     Ok(())
//! }
//!
//! wait_for(async {
//!     let server = AsyncSocket::new()?;
//!     server.bind_addr(0, "127.0.0.1")?;
//!     server.listen()?;
//!     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
//!     let peer = server.accept().timeout(Duration::from_secs(5)).await?;
//!     client.send("ping\r\n").await?;
//!     serve_one(&peer).await?;
//!     let answer = client.recv_line().timeout(Duration::from_secs(5)).await?;
//!     assert_eq!(answer.as_deref(), Some("ping"));
//!     Ok::<(), io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # `AsyncRead` and `AsyncWrite`
//!
//! [`AsyncSocket`] implements `futures-io`'s [`AsyncRead`](futures_io::AsyncRead) and
//! [`AsyncWrite`](futures_io::AsyncWrite) and is `Unpin`, so codecs, protocol crates and
//! adapters written against those traits run over it as it is (see [Length-prefixed
//! frames](#length-prefixed-frames)). On a socket they mean:
//!
//! - `poll_read` returns the bytes the socket has buffered, if any; otherwise what one system
//!   call gives (waiting for at least one byte); 0 is the end of the stream. It never waits
//!   for more once it has something, unlike [`recv`](AsyncSocket::recv), which on a buffered
//!   socket waits until it has the whole size asked for (or the stream ends).
//! - `poll_write` goes through the same output buffer as [`send`](AsyncSocket::send):
//!   coalesced by the same rule ([Write coalescing](#write-coalescing)), kept in the same
//!   order, with the same back-pressure, so `send` and `AsyncWrite` calls can be mixed on one
//!   socket.
//! - `poll_flush` completes when the kernel has every byte written so far, as
//!   [`flush`](AsyncSocket::flush) does.
//! - `poll_close` flushes, then closes the socket as [`close`](AsyncSocket::close) does:
//!   "close" means one thing whichever way it is called. The half-close, which keeps the
//!   socket open for reading, is [`shutdown_write`](AsyncSocket::shutdown_write).
//! - `AsyncBufRead` comes through [`AsyncSocket::buf_reader`]: a [`BufReader`] that shows the
//!   socket's own read buffer (no second copy) and gives back what it did not consume.
//!
//! # Cargo features
//!
//! `tls` (on by default): TLS through rustls, with [`TlsContext`], [`wrap_socket`],
//! [`wrap_connected_socket`], [`Dialer::tls`], [`AsyncSocket::tls_info`] and the re-exported
//! `rustls`. rustls uses ring, whose build script compiles C for the target (for macOS it
//! needs the Apple SDK); `default-features = false` leaves TLS out altogether: no TLS item,
//! no rustls, no C compiler needed.
//!
//! # How-to
//!
//! ## A TLS client
//!
//! A client context trusts the system's roots; a socket wrapped with [`wrap_socket`] before
//! [`connect`](AsyncSocket::connect) completes the handshake in `connect`, verifying the
//! chain and the name it was given. (A server, and a client trusting a certificate of its
//! own: [`TlsContext`]'s example.)
//!
#![cfg_attr(feature = "tls", doc = "```no_run")]
#![cfg_attr(not(feature = "tls"), doc = "```ignore")]
//! use asyncnet::{wait_for, wrap_socket, AsyncSocket, TlsContext};
//!
//! wait_for(async {
//!     let ctx = TlsContext::client()?; // the system's root certificates
//!     let sock = AsyncSocket::new()?;
//!     wrap_socket(&ctx, &sock)?;
//!     sock.connect("example.com", 443).await?; // resolve, TCP, then the TLS handshake
//!     sock.send("HEAD / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").await?;
//!     let status = sock.recv_line().await?.unwrap_or_default();
//!     println!("{status}"); // e.g. "HTTP/1.1 200 OK"
//!     sock.close()
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! `AsyncSocket::new()` is IPv4, so `connect` tries the host's IPv4 addresses only. To race
//! every address of both families (Happy Eyeballs) and handshake on the winner, one call:
//! `Dialer::new().tls(&ctx).dial("example.com", 443).await?` ([`Dialer::tls`]); or [`dial`],
//! then [`wrap_connected_socket`] with [`HandshakeAs::Client`] and the host name.
//!
//! ## Timeouts on a server
//!
//! Any future gets a time limit with [`with_timeout`]: when the time runs out, the
//! future is dropped and the call returns [`Elapsed`] (which `?` turns into an `io::Error` of
//! kind `TimedOut`); socket operations take `.timeout(d)` ([`IoTimeout`]) and per-socket
//! deadlines too. A timeout loses nothing: half a line stays buffered, and the next read
//! returns it whole (the rule: [Deadlines](#deadlines)).
//!
//! ```
//! use std::{io, time::Duration};
//! use asyncnet::{spawn, wait_for, with_timeout, AsyncSocket};
//!
//! /// A line echo that drops a client silent for 10 seconds.
//! async fn serve_client(client: AsyncSocket) -> io::Result<()> {
//!     while let Some(line) = with_timeout(client.recv_line(), Duration::from_secs(10)).await?? {
//!         client.send(format!("{line}\r\n")).await?;
//!     }
//!     Ok(())
//! }
//!
//! wait_for(async {
//!     let server = AsyncSocket::new()?;
//!     server.bind_addr(0, "127.0.0.1")?;
//!     server.listen()?;
//!     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
//!     let peer = server.accept().await?;
//!
//!     // Half a line arrives, and the read times out...
//!     client.send("hel").await?;
//!     assert!(with_timeout(peer.recv_line(), Duration::from_millis(50)).await.is_err());
//!     // ...but nothing is lost: the next read returns the whole line.
//!     client.send("lo\r\n").await?;
//!     assert_eq!(peer.recv_line().await?.as_deref(), Some("hello"));
//!
//!     spawn(serve_client(peer));
//!     client.send("ping\r\n").await?;
//!     assert_eq!(client.recv_line().await?.as_deref(), Some("ping"));
//!     Ok::<(), io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A deadline for a whole exchange (a request of several reads and sends) wraps the exchange's
//! `async` block the same way.
//!
//! ## Length-prefixed frames
//!
//! A frame here is a 2-byte big-endian length, then that many bytes. On a buffered socket
//! (the default), [`recv(n)`](AsyncSocket::recv) waits for `n` bytes (or the end), and asks
//! the kernel for at least [`BUFFER_SIZE`] bytes, keeping what it did not return: the body
//! that came with its header is already buffered when the body's `recv` runs, so a frame
//! costs one read system call. The two `send`s of a frame are coalesced into one write.
//!
//! ```
//! use std::io;
//! use asyncnet::{wait_for, AsyncSocket};
//!
//! async fn write_frame(sock: &AsyncSocket, body: &[u8]) -> io::Result<()> {
//!     let len = u16::try_from(body.len())
//!         .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 64 KiB"))?;
//!     sock.send(len.to_be_bytes()).await?;
//!     sock.send(body).await
//! }
//!
//! /// The next frame's body, or `None` if the stream ended between frames.
//! async fn read_frame(sock: &AsyncSocket) -> io::Result<Option<Vec<u8>>> {
//!     let header = sock.recv(2).await?;
//!     if header.is_empty() {
//!         return Ok(None);
//!     }
//!     if header.len() < 2 {
//!         return Err(io::ErrorKind::UnexpectedEof.into());
//!     }
//!     let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
//!     let body = sock.recv(len).await?;
//!     if body.len() < len {
//!         return Err(io::ErrorKind::UnexpectedEof.into());
//!     }
//!     Ok(Some(body))
//! }
//!
//! wait_for(async {
//!     let server = AsyncSocket::new()?;
//!     server.bind_addr(0, "127.0.0.1")?;
//!     server.listen()?;
//!     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
//!     let peer = server.accept().await?;
//!     write_frame(&client, b"hello").await?;
//!     write_frame(&client, b"").await?;
//!     write_frame(&client, &[7; 1000]).await?;
//!     client.close()?;
//!     assert_eq!(read_frame(&peer).await?.as_deref(), Some(&b"hello"[..]));
//!     assert_eq!(read_frame(&peer).await?.as_deref(), Some(&b""[..]));
//!     assert_eq!(read_frame(&peer).await?.map(|body| body.len()), Some(1000));
//!     assert_eq!(read_frame(&peer).await?, None);
//!     Ok::<(), io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Each `recv` loses nothing when dropped, but `read_frame` holds the header between its two
//! reads: under a timeout, put the deadline around the connection's whole exchange, or peek
//! the header (`recv_with(2, Flags::PEEK)`) and then take header and body in one `recv`.
//!
//! A codec crate does the same through [`AsyncRead` and
//! `AsyncWrite`](#asyncread-and-asyncwrite): here `asynchronous-codec`'s `LengthCodec`
//! (an 8-byte big-endian length, then the bytes).
//!
//! ```
//! use asynchronous_codec::{Bytes, Framed, LengthCodec};
//! use futures_util::{SinkExt, StreamExt};
//! use asyncnet::{wait_for, AsyncSocket};
//!
//! wait_for(async {
//!     let server = AsyncSocket::new()?;
//!     server.bind_addr(0, "127.0.0.1")?;
//!     server.listen()?;
//!     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
//!     let peer = server.accept().await?;
//!     let mut tx = Framed::new(client, LengthCodec);
//!     let mut rx = Framed::new(peer, LengthCodec);
//!     tx.send(Bytes::from_static(b"hello")).await?; // `send` on a `Sink` flushes
//!     tx.send(Bytes::from_static(b"world")).await?;
//!     assert_eq!(rx.next().await.transpose()?, Some(Bytes::from_static(b"hello")));
//!     assert_eq!(rx.next().await.transpose()?, Some(Bytes::from_static(b"world")));
//!     tx.close().await?; // flushes, then closes the socket
//!     assert!(rx.next().await.is_none());
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## One loop per core
//!
//! Each thread has its own loop, so a server uses every core by running one loop per
//! thread, each with a listener of its own on the same port. [`Server`] does it: it binds
//! the listeners (`SO_REUSEPORT` on Linux), starts the threads, makes each thread's handler
//! with your factory (so the handler may hold `Rc`s), and stops them gracefully. Nothing is
//! shared or locked; a connection stays on the thread that accepted it (sockets are not
//! `Send`).
//!
//! ```no_run
//! use std::{io, time::Duration};
//! use asyncnet::{AsyncSocket, Server};
//!
//! let server = Server::new(7000, "0.0.0.0").start(|| {
//!     |client: AsyncSocket| async move {
//!         while let Some(line) = client.recv_line().await? {
//!             client.send(format!("{line}\r\n")).await?;
//!         }
//!         Ok::<(), io::Error>(())
//!     }
//! })?;
//! let stop = server.shutdown_trigger(); // e.g. for a signal handler's thread
//! # stop.shutdown(Duration::ZERO);
//! let report = server.join()?; // until `stop.shutdown(grace)`
//! println!("{} connections, {} closed at the deadline", report.accepted, report.closed_forcibly);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! By hand, it is one [`wait_for`] per thread, each with a listener that sets
//! [`SoBool::ReusePort`] before `bind_addr`. Portability: Linux spreads new connections over
//! the listeners (by a hash of the connection's addresses, not by load: [`Server`]'s
//! caveats). macOS and the BSDs let them bind the same port but do not balance between them
//! (FreeBSD's `SO_REUSEPORT_LB` does); there [`Server`] shares one listener between the
//! threads instead.
//!
//! ## Multicast
//!
//! Options that asyncnet does not wrap are set with `socket2` on the socket's own descriptor:
//! `socket2::SockRef::from(&sock)` borrows it (no `unsafe`, nothing to close).
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use asyncnet::{wait_for, AsyncSocket, SoBool, SockType};
//!
//! wait_for(async {
//!     let sock = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
//!     sock.set_sock_opt(SoBool::ReuseAddr, true)?; // other listeners of the group on this host
//!     sock.bind_addr(7400, "0.0.0.0")?;
//!     let group = Ipv4Addr::new(239, 255, 0, 1);
//!     let raw = socket2::SockRef::from(&sock);
//!     raw.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?; // on the default interface
//!     raw.set_multicast_loop_v4(true)?; // see our own datagrams
//!     sock.send_to("239.255.0.1", 7400, "hello, group").await?;
//!     let (data, address, port) = sock.recv_from(1500).await?;
//!     println!("{address}:{port}: {}", String::from_utf8_lossy(&data));
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Living next to tokio
//!
//! asyncnet's futures run on asyncnet's loop only: [`wait_for`] and [`spawn`], on the thread
//! that made the sockets. Awaited on another runtime (inside tokio's `block_on` or a tokio
//! task), a future that has to wait could never be woken there, so instead of hanging it
//! fails at once: with an `io::Error` of kind `Unsupported` whose message points here (a
//! future without an error type, such as [`sleep_async`], panics with that message).
//!
//! ```
//! use asyncnet::AsyncSocket;
//!
//! let server = AsyncSocket::new()?;
//! server.bind_addr(0, "127.0.0.1")?;
//! server.listen()?;
//! let tokio = tokio::runtime::Builder::new_current_thread().build()?;
//! // No client is coming, so `accept` would have to wait: on tokio it cannot.
//! let e = tokio.block_on(server.accept()).unwrap_err();
//! assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Instead, give asyncnet a thread of its own, running `wait_for` and owning the sockets, and
//! talk to it over channels: tokio's channels work under any executor, and asyncnet's wakers
//! may be woken from any thread. `examples/tokio_bridge.rs` is a complete program (`cargo run
//! --example tokio_bridge`): a tokio runtime sends requests to the asyncnet thread over an
//! `mpsc` channel and gets each answer back on a `oneshot`.
//!
//! ## When a detached task fails
//!
//! A task whose [`JoinHandle`] was dropped (Nim's `asyncCheck`) and that returns `Err` or
//! panics is not swallowed: by default its failure is written to standard error and the loop
//! goes on, so one client's bad input ends that client's task only. A test in which any
//! failure is a bug installs [`TaskFailure::raise`] with [`set_task_failure_handler`]; a
//! server may install its own function to count or log failures:
//!
//! ```
//! use std::{cell::Cell, io, rc::Rc};
//! use asyncnet::{set_task_failure_handler, spawn, wait_for, AsyncSocket};
//!
//! async fn echo(client: AsyncSocket) -> io::Result<()> {
//!     // `recv_line` fails on a line that is not UTF-8, and so does the task.
//!     while let Some(line) = client.recv_line().await? {
//!         client.send(format!("{line}\r\n")).await?;
//!     }
//!     Ok(())
//! }
//!
//! let failures = Rc::new(Cell::new(0));
//! let count = failures.clone();
//! set_task_failure_handler(move |failure| {
//!     eprintln!("{failure}"); // what the default handler does
//!     count.set(count.get() + 1);
//! });
//! wait_for(async {
//!     let server = AsyncSocket::new()?;
//!     server.bind_addr(0, "127.0.0.1")?;
//!     server.listen()?;
//!     let port = server.local_addr()?.1;
//!     let bad = asyncnet::dial("127.0.0.1", port).await?;
//!     let good = asyncnet::dial("127.0.0.1", port).await?;
//!     for _ in 0..2 {
//!         spawn(echo(server.accept().await?)); // detached: the handle is dropped
//!     }
//!     bad.send(b"\xff\xfe\r\n").await?;
//!     assert_eq!(bad.recv_line().await?, None); // its task failed and closed its socket
//!     good.send("still served\r\n").await?;
//!     assert_eq!(good.recv_line().await?.as_deref(), Some("still served"));
//!     Ok::<(), io::Error>(())
//! })?;
//! assert_eq!(failures.get(), 1);
//! # set_task_failure_handler(asyncnet::TaskFailure::report);
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod dispatch;
mod driver;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod guide;
mod net;
mod sys;
#[cfg(feature = "tls")]
mod tls;

pub use dispatch::{
    call_soon, drain, driver_kind, has_pending_operations, io_uring_support, poll, run_forever,
    set_task_failure_handler, sleep_async, spawn, use_driver, wait_for, with_deadline,
    with_timeout, Elapsed, IoTimeout, JoinHandle, Sleep, TaskFailure, TaskOutput, Timeout,
    DRIVER_ENV,
};
pub use driver::DriverKind;
pub use error::{DatagramTruncated, InvalidUtf8Line, LineTooLong};
pub use net::{
    dial, dial_with, resolve_host, AsyncSocket, BufReader, DialError, Dialer, Family,
    FamilyPreference, Flags, ResolveFuture, Resolver, ServeReport, Server, ServerHandle,
    ShutdownTrigger, SoBool, SocketBuilder, SystemResolver, BUFFER_SIZE, CLOSE_LINGER,
    DEFAULT_ATTEMPT_DELAY, MAX_LINE_LENGTH, MAX_RESOLVERS, RESOLUTION_DELAY, SOMAXCONN,
    WRITE_HIGH_WATER,
};
#[cfg(feature = "tls")]
pub use net::{wrap_connected_socket, wrap_socket};
/// The TLS library, for downcasting handshake errors (`rustls::Error`).
#[cfg(feature = "tls")]
pub use rustls;
/// Address family (`Domain::IPV4`, `Domain::IPV6`, `Domain::UNIX`), Nim's `Domain`.
pub use socket2::Domain;
/// Transport protocol (`Protocol::TCP`, `Protocol::UDP`), Nim's `Protocol`.
pub use socket2::Protocol;
/// Socket type (`SockType::STREAM`, `SockType::DGRAM`), Nim's `SockType`.
pub use socket2::Type as SockType;
pub use sys::{OwnedSocket, RawSocket, INVALID_SOCKET};
#[cfg(feature = "tls")]
pub use tls::{
    ClientBuilder, HandshakeAs, ServerBuilder, TlsContext, TlsInfo, TlsVersion,
    DEFAULT_HANDSHAKE_TIMEOUT,
};
