//! Datagram sockets (UDP, Unix `SOCK_DGRAM`): `send_to`, `recv_from`, and one datagram per
//! `send`/`recv` on a connected datagram socket.
//!
//! A datagram is sent whole or not at all, so a dropped send future never leaves half of one
//! behind; a datagram is received in the same poll that takes it from the kernel, so a dropped
//! receive future never loses one. A datagram larger than the buffer is reported
//! ([`DatagramTruncated`](crate::DatagramTruncated)), never passed off as whole.
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::task::{ready, Context, Poll};

use socket2::SockAddr;

use super::local::SCRATCH_SIZE;
use super::options::Flags;
use super::socket::{addr_text, addr_text_into, AsyncSocket};
use crate::error;

/// No datagram is larger than this (UDP: 64 KiB; Unix: the socket buffer's limit), so a
/// receive never allocates more, whatever size it is asked for.
pub(crate) const MAX_DATAGRAM: usize = 16 * 1024 * 1024;

impl AsyncSocket {
    /// Send one datagram to `address:port` (Nim's `sendTo`). A host name is resolved off the
    /// loop's thread; its addresses of the socket's family are tried in turn until one send
    /// succeeds.
    ///
    /// The order is RFC 8305's, as for [`connect`](AsyncSocket::connect) by name: an IPv4
    /// socket looks up A records only, an IPv6-only socket AAAA only; a dual-stack IPv6
    /// socket looks up AAAA and A in parallel and
    /// sends to the first address of the first answer (waiting up to
    /// [`RESOLUTION_DELAY`](crate::RESOLUTION_DELAY) for AAAA if A comes first), IPv6 first
    /// then alternating. There is no race: a datagram has no handshake to tell which
    /// address works, and it must reach the peer once, not once per address. The next
    /// address is tried only when a send fails at once (e.g. no route).
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a stream socket; resolution fails (the resolver's error; for a name
    /// without an address of the family looked up, kind `NotFound`); an IP literal of the
    /// other family on an IPv4 socket (`AddrNotAvailable`); every send fails (the last error,
    /// e.g. the datagram is too large); `TimedOut`: a deadline (the call's, or the socket's
    /// write deadline) passed while it waited, and the datagram was not sent
    /// ([Deadlines](crate#deadlines)).
    ///
    /// # Cancel safety
    ///
    /// A datagram is sent whole or not at all: a dropped future either sent it or did not.
    /// Lookups under way are abandoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, SockType, wait_for};
    /// wait_for(async {
    ///     let a = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     a.bind_addr(0, "127.0.0.1")?;
    ///     let b = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     b.send_to("127.0.0.1", a.local_addr()?.1, "ping").await?;
    ///     let (data, address, _port) = a.recv_from(1024).await?;
    ///     assert_eq!((&data[..], &address[..]), (&b"ping"[..], "127.0.0.1"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn send_to(
        &self,
        address: &str,
        port: u16,
        data: impl AsRef<[u8]>,
    ) -> io::Result<()> {
        self.require_datagram("send_to")?;
        let data = data.as_ref();
        self.try_in_turn(address, port, async |addr| {
            self.send_datagram(Some(&addr), data).await
        })
        .await
    }

    /// Send one datagram to an IP address.
    ///
    /// # Errors
    ///
    /// As [`send_to`](AsyncSocket::send_to).
    ///
    /// # Cancel safety
    ///
    /// As [`send_to`](AsyncSocket::send_to).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, SockType, wait_for};
    /// wait_for(async {
    ///     let a = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     a.bind_addr(0, "127.0.0.1")?;
    ///     let to = a.local_socket_addr()?; // a typed address: no resolution, one send
    ///     let b = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     b.send_to_addr(to, "ping").await?; // the first send binds `b` to a free port
    ///     let (data, address, port) = a.recv_from(1024).await?;
    ///     assert_eq!(data, b"ping");
    ///     assert_eq!((address.as_str(), port), ("127.0.0.1", b.local_addr()?.1));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn send_to_addr(&self, addr: SocketAddr, data: impl AsRef<[u8]>) -> io::Result<()> {
        self.require_datagram("send_to_addr")?;
        self.send_datagram(Some(&SockAddr::from(addr)), data.as_ref())
            .await
    }

    /// Send one datagram to the Unix datagram socket bound at `path`.
    ///
    /// # Portability
    ///
    /// Unix only (Linux, macOS, the BSDs): absent on Windows, as `bind_unix` and
    /// `connect_unix` are (Nim's reference has them on POSIX only).
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a stream socket or for a path the OS cannot take (too long, a NUL
    /// inside); `NotFound` if nothing is bound there; `TimedOut` as for
    /// [`send_to`](AsyncSocket::send_to); the OS's error otherwise.
    ///
    /// # Cancel safety
    ///
    /// As [`send_to`](AsyncSocket::send_to).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Domain, SockType, wait_for};
    /// let dir = std::env::temp_dir().join(format!("asyncnet-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("d.sock");
    /// # let _ = std::fs::remove_file(&path);
    /// let unix_dgram = || {
    ///     AsyncSocket::builder().domain(Domain::UNIX).sock_type(SockType::DGRAM).build()
    /// };
    /// let r = wait_for(async {
    ///     let server = unix_dgram()?;
    ///     server.bind_unix(&path)?;
    ///     let client = unix_dgram()?; // not bound: it can send, but nobody can answer it
    ///     client.send_to_unix(&path, "hello").await?;
    ///     let (data, address, port) = server.recv_from(64).await?;
    ///     assert_eq!(data, b"hello");
    ///     assert_eq!((address.as_str(), port), ("", 0)); // an unnamed sender
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// std::fs::remove_dir_all(&dir)?;
    /// r?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(unix)]
    pub async fn send_to_unix(
        &self,
        path: impl AsRef<Path>,
        data: impl AsRef<[u8]>,
    ) -> io::Result<()> {
        self.require_datagram("send_to_unix")?;
        let addr = super::unix::unix_addr(path.as_ref())?;
        self.send_datagram(Some(&addr), data.as_ref()).await
    }

    /// Receive one datagram of at most `size` bytes, with its sender's address and port
    /// (Nim's `recvFrom`). The address is as [`peer_addr`](AsyncSocket::peer_addr) would show
    /// it (for Unix sockets: the sender's path, `""` if unnamed, and port 0).
    ///
    /// # Errors
    ///
    /// `InvalidData` with source [`DatagramTruncated`](crate::DatagramTruncated) (holding the
    /// kept bytes and the sender) if the datagram was larger than `size`; `InvalidInput` on a
    /// stream socket; the socket is closed (also while waiting: `NotConnected`); `TimedOut`:
    /// a deadline (the call's, or the socket's read deadline) passed while it waited; nothing
    /// is lost ([Deadlines](crate#deadlines)); the OS's error.
    ///
    /// # Cancel safety
    ///
    /// Nothing is lost: a datagram is taken from the kernel only in the poll that returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, DatagramTruncated, SockType, wait_for};
    /// wait_for(async {
    ///     let a = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     a.bind_addr(0, "127.0.0.1")?;
    ///     let b = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     let port = a.local_addr()?.1;
    ///     b.send_to("127.0.0.1", port, "one").await?;
    ///     b.send_to("127.0.0.1", port, "a longer one").await?;
    ///     // One datagram per call: message boundaries are kept.
    ///     let (data, address, from_port) = a.recv_from(1024).await?;
    ///     assert_eq!(data, b"one");
    ///     // Answer the sender.
    ///     a.send_to(&address, from_port, "got it").await?;
    ///     assert_eq!(b.recv_from(1024).await?.0, b"got it");
    ///     // A datagram larger than `size` is an error, never passed off as whole.
    ///     let e = a.recv_from(8).await.unwrap_err();
    ///     let cut = e.get_ref().and_then(|s| s.downcast_ref::<DatagramTruncated>());
    ///     assert_eq!(cut.map(|c| &c.data[..]), Some(&b"a longer"[..]));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn recv_from(&self, size: usize) -> io::Result<(Vec<u8>, String, u16)> {
        self.recv_from_with(size, Flags::default()).await
    }

    /// [`recv_from`](AsyncSocket::recv_from) with flags: `PEEK` leaves the datagram queued.
    ///
    /// # Errors
    ///
    /// As [`recv_from`](AsyncSocket::recv_from).
    ///
    /// # Cancel safety
    ///
    /// As [`recv_from`](AsyncSocket::recv_from).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Flags, SockType, wait_for};
    /// wait_for(async {
    ///     let a = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     a.bind_addr(0, "127.0.0.1")?;
    ///     let b = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     b.send_to("127.0.0.1", a.local_addr()?.1, "v1:hello").await?;
    ///     // Look at the datagram (here, for its version tag) without taking it...
    ///     let (peeked, _, _) = a.recv_from_with(1024, Flags::PEEK).await?;
    ///     assert!(peeked.starts_with(b"v1:"));
    ///     // ...it is still queued, whole, for the next receive.
    ///     let (data, _, _) = a.recv_from(1024).await?;
    ///     assert_eq!(data, peeked);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn recv_from_with(
        &self,
        size: usize,
        flags: Flags,
    ) -> io::Result<(Vec<u8>, String, u16)> {
        self.require_datagram("recv_from")?;
        let local = self.inner.local.clone();
        let mut own = Vec::new();
        let peek = flags.contains(Flags::PEEK);
        poll_fn(|cx| {
            // Small datagrams land in the loop's scratch buffer: no allocation while waiting.
            let mut scratch;
            let buf: &mut [u8] = if size <= SCRATCH_SIZE {
                scratch = local.scratch.borrow_mut();
                &mut scratch[..size]
            } else {
                own.resize(size.min(MAX_DATAGRAM), 0);
                &mut own[..]
            };
            let (n, cut, from) = ready!(self.poll_recv_datagram(cx, buf, peek))?;
            let (address, port) = addr_text(&from)?;
            let data = buf[..n].to_vec();
            Poll::Ready(if cut {
                Err(error::truncated(data, address, port))
            } else {
                Ok((data, address, port))
            })
        })
        .await
    }

    /// Receive one datagram into caller-owned buffers, without allocating (Nim's `recvFrom`
    /// with `FutureVar`s): the payload into `data`, the sender's address into `address`
    /// (cleared first, its capacity reused) and its port into `port`. Returns the payload's
    /// length.
    ///
    /// # Errors
    ///
    /// As [`recv_from`](AsyncSocket::recv_from); on truncation the kept bytes fill `data`,
    /// `address` and `port` are set, and the error's `data` is empty.
    ///
    /// # Cancel safety
    ///
    /// As [`recv_from`](AsyncSocket::recv_from); the buffers are written only when a datagram
    /// is returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, SockType, wait_for};
    /// wait_for(async {
    ///     let a = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     a.bind_addr(0, "127.0.0.1")?;
    ///     let b = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     for word in ["one", "two", "three"] {
    ///         b.send_to("127.0.0.1", a.local_addr()?.1, word).await?;
    ///     }
    ///     // Buffers made once, reused by every receive: no allocation per datagram.
    ///     let mut data = [0u8; 1500];
    ///     let mut address = String::with_capacity(64);
    ///     let mut port = 0;
    ///     let capacity = address.capacity();
    ///     for expected in ["one", "two", "three"] {
    ///         let n = a.recv_from_into(&mut data, &mut address, &mut port).await?;
    ///         assert_eq!(&data[..n], expected.as_bytes());
    ///         assert_eq!((address.as_str(), port), ("127.0.0.1", b.local_addr()?.1));
    ///     }
    ///     assert_eq!(address.capacity(), capacity); // cleared and refilled, never reallocated
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn recv_from_into(
        &self,
        data: &mut [u8],
        address: &mut String,
        port: &mut u16,
    ) -> io::Result<usize> {
        self.require_datagram("recv_from_into")?;
        let (n, cut, from) = poll_fn(|cx| self.poll_recv_datagram(cx, data, false)).await?;
        *port = addr_text_into(&from, address)?;
        if cut {
            return Err(error::truncated(Vec::new(), address.clone(), *port));
        }
        Ok(n)
    }

    /// Receive one datagram into `data` and return its length and sender, typed: the
    /// allocation-free form for IP sockets, to pair with
    /// [`send_to_addr`](AsyncSocket::send_to_addr) in a hot loop.
    ///
    /// # Errors
    ///
    /// As [`recv_from`](AsyncSocket::recv_from); `InvalidInput` if the sender has no IP
    /// address (a Unix socket: use [`recv_from_into`](AsyncSocket::recv_from_into)).
    ///
    /// # Cancel safety
    ///
    /// As [`recv_from`](AsyncSocket::recv_from).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, SockType, spawn, wait_for};
    ///
    /// // An echo server's loop: one buffer, typed addresses, no allocation per datagram.
    /// async fn echo(server: AsyncSocket) -> std::io::Result<()> {
    ///     let mut buf = [0u8; 1500];
    ///     loop {
    ///         let (n, from) = server.recv_from_addr(&mut buf).await?;
    ///         server.send_to_addr(from, &buf[..n]).await?;
    ///     }
    /// }
    ///
    /// wait_for(async {
    ///     let server = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     let to = server.local_socket_addr()?;
    ///     spawn(echo(server));
    ///     let client = AsyncSocket::builder().sock_type(SockType::DGRAM).build()?;
    ///     client.send_to_addr(to, "echo?").await?;
    ///     let mut buf = [0u8; 1500];
    ///     let (n, from) = client.recv_from_addr(&mut buf).await?;
    ///     assert_eq!((&buf[..n], from), (&b"echo?"[..], to));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn recv_from_addr(&self, data: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.require_datagram("recv_from_addr")?;
        let (n, cut, from) = poll_fn(|cx| self.poll_recv_datagram(cx, data, false)).await?;
        let from_ip = from.as_socket().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the sender has no IP address")
        })?;
        if cut {
            let (address, port) = addr_text(&from)?;
            return Err(error::truncated(Vec::new(), address, port));
        }
        Ok((n, from_ip))
    }

    fn require_datagram(&self, what: &str) -> io::Result<()> {
        if self.is_stream() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} needs a datagram socket (SockType::DGRAM)"),
            ));
        }
        Ok(())
    }

    /// Send one datagram, to `to` or (connected socket) to the peer.
    pub(crate) async fn send_datagram(&self, to: Option<&SockAddr>, data: &[u8]) -> io::Result<()> {
        poll_fn(|cx| self.poll_send_datagram(cx, to, data)).await?;
        Ok(())
    }

    /// `recv_into` on a datagram socket: one datagram; a cut one is an error.
    pub(crate) fn poll_recv_datagram_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        flags: Flags,
    ) -> Poll<io::Result<usize>> {
        let (n, cut, from) = ready!(self.poll_recv_datagram(cx, buf, flags.contains(Flags::PEEK)))?;
        if cut {
            let (address, port) = addr_text(&from)?;
            return Poll::Ready(Err(error::truncated(buf[..n].to_vec(), address, port)));
        }
        Poll::Ready(Ok(n))
    }
}
