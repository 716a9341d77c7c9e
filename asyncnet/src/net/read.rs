//! Receiving: `recv`, `recv_into`, `recv_line`, `recv_line_into`.
//!
//! Cancel safety comes from one rule: a read future holds no bytes while it waits. Whatever it
//! took from the kernel and cannot return yet is put into the socket's read buffer before it
//! returns `Pending`, so dropping the future loses nothing; the next read starts from there.
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::task::{ready, Context, Poll};

use super::buffer::{BufferPool, Mirror, ReadBuffer};
use super::line::{scan, text, Scan, ShortLine};
use super::local::SCRATCH_SIZE;
use super::options::Flags;
use super::socket::{AsyncSocket, BUFFER_SIZE, MAX_LINE_LENGTH};
use crate::error;

/// The most a buffered read asks for in one system call.
const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// A socket's receiving side.
#[derive(Debug)]
pub(crate) struct ReadState {
    /// Reads ask the kernel for more than requested and keep the rest (always, once TLS is
    /// on: records are decrypted whole).
    pub(super) buffered: Cell<bool>,
    /// A read returned 0 (or, under `SAFE_DISCONN`, a reset): the peer sends nothing more.
    pub(super) eof: Cell<bool>,
    /// Bytes received but not yet asked for (a buffered read's surplus, a dropped read's
    /// partial line or message).
    pub(super) buf: RefCell<ReadBuffer>,
}

impl ReadState {
    pub(super) fn new(buffered: bool) -> ReadState {
        ReadState {
            buffered: Cell::new(buffered),
            eof: Cell::new(false),
            buf: RefCell::new(ReadBuffer::default()),
        }
    }

    /// A line from the buffer, if it holds one (`Some(None)`: the end of the stream; a
    /// partial line at the end is a line, if it is within `max_length`). `keep` (`PEEK`)
    /// leaves it there.
    #[inline]
    pub(super) fn buffered_line<R>(
        &self,
        pool: &BufferPool,
        keep: bool,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> io::Result<Option<Option<R>>> {
        let mut rb = self.buf.borrow_mut();
        if !rb.is_empty() {
            match next_line(rb.unread(), rb.scanned(), max_length, deliver)? {
                Ok((r, used)) => {
                    if !keep {
                        rb.consume(used, pool);
                    }
                    return Ok(Some(Some(r)));
                }
                Err(scanned) => rb.set_scanned(scanned),
            }
        }
        if !self.eof.get() {
            return Ok(None);
        }
        if rb.is_empty() {
            return Ok(Some(None));
        }
        // End of stream in the middle of a line: the partial line is a line, if within the
        // limit (the scan let one byte more through: a `\r` that `\n` might have followed).
        if rb.len() > max_length {
            return Err(error::line_too_long(max_length));
        }
        let r = deliver(rb.unread());
        if !keep {
            let n = rb.len();
            rb.consume(n, pool);
        }
        Ok(Some(Some(r)))
    }

    /// The common line read in one piece: the buffer holds a whole line of text within
    /// `max_length`; it is appended to `out` and consumed (`true`). Anything else (no whole
    /// line yet, too long a line, one that is not UTF-8) leaves both untouched (`false`)
    /// for [`buffered_line`](Self::buffered_line) to settle: this only skips its layers
    /// (a caller-supplied `deliver`, the end-of-stream cases) where they would change
    /// nothing.
    #[inline(always)]
    pub(super) fn text_line_into(
        &self,
        pool: &BufferPool,
        max_length: usize,
        out: &mut String,
    ) -> bool {
        // A socket between messages (the next read goes to the kernel) is told here, inlined
        // into the caller: the call below costs its frame (callgrind, a Redis `PING` a
        // round trip, whose every line finds the buffer empty: 1,486 -> 1,414 instructions).
        !self.buf.borrow().is_empty() && self.buffered_text_line_into(pool, max_length, out)
    }

    /// [`text_line_into`](Self::text_line_into) once the buffer holds bytes.
    #[inline(never)]
    fn buffered_text_line_into(
        &self,
        pool: &BufferPool,
        max_length: usize,
        out: &mut String,
    ) -> bool {
        let mut rb = self.buf.borrow_mut();
        let unread = rb.unread();
        if let Some(line) = ShortLine::find(unread, max_length) {
            line.append_to(out);
            rb.consume_line(line.consumed(), pool);
            return true;
        }
        let Scan::Line { content, consumed } = scan(unread, rb.scanned(), max_length) else {
            return false;
        };
        let Ok(line) = text(&unread[..content]) else {
            return false;
        };
        out.push_str(line);
        rb.consume_line(consumed, pool);
        true
    }

    /// A line from `data`, bytes just read while the buffer was empty: what follows the line
    /// (or all of `data`, when it holds no whole line or too long a one) is kept in the
    /// buffer. `Ok(None)`: no line yet.
    #[inline]
    pub(super) fn line_from_fresh<R>(
        &self,
        data: &[u8],
        pool: &BufferPool,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> io::Result<Option<R>> {
        let mut rb = self.buf.borrow_mut();
        match next_line(data, 0, max_length, deliver) {
            Ok(Ok((r, used))) => {
                rb.extend(&data[used..], pool);
                Ok(Some(r))
            }
            Ok(Err(scanned)) => {
                rb.extend(data, pool);
                rb.set_scanned(scanned);
                Ok(None)
            }
            Err(e) => {
                rb.extend(data, pool);
                Err(e)
            }
        }
    }
}

/// How a read is served, decided once per call from the socket and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One datagram per read.
    Datagram,
    /// Stream, one system call for at most what was asked.
    Unbuffered,
    /// Stream, unbuffered, `PEEK`: look at the kernel's queue with `MSG_PEEK`.
    UnbufferedPeek,
    /// Stream, buffered, `PEEK`: fill the socket's buffer and copy without consuming.
    BufferedPeek,
    /// Stream, buffered: wait for the whole size (or the end), keep the surplus.
    Buffered,
}

/// A line found by [`next_line`]: what `deliver` made of it and how many bytes it took
/// (terminator included); or how many leading bytes are known to hold no `\n`.
type Found<R> = Result<(R, usize), usize>;

/// The one scan for a line: in `bytes`, whose first `from` hold no `\n`, hand the next
/// line's content to `deliver`.
///
/// # Errors
///
/// The line is longer than `max_length` ([`LineTooLong`](crate::LineTooLong)).
#[inline]
fn next_line<R>(
    bytes: &[u8],
    from: usize,
    max_length: usize,
    deliver: &mut dyn FnMut(&[u8]) -> R,
) -> io::Result<Found<R>> {
    match scan(bytes, from, max_length) {
        Scan::Line { content, consumed } => Ok(Ok((deliver(&bytes[..content]), consumed))),
        Scan::NeedMore { scanned } => Ok(Err(scanned)),
        Scan::TooLong => Err(error::line_too_long(max_length)),
    }
}

impl AsyncSocket {
    #[inline]
    fn read_mode(&self, flags: Flags) -> Mode {
        if self.is_stream() {
            self.stream_mode(flags)
        } else {
            Mode::Datagram
        }
    }

    /// The mode of a read that treats the socket as a byte stream (lines do, on any socket).
    #[inline]
    fn stream_mode(&self, flags: Flags) -> Mode {
        match (self.inner.read.buffered.get(), flags.contains(Flags::PEEK)) {
            (false, false) => Mode::Unbuffered,
            (false, true) => Mode::UnbufferedPeek,
            (true, true) => Mode::BufferedPeek,
            (true, false) => Mode::Buffered,
        }
    }

    /// Book a read's result. Data: its length. End of stream (0 bytes, or a disconnection
    /// under `SAFE_DISCONN`): recorded, and 0. Any other error is returned.
    #[inline]
    fn settle(&self, r: io::Result<usize>, flags: Flags) -> io::Result<usize> {
        match r {
            Ok(0) => {
                self.inner.read.eof.set(true);
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) if flags.contains(Flags::SAFE_DISCONN) && crate::sys::is_disconnect(&e) => {
                self.inner.read.eof.set(true);
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// One read from the stream into `buf`, booked by [`settle`](Self::settle).
    #[inline]
    fn poll_read_settled(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        flags: Flags,
    ) -> Poll<io::Result<usize>> {
        let r = ready!(self.poll_read_stream(cx, buf));
        Poll::Ready(self.settle(r, flags))
    }

    /// Receive up to `size` bytes (Nim's `recv`), with the default flags (`SAFE_DISCONN`).
    ///
    /// Buffered socket: waits until `size` bytes have arrived or the stream ends. Unbuffered:
    /// returns what one system call gave (waiting for at least one byte). An empty result
    /// means end-of-stream (or `size == 0`).
    ///
    /// # Errors
    ///
    /// The socket is closed (also when closed while waiting: `NotConnected`), or the OS
    /// reports an error; under `SAFE_DISCONN` a reset is end-of-stream, not an error. On a TLS
    /// socket, a peer that closes or resets the connection without close_notify fails the
    /// read with `UnexpectedEof` (the data may have been cut short); the plaintext that did
    /// arrive stays buffered (a `recv` of at most that many bytes still returns it).
    /// `TimedOut`: a deadline (the call's, or the socket's read deadline) passed while it
    /// waited; nothing is lost ([Deadlines](crate#deadlines)): bytes received so far stay
    /// buffered for the next read.
    ///
    /// # Cancel safety
    ///
    /// Nothing is lost: bytes received before the future is dropped stay in the socket's
    /// buffer for the next read.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let port = server.local_addr()?.1;
    ///     let client = asyncnet::dial("127.0.0.1", port).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("hello").await?;
    ///     client.close()?;
    ///     assert_eq!(peer.recv(100).await?, b"hello");
    ///     assert!(peer.recv(100).await?.is_empty()); // end of stream
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv(&self, size: usize) -> impl Future<Output = io::Result<Vec<u8>>> + '_ {
        // As `recv_into`: no layer of its own, the future is the bare poll function.
        self.recv_with(size, Flags::default())
    }

    /// [`recv`](AsyncSocket::recv) with explicit flags: `PEEK` returns the bytes without
    /// consuming them.
    ///
    /// # Errors
    ///
    /// As [`recv`](AsyncSocket::recv).
    ///
    /// # Cancel safety
    ///
    /// As [`recv`](AsyncSocket::recv): nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Flags, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("HELO there").await?;
    ///     // Look at the first bytes (to choose a protocol, say) without taking them...
    ///     assert_eq!(peer.recv_with(4, Flags::PEEK).await?, b"HELO");
    ///     // ...the next read starts at the same place.
    ///     assert_eq!(peer.recv(10).await?, b"HELO there");
    ///     // `Flags::PEEK` alone drops the default `SAFE_DISCONN`; keep both with `|`.
    ///     assert_eq!(Flags::default(), Flags::SAFE_DISCONN);
    ///     let _both = Flags::PEEK | Flags::SAFE_DISCONN;
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_with(
        &self,
        size: usize,
        flags: Flags,
    ) -> impl Future<Output = io::Result<Vec<u8>>> + '_ {
        poll_fn(move |cx| self.poll_recv(cx, size, flags))
    }

    /// Receive into `buf`, returning how many bytes were written (Nim's `recvInto`); 0 means
    /// end-of-stream (or an empty `buf`). Buffered: fills `buf` unless the stream ends first.
    /// Unbuffered: one system call.
    ///
    /// # Errors
    ///
    /// As [`recv`](AsyncSocket::recv).
    ///
    /// # Cancel safety
    ///
    /// Nothing is lost: if the future is dropped (or a deadline passes), bytes it had received
    /// are in the socket's buffer, not in `buf`.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("0123456789").await?;
    ///     client.close()?;
    ///     // One buffer of the caller's, reused: no allocation per read.
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(peer.recv_into(&mut buf).await?, 4); // buffered: filled whole
    ///     assert_eq!(&buf, b"0123");
    ///     assert_eq!(peer.recv_into(&mut buf).await?, 4);
    ///     assert_eq!(&buf, b"4567");
    ///     assert_eq!(peer.recv_into(&mut buf).await?, 2); // the stream ended first
    ///     assert_eq!(&buf[..2], b"89");
    ///     assert_eq!(peer.recv_into(&mut buf).await?, 0); // end of stream
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_into<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        // Not a layer of its own: the future is `recv_into_with`'s, itself the bare poll
        // function (a task that reads so is smaller: fewer cache lines per wake-up).
        self.recv_into_with(buf, Flags::default())
    }

    /// [`recv_into`](AsyncSocket::recv_into) with explicit flags.
    ///
    /// # Errors
    ///
    /// As [`recv`](AsyncSocket::recv).
    ///
    /// # Cancel safety
    ///
    /// As [`recv_into`](AsyncSocket::recv_into): nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Flags, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send([0u8, 5, b'h', b'e', b'l', b'l', b'o']).await?;
    ///     // Peek a 2-byte length header into a fixed buffer; it stays in the socket.
    ///     let mut header = [0u8; 2];
    ///     assert_eq!(peer.recv_into_with(&mut header, Flags::PEEK).await?, 2);
    ///     let len = usize::from(u16::from_be_bytes(header));
    ///     // Now read header and body in one call, into a buffer of the right size.
    ///     let mut frame = vec![0u8; 2 + len];
    ///     assert_eq!(peer.recv_into(&mut frame).await?, 7);
    ///     assert_eq!(&frame[2..], b"hello");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_into_with<'a>(
        &'a self,
        buf: &'a mut [u8],
        flags: Flags,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        // What a poll that could not finish left in the socket's buffer (see `Mirror`).
        let mut left = Mirror::default();
        poll_fn(move |cx| self.poll_recv_into(cx, buf, flags, &mut left))
    }

    /// Receive one line (Nim's `recvLine`), without its terminator, with the default flags
    /// and [`MAX_LINE_LENGTH`].
    ///
    /// `\n` ends a line and a `\r` right before it is stripped; a lone `\r` is data. An empty
    /// line is `Some("")`; end-of-stream is `None`; a partial line at end-of-stream is
    /// returned as a line (the next call gives `None`).
    ///
    /// # Errors
    ///
    /// - `InvalidData` with source [`LineTooLong`](crate::LineTooLong): the line exceeds the
    ///   limit; its bytes stay buffered (nothing is dropped or split).
    /// - `InvalidData` with source [`InvalidUtf8Line`](crate::InvalidUtf8Line): the line is not
    ///   UTF-8; it is consumed and its bytes are in the error.
    /// - `TimedOut`: a deadline (the call's, or the socket's read deadline) passed while it
    ///   waited; the part of the line received stays buffered and the next call returns the
    ///   line whole ([Deadlines](crate#deadlines)).
    /// - As [`recv`](AsyncSocket::recv) otherwise.
    ///
    /// # Cancel safety
    ///
    /// Nothing is lost: a partly received line stays in the socket's buffer, and the next
    /// call returns the whole line.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("one\r\n\ntwo\nend").await?;
    ///     client.close()?;
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("one"));
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some(""));
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("two"));
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("end"));
    ///     assert_eq!(peer.recv_line().await?, None);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_line(&self) -> impl Future<Output = io::Result<Option<String>>> + '_ {
        // Not a layer of its own: the future is `recv_line_with`'s.
        self.recv_line_with(Flags::default(), MAX_LINE_LENGTH)
    }

    /// [`recv_line`](AsyncSocket::recv_line) with explicit flags (`PEEK` leaves the line to be
    /// read again) and line length limit (bytes, terminator excluded).
    ///
    /// # Errors
    ///
    /// As [`recv_line`](AsyncSocket::recv_line).
    ///
    /// # Cancel safety
    ///
    /// As [`recv_line`](AsyncSocket::recv_line): nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Flags, LineTooLong, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("a rather long line\nok\n").await?;
    ///     // A line over the limit is an error, and is not consumed...
    ///     let e = peer.recv_line_with(Flags::default(), 8).await.unwrap_err();
    ///     let too_long = e.get_ref().and_then(|s| s.downcast_ref::<LineTooLong>());
    ///     assert_eq!(too_long, Some(&LineTooLong { max_length: 8 }));
    ///     // ...so a larger limit (or `recv`) still gets it whole.
    ///     let line = peer.recv_line_with(Flags::default(), 100).await?;
    ///     assert_eq!(line.as_deref(), Some("a rather long line"));
    ///     // `PEEK` shows the next line and leaves it to be read again.
    ///     assert_eq!(peer.recv_line_with(Flags::PEEK, 100).await?.as_deref(), Some("ok"));
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("ok"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_line_with(
        &self,
        flags: Flags,
        max_length: usize,
    ) -> impl Future<Output = io::Result<Option<String>>> + '_ {
        let mut line = String::new();
        poll_fn(move |cx| {
            let got = ready!(self.poll_line_into(cx, flags, max_length, &mut line))?;
            Poll::Ready(Ok(got.then(|| std::mem::take(&mut line))))
        })
    }

    /// Receive one line and append it to `buf` (Nim's `recvLineInto`): no allocation per line
    /// once `buf` has grown. Returns `true` if a line was appended, `false` at end-of-stream.
    ///
    /// # Errors
    ///
    /// As [`recv_line`](AsyncSocket::recv_line); on an error nothing is appended.
    ///
    /// # Cancel safety
    ///
    /// Nothing is lost, and `buf` is untouched unless the call completes.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await?;
    ///     client.close()?;
    ///     let mut line = String::with_capacity(256);
    ///     let capacity = line.capacity();
    ///     assert!(peer.recv_line_into(&mut line).await?);
    ///     assert_eq!(line, "GET / HTTP/1.1");
    ///     // It appends: clear the buffer between lines to reuse its memory.
    ///     line.clear();
    ///     while peer.recv_line_into(&mut line).await? && !line.is_empty() {
    ///         assert_eq!(line, "Host: example.com");
    ///         line.clear();
    ///     }
    ///     assert_eq!(line.capacity(), capacity); // one allocation for every line
    ///     assert!(!peer.recv_line_into(&mut line).await?); // end of stream: nothing appended
    ///     assert!(line.is_empty());
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_line_into<'a>(
        &'a self,
        buf: &'a mut String,
    ) -> impl Future<Output = io::Result<bool>> + 'a {
        // Not a layer of its own: the future is `recv_line_into_with`'s.
        self.recv_line_into_with(buf, Flags::default(), MAX_LINE_LENGTH)
    }

    /// [`recv_line_into`](AsyncSocket::recv_line_into) with explicit flags and limit.
    ///
    /// # Errors
    ///
    /// As [`recv_line`](AsyncSocket::recv_line).
    ///
    /// # Cancel safety
    ///
    /// As [`recv_line_into`](AsyncSocket::recv_line_into).
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Flags, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("QUIT\r\n").await?;
    ///     let mut line = String::new();
    ///     // Short commands only (here 16 bytes); `PEEK` leaves the line in the socket, so
    ///     // another part of the program can read it.
    ///     assert!(peer.recv_line_into_with(&mut line, Flags::PEEK, 16).await?);
    ///     assert_eq!(line, "QUIT");
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("QUIT"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_line_into_with<'a>(
        &'a self,
        buf: &'a mut String,
        flags: Flags,
        max_length: usize,
    ) -> impl Future<Output = io::Result<bool>> + 'a {
        // The bare poll function, no `async` layer around it (as `recv_into_with`): a
        // pipelined protocol reads many lines per wake-up, each through this future.
        poll_fn(move |cx| self.poll_line_into(cx, flags, max_length, buf))
    }

    /// The next line appended to `buf` as text: `true` if a line was appended, `false` at
    /// the end of the stream. A line that is not UTF-8 is consumed and returned in the
    /// error.
    #[inline(always)]
    fn poll_line_into(
        &self,
        cx: &mut Context<'_>,
        flags: Flags,
        max_length: usize,
        buf: &mut String,
    ) -> Poll<io::Result<bool>> {
        // A pipelined protocol finds most of its lines buffered already: those are taken
        // here, inlined into the caller, without the general path's layers (a caller's
        // `deliver`, the end of the stream, errors), which decides every other case, out of
        // line (callgrind, a pipelined Redis `PING`: 440 -> 405 instructions with `scan`
        // always inlined, 403 -> 397 with this split).
        if !self.inner.io.is_closed()
            && self.stream_mode(flags) == Mode::Buffered
            && self
                .inner
                .read
                .text_line_into(&self.inner.local.pool, max_length, buf)
        {
            return Poll::Ready(Ok(true));
        }
        self.poll_line_into_slow(cx, flags, max_length, buf)
    }

    /// [`poll_line_into`](Self::poll_line_into) for every case but a whole line of text
    /// already buffered.
    #[inline(never)]
    fn poll_line_into_slow(
        &self,
        cx: &mut Context<'_>,
        flags: Flags,
        max_length: usize,
        buf: &mut String,
    ) -> Poll<io::Result<bool>> {
        self.check_open()?;
        let mode = self.stream_mode(flags);
        let got = ready!(
            self.poll_line(cx, mode, flags, max_length, &mut |b: &[u8]| {
                match text(b) {
                    Ok(s) => {
                        buf.push_str(s);
                        Ok(())
                    }
                    Err(_) => Err(error::invalid_utf8(b.to_vec())),
                }
            })
        )?;
        Poll::Ready(match got {
            Some(r) => r.map(|()| true),
            None => Ok(false),
        })
    }

    /// `left`: the future's own state between polls, for a buffered read (see
    /// [`poll_recv_into_buffered`](Self::poll_recv_into_buffered)).
    pub(crate) fn poll_recv_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        flags: Flags,
        left: &mut Mirror,
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.check_open()?;
        let read = &self.inner.read;
        let pool = &self.inner.local.pool;
        match self.read_mode(flags) {
            Mode::Datagram => self.poll_recv_datagram_into(cx, buf, flags),
            Mode::BufferedPeek => {
                ready!(self.poll_fill(cx, buf.len(), flags))?;
                Poll::Ready(Ok(copy_front(read.buf.borrow().unread(), buf)))
            }
            mode @ (Mode::Unbuffered | Mode::UnbufferedPeek) => {
                // Bytes left by a dropped line read come first.
                if !read.buf.borrow().is_empty() {
                    let mut rb = read.buf.borrow_mut();
                    return Poll::Ready(Ok(if mode == Mode::Unbuffered {
                        rb.take_into(buf, pool)
                    } else {
                        copy_front(rb.unread(), buf)
                    }));
                }
                loop {
                    if read.eof.get() {
                        return Poll::Ready(Ok(0));
                    }
                    let r = if mode == Mode::Unbuffered {
                        ready!(self.poll_read_stream(cx, buf))
                    } else {
                        ready!(self.poll_peek(cx, buf, |_| true))
                    };
                    if let n @ 1.. = self.settle(r, flags)? {
                        return Poll::Ready(Ok(n));
                    }
                }
            }
            Mode::Buffered => self.poll_recv_into_buffered(cx, buf, flags, left),
        }
    }

    /// Buffered `recv_into`: fill `buf` from the socket's buffer, then straight from the
    /// kernel (see `poll_read_ahead`).
    ///
    /// A poll that cannot finish leaves a copy of the bytes it wrote into `buf` in the socket's
    /// buffer, so that a dropped future loses nothing, and records it in `left`. The next poll
    /// goes on where it stopped while that copy is still the buffer's front (no other read
    /// took bytes meanwhile): each byte is copied into the socket's buffer once however many
    /// wake-ups a large read takes, instead of back and forth at each. The copy is consumed
    /// when the read completes.
    fn poll_recv_into_buffered(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        flags: Flags,
        left: &mut Mirror,
    ) -> Poll<io::Result<usize>> {
        let read = &self.inner.read;
        let pool = &self.inner.local.pool;
        // `buf[..mirrored]` is also the front of the socket's buffer; `buf[mirrored..filled]`
        // is only in `buf`.
        let (mut filled, mut mirrored) = match std::mem::take(left) {
            m if read.buf.borrow().mirrors(m) => (m.len, m.len),
            _ => (read.buf.borrow_mut().take_into(buf, pool), 0),
        };
        loop {
            if mirrored > 0 && filled == mirrored {
                // Bytes queued after the copy (a small read's surplus) come next.
                let rb = read.buf.borrow();
                let n = copy_front(&rb.unread()[mirrored..], &mut buf[filled..]);
                filled += n;
                mirrored += n;
            }
            if filled == buf.len() || read.eof.get() {
                if mirrored > 0 {
                    read.buf.borrow_mut().consume(mirrored, pool);
                }
                return Poll::Ready(Ok(filled));
            }
            let r = if mirrored > 0 && buf.len() - filled < BUFFER_SIZE {
                // A small read goes through the socket's buffer, after the copy: the copy
                // must cover every byte before it.
                read.buf.borrow_mut().extend(&buf[mirrored..filled], pool);
                mirrored = filled;
                self.poll_fill_once(cx, BUFFER_SIZE, flags).map_ok(|_| 0)
            } else {
                self.poll_read_ahead(cx, &mut buf[filled..], flags)
            };
            match r {
                Poll::Ready(Ok(n)) => filled += n,
                other => {
                    // Keep what arrived in the socket, not in this future.
                    let mut rb = read.buf.borrow_mut();
                    if mirrored == 0 {
                        rb.unread_front(buf[..filled].to_vec());
                    } else {
                        rb.extend(&buf[mirrored..filled], pool);
                    }
                    *left = rb.mirror(filled);
                    return other;
                }
            }
        }
    }

    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        size: usize,
        flags: Flags,
    ) -> Poll<io::Result<Vec<u8>>> {
        if size == 0 {
            return Poll::Ready(Ok(Vec::new()));
        }
        self.check_open()?;
        let read = &self.inner.read;
        match self.read_mode(flags) {
            Mode::Datagram | Mode::Unbuffered | Mode::UnbufferedPeek => {
                // One read (one datagram) into the loop's scratch buffer when it fits, then
                // an exact-size copy.
                let mut scratch = self.inner.local.scratch.borrow_mut();
                let mut own;
                let buf: &mut [u8] = if size <= SCRATCH_SIZE {
                    &mut scratch[..size]
                } else if self.is_stream() {
                    &mut scratch[..]
                } else {
                    own = vec![0; size.min(super::datagram::MAX_DATAGRAM)];
                    &mut own[..]
                };
                let n = ready!(self.poll_recv_into(cx, buf, flags, &mut Mirror::default()))?;
                Poll::Ready(Ok(buf[..n].to_vec()))
            }
            Mode::BufferedPeek => {
                ready!(self.poll_fill(cx, size, flags))?;
                let rb = read.buf.borrow();
                Poll::Ready(Ok(rb.unread()[..size.min(rb.len())].to_vec()))
            }
            Mode::Buffered => self.poll_recv_buffered(cx, size, flags),
        }
    }

    /// Buffered `recv(size)`: the bytes gather in the socket's buffer (where a dropped future
    /// leaves them), then go to the caller in one piece.
    fn poll_recv_buffered(
        &self,
        cx: &mut Context<'_>,
        size: usize,
        flags: Flags,
    ) -> Poll<io::Result<Vec<u8>>> {
        ready!(self.poll_fill(cx, size, flags))?;
        let read = &self.inner.read;
        Poll::Ready(Ok(read
            .buf
            .borrow_mut()
            .take_front(size, &self.inner.local.pool)))
    }

    /// One buffered read for `dst` (the socket's buffer is empty): a small `dst` is served
    /// through the socket's buffer, asking the kernel for [`BUFFER_SIZE`] and keeping the
    /// surplus (Nim's `BufferSize`: a length-prefixed protocol then reads a header and its
    /// body in one system call); a large one is read into straight.
    fn poll_read_ahead(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
        flags: Flags,
    ) -> Poll<io::Result<usize>> {
        if dst.len() >= BUFFER_SIZE {
            return self.poll_read_settled(cx, dst, flags);
        }
        ready!(self.poll_fill_once(cx, BUFFER_SIZE, flags))?;
        let read = &self.inner.read;
        Poll::Ready(Ok(read
            .buf
            .borrow_mut()
            .take_into(dst, &self.inner.local.pool)))
    }

    /// Buffered: read into the socket's buffer until it holds `want` bytes or the stream ends.
    ///
    /// Each read asks for what is missing, but at least [`BUFFER_SIZE`] (the surplus stays
    /// buffered) and at most what is held already or [`BUFFER_SIZE`], whichever is more (and
    /// never more than [`MAX_CHUNK`]): the buffer grows geometrically, so a huge `want` costs
    /// memory only as bytes actually arrive, and each wake-up adds to what the buffer holds
    /// instead of starting over.
    fn poll_fill(&self, cx: &mut Context<'_>, want: usize, flags: Flags) -> Poll<io::Result<()>> {
        let read = &self.inner.read;
        loop {
            let have = read.buf.borrow().len();
            if have >= want || read.eof.get() {
                return Poll::Ready(Ok(()));
            }
            let max = (want - have)
                .min(have.clamp(BUFFER_SIZE, MAX_CHUNK))
                .max(BUFFER_SIZE);
            ready!(self.poll_fill_once(cx, max, flags))?;
        }
    }

    /// One read of up to `max` bytes appended to the socket's buffer.
    fn poll_fill_once(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        flags: Flags,
    ) -> Poll<io::Result<usize>> {
        let r = self.inner.read.buf.borrow_mut().fill_from(
            max,
            |b| self.poll_read_stream(cx, b),
            &self.inner.local.pool,
        );
        Poll::Ready(self.settle(ready!(r), flags))
    }

    /// Find the next line and hand its content to `deliver`; `None` at end-of-stream. The
    /// socket is open (the caller checked), and its reads are in `mode`.
    #[inline]
    fn poll_line<R>(
        &self,
        cx: &mut Context<'_>,
        mode: Mode,
        flags: Flags,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> Poll<io::Result<Option<R>>> {
        if mode == Mode::UnbufferedPeek {
            return self.poll_peek_line_unbuffered(cx, flags, max_length, deliver);
        }
        loop {
            if let Some(r) = self.buffered_line(mode, max_length, deliver)? {
                return Poll::Ready(Ok(r));
            }
            if let Some(r) = ready!(self.poll_line_read(cx, mode, flags, max_length, deliver))? {
                return Poll::Ready(Ok(Some(r)));
            }
        }
    }

    /// A line from the socket's buffer, if it holds one (see [`ReadState::buffered_line`]).
    #[inline]
    fn buffered_line<R>(
        &self,
        mode: Mode,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> io::Result<Option<Option<R>>> {
        self.inner.read.buffered_line(
            &self.inner.local.pool,
            mode == Mode::BufferedPeek,
            max_length,
            deliver,
        )
    }

    /// Read more for a line. With nothing buffered, a buffered socket reads into the loop's
    /// scratch buffer and keeps only what follows the line (a socket between messages holds
    /// no buffer): the line itself may come back at once.
    #[inline]
    fn poll_line_read<R>(
        &self,
        cx: &mut Context<'_>,
        mode: Mode,
        flags: Flags,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> Poll<io::Result<Option<R>>> {
        let read = &self.inner.read;
        let pool = &self.inner.local.pool;
        if mode == Mode::Buffered && read.buf.borrow().is_empty() {
            let mut scratch = self.inner.local.scratch.borrow_mut();
            let n = ready!(self.poll_read_settled(cx, &mut scratch, flags))?;
            return Poll::Ready(read.line_from_fresh(&scratch[..n], pool, max_length, deliver));
        }
        if mode != Mode::Unbuffered {
            ready!(self.poll_fill_once(cx, BUFFER_SIZE, flags))?;
            return Poll::Ready(Ok(None));
        }
        // Unbuffered: one byte at a time, so that nothing past the line is taken from the
        // kernel (Nim does the same). The partial line lives in the socket.
        let mut byte = [0u8; 1];
        if ready!(self.poll_read_settled(cx, &mut byte, flags))? == 1 {
            read.buf.borrow_mut().extend(&byte, pool);
        }
        Poll::Ready(Ok(None))
    }

    /// Unbuffered `PEEK` line: look at the kernel's queue with `MSG_PEEK`, take nothing.
    fn poll_peek_line_unbuffered<R>(
        &self,
        cx: &mut Context<'_>,
        flags: Flags,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> Poll<io::Result<Option<R>>> {
        let read = &self.inner.read;
        let limit = max_length.saturating_add(2);
        // Peek a small window first and widen it only while the kernel fills it without a
        // newline: a short line costs a small buffer, not `max_length`.
        let mut window = limit.min(4096);
        loop {
            // A partial line left by a dropped (consuming) line read comes first.
            let mut view = read.buf.borrow().unread().to_vec();
            let have = view.len();
            let want = window.saturating_sub(have).clamp(1, MAX_CHUNK);
            view.resize(have + want, 0);
            let n = if read.eof.get() {
                0
            } else {
                // Enough to decide: the end, a full window, a newline, or the peer gone.
                let r = ready!(self.poll_peek(cx, &mut view[have..], |seen| {
                    seen.is_empty()
                        || seen.len() == want
                        || memchr::memchr(b'\n', seen).is_some()
                        || self.peer_closed()
                }));
                self.settle(r, flags)?
            };
            view.truncate(have + n);
            let filled = n == want;
            let at_end = n == 0 || (self.peer_closed() && !filled);
            match next_line(&view, 0, max_length, deliver)? {
                Ok((r, _)) => return Poll::Ready(Ok(Some(r))),
                // The end: the partial line is a line, if within the limit (the scan let
                // one byte more through: a `\r` that `\n` might have followed).
                Err(_) if at_end && view.len() > max_length => {
                    return Poll::Ready(Err(error::line_too_long(max_length)));
                }
                Err(_) if at_end => {
                    return Poll::Ready(Ok((!view.is_empty()).then(|| deliver(&view))));
                }
                // More may be queued behind the window: look again, wider.
                Err(_) => window = window.saturating_mul(2).min(limit),
            }
        }
    }
}

/// Copy the front of `from` into `to`; how many bytes.
fn copy_front(from: &[u8], to: &mut [u8]) -> usize {
    let n = to.len().min(from.len());
    to[..n].copy_from_slice(&from[..n]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `line_reader` fuzz target: at the end of the stream, a partial line of
    /// `max_length` bytes and a `\r` (which might have been the start of `\r\n`) was returned
    /// whole, one byte over the limit.
    #[test]
    fn partial_line_one_over_the_limit_with_a_trailing_cr_at_end_of_stream_is_too_long() {
        let pool = BufferPool::default();
        for (input, max) in [(&b"12345\r"[..], 5), (b"\r", 0)] {
            let read = ReadState::new(true);
            read.buf.borrow_mut().extend(input, &pool);
            let deliver = &mut |b: &[u8]| b.to_vec();
            assert!(matches!(
                read.buffered_line(&pool, false, max, deliver),
                Ok(None)
            ));
            read.eof.set(true);
            let e = read
                .buffered_line(&pool, false, max, deliver)
                .expect_err("a line over the limit");
            let source = e
                .get_ref()
                .and_then(|s| s.downcast_ref::<crate::LineTooLong>());
            assert_eq!(source, Some(&crate::LineTooLong { max_length: max }));
            assert_eq!(read.buf.borrow().unread(), input, "nothing consumed");
        }
    }

    /// The shortcut takes a line only where the general path would complete the same read
    /// with that line; everything else it leaves to the general path, the buffer untouched.
    #[test]
    fn the_text_line_shortcut_agrees_with_the_general_path_or_leaves_the_buffer_alone() {
        let pool = BufferPool::default();
        let inputs: [&[u8]; 10] = [
            b"PING\r\nPING\r\n",
            b"PING\r\n",
            b"PI",
            b"\n",
            b"\r\n",
            b"h\xc3\xa9llo\nrest",
            b"\xffbad\nnext\n",
            b"123456\n",
            b"12345\r\n",
            b"a\rb\n",
        ];
        for input in inputs {
            for max in [0, 5, 100] {
                for eof in [false, true] {
                    let shortcut = ReadState::new(true);
                    let general = ReadState::new(true);
                    for r in [&shortcut, &general] {
                        r.buf.borrow_mut().extend(input, &pool);
                        r.eof.set(eof);
                    }
                    let (mut fast, mut slow) = ("x".to_string(), "x".to_string());
                    let took = shortcut.text_line_into(&pool, max, &mut fast);
                    let deliver = &mut |b: &[u8]| text(b).map(|t| slow.push_str(t)).map_err(|_| ());
                    let settled = general.buffered_line(&pool, false, max, deliver);
                    let case = format!("{input:?}, max {max}, eof {eof}");
                    if took {
                        assert!(matches!(settled, Ok(Some(Some(Ok(()))))), "{case}");
                        assert_eq!(fast, slow, "{case}");
                        assert_eq!(
                            shortcut.buf.borrow().unread(),
                            general.buf.borrow().unread(),
                            "{case}"
                        );
                    } else {
                        assert_eq!(fast, "x", "{case}");
                        assert_eq!(shortcut.buf.borrow().unread(), input, "{case}");
                    }
                }
            }
        }
        // The lines the shortcut is for are taken by it.
        let read = ReadState::new(true);
        read.buf
            .borrow_mut()
            .extend(b"PING\r\nh\xc3\xa9\nPI", &pool);
        let mut out = String::new();
        assert!(read.text_line_into(&pool, 100, &mut out));
        assert!(read.text_line_into(&pool, 100, &mut out));
        assert!(!read.text_line_into(&pool, 100, &mut out));
        assert_eq!(out, "PINGh\u{e9}");
        assert_eq!(read.buf.borrow().unread(), b"PI");
    }

    /// Send `pieces` one at a time and after each poll `read` until the piece has reached the
    /// socket's buffer (the read went pending, keeping what it has there) or the read
    /// completes. At each such stop the buffer holds every byte sent so far, and the bytes
    /// it held at the first stop are still its front: the read never took them back out.
    async fn read_piece_by_piece<T>(
        client: &AsyncSocket,
        peer: &AsyncSocket,
        pieces: &[&[u8]],
        mut read: std::pin::Pin<&mut dyn Future<Output = io::Result<T>>>,
    ) -> io::Result<T> {
        let mut sent = 0;
        let mut first = None;
        for (i, piece) in pieces.iter().enumerate() {
            client.send(piece).await?;
            sent += piece.len();
            for _ in 0..5000 {
                match poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
                    Poll::Ready(r) => return r,
                    Poll::Pending if peer.inner.read.buf.borrow().len() >= sent => break,
                    Poll::Pending => crate::sleep_async(std::time::Duration::from_millis(1)).await,
                }
            }
            let rb = peer.inner.read.buf.borrow();
            assert_eq!(
                rb.len(),
                sent,
                "the read keeps what it has in the socket's buffer"
            );
            let first = *first.get_or_insert_with(|| rb.mirror(pieces[0].len()));
            assert!(
                rb.mirrors(first),
                "piece {i}: the read took its bytes back out"
            );
        }
        Err(io::Error::other("the read did not complete"))
    }

    /// A buffered `recv_into` that waits many times leaves each piece in the socket's buffer
    /// once and goes on from there: its earlier bytes are not taken back out at each wake-up
    /// (which made a large read quadratic: every wake-up copied everything so far twice).
    /// Every byte still arrives in order, and the bytes past the buffer stay for the next read.
    #[test]
    fn a_buffered_recv_into_waiting_many_times_leaves_each_byte_in_the_socket_buffer_once() {
        crate::wait_for(async {
            let (client, peer) = crate::net::test_support::tcp_pair().await?;
            const SIZE: usize = 200_000;
            let data: Vec<u8> = (0..SIZE + 7).map(|i| (i % 251) as u8).collect();
            // Pieces of 10,000 bytes; the last brings 7 bytes past the buffer.
            let last = SIZE - 10_000;
            let pieces: Vec<&[u8]> = data[..last].chunks(10_000).chain([&data[last..]]).collect();
            let mut buf = vec![0u8; SIZE];
            let n = read_piece_by_piece(
                &client,
                &peer,
                &pieces,
                std::pin::pin!(peer.recv_into(&mut buf)),
            )
            .await?;
            assert_eq!(n, SIZE);
            assert!(buf == data[..SIZE], "every byte, in order");
            assert_eq!(peer.recv(7).await?, &data[SIZE..], "the rest stays");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }

    /// A buffered `recv(size)` that waits many times gathers the bytes in the socket's buffer,
    /// adding to them at each wake-up (not copying them out and back).
    #[test]
    fn a_buffered_recv_waiting_many_times_gathers_in_the_socket_buffer() {
        crate::wait_for(async {
            let (client, peer) = crate::net::test_support::tcp_pair().await?;
            const SIZE: usize = 300_000;
            let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
            let pieces: Vec<&[u8]> = data.chunks(30_000).collect();
            let got = read_piece_by_piece(&client, &peer, &pieces, std::pin::pin!(peer.recv(SIZE)))
                .await?;
            assert!(got == data, "every byte, in order");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }
}
