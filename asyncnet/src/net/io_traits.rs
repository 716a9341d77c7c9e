//! `futures-io` traits, so that codecs, TLS and protocol crates can use an `AsyncSocket`.
//! What they mean on a socket is written once, in the crate docs: [`AsyncRead` and
//! `AsyncWrite`](crate#asyncread-and-asyncwrite).
#![forbid(unsafe_code)]

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};

use super::options::Flags;
use super::socket::{AsyncSocket, BUFFER_SIZE};

impl AsyncSocket {
    /// Read what is available: buffered bytes, else one system call. 0 is end-of-stream.
    fn poll_read_some(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.check_open()?;
        let read = &self.inner.read;
        if !read.buf.borrow().is_empty() {
            return Poll::Ready(Ok(read
                .buf
                .borrow_mut()
                .take_into(buf, &self.inner.local.pool)));
        }
        loop {
            if read.eof.get() {
                return Poll::Ready(Ok(0));
            }
            match ready!(self.poll_read_stream(cx, buf))? {
                0 => read.eof.set(true),
                n => return Poll::Ready(Ok(n)),
            }
        }
    }

    /// Coalesce like [`send`](AsyncSocket::send): take `buf` into the output buffer while it
    /// fits under the high-water mark; a larger `buf` on an empty queue goes straight to the
    /// kernel; otherwise write the queue out first.
    fn poll_write_some(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check_writable()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let write = &self.inner.write;
        loop {
            if self.try_coalesce(buf) {
                return Poll::Ready(Ok(buf.len()));
            }
            if write.buf.borrow().is_empty() {
                let n = ready!(self.poll_write(cx, buf))?;
                write.buf.borrow_mut().note_direct(n);
                return Poll::Ready(Ok(n));
            }
            let end = write.buf.borrow().accepted();
            ready!(self.poll_flush_to(cx, end, Flags::NONE))?;
        }
    }
}

impl AsyncRead for AsyncSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_some(cx, buf)
    }
}

impl AsyncWrite for AsyncSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_some(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_all(cx)
    }

    /// Flush, then close the socket as [`close`](AsyncSocket::close) does (the half-close is
    /// [`shutdown_write`](AsyncSocket::shutdown_write)); see [`AsyncRead` and
    /// `AsyncWrite`](crate#asyncread-and-asyncwrite).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_closed() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_flush_all(cx))?;
        Poll::Ready(self.close())
    }
}

/// A socket as `futures-io`'s [`AsyncBufRead`] (and [`AsyncRead`]), made by
/// [`AsyncSocket::buf_reader`]: for parsers and codecs that look at buffered bytes before
/// taking them.
///
/// It buffers once: the bytes it shows are the socket's own read buffer, moved into the
/// reader, and reads from the kernel go straight into it. When the reader is dropped, the
/// bytes it holds and nobody consumed go back to the socket, in order, so a later
/// [`recv_line`](AsyncSocket::recv_line) starts where the reader stopped. While it lives,
/// read the socket only through it (other handles would see later bytes first); writing
/// through the socket is fine.
#[derive(Debug)]
pub struct BufReader {
    socket: AsyncSocket,
    buf: Vec<u8>,
    pos: usize,
}

impl AsyncSocket {
    /// This socket as an [`AsyncBufRead`] (see [`BufReader`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_io::AsyncBufRead;
    /// use std::{future::poll_fn, pin::Pin};
    /// use asyncnet::{AsyncSocket, wait_for};
    /// wait_for(async {
    ///     let server = AsyncSocket::new()?;
    ///     server.bind_addr(0, "127.0.0.1")?;
    ///     server.listen()?;
    ///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    ///     let mut reader = peer.buf_reader();
    ///     let seen = poll_fn(|cx| Pin::new(&mut reader).poll_fill_buf(cx).map_ok(|b| b.len())).await?;
    ///     Pin::new(&mut reader).consume(4); // "GET "
    ///     drop(reader); // the rest goes back to the socket
    ///     assert!(seen > 4);
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("/ HTTP/1.1"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn buf_reader(&self) -> BufReader {
        BufReader {
            socket: self.clone(),
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl AsyncBufRead for BufReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos == this.buf.len() {
            this.buf.clear();
            this.pos = 0;
            let socket = &this.socket;
            socket.socket()?;
            let read = &socket.inner.read;
            // Bytes the socket holds come first, moved, not copied.
            let held = read.buf.borrow_mut().take_all();
            if !held.is_empty() {
                this.buf = held;
            } else if !read.eof.get() {
                this.buf.resize(BUFFER_SIZE, 0);
                let r = socket.poll_read_stream(cx, &mut this.buf);
                let n = match &r {
                    Poll::Ready(Ok(n)) => *n,
                    _ => 0,
                };
                this.buf.truncate(n);
                if ready!(r)? == 0 {
                    read.eof.set(true);
                }
            }
        }
        Poll::Ready(Ok(&this.buf[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.buf.len());
    }
}

impl AsyncRead for BufReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

impl Drop for BufReader {
    fn drop(&mut self) {
        if self.pos < self.buf.len() {
            let mut rest = std::mem::take(&mut self.buf);
            rest.drain(..self.pos);
            self.socket.inner.read.buf.borrow_mut().unread_front(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::test_support::tcp_pair;
    use crate::wait_for;
    use std::future::poll_fn;

    #[test]
    fn async_read_returns_what_arrived_on_a_buffered_socket() {
        wait_for(async {
            let (client, peer) = tcp_pair().await?;
            let mut w = client.clone();
            let n = poll_fn(|cx| Pin::new(&mut w).poll_write(cx, b"abc")).await?;
            assert_eq!(n, 3);
            let mut r = peer.clone();
            let mut buf = [0u8; 100];
            let n = poll_fn(|cx| Pin::new(&mut r).poll_read(cx, &mut buf)).await?;
            assert_eq!(&buf[..n], b"abc");
            poll_fn(|cx| Pin::new(&mut w).poll_close(cx)).await?;
            assert!(
                client.is_closed(),
                "close means close, whichever way it is called"
            );
            let n = poll_fn(|cx| Pin::new(&mut r).poll_read(cx, &mut buf)).await?;
            assert_eq!(n, 0);
            poll_fn(|cx| Pin::new(&mut w).poll_close(cx)).await?;
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }

    #[test]
    fn a_buf_reader_shows_the_sockets_own_bytes_and_gives_back_what_it_did_not_consume() {
        wait_for(async {
            let (client, peer) = tcp_pair().await?;
            client.send("one\ntwo\nthree\n").await?;
            client.flush().await?;
            // The line read takes the rest along into the socket's buffer.
            assert_eq!(peer.recv_line().await?.as_deref(), Some("one"));
            let mut reader = peer.buf_reader();
            let held = poll_fn(|cx| {
                Pin::new(&mut reader)
                    .poll_fill_buf(cx)
                    .map_ok(<[u8]>::to_vec)
            })
            .await?;
            assert_eq!(
                held, b"two\nthree\n",
                "moved from the socket, not read again"
            );
            assert!(!peer.has_data_buffered(), "one buffer, not two");
            Pin::new(&mut reader).consume(4);
            let mut byte = [0u8; 1];
            let n = poll_fn(|cx| Pin::new(&mut reader).poll_read(cx, &mut byte)).await?;
            assert_eq!((n, &byte), (1, b"t"));
            drop(reader);
            assert_eq!(peer.recv_line().await?.as_deref(), Some("hree"));
            client.close()?;
            let mut reader = peer.buf_reader();
            let end =
                poll_fn(|cx| Pin::new(&mut reader).poll_fill_buf(cx).map_ok(<[u8]>::len)).await?;
            assert_eq!(end, 0, "end of stream");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }
}
