//! `futures-io` traits, so that codecs, TLS and protocol crates can use an `AsyncSocket`.
//!
//! `AsyncRead` has the usual "some bytes" meaning in both modes: buffered bytes first, else
//! one system call (unlike [`recv`](AsyncSocket::recv), which waits for the full size on a
//! buffered socket). `AsyncWrite` goes through the same output buffer as
//! [`send`](AsyncSocket::send), coalescing the same way, so the two can be mixed without
//! reordering; `poll_flush` waits until the kernel has every byte.
#![forbid(unsafe_code)]

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

use super::options::Flags;
use super::socket::AsyncSocket;

impl AsyncSocket {
    /// Read what is available: buffered bytes, else one system call. 0 is end-of-stream.
    fn poll_read_some(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.socket()?;
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

    /// Flush, then shut down the writing half (the socket stays open for reading).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush_all(cx))?;
        if !self.inner.write.shut.replace(true) {
            // TLS: close_notify before the end of the stream (queued once, flushed below).
            self.tls_send_close_notify();
        }
        ready!(self.poll_flush_records(cx))?;
        Poll::Ready(self.socket()?.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait_for;
    use std::future::poll_fn;

    #[test]
    fn async_read_returns_what_arrived_on_a_buffered_socket() {
        wait_for(async {
            let server = AsyncSocket::new()?;
            server.bind_addr(0, "127.0.0.1")?;
            server.listen()?;
            let client = crate::dial("127.0.0.1", server.local_addr()?.1).await?;
            let peer = server.accept().await?;
            let mut w = client.clone();
            let n = poll_fn(|cx| Pin::new(&mut w).poll_write(cx, b"abc")).await?;
            assert_eq!(n, 3);
            let mut r = peer.clone();
            let mut buf = [0u8; 100];
            let n = poll_fn(|cx| Pin::new(&mut r).poll_read(cx, &mut buf)).await?;
            assert_eq!(&buf[..n], b"abc");
            poll_fn(|cx| Pin::new(&mut w).poll_close(cx)).await?;
            let n = poll_fn(|cx| Pin::new(&mut r).poll_read(cx, &mut buf)).await?;
            assert_eq!(n, 0);
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }
}
