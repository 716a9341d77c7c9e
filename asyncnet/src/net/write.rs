//! Sending: `send`, `flush` and the socket's output buffer.
//!
//! The rule users see is written once, in the crate docs ([Write
//! coalescing](crate#write-coalescing)). Where each of its points is kept:
//!
//! | the queue is written when | by |
//! | --- | --- |
//! | a read on the socket is about to wait | `flush_before_wait`, called by `transport.rs` before a read parks (it also takes back the socket's place on the before-sleep list when that place is the last) |
//! | the loop turn ends, or `wait_for` returns | `defer_flush` puts the socket on the driver's before-sleep list (`BeforeSleep`) |
//! | a send would pass [`WRITE_HIGH_WATER`] | `send_queued`: it writes and waits (back-pressure) |
//! | `flush`, `shutdown_write`, `close`, the last drop | `poll_flush_all`, `try_flush_now`, and `linger.rs` for what is left at close |
//!
//! Sends never interleave and a dropped send never tears a message: its bytes are in the
//! queue before the send can wait. A failed write is recorded in `WriteState::failure`
//! and reported as the crate docs say.
#![forbid(unsafe_code)]

use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use std::cell::{Cell, OnceCell, RefCell};

use super::buffer::WriteBuffer;
use super::options::Flags;
use super::socket::{AsyncSocket, Inner};
use crate::driver::{BeforeSleep, Direction};
use crate::{error, sys};

/// The most bytes that completed sends may leave in a socket's output buffer. A send that
/// would pass it writes at once and waits (back-pressure) until no more than this is queued.
pub const WRITE_HIGH_WATER: usize = 64 * 1024;

/// A socket's sending side.
#[derive(Debug, Default)]
pub(crate) struct WriteState {
    /// Bytes of sends not yet written, in order.
    pub(super) buf: RefCell<WriteBuffer>,
    /// Why the sending side gave up on queued bytes: set once, by the first failure, and
    /// kept (boxed: rare, and an idle connection should cost little; a `OnceCell` of a box
    /// is one word).
    failure: OnceCell<Box<SendFailure>>,
    /// A background task is writing the queue.
    flushing: Cell<bool>,
    /// The socket is on the loop's list of queues to write before it sleeps.
    deferred: Cell<bool>,
    /// `shutdown_write` was called: sends fail.
    pub(super) shut: Cell<bool>,
    /// The socket has had a peer (connected, accepted, or adopted connected): a send error
    /// then means the peer went away, not that there never was one. (Here rather than in
    /// the socket's own state, where it would not fit: see `a_sockets_state_fits_in_200_bytes`.)
    pub(super) connected: Cell<bool>,
}

/// Why the sending side gave up on queued bytes.
#[derive(Debug)]
struct SendFailure {
    /// Bytes from this sequence number on were discarded, not sent.
    lost_from: u64,
    kind: io::ErrorKind,
    message: String,
    /// A disconnection (which `SafeDisconn` sends do not report as an error).
    disconnect: bool,
    /// A call has returned it as an error (`close` and waiting reads report it only if not).
    reported: Cell<bool>,
}

impl WriteState {
    /// Whether a write found the peer gone.
    pub(super) fn is_disconnected(&self) -> bool {
        self.failure.get().is_some_and(|f| f.disconnect)
    }

    /// An error met while writing queued bytes that no call has reported yet (a
    /// disconnection is not one: [`is_disconnected`](AsyncSocket::is_disconnected) shows it).
    pub(super) fn take_unreported_error(&self) -> Option<io::Error> {
        let f = self.failure.get()?;
        if f.reported.get() || f.disconnect {
            return None;
        }
        f.reported.set(true);
        Some(io::Error::new(f.kind, f.message.clone()))
    }
}

impl AsyncSocket {
    /// Send every byte of `data` (Nim's `send`), with the default flags (`SAFE_DISCONN`).
    ///
    /// The bytes are coalesced: they join the socket's output buffer and the send completes
    /// at once, without a system call, while the buffer stays within [`WRITE_HIGH_WATER`];
    /// when they are written is the crate's [Write coalescing](crate#write-coalescing) rule.
    /// Await [`flush`](AsyncSocket::flush) to know that the kernel has every byte (Nim's
    /// meaning of `send`), or send with [`Flags::NONE`](crate::Flags::NONE), which is not
    /// coalesced.
    ///
    /// Sends from several tasks are written whole and in the order they started.
    ///
    /// Under `SAFE_DISCONN` (the default), a peer found gone (reset, broken pipe) is not an
    /// error of the send, as in Nim, but unlike Nim the socket remembers it:
    /// [`is_disconnected`](AsyncSocket::is_disconnected) turns true and every later send fails
    /// with `BrokenPipe`.
    ///
    /// # Errors
    ///
    /// The socket is closed (also when closed while waiting: `NotConnected`) or shut down for
    /// writing; an earlier write found the peer gone (`BrokenPipe`); an earlier write of
    /// queued bytes failed (that error); the OS's error for the bytes this call writes itself.
    /// `TimedOut`: a deadline (the call's, or the socket's write deadline) passed while the
    /// send waited for room (back-pressure); its message is queued whole all the same and
    /// is written in order, once: do not send it again ([Deadlines](crate#deadlines)).
    ///
    /// # Cancel safety
    ///
    /// Dropped before its first poll, nothing is sent. Dropped later, the whole message is
    /// still sent: its bytes are in the socket's queue and a background task writes them.
    /// A message is never cut.
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
    pub fn send<'a>(
        &'a self,
        data: impl AsRef<[u8]> + 'a,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        // Not a layer of its own: the future is `send_with`'s (small futures keep idle tasks
        // small).
        self.send_with(data, Flags::default())
    }

    /// [`send`](AsyncSocket::send) with explicit flags.
    ///
    /// With `SAFE_DISCONN` (the default) the bytes are coalesced, as for `send`. Without it
    /// (`Flags::NONE`) they are not: the send writes at once and completes only when the
    /// kernel has every byte (Nim's meaning), so that a disconnection is an error of this
    /// send.
    ///
    /// # Errors
    ///
    /// As [`send`](AsyncSocket::send); without `SAFE_DISCONN`, also a disconnection
    /// (`ConnectionReset`, `BrokenPipe`) met while writing this message.
    ///
    /// # Cancel safety
    ///
    /// As [`send`](AsyncSocket::send).
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
    ///     client.send("queued\r\n").await?; // coalesced: completes without a system call
    ///     // Not coalesced: written now, behind what was queued (order is kept), and
    ///     // complete only when the kernel has every byte; a reset would be its error.
    ///     client.send_with("written\r\n", Flags::NONE).await?;
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("queued"));
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("written"));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn send_with(&self, data: impl AsRef<[u8]>, flags: Flags) -> io::Result<()> {
        let data = data.as_ref();
        if !self.is_stream() {
            // A connected datagram socket: one datagram, whole or not at all.
            return self.send_datagram(None, data).await;
        }
        self.check_writable()?;
        if data.is_empty() {
            return Ok(());
        }
        if flags.contains(Flags::SAFE_DISCONN) && self.try_coalesce(data) {
            return Ok(());
        }
        // Boxed: the path that may wait is rare (large messages, a full buffer), and keeping
        // its state out of line keeps every task that sends small (idle connections cost
        // little memory).
        Box::pin(self.send_queued(data, flags)).await
    }

    /// Queue `data` behind the output buffer if the buffer stays within the high-water mark
    /// (the bytes are then as good as sent: committed, written before the loop sleeps).
    ///
    /// Inlined into each send (a short message of a size known there is then copied without
    /// a call), its rare parts out of line: callgrind, a pipelined Redis `PING` answered
    /// with `send(b"+PONG\r\n")`: 357 -> 309 instructions a line.
    #[inline(always)]
    pub(crate) fn try_coalesce(&self, data: &[u8]) -> bool {
        let inner = &self.inner;
        let mut wb = inner.write.buf.borrow_mut();
        if wb.len() + data.len() > WRITE_HIGH_WATER {
            return false;
        }
        wb.push_committed(data, &inner.local.pool);
        drop(wb);
        self.defer_flush();
        true
    }

    /// The part of a send that may wait: write now what the kernel takes, queue the rest, and
    /// wait for the queue (back-pressure).
    async fn send_queued(&self, data: &[u8], flags: Flags) -> io::Result<()> {
        let inner = &self.inner;
        let coalesce = flags.contains(Flags::SAFE_DISCONN);
        let end = self.start_send(data, flags)?;
        // A coalescing send waits only until the queue is back within the mark; one that is
        // not waits for its last byte (and, on TLS, for the records to leave the session).
        let target = if coalesce {
            end.saturating_sub(WRITE_HIGH_WATER as u64)
        } else {
            end
        };
        let mut guard = QueuedSend {
            socket: self,
            end,
            done: false,
        };
        let r = async {
            poll_fn(|cx| self.poll_flush_to(cx, target, flags)).await?;
            if !coalesce {
                poll_fn(|cx| self.poll_flush_records(cx)).await?;
            }
            // Bytes in a send of the io_uring driver are not in the kernel yet: they count
            // as queued until it completes.
            poll_fn(|cx| self.poll_sent(cx, flags)).await
        }
        .await;
        guard.done = true;
        inner.write.buf.borrow_mut().commit(end);
        if self.owes_bytes() {
            self.defer_flush();
        }
        r
    }

    /// Wait until the kernel has every byte sent so far (Nim's meaning of a completed
    /// `send`): the output buffer is written out and, on TLS, every record has left the
    /// session.
    ///
    /// # Errors
    ///
    /// The socket is closed (also while waiting); bytes sent earlier could not be written: the
    /// peer is gone (`BrokenPipe` or the OS's `ConnectionReset`) or the OS's error.
    /// `TimedOut`: a deadline (the call's, or the socket's write deadline) passed first; the
    /// bytes stay queued and are still written ([Deadlines](crate#deadlines)).
    ///
    /// # Cancel safety
    ///
    /// Nothing is lost: the bytes stay queued and are written as if `flush` had not been
    /// called.
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
    ///     client.send("one\r\n").await?; // queued
    ///     client.send("two\r\n").await?; // queued behind it
    ///     client.flush().await?; // both in the kernel, in one write
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn flush(&self) -> io::Result<()> {
        let r = poll_fn(|cx| self.poll_flush_all(cx)).await;
        if r.is_err() {
            // Timed out (or interrupted otherwise): what is queued is still written.
            self.flush_in_background();
        }
        r
    }

    /// Write every queued byte and every pending TLS record; a loss of queued bytes is an
    /// error, a disconnection included.
    pub(crate) fn poll_flush_all(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket()?;
        let end = self.inner.write.buf.borrow().accepted();
        ready!(self.poll_flush_to(cx, end, Flags::NONE))?;
        ready!(self.poll_flush_records(cx))?;
        self.poll_sent(cx, Flags::NONE)
    }

    /// Wait until the sends the driver made of written bytes have completed (io_uring: the
    /// kernel has taken them; at once on the poll driver). A failure is recorded as a failed
    /// write is, and returned (a disconnection only without `SAFE_DISCONN`).
    fn poll_sent(&self, cx: &mut Context<'_>, flags: Flags) -> Poll<io::Result<()>> {
        let io = &self.inner.io;
        ready!(io.poll_sent(cx))?;
        let Some(e) = io.take_send_failure() else {
            return Poll::Ready(Ok(()));
        };
        if self.record_failure(&e) && flags.contains(Flags::SAFE_DISCONN) {
            return Poll::Ready(Ok(()));
        }
        if let Some(f) = self.inner.write.failure.get() {
            f.reported.set(true);
        }
        Poll::Ready(Err(e))
    }

    /// The errors every send checks first: closed, no loop running, never connected, shut
    /// down, an earlier write failed. Inlined, the test only: which error, out of line.
    #[inline]
    pub(crate) fn check_writable(&self) -> io::Result<()> {
        let inner = &self.inner;
        if inner.io.is_closed()
            || !inner.io.driver().is_driven()
            || !inner.write.connected.get()
            || inner.write.shut.get()
            || inner.write.failure.get().is_some()
        {
            return self.not_writable();
        }
        Ok(())
    }

    /// Why [`check_writable`](Self::check_writable) failed (`Ok` if nothing is wrong).
    #[cold]
    #[inline(never)]
    fn not_writable(&self) -> io::Result<()> {
        self.check_open()?;
        if !self.inner.io.driver().is_driven() {
            // Queued bytes are written by the loop: with no loop running (another runtime
            // polls this send), they would wait for ever.
            return Err(error::not_driven());
        }
        if !self.inner.write.connected.get() {
            // Nothing could ever carry the bytes: say so now rather than when they are
            // written.
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "send on a socket that is not connected",
            ));
        }
        if self.inner.write.shut.get() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the socket was shut down for writing",
            ));
        }
        if let Some(f) = self.inner.write.failure.get() {
            f.reported.set(true);
            return Err(if f.disconnect {
                error::disconnected()
            } else {
                io::Error::new(f.kind, f.message.clone())
            });
        }
        Ok(())
    }

    /// Write directly while the kernel takes the bytes (when nothing is queued); queue the
    /// rest. Returns the sequence number of the message's end.
    fn start_send(&self, data: &[u8], flags: Flags) -> io::Result<u64> {
        let inner = &self.inner;
        let pool = &inner.local.pool;
        if !inner.write.buf.borrow().is_empty() {
            return Ok(inner.write.buf.borrow_mut().push(data, pool));
        }
        let mut off = 0;
        while off < data.len() {
            match self.try_write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if !inner.write.connected.get() && sys::is_disconnect(&e) => {
                    // Linux answers EPIPE to a send on a socket that never had a peer: that
                    // is no disconnection, and no flag makes it succeed.
                    inner.write.buf.borrow_mut().note_direct(off);
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "send on a socket that is not connected",
                    ));
                }
                Err(e) => {
                    let end = inner.write.buf.borrow_mut().note_direct(off);
                    let disconnect = self.record_failure(&e);
                    if disconnect && flags.contains(Flags::SAFE_DISCONN) {
                        return Ok(end);
                    }
                    if let Some(f) = inner.write.failure.get() {
                        f.reported.set(true);
                    }
                    return Err(e);
                }
            }
        }
        let mut wb = inner.write.buf.borrow_mut();
        let end = wb.note_direct(off);
        Ok(if off < data.len() {
            wb.push(&data[off..], pool)
        } else {
            end
        })
    }

    /// Write queued bytes until the queue has reached sequence number `end`.
    pub(crate) fn poll_flush_to(
        &self,
        cx: &mut Context<'_>,
        end: u64,
        flags: Flags,
    ) -> Poll<io::Result<()>> {
        let write = &self.inner.write;
        loop {
            if let Some(f) = write.failure.get() {
                if end > f.lost_from {
                    if f.disconnect && flags.contains(Flags::SAFE_DISCONN) {
                        return Poll::Ready(Ok(()));
                    }
                    f.reported.set(true);
                    return Poll::Ready(Err(io::Error::new(f.kind, f.message.clone())));
                }
            }
            if write.buf.borrow().written() >= end {
                return Poll::Ready(Ok(()));
            }
            if self.is_closed() {
                return Poll::Ready(Err(error::closed()));
            }
            match self.try_write_queued() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.poll_writable(cx))?;
                    continue;
                }
                Err(e) => {
                    self.record_failure(&e);
                }
            }
            // Other senders may be parked on bytes this call just wrote (or lost); no new
            // edge would wake them.
            self.inner.io.wake(Direction::Write);
        }
    }

    /// Drop the bytes of sends still waiting (their sends fail with `e`, not a
    /// disconnection, whatever the flags); bytes of completed sends stay queued.
    pub(crate) fn fail_waiting_sends(&self, e: io::Error) {
        let mut wb = self.inner.write.buf.borrow_mut();
        if !wb.has_uncommitted() {
            return;
        }
        let lost_from = wb.discard_uncommitted(&self.inner.local.pool);
        drop(wb);
        // The waiting sends report it.
        self.keep_failure(lost_from, &e, false, true);
        self.inner.io.wake(Direction::Write);
    }

    /// Record a send failure, unless one is recorded already (the first one stays).
    fn keep_failure(&self, lost_from: u64, e: &io::Error, disconnect: bool, reported: bool) {
        self.inner.write.failure.get_or_init(|| {
            Box::new(SendFailure {
                lost_from,
                kind: e.kind(),
                message: e.to_string(),
                disconnect,
                reported: Cell::new(reported),
            })
        });
    }

    /// From now on every send fails with `e` (already reported: the caller returns it too);
    /// what is queued is dropped, as nothing can carry it.
    #[cfg(feature = "tls")]
    pub(crate) fn refuse_sends(&self, e: &io::Error) {
        let mut wb = self.inner.write.buf.borrow_mut();
        let lost_from = wb.written();
        wb.discard(&self.inner.local.pool);
        drop(wb);
        self.keep_failure(lost_from, e, false, true);
        self.inner.io.wake(Direction::Write);
    }

    /// Remember a failed write and drop the queue (nobody can write it now). Returns whether
    /// the failure was a disconnection.
    fn record_failure(&self, e: &io::Error) -> bool {
        let disconnect = sys::is_disconnect(e);
        let mut wb = self.inner.write.buf.borrow_mut();
        let lost_from = wb.written();
        wb.discard(&self.inner.local.pool);
        drop(wb);
        self.keep_failure(lost_from, e, disconnect, false);
        disconnect
    }

    /// Whether queued bytes (or TLS records) still have to reach the kernel.
    #[inline]
    pub(crate) fn owes_bytes(&self) -> bool {
        !self.inner.write.buf.borrow().is_empty() || self.tls_wants_write()
    }

    /// Have the queue written before the loop sleeps.
    #[inline]
    fn defer_flush(&self) {
        if !self.inner.write.deferred.replace(true) {
            self.register_deferred();
        }
    }

    /// The first deferred flush since the loop last slept: the loop is told to visit.
    #[inline(never)]
    fn register_deferred(&self) {
        let inner = &self.inner;
        let weak = Rc::downgrade(inner);
        inner.io.driver().defer(Rc::as_ptr(inner).addr(), weak);
    }

    /// Before a read waits: write the queue now (the reply goes out before we sleep on the
    /// next request), and report a write error nobody has heard of.
    #[inline]
    pub(crate) fn flush_before_wait(&self) -> io::Result<()> {
        self.flush_owed();
        // Everything the before-sleep visit would do is done: what is owed now belongs to
        // the background flusher (or to no one: the socket is closed).
        let inner = &self.inner;
        if inner.write.deferred.get() && inner.io.driver().undefer_last(Rc::as_ptr(inner).addr()) {
            inner.write.deferred.set(false);
        }
        match self.inner.write.take_unreported_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Write what the kernel takes now; leave the rest to a background task.
    #[inline]
    pub(crate) fn flush_owed(&self) {
        if self.owes_bytes() {
            self.try_flush_now();
            self.flush_in_background();
        }
    }

    /// Write what the kernel takes now of the queue, without waiting. A failure is recorded.
    pub(crate) fn try_flush_now(&self) {
        let inner = &self.inner;
        if inner.io.is_closed() {
            return;
        }
        let write = &inner.write;
        while !write.buf.borrow().is_empty() {
            match self.try_write_queued() {
                Ok(n) if n > 0 => {}
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.record_failure(&e);
                    return;
                }
            }
        }
        // Records of the last plaintext may still wait in the TLS session.
        match self.try_flush_records() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                self.record_failure(&e);
            }
        }
    }

    /// Finish writing the queue in a background task. The task holds the socket weakly: if
    /// every handle goes meanwhile, the socket's drop hands the bytes on (see `linger`).
    #[inline]
    pub(crate) fn flush_in_background(&self) {
        let inner = &self.inner;
        if inner.write.flushing.get() || inner.io.is_closed() || !self.owes_bytes() {
            return;
        }
        self.spawn_flusher();
    }

    #[cold]
    fn spawn_flusher(&self) {
        let inner = &self.inner;
        inner.write.flushing.set(true);
        let weak = Rc::downgrade(inner);
        crate::dispatch::spawn_internal(async move {
            // A failure is recorded in the socket and reported by its next operation.
            let flushed = poll_weak(&weak, |s, cx| s.poll_flush_all(cx)).await;
            if let (Some(r), Some(inner)) = (flushed, weak.upgrade()) {
                let socket = AsyncSocket { inner };
                socket.inner.write.flushing.set(false);
                if r.is_ok() {
                    // Queued meanwhile by a send that then went away: go on.
                    socket.flush_in_background();
                }
            }
        });
    }

    /// `shutdown_write` with bytes still owed: write them (and on TLS close_notify), then
    /// shut down, in a background task. If every handle goes first, the socket's drop
    /// finishes the bytes and closes, which ends the stream as well.
    pub(crate) fn shutdown_in_background(&self) {
        let weak = Rc::downgrade(&self.inner);
        crate::dispatch::spawn_internal(async move {
            if let Some(Ok(())) = poll_weak(&weak, |s, cx| s.poll_flush_all(cx)).await {
                if let Some(inner) = weak.upgrade() {
                    AsyncSocket { inner }.tls_send_close_notify();
                }
                if let Some(Ok(())) = poll_weak(&weak, |s, cx| s.poll_flush_records(cx)).await {
                    if let Some(inner) = weak.upgrade() {
                        if let Ok(socket) = (AsyncSocket { inner }).socket() {
                            let _ = socket.shutdown(std::net::Shutdown::Write);
                        }
                    }
                }
            }
        });
    }
}

/// Poll `f` on the socket behind `weak` for as long as it lives, its deadlines ignored;
/// `None` once it is gone.
async fn poll_weak<T>(
    weak: &std::rc::Weak<Inner>,
    mut f: impl FnMut(&AsyncSocket, &mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    poll_fn(|cx| match weak.upgrade() {
        None => Poll::Ready(None),
        // Background work delivers bytes of completed sends: no deadline stops it.
        Some(inner) => {
            let s = AsyncSocket { inner };
            s.inner.io.without_deadlines(|| f(&s, cx)).map(Some)
        }
    })
    .await
}

impl BeforeSleep for Inner {
    fn before_sleep(self: Rc<Self>) {
        self.write.deferred.set(false);
        AsyncSocket { inner: self }.flush_owed();
    }
}

/// A send whose bytes are queued: if it is dropped before they are written, they are
/// committed and a background task writes them.
struct QueuedSend<'a> {
    socket: &'a AsyncSocket,
    end: u64,
    done: bool,
}

impl Drop for QueuedSend<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.socket.inner.write.buf.borrow_mut().commit(self.end);
            self.socket.flush_in_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait_for;

    use crate::net::test_support::tcp_pair as pair;

    /// As if writing the queue had failed with `EIO` (no socket fails so on demand).
    fn fail_writes(s: &AsyncSocket) {
        s.record_failure(&io::Error::from_raw_os_error(crate::sys::EIO));
    }

    #[test]
    fn a_write_error_is_reported_once_to_a_waiting_read_and_always_to_sends() {
        wait_for(async {
            let (a, b) = pair().await?;
            a.send("lost").await?;
            fail_writes(&a);
            let e = a.recv(1).await.expect_err("the read that waits reports it");
            assert!(e.to_string().contains("os error 5"), "{e}");
            b.send("x").await?;
            assert_eq!(a.recv(1).await?, b"x", "reported once: reads go on");
            let e = a.send("y").await.expect_err("sends keep failing");
            assert!(e.to_string().contains("os error 5"), "{e}");
            assert!(a.flush().await.is_err());
            a.close()?; // already reported
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }

    #[test]
    fn close_reports_a_write_error_no_call_has_reported() {
        wait_for(async {
            let (a, _b) = pair().await?;
            a.send("lost").await?;
            fail_writes(&a);
            let e = a
                .close()
                .expect_err("close is the last chance to hear of it");
            assert!(e.to_string().contains("os error 5"), "{e}");
            assert!(a.is_closed());
            a.close()?; // idempotent, and reported now
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }

    #[test]
    fn a_disconnection_is_not_a_close_error() {
        wait_for(async {
            let (a, _b) = pair().await?;
            a.record_failure(&io::Error::from_raw_os_error(crate::sys::ECONNRESET));
            assert!(a.is_disconnected());
            a.close()?;
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }
}
