//! Every operation on a registered socket that can wait, in one place: reads, writes, accept,
//! connect and datagrams, plain or through the TLS session. Each goes through the driver's seam
//! (`Registration`), which owns how to wait; the rest of `net` sees only "bytes arrived",
//! "the kernel took n", "wait". This is also where reads and writes meet the TLS session
//! (`secure.rs` only starts sessions and reports on them).
#![forbid(unsafe_code)]

use std::io;
#[cfg(feature = "tls")]
use std::io::{Read, Write};
use std::task::{ready, Context, Poll};
#[cfg(feature = "tls")]
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

#[cfg(feature = "tls")]
use super::linger::Farewell;
use super::socket::AsyncSocket;
use crate::driver::Direction;
#[cfg(feature = "tls")]
use crate::driver::Registration;
use crate::sys;
#[cfg(feature = "tls")]
use crate::tls::{self, Closer, Step, Tls};

/// The socket as the TLS session's byte pipe: writes go straight to the kernel; reads go
/// through the socket's registration (what the driver received ahead comes first), or, for a
/// socket out of the loop, straight to the kernel too.
#[cfg(feature = "tls")]
pub(super) struct Wire<'a> {
    socket: &'a Socket,
    io: Option<&'a Registration>,
}

#[cfg(feature = "tls")]
impl Wire<'_> {
    /// `WouldBlock` while a send of the driver's (plaintext sent before TLS started) is in
    /// flight: records must not overtake it.
    fn wait_for_the_driver(&self) -> io::Result<()> {
        match self.io {
            Some(io) if io.sending() => Err(would_block()),
            _ => Ok(()),
        }
    }
}

#[cfg(feature = "tls")]
impl<'a> Wire<'a> {
    /// The pipe of a socket in the loop.
    fn registered(socket: &'a Socket, io: &'a Registration) -> Wire<'a> {
        Wire {
            socket,
            io: Some(io),
        }
    }

    /// The pipe of a socket out of the loop (closing).
    fn kernel(socket: &'a Socket) -> Wire<'a> {
        Wire { socket, io: None }
    }
}

#[cfg(feature = "tls")]
impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io {
            Some(io) => io.recv_stream(self.socket, buf),
            None => (&mut &*self.socket).read(buf),
        }
    }
}

#[cfg(feature = "tls")]
impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wait_for_the_driver()?;
        self.socket.send_with_flags(buf, sys::SEND_FLAGS)
    }
    /// rustls hands over all its queued records at once: one `sendmsg` for them all.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.wait_for_the_driver()?;
        self.socket.send_vectored_with_flags(bufs, sys::SEND_FLAGS)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The end of a closed socket's TLS session: take the records the peer sent that nobody
/// read, then a [`Farewell`] for `linger` that sends `rest` (plaintext of completed sends)
/// and close_notify through the socket (and may wait for the server's session tickets), with
/// how long its writes may take. `None` when there is nothing to say (the handshake never
/// finished).
#[cfg(feature = "tls")]
pub(super) fn tls_goodbye(
    tls: Box<Tls>,
    socket: &Socket,
    rest: Vec<u8>,
    with_plaintext: Duration,
) -> Option<(Duration, TlsFarewell)> {
    let mut closer = tls.into_closer(rest)?;
    closer.drain_incoming(&mut Wire::kernel(socket));
    let limit = closer.limit(with_plaintext);
    Some((limit, TlsFarewell(closer)))
}

/// A TLS session's last records, through the kernel.
#[cfg(feature = "tls")]
pub(super) struct TlsFarewell(Closer);

#[cfg(feature = "tls")]
impl Farewell for TlsFarewell {
    fn write(&mut self, socket: &Socket) -> io::Result<bool> {
        self.0.step(&mut Wire::kernel(socket))
    }

    fn wait_for_peer_until(&self, now: Instant) -> Option<Instant> {
        self.0.wait_for_peer_until(now)
    }

    fn read_peer(&mut self, socket: &Socket) -> io::Result<bool> {
        self.0.read_peer(&mut Wire::kernel(socket))
    }
}

/// What `connect(2)` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Started {
    /// Connected at once.
    Connected,
    /// Under way.
    Pending,
    /// An earlier connect (timed out, or its future dropped) is still under way (`true`) or
    /// has connected (`false`): to which peer is to be checked.
    Earlier(bool),
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

/// A reset during the handshake is the peer leaving it, as a close is: `UnexpectedEof`.
#[cfg(feature = "tls")]
fn cut_off(e: io::Error) -> io::Error {
    if !sys::is_disconnect(&e) {
        return e;
    }
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the peer reset the connection during the TLS handshake ({e})"),
    )
}

#[cfg(feature = "tls")]
fn not_tls() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a TLS socket")
}

impl AsyncSocket {
    /// Read from the byte stream (plaintext on TLS) into `buf`; `Ok(0)` is the end of the
    /// stream. Before the task parks, the output queue is written (replies to the requests
    /// just read leave before we sleep on the next one), and a write error nobody has heard
    /// of is returned instead.
    #[inline]
    #[cfg_attr(not(feature = "tls"), allow(unused_labels))]
    pub(super) fn poll_read_stream(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = 'read: {
            #[cfg(feature = "tls")]
            if self.inner.has_tls() {
                break 'read self.poll_read_tls(cx, buf);
            }
            let io = &self.inner.io;
            io.poll_read(cx, buf.len(), || io.recv_stream(&*self.socket()?, buf))
        };
        if r.is_pending() {
            self.flush_before_wait()?;
        }
        r
    }

    #[cfg(feature = "tls")]
    fn poll_read_tls(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut tls = self.inner.tls_mut().ok_or_else(not_tls)?;
        let socket = self.socket()?;
        loop {
            if let Some(n) = tls.read_plain(buf)? {
                return Poll::Ready(Ok(n));
            }
            let got = self.inner.io.poll_io(Direction::Read, cx, || {
                tls.read_records(&mut Wire::registered(&socket, &self.inner.io))
            });
            match ready!(got) {
                // The end: rustls says on the next read whether it was clean.
                Ok(0) => {
                    return Poll::Ready(tls.read_plain(buf)?.ok_or_else(|| {
                        tls::truncated("the peer closed the TLS connection without close_notify")
                    }))
                }
                Ok(_) => {}
                Err(e) if sys::is_disconnect(&e) => {
                    return Poll::Ready(Err(tls::truncated(&format!(
                        "the TLS connection was reset before close_notify ({e})"
                    ))))
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Peek at the kernel's queue into `buf` until `enough` says the bytes seen so far
    /// (`buf[..n]`, `n`) will do; until then, wait for new bytes (a peek drains nothing, so
    /// readiness is cleared as if it had said `WouldBlock`).
    pub(super) fn poll_peek(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        enough: impl Fn(&[u8]) -> bool,
    ) -> Poll<io::Result<usize>> {
        #[cfg(feature = "tls")]
        if self.inner.has_tls() {
            // TLS reads are buffered: they never peek at the kernel.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an unbuffered peek on a TLS socket",
            )));
        }
        let socket = self.socket()?;
        let io = &self.inner.io;
        let r = io.poll_io(Direction::Read, cx, || {
            let n = io.peek_stream(&socket, buf)?;
            if enough(&buf[..n]) {
                Ok(n)
            } else {
                Err(would_block())
            }
        });
        drop(socket);
        if r.is_pending() {
            self.flush_before_wait()?;
        }
        r
    }

    /// Whether an event said that the peer will send nothing more.
    pub(super) fn peer_closed(&self) -> bool {
        self.inner.io.peer_closed()
    }

    /// Write what the kernel (on TLS: the session) takes of `buf` now, without waiting:
    /// `WouldBlock` when it takes nothing.
    #[inline]
    pub(super) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let io = &self.inner.io;
        #[cfg(feature = "tls")]
        if let Some(mut tls) = self.inner.tls_mut() {
            return self.try_write_tls(&mut tls, buf);
        }
        io.send_stream(&*self.socket()?, buf)
    }

    /// [`try_write`](AsyncSocket::try_write) through the TLS session.
    #[cfg(feature = "tls")]
    #[inline]
    fn try_write_tls(&self, tls: &mut Tls, buf: &[u8]) -> io::Result<usize> {
        let io = &self.inner.io;
        let socket = self.socket()?;
        // Records of earlier sends go first.
        io.try_io(Direction::Write, || {
            tls.write_records(&mut Wire::registered(&socket, &self.inner.io))
        })?;
        let n = tls.write_plain(buf)?;
        match io.try_io(Direction::Write, || {
            tls.write_records(&mut Wire::registered(&socket, &self.inner.io))
        }) {
            // The records wait in the session; a flush finishes them.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if n == 0 && !buf.is_empty() {
            return Err(would_block());
        }
        Ok(n)
    }

    /// [`try_write`](AsyncSocket::try_write) of the output buffer's pending bytes, which
    /// leave it as they are written. On a plain socket the io_uring driver may take the
    /// buffer's storage itself rather than copy a large write out of it.
    #[inline]
    pub(super) fn try_write_queued(&self) -> io::Result<usize> {
        let inner = &self.inner;
        let pool = &inner.local.pool;
        #[cfg(feature = "tls")]
        if inner.has_tls() {
            let n = self.try_write(inner.write.buf.borrow().pending())?;
            inner.write.buf.borrow_mut().advance(n, pool);
            return Ok(n);
        }
        let socket = self.socket()?;
        let mut wb = inner.write.buf.borrow_mut();
        wb.write_out(pool, |data, from| {
            inner.io.send_stream_buf(&socket, data, from)
        })
    }

    /// [`try_write`](AsyncSocket::try_write), waiting until the kernel takes something.
    pub(super) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(self.poll_writable(cx))?,
                r => return Poll::Ready(r),
            }
        }
    }

    /// Wait until a write may be tried again (after [`try_write`](AsyncSocket::try_write)
    /// said `WouldBlock`).
    pub(super) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.io.poll_ready(Direction::Write, cx)
    }
}

#[cfg(feature = "tls")]
impl AsyncSocket {
    /// Write the TLS session's queued records that the kernel takes now (nothing on a plain
    /// socket); `WouldBlock` when some remain.
    #[inline]
    pub(super) fn try_flush_records(&self) -> io::Result<()> {
        // A plain socket mostly has no rare parts at all: one test on its flush path, the
        // session's borrow only where there may be one.
        if self.inner.rare_if_made().is_none() {
            return Ok(());
        }
        self.try_flush_session_records()
    }

    fn try_flush_session_records(&self) -> io::Result<()> {
        match self.inner.tls_mut() {
            Some(mut tls) if tls.wants_write() => {
                let socket = self.socket()?;
                self.inner.io.try_io(Direction::Write, || {
                    tls.write_records(&mut Wire::registered(&socket, &self.inner.io))
                })
            }
            _ => Ok(()),
        }
    }

    /// Wait until every record of the TLS session has been written.
    pub(super) fn poll_flush_records(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.tls_mut() {
            Some(mut tls) if tls.wants_write() => {
                let socket = self.socket()?;
                self.inner.io.poll_io(Direction::Write, cx, || {
                    tls.write_records(&mut Wire::registered(&socket, &self.inner.io))
                })
            }
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Whether decrypted bytes wait in the TLS session (a read needs no I/O).
    #[inline]
    pub(super) fn tls_has_plaintext(&self) -> bool {
        self.inner.tls().is_some_and(|t| t.has_plaintext())
    }

    /// Whether TLS records wait in the session.
    #[inline]
    pub(super) fn tls_wants_write(&self) -> bool {
        self.inner.tls().is_some_and(|t| t.wants_write())
    }

    /// Queue close_notify (once the handshake is done) and write what the kernel takes now;
    /// [`poll_flush_records`](AsyncSocket::poll_flush_records) writes the rest. Reading goes
    /// on (a half-close).
    pub(super) fn tls_send_close_notify(&self) {
        let queued = self
            .inner
            .tls_mut()
            .is_some_and(|mut t| t.send_close_notify());
        if queued {
            let _ = self.try_flush_records();
        }
    }

    /// Run the TLS handshake to its end, last flight written.
    pub(super) fn poll_handshake(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = &self.inner.io;
        let tls = self.inner.tls_mut();
        // Closed while waiting (which also ends the session): the socket's error, first.
        let socket = self.socket()?;
        let mut tls = tls.ok_or_else(not_tls)?;
        let wire = || Wire::registered(&socket, io);
        loop {
            match tls.handshake_step()? {
                Step::Done => {
                    return io
                        .poll_io(Direction::Write, cx, || tls.write_records(&mut wire()))
                        .map_err(cut_off)
                }
                Step::Write => {
                    ready!(io.poll_io(Direction::Write, cx, || tls.write_records(&mut wire())))
                        .map_err(cut_off)?;
                }
                Step::Read => {
                    let n =
                        ready!(io.poll_io(Direction::Read, cx, || tls.read_records(&mut wire())))
                            .map_err(cut_off)?;
                    if n == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed the connection during the TLS handshake",
                        )));
                    }
                }
            }
        }
    }
}

/// Without TLS, the session's hooks say "no session".
#[cfg(not(feature = "tls"))]
impl AsyncSocket {
    #[inline]
    pub(super) fn try_flush_records(&self) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn poll_flush_records(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    pub(super) fn tls_has_plaintext(&self) -> bool {
        false
    }

    #[inline]
    pub(super) fn tls_wants_write(&self) -> bool {
        false
    }

    pub(super) fn tls_send_close_notify(&self) {}

    pub(super) async fn finish_tls_connect(&self, _name: &str) -> io::Result<()> {
        Ok(())
    }

    pub(super) async fn accept_tls(&self, _client: &AsyncSocket) -> Option<io::Result<()>> {
        None
    }
}

impl AsyncSocket {
    /// Take one pending connection from the kernel (non-blocking, close-on-exec).
    pub(super) fn poll_accept_once(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Socket, SockAddr)>> {
        let socket = self.socket()?;
        let io = &self.inner.io;
        io.poll_io(Direction::Read, cx, || io.accept(&socket))
    }

    /// Start `connect(2)`: connected at once, or under way (wait with
    /// [`poll_connected`](AsyncSocket::poll_connected)). On a Unix socket `WouldBlock` is
    /// returned as is: the listener's backlog is full and no connect is under way.
    ///
    /// A connect that timed out (or whose future was dropped) goes on in the kernel; a later
    /// connect meets it (`EALREADY` while under way, `EISCONN` once done) and waits for it or
    /// takes it (the caller checks that its peer is the one asked for).
    pub(super) fn start_connect(&self, addr: &SockAddr) -> io::Result<Started> {
        let r = self.socket()?.connect(addr);
        let unix = addr.domain() == socket2::Domain::UNIX;
        match r {
            Ok(()) => {
                self.inner.io.connect_finished();
                Ok(Started::Connected)
            }
            Err(e) if sys::is_connected_already(&e) => Ok(Started::Earlier(false)),
            // Readiness is left as is: the earlier attempt's event may have come already.
            Err(e) if sys::is_connect_under_way(&e) => Ok(Started::Earlier(true)),
            Err(e)
                if sys::is_in_progress(&e) || (e.kind() == io::ErrorKind::WouldBlock && !unix) =>
            {
                self.inner.io.connect_started();
                Ok(Started::Pending)
            }
            Err(e) => {
                self.inner.io.connect_finished();
                Err(e)
            }
        }
    }

    /// Wait for a connect under way: writability, then the socket's error or its peer.
    pub(super) fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(self.inner.io.poll_io(Direction::Write, cx, || {
            let socket = self.socket()?;
            if let Some(e) = socket.take_error()? {
                return Err(e);
            }
            match socket.peer_addr() {
                Ok(_) => Ok(()),
                // Writability left over from before the connect: not there yet.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(would_block()),
                Err(e) => Err(e),
            }
        }));
        if r.is_ok() {
            self.inner.io.connect_finished();
        }
        Poll::Ready(r)
    }

    /// Take one datagram: its length, whether it was cut, and its sender.
    pub(super) fn poll_recv_datagram(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        peek: bool,
    ) -> Poll<io::Result<(usize, bool, SockAddr)>> {
        let socket = self.socket()?;
        self.inner
            .io
            .poll_io(Direction::Read, cx, || sys::recv_from(&socket, buf, peek))
    }

    /// Send one datagram, to `to` or (connected socket) to the peer: whole or not at all.
    pub(super) fn poll_send_datagram(
        &self,
        cx: &mut Context<'_>,
        to: Option<&SockAddr>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = self.socket()?;
        self.inner.io.poll_io(Direction::Write, cx, || match to {
            Some(addr) => socket.send_to_with_flags(data, addr, sys::SEND_FLAGS),
            None => socket.send_with_flags(data, sys::SEND_FLAGS),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::net::test_support::tcp_pair;
    use crate::{spawn, wait_for, with_timeout};

    #[test]
    fn reads_dropped_by_the_thousand_on_a_quiet_socket_leave_a_bounded_waiter_list() {
        wait_for(async {
            let (client, quiet) = tcp_pair().await?;
            // 80,000 tasks, each waiting once for a byte that does not come.
            let tasks: Vec<_> = (0..80_000)
                .map(|_| {
                    let s = quiet.clone();
                    spawn(async move {
                        Ok::<_, io::Error>(with_timeout(s.recv(1), Duration::ZERO).await.is_err())
                    })
                })
                .collect();
            for t in tasks {
                assert!(t.await?, "nothing to read: every wait timed out");
            }
            let waiting = quiet.inner.io.waiting(Direction::Read);
            assert!(
                waiting <= 65,
                "{waiting} wakers of finished reads left behind"
            );
            // A real read still works.
            client.send("x").await?;
            assert_eq!(quiet.recv(1).await?, b"x");
            assert_eq!(quiet.inner.io.waiting(Direction::Read), 0);
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }

    /// A future that counts its polls.
    struct Counted<F> {
        polls: std::rc::Rc<std::cell::Cell<u64>>,
        inner: std::pin::Pin<Box<F>>,
    }

    impl<F: std::future::Future> std::future::Future for Counted<F> {
        type Output = F::Output;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls.set(self.polls.get() + 1);
            self.inner.as_mut().poll(cx)
        }
    }

    #[test]
    fn a_herd_of_live_readers_on_one_socket_settles_instead_of_waking_itself_for_ever() {
        wait_for(async {
            let (client, quiet) = tcp_pair().await?;
            let polls = std::rc::Rc::new(std::cell::Cell::new(0));
            let got = std::rc::Rc::new(std::cell::Cell::new(0));
            const HERD: usize = 1000;
            for _ in 0..HERD {
                let (s, got) = (quiet.clone(), got.clone());
                let read = async move {
                    let b = s.recv(1).await?;
                    got.set(got.get() + b.len());
                    Ok::<_, io::Error>(())
                };
                drop(spawn(Counted {
                    polls: polls.clone(),
                    inner: Box::pin(read),
                }));
            }
            // Settled: a few milliseconds pass without a poll (a herd that woke itself would
            // be polled all the time).
            let settled = async {
                loop {
                    let before = polls.get();
                    crate::sleep_async(Duration::from_millis(20)).await;
                    if polls.get() == before {
                        return;
                    }
                }
            };
            with_timeout(settled, Duration::from_secs(20))
                .await
                .expect("the herd never settled");
            assert_eq!(quiet.inner.io.waiting(Direction::Read), HERD);
            // Every byte sent still reaches a reader.
            client.send(vec![7u8; HERD]).await?;
            let all_read = async {
                while got.get() < HERD {
                    crate::sleep_async(Duration::from_millis(5)).await;
                }
            };
            with_timeout(all_read, Duration::from_secs(20))
                .await
                .expect("a byte was lost");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    }
}
