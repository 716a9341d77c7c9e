//! Sending: `send` and the socket's output queue.
//!
//! A send writes straight from the caller's bytes while the kernel takes them. What the kernel
//! does not take at once is copied into the socket's output queue, behind the bytes of earlier
//! sends, and the send completes when the queue has been written up to its last byte. So
//! concurrent sends from several tasks never interleave, and a dropped send never tears a
//! message: its bytes are already queued, and a background task finishes writing them.
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io;
use std::task::{ready, Context, Poll};

use super::options::Flags;
use super::socket::{AsyncSocket, SendFailure};
use crate::driver::Direction;
use crate::{error, sys};

impl AsyncSocket {
    /// Send every byte of `data` (Nim's `send`), with the default flags (`SAFE_DISCONN`).
    ///
    /// Completes when the kernel has taken the last byte. Sends from several tasks are
    /// written whole and in the order they started.
    ///
    /// Under `SAFE_DISCONN` (the default), a send that finds the peer gone (reset, broken
    /// pipe) completes without error, as in Nim, but unlike Nim the socket remembers it:
    /// [`is_disconnected`](AsyncSocket::is_disconnected) turns true and every later send fails
    /// with `BrokenPipe`. Without the flag, that send fails with the OS's error.
    ///
    /// # Errors
    ///
    /// The socket is closed (also when closed while waiting); an earlier send found the peer
    /// gone (`BrokenPipe`); the OS's error (without `SAFE_DISCONN`, or one that is not a
    /// disconnection).
    ///
    /// # Cancel safety
    ///
    /// Dropped before its first poll, nothing is sent. Dropped later, the whole message is
    /// still sent: its unwritten bytes are in the socket's queue and a background task
    /// writes them. A message is never cut.
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
    ///     client.send(b"ping\r\n").await?;
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("ping"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn send(&self, data: impl AsRef<[u8]>) -> io::Result<()> {
        self.send_with(data, Flags::default()).await
    }

    /// [`send`](AsyncSocket::send) with explicit flags (`Flags::NONE`: a disconnection is an
    /// error of this send).
    ///
    /// # Errors
    ///
    /// As [`send`](AsyncSocket::send).
    ///
    /// # Cancel safety
    ///
    /// As [`send`](AsyncSocket::send).
    pub async fn send_with(&self, data: impl AsRef<[u8]>, flags: Flags) -> io::Result<()> {
        if !self.is_stream() {
            // A connected datagram socket: one datagram, whole or not at all.
            return self.send_datagram(None, data.as_ref()).await;
        }
        let end = self.start_send(data.as_ref(), flags)?;
        let tls = self.inner.tls.borrow().is_some();
        if end.is_none() && !tls {
            return Ok(());
        }
        let mut guard = QueuedSend {
            socket: self,
            done: false,
        };
        let r = async {
            if let Some(end) = end {
                poll_fn(|cx| self.poll_flush_to(cx, end, flags)).await?;
            }
            if tls {
                // The kernel must have the records too, not just the TLS session.
                poll_fn(|cx| self.poll_tls_flush(cx)).await?;
            }
            Ok(())
        }
        .await;
        guard.done = true;
        r
    }

    /// Write directly while the kernel takes the bytes; queue the rest. Returns the sequence
    /// number that the queue must reach, or `None` if the send is complete.
    fn start_send(&self, data: &[u8], flags: Flags) -> io::Result<Option<u64>> {
        self.socket()?;
        if self.inner.write_shut.get() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the socket was shut down for writing",
            ));
        }
        if let Some(f) = self.inner.send_failure.borrow().as_ref() {
            return Err(if f.disconnect {
                error::disconnected()
            } else {
                io::Error::new(f.kind, f.message.clone())
            });
        }
        if data.is_empty() {
            return Ok(None);
        }
        let inner = &self.inner;
        if !inner.wbuf.borrow().is_empty() {
            return Ok(Some(inner.wbuf.borrow_mut().push(data)));
        }
        let mut off = 0;
        while off < data.len() && inner.io.is_ready(Direction::Write) {
            match self.raw_write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if !inner.connected.get() && sys::is_disconnect(&e) => {
                    // Linux answers EPIPE to a send on a socket that never had a peer: that
                    // is no disconnection, and no flag makes it succeed.
                    inner.wbuf.borrow_mut().note_direct(off);
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "send on a socket that is not connected",
                    ));
                }
                Err(e) => {
                    inner.wbuf.borrow_mut().note_direct(off);
                    let disconnect = self.record_failure(&e);
                    return if disconnect && flags.contains(Flags::SAFE_DISCONN) {
                        Ok(None)
                    } else {
                        Err(e)
                    };
                }
            }
        }
        let mut wb = inner.wbuf.borrow_mut();
        wb.note_direct(off);
        Ok((off < data.len()).then(|| wb.push(&data[off..])))
    }

    /// Write queued bytes until the queue has reached sequence number `end`.
    pub(crate) fn poll_flush_to(
        &self,
        cx: &mut Context<'_>,
        end: u64,
        flags: Flags,
    ) -> Poll<io::Result<()>> {
        let inner = &self.inner;
        loop {
            if let Some(f) = inner.send_failure.borrow().as_ref() {
                if end > f.lost_from {
                    return Poll::Ready(if f.disconnect && flags.contains(Flags::SAFE_DISCONN) {
                        Ok(())
                    } else {
                        Err(io::Error::new(f.kind, f.message.clone()))
                    });
                }
            }
            if inner.wbuf.borrow().written() >= end {
                return Poll::Ready(Ok(()));
            }
            if !inner.io.is_ready(Direction::Write) {
                ready!(inner.io.poll_ready(Direction::Write, cx))?;
            }
            let r = self.raw_write(inner.wbuf.borrow().pending());
            match r {
                Ok(n) => {
                    inner.wbuf.borrow_mut().advance(n);
                    // Other senders may be parked on bytes this call just wrote; no new
                    // edge would wake them.
                    inner.io.wake_waiters(Direction::Write);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.record_failure(&e);
                    inner.io.wake_waiters(Direction::Write);
                }
            }
        }
    }

    /// Fail the sends waiting for queued bytes with `e` (not a disconnection, whatever the
    /// flags), and drop the queue.
    pub(crate) fn fail_queued(&self, e: io::Error) {
        let mut wb = self.inner.wbuf.borrow_mut();
        let lost_from = wb.written();
        wb.discard();
        *self.inner.send_failure.borrow_mut() = Some(SendFailure {
            lost_from,
            kind: e.kind(),
            message: e.to_string(),
            disconnect: false,
        });
        drop(wb);
        self.inner.io.wake_waiters(Direction::Write);
    }

    /// Remember a failed write and drop the queue (nobody can write it now). Returns whether
    /// the failure was a disconnection.
    fn record_failure(&self, e: &io::Error) -> bool {
        let disconnect = sys::is_disconnect(e);
        let mut wb = self.inner.wbuf.borrow_mut();
        let lost_from = wb.written();
        wb.discard();
        self.inner
            .send_failure
            .borrow_mut()
            .get_or_insert(SendFailure {
                lost_from,
                kind: e.kind(),
                message: e.to_string(),
                disconnect,
            });
        disconnect
    }

    /// Write what the kernel takes now of the queue, without waiting.
    pub(crate) fn try_flush_now(&self) {
        let inner = &self.inner;
        while !inner.wbuf.borrow().is_empty() {
            let r = self.raw_write(inner.wbuf.borrow().pending());
            match r {
                Ok(n) if n > 0 => inner.wbuf.borrow_mut().advance(n),
                _ => return,
            }
        }
    }

    /// Finish writing the queue in a background task (a send was dropped half-way).
    fn flush_in_background(&self) {
        let inner = &self.inner;
        let tls_pending = inner.tls.borrow().as_ref().is_some_and(|c| c.wants_write());
        if inner.flushing.get()
            || inner.io.is_closed()
            || (inner.wbuf.borrow().is_empty() && !tls_pending)
        {
            return;
        }
        inner.flushing.set(true);
        let socket = self.clone();
        crate::dispatch::spawn_internal(async move {
            let end = {
                let wb = socket.inner.wbuf.borrow();
                wb.written() + wb.pending().len() as u64
            };
            // A failure is recorded in the socket and reported to its next send.
            let _ = poll_fn(|cx| socket.poll_flush_to(cx, end, Flags::SAFE_DISCONN)).await;
            let _ = poll_fn(|cx| socket.poll_tls_flush(cx)).await;
            socket.inner.flushing.set(false);
            socket.flush_in_background();
        });
    }
}

/// A send whose bytes are queued: if it is dropped before they are written, a background
/// task writes them.
struct QueuedSend<'a> {
    socket: &'a AsyncSocket,
    done: bool,
}

impl Drop for QueuedSend<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.socket.flush_in_background();
        }
    }
}
