//! Receiving: `recv`, `recv_into`, `recv_line`, `recv_line_into`.
//!
//! Cancel safety comes from one rule: a read future holds no bytes while it waits. Whatever it
//! took from the kernel and cannot return yet is put into the socket's read buffer before it
//! returns `Pending`, so dropping the future loses nothing; the next read starts from there.
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io;
use std::task::{ready, Context, Poll};

use super::line::{scan, Scan};
use super::options::Flags;
use super::socket::{AsyncSocket, BUFFER_SIZE, MAX_LINE_LENGTH};
use crate::driver::{Direction, SCRATCH_SIZE};
use crate::error;

/// The most a buffered read asks for in one system call.
const MAX_CHUNK: usize = 4 * 1024 * 1024;

impl AsyncSocket {
    /// Book a read's result. Data: its length. End of stream (0 bytes, or a disconnection
    /// under `SAFE_DISCONN`): recorded, and 0. `WouldBlock`: 0 (readiness is already cleared,
    /// so the caller's loop waits). Any other error is returned.
    fn settle(&self, r: io::Result<usize>, flags: Flags) -> io::Result<usize> {
        match r {
            Ok(0) => {
                self.inner.read_eof.set(true);
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if flags.contains(Flags::SAFE_DISCONN) && crate::sys::is_disconnect(&e) => {
                self.inner.read_eof.set(true);
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Wait until the socket is readable. Before the task sleeps, the output buffer is
    /// written: replies to the requests just read leave now, in one write (and a write error
    /// nobody has heard of is returned).
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = &self.inner.io;
        if !io.is_ready(Direction::Read) && !io.is_closed() {
            self.flush_before_wait()?;
        }
        io.poll_ready(Direction::Read, cx)
    }

    /// Receive up to `size` bytes (Nim's `recv`), with the default flags (`SAFE_DISCONN`).
    ///
    /// Buffered socket: waits until `size` bytes have arrived or the stream ends. Unbuffered:
    /// returns what one system call gave (waiting for at least one byte). An empty result
    /// means end-of-stream (or `size == 0`).
    ///
    /// # Errors
    ///
    /// The socket is closed (also when closed while waiting), or the OS reports an error;
    /// under `SAFE_DISCONN` a reset is end-of-stream, not an error.
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
    pub async fn recv(&self, size: usize) -> io::Result<Vec<u8>> {
        self.recv_with(size, Flags::default()).await
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
    pub async fn recv_with(&self, size: usize, flags: Flags) -> io::Result<Vec<u8>> {
        poll_fn(|cx| self.poll_recv(cx, size, flags)).await
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
    /// Nothing is lost: if the future is dropped, bytes it had received are in the socket's
    /// buffer, not in `buf`.
    pub async fn recv_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into_with(buf, Flags::default()).await
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
    pub async fn recv_into_with(&self, buf: &mut [u8], flags: Flags) -> io::Result<usize> {
        poll_fn(|cx| self.poll_recv_into(cx, buf, flags)).await
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
    pub async fn recv_line(&self) -> io::Result<Option<String>> {
        self.recv_line_with(Flags::default(), MAX_LINE_LENGTH).await
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
    pub async fn recv_line_with(
        &self,
        flags: Flags,
        max_length: usize,
    ) -> io::Result<Option<String>> {
        let mut line = String::new();
        let got = self
            .recv_line_into_with(&mut line, flags, max_length)
            .await?;
        Ok(got.then_some(line))
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
    pub async fn recv_line_into(&self, buf: &mut String) -> io::Result<bool> {
        self.recv_line_into_with(buf, Flags::default(), MAX_LINE_LENGTH)
            .await
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
    pub async fn recv_line_into_with(
        &self,
        buf: &mut String,
        flags: Flags,
        max_length: usize,
    ) -> io::Result<bool> {
        let got = poll_fn(|cx| {
            self.poll_line(
                cx,
                flags,
                max_length,
                &mut |b: &[u8]| match std::str::from_utf8(b) {
                    Ok(s) => {
                        buf.push_str(s);
                        Ok(())
                    }
                    Err(_) => Err(error::invalid_utf8(b.to_vec())),
                },
            )
        })
        .await?;
        match got {
            Some(r) => r.map(|()| true),
            None => Ok(false),
        }
    }

    pub(crate) fn poll_recv_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        flags: Flags,
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.socket()?;
        if !self.is_stream() {
            return self.poll_recv_datagram_into(cx, buf, flags);
        }
        let peek = flags.contains(Flags::PEEK);
        let inner = &self.inner;
        if !inner.buffered.get() || peek {
            {
                // Bytes left by a dropped line read (unbuffered) or a peek come first.
                let mut rb = inner.rbuf.borrow_mut();
                let pending_peek = peek && inner.buffered.get();
                if !rb.is_empty() && !pending_peek {
                    let n = buf.len().min(rb.len());
                    buf[..n].copy_from_slice(&rb.unread()[..n]);
                    if !peek {
                        rb.consume(n, &inner.driver.pool);
                    }
                    return Poll::Ready(Ok(n));
                }
            }
            if inner.buffered.get() {
                ready!(self.poll_fill(cx, buf.len(), flags))?;
                let rb = inner.rbuf.borrow();
                let n = buf.len().min(rb.len());
                buf[..n].copy_from_slice(&rb.unread()[..n]);
                return Poll::Ready(Ok(n));
            }
            loop {
                if inner.read_eof.get() {
                    return Poll::Ready(Ok(0));
                }
                if !inner.io.is_ready(Direction::Read) {
                    ready!(self.poll_readable(cx))?;
                }
                match self.settle(self.raw_read(buf, peek), flags)? {
                    0 => {}
                    n => return Poll::Ready(Ok(n)),
                }
            }
        }
        // Buffered, consuming: serve from the buffer, then read straight into `buf`.
        let mut filled = inner.rbuf.borrow_mut().take_into(buf, &inner.driver.pool);
        while filled < buf.len() && !inner.read_eof.get() {
            if !inner.io.is_ready(Direction::Read) {
                match self.poll_readable(cx) {
                    Poll::Ready(Ok(())) => {}
                    other => {
                        // Keep what arrived in the socket, not in this future.
                        inner.rbuf.borrow_mut().unread_front(buf[..filled].to_vec());
                        return other.map(|r| r.map(|()| 0));
                    }
                }
            }
            match self.settle(self.raw_read(&mut buf[filled..], false), flags) {
                Ok(n) => filled += n,
                Err(e) => {
                    inner.rbuf.borrow_mut().unread_front(buf[..filled].to_vec());
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(filled))
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
        self.socket()?;
        let inner = &self.inner;
        if !self.is_stream() {
            // One datagram, through the scratch buffer when it fits.
            let driver = inner.driver.clone();
            let mut scratch = driver.scratch.borrow_mut();
            let mut own;
            let buf: &mut [u8] = if size <= SCRATCH_SIZE {
                &mut scratch[..size]
            } else {
                own = vec![0; size.min(super::datagram::MAX_DATAGRAM)];
                &mut own[..]
            };
            let n = ready!(self.poll_recv_datagram_into(cx, buf, flags))?;
            return Poll::Ready(Ok(buf[..n].to_vec()));
        }
        if inner.buffered.get() && flags.contains(Flags::PEEK) {
            ready!(self.poll_fill(cx, size, flags))?;
            let rb = inner.rbuf.borrow();
            return Poll::Ready(Ok(rb.unread()[..size.min(rb.len())].to_vec()));
        }
        if !inner.buffered.get() {
            // One read into the loop's scratch buffer, then an exact-size copy.
            let driver = inner.driver.clone();
            let mut scratch = driver.scratch.borrow_mut();
            let want = size.min(SCRATCH_SIZE);
            let n = ready!(self.poll_recv_into(cx, &mut scratch[..want], flags))?;
            return Poll::Ready(Ok(scratch[..n].to_vec()));
        }
        let mut out = {
            let mut rb = inner.rbuf.borrow_mut();
            let n = size.min(rb.len());
            let v = rb.unread()[..n].to_vec();
            rb.consume(n, &inner.driver.pool);
            v
        };
        while out.len() < size && !inner.read_eof.get() {
            if !inner.io.is_ready(Direction::Read) {
                match self.poll_readable(cx) {
                    Poll::Ready(Ok(())) => {}
                    other => {
                        inner.rbuf.borrow_mut().unread_front(out);
                        return other.map(|r| r.map(|()| Vec::new()));
                    }
                }
            }
            // Grow geometrically, never past `size`: a huge `size` costs memory only as
            // bytes actually arrive.
            let start = out.len();
            let chunk = (size - start).min(start.max(BUFFER_SIZE)).min(MAX_CHUNK);
            out.resize(start + chunk, 0);
            let r = self.raw_read(&mut out[start..], false);
            out.truncate(start + *r.as_ref().unwrap_or(&0));
            if let Err(e) = self.settle(r, flags) {
                inner.rbuf.borrow_mut().unread_front(out);
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(out))
    }

    /// Buffered: read into the socket's buffer until it holds `want` bytes or the stream ends.
    fn poll_fill(&self, cx: &mut Context<'_>, want: usize, flags: Flags) -> Poll<io::Result<()>> {
        let inner = &self.inner;
        loop {
            let have = inner.rbuf.borrow().len();
            if have >= want || inner.read_eof.get() {
                return Poll::Ready(Ok(()));
            }
            if !inner.io.is_ready(Direction::Read) {
                ready!(self.poll_readable(cx))?;
            }
            let chunk = (want - have).clamp(BUFFER_SIZE, MAX_CHUNK);
            let r = inner.rbuf.borrow_mut().fill_from(
                chunk,
                |b| self.raw_read(b, false),
                &inner.driver.pool,
            );
            self.settle(r, flags)?;
        }
    }

    /// Find the next line and hand its content to `deliver`; `None` at end-of-stream.
    pub(crate) fn poll_line<R>(
        &self,
        cx: &mut Context<'_>,
        flags: Flags,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> Poll<io::Result<Option<R>>> {
        self.socket()?;
        if !self.inner.buffered.get() && flags.contains(Flags::PEEK) {
            return self.poll_peek_line_unbuffered(cx, flags, max_length, deliver);
        }
        let inner = &self.inner;
        let peek = flags.contains(Flags::PEEK);
        loop {
            {
                let mut rb = inner.rbuf.borrow_mut();
                if !rb.is_empty() {
                    match scan(rb.unread(), rb.scanned(), max_length) {
                        Scan::Line { content, consumed } => {
                            let r = deliver(&rb.unread()[..content]);
                            if !peek {
                                rb.consume(consumed, &inner.driver.pool);
                            }
                            return Poll::Ready(Ok(Some(r)));
                        }
                        Scan::TooLong => return Poll::Ready(Err(error::line_too_long(max_length))),
                        Scan::NeedMore { scanned } => rb.set_scanned(scanned),
                    }
                }
                if inner.read_eof.get() {
                    if rb.is_empty() {
                        return Poll::Ready(Ok(None));
                    }
                    // End of stream in the middle of a line: the partial line is a line.
                    let r = deliver(rb.unread());
                    if !peek {
                        let n = rb.len();
                        rb.consume(n, &inner.driver.pool);
                    }
                    return Poll::Ready(Ok(Some(r)));
                }
            }
            if !inner.io.is_ready(Direction::Read) {
                ready!(self.poll_readable(cx))?;
            }
            let r = if inner.buffered.get() && !peek && inner.rbuf.borrow().is_empty() {
                // Nothing buffered: read into the loop's scratch buffer and keep only what
                // follows the line, so that a socket between messages holds no buffer.
                let driver = inner.driver.clone();
                let mut scratch = driver.scratch.borrow_mut();
                match self.raw_read(&mut scratch, false) {
                    Ok(n) if n > 0 => {
                        let data = &scratch[..n];
                        match scan(data, 0, max_length) {
                            Scan::Line { content, consumed } => {
                                let r = deliver(&data[..content]);
                                inner
                                    .rbuf
                                    .borrow_mut()
                                    .extend(&data[consumed..], &inner.driver.pool);
                                return Poll::Ready(Ok(Some(r)));
                            }
                            Scan::NeedMore { scanned } => {
                                let mut rb = inner.rbuf.borrow_mut();
                                rb.extend(data, &inner.driver.pool);
                                rb.set_scanned(scanned);
                            }
                            Scan::TooLong => {
                                inner.rbuf.borrow_mut().extend(data, &inner.driver.pool);
                                return Poll::Ready(Err(error::line_too_long(max_length)));
                            }
                        }
                        Ok(n)
                    }
                    other => other,
                }
            } else if inner.buffered.get() {
                inner.rbuf.borrow_mut().fill_from(
                    BUFFER_SIZE,
                    |b| self.raw_read(b, false),
                    &inner.driver.pool,
                )
            } else {
                // Unbuffered: one byte at a time, so that nothing past the line is taken
                // from the kernel (Nim does the same). The partial line lives in the socket.
                let mut byte = [0u8; 1];
                let r = self.raw_read(&mut byte, false);
                if let Ok(1) = r {
                    inner.rbuf.borrow_mut().extend(&byte, &inner.driver.pool);
                }
                r
            };
            self.settle(r, flags)?;
        }
    }

    /// Unbuffered `PEEK` line: look at the kernel's queue with `MSG_PEEK`, take nothing.
    fn poll_peek_line_unbuffered<R>(
        &self,
        cx: &mut Context<'_>,
        flags: Flags,
        max_length: usize,
        deliver: &mut dyn FnMut(&[u8]) -> R,
    ) -> Poll<io::Result<Option<R>>> {
        let inner = &self.inner;
        let limit = max_length.saturating_add(2);
        // Peek a small window first and widen it only while the kernel fills it without a
        // newline: a short line costs a small buffer, not `max_length`.
        let mut window = limit.min(4096);
        loop {
            if !inner.io.is_ready(Direction::Read) {
                ready!(self.poll_readable(cx))?;
            }
            // A partial line left by a dropped (consuming) line read comes first.
            let mut view = inner.rbuf.borrow().unread().to_vec();
            let have = view.len();
            let want = window.saturating_sub(have).clamp(1, MAX_CHUNK);
            view.resize(have + want, 0);
            let r = if inner.read_eof.get() {
                Ok(0)
            } else {
                self.raw_read(&mut view[have..], true)
            };
            let n = match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => self.settle(other, flags)?,
            };
            view.truncate(have + n);
            let filled = n == want;
            let at_end = n == 0 || (inner.io.is_read_closed() && !filled);
            match scan(&view, 0, max_length) {
                Scan::Line { content, .. } => {
                    return Poll::Ready(Ok(Some(deliver(&view[..content]))))
                }
                Scan::TooLong => return Poll::Ready(Err(error::line_too_long(max_length))),
                Scan::NeedMore { .. } if at_end => {
                    return Poll::Ready(Ok((!view.is_empty()).then(|| deliver(&view))));
                }
                Scan::NeedMore { .. } if filled && window < limit => {
                    // More may be queued behind the window: look again, wider.
                    window = window.saturating_mul(2).min(limit);
                }
                Scan::NeedMore { .. } => {
                    // A peek drains nothing, so readiness stays until new bytes arrive.
                    inner.io.clear(Direction::Read);
                }
            }
        }
    }
}
