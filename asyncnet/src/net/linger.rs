//! The end of a socket that was closed, or lost its last handle, with bytes still owed.
//!
//! The descriptor has already left the socket's registration. What the kernel takes at once
//! is written here; the rest gets [`CLOSE_LINGER`] in a background task with a registration
//! of its own, after which the descriptor is closed whatever is left, so a peer that never
//! reads cannot pin it for ever. (The kernel does the same after `close(2)`: it goes on
//! sending what it had accepted.) Where no loop turn is sure to come (outside a running loop,
//! or the thread ending with the task unfinished), the rest is written blocking instead,
//! within the same limit.
//!
//! A TLS 1.3 client that closes just after its handshake then also waits, for a bounded time,
//! for the server's session tickets: see `Closer::wait_for_peer_until`.
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use socket2::Socket;

#[cfg(feature = "tls")]
use super::transport::tls_goodbye;
use crate::dispatch::Background;
use crate::driver::{Direction, Driver, Registration};
use crate::sys;
#[cfg(feature = "tls")]
use crate::tls::Tls;

/// How long a closed socket's queued bytes may wait for the kernel to take them before the
/// descriptor is closed anyway.
///
/// A socket closed (or dropped) inside the loop has them written in the background:
/// [`wait_for`](crate::wait_for), [`drain`](crate::drain) and
/// [`run_forever`](crate::run_forever) return only after they are written (or this time has
/// passed). A socket dropped outside the loop (after `wait_for` returned, say at the end of
/// `main`) writes them before the drop returns, blocking for at most this time; so does a
/// thread whose loop ends with such a write unfinished.
///
/// # Portability
///
/// On Windows a thread's loop ends in its thread-local destructors, which Windows runs
/// holding the process's loader lock: while such a write waits for a peer that does not
/// read, other threads of the process that start or end wait too (each takes that lock).
pub const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Finish a closed socket: write `unsent` (bytes a send of the driver took and did not
/// send), then `rest` (through the TLS session, if any, then close_notify), then close the
/// descriptor.
///
/// `shared`: another handle of the socket stays open (a lent handle, see `convert.rs`), so
/// closing this one would not end the connection: it is ended with a shutdown instead, once
/// the bytes are written (or given up on).
pub(crate) fn finish(
    driver: &Rc<Driver>,
    socket: Socket,
    unsent: Vec<u8>,
    rest: Vec<u8>,
    #[cfg(feature = "tls")] tls: Option<Box<Tls>>,
    shared: bool,
) {
    let first = Raw::new(unsent);
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        // Nothing to say on a session that never finished its handshake.
        match tls_goodbye(tls, &socket, rest, CLOSE_LINGER) {
            Some((limit, closer)) => in_background(driver, socket, limit, shared, (first, closer)),
            None => in_background(driver, socket, CLOSE_LINGER, shared, first),
        }
        return;
    }
    in_background(
        driver,
        socket,
        CLOSE_LINGER,
        shared,
        (first, Raw::new(rest)),
    );
}

/// What a closed socket still owes, in steps that do not block on a non-blocking socket
/// (and wait at most the socket's timeouts on a blocking one).
pub(crate) trait Farewell {
    /// Write what is owed: `Ok(true)` once all of it is written, `Ok(false)` while the
    /// kernel is full, `Err` to give up.
    fn write(&mut self, socket: &Socket) -> io::Result<bool>;

    /// Once all is written: until when the descriptor should stay open, reading what the
    /// peer still sends (`None`: close it at once). For a TLS client's session tickets; see
    /// `Closer::wait_for_peer_until`.
    fn wait_for_peer_until(&self, _now: Instant) -> Option<Instant> {
        None
    }

    /// Read and discard what the peer sent: `Ok(true)` once nothing more is awaited,
    /// `Ok(false)` while the kernel has nothing, `Err` to give up.
    fn read_peer(&mut self, _socket: &Socket) -> io::Result<bool> {
        Ok(true)
    }
}

/// One farewell, then the other (the second one's wait for the peer).
impl<A: Farewell, B: Farewell> Farewell for (A, B) {
    fn write(&mut self, socket: &Socket) -> io::Result<bool> {
        Ok(self.0.write(socket)? && self.1.write(socket)?)
    }

    fn wait_for_peer_until(&self, now: Instant) -> Option<Instant> {
        self.1.wait_for_peer_until(now)
    }

    fn read_peer(&mut self, socket: &Socket) -> io::Result<bool> {
        self.1.read_peer(socket)
    }
}

/// End the connection of `socket`, whose other handle stays open (`shared`; otherwise
/// closing `socket` ends it): both directions, as a close would.
fn end_shared(socket: &Socket, shared: bool) {
    if shared {
        // Not connected any more (the peer reset it): ended already.
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Bytes written as they are.
struct Raw {
    bytes: Vec<u8>,
    pos: usize,
}

impl Raw {
    fn new(bytes: Vec<u8>) -> Raw {
        Raw { bytes, pos: 0 }
    }
}

impl Farewell for Raw {
    fn write(&mut self, s: &Socket) -> io::Result<bool> {
        loop {
            if self.pos == self.bytes.len() {
                return Ok(true);
            }
            match s.send_with_flags(&self.bytes[self.pos..], sys::SEND_FLAGS) {
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether `farewell`, all written, still waits for the peer: then our side of the
/// connection ends now (its FIN goes out after the last bytes, as a close would send it), so
/// that a peer reading to the end closes too and the wait ends early.
fn start_waiting(socket: &Socket, farewell: &impl Farewell, shared: bool) -> bool {
    // A shared socket stays open through its other handle: no reset to avoid.
    if shared || farewell.wait_for_peer_until(Instant::now()).is_none() {
        return false;
    }
    let _ = socket.shutdown(std::net::Shutdown::Write);
    true
}

/// Run `farewell` (its writes, then any wait for the peer) now, and again each time the
/// socket is ready, for at most `limit` (the writes) and until its own bound (the wait); then
/// close the socket.
///
/// In a task of the loop when the loop is running (inside `wait_for`, `poll`, ...). Outside
/// it (a handle dropped after `wait_for` returned, as at the end of `main`), no loop turn
/// may ever come, so the farewell is finished here, blocking, within those bounds: nothing
/// else on this thread is waiting meanwhile. A task that the loop drops unfinished (the
/// thread ends with its loop) finishes the same way.
fn in_background(
    driver: &Rc<Driver>,
    socket: Socket,
    limit: Duration,
    shared: bool,
    mut farewell: impl Farewell + 'static,
) {
    let over = match farewell.write(&socket) {
        Ok(true) => {
            !start_waiting(&socket, &farewell, shared)
                || !matches!(farewell.read_peer(&socket), Ok(false))
        }
        Ok(false) => false,
        Err(_) => true,
    };
    if over {
        end_shared(&socket, shared);
        return;
    }
    let deadline = Instant::now() + limit;
    if !crate::dispatch::loop_running() {
        finish_blocking(&socket, deadline, shared, &mut farewell);
        end_shared(&socket, shared);
        return;
    }
    let mut bg = Lingering {
        _count: Background::start(),
        socket,
        deadline,
        farewell,
        io: None,
        done: false,
        shared,
    };
    let driver = driver.clone();
    crate::dispatch::spawn_internal(async move {
        let fd = sys::raw(&bg.socket);
        let Ok(io) = Registration::new(&driver, fd) else {
            // No registration (the poller refuses it): give up rather than block the loop.
            bg.close();
            return;
        };
        // Held by `bg`: dropped unfinished, it leaves the poller before the blocking writes
        // (a socket still in Windows' poller can stall them).
        bg.io = Some(io);
        let Lingering {
            socket,
            farewell,
            io,
            shared,
            ..
        } = &mut bg;
        let io = io.as_ref().expect("just set");
        let written = poll_fn(|cx| {
            io.poll_io(Direction::Write, cx, || {
                would_block_unless(farewell.write(socket))
            })
        });
        let written = matches!(crate::with_timeout(written, limit).await, Ok(Ok(())));
        if written && start_waiting(socket, farewell, *shared) {
            let until = farewell.wait_for_peer_until(Instant::now());
            let left = until.map_or(Duration::ZERO, |t| {
                t.saturating_duration_since(Instant::now())
            });
            let heard = poll_fn(|cx| {
                io.poll_io(Direction::Read, cx, || {
                    would_block_unless(farewell.read_peer(socket))
                })
            });
            let _ = crate::with_timeout(heard, left).await;
        }
        // Done (or given up): out of the poller (in `Drop`) and closed.
        bg.close();
    });
}

/// A step's `Ok(false)` (not yet) as `WouldBlock`, for the driver's seam.
fn would_block_unless(step: io::Result<bool>) -> io::Result<()> {
    match step {
        Ok(true) => Ok(()),
        Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e),
    }
}

/// A closed socket finishing in the background, counted as the loop's background work from
/// its start until its task ends or is dropped. Dropped unfinished (the loop ends with the
/// thread), it finishes blocking (see [`in_background`]).
struct Lingering<F: Farewell> {
    _count: Option<Background>,
    socket: Socket,
    /// For the writes (the wait for the peer has its own bound).
    deadline: Instant,
    farewell: F,
    /// Its place in the poller while the task writes (and waits for the peer).
    io: Option<Registration>,
    done: bool,
    /// Another handle of the socket stays open: end the connection before closing this one.
    shared: bool,
}

impl<F: Farewell> Lingering<F> {
    /// Close the socket, with whatever is left unwritten.
    fn close(mut self) {
        self.done = true;
    }
}

impl<F: Farewell> Drop for Lingering<F> {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            // Its writes are `send(2)` calls (the step's own): no send of the driver's.
            let unsent = io.deregister(sys::raw(&self.socket));
            debug_assert!(unsent.is_empty());
        }
        if !self.done {
            finish_blocking(&self.socket, self.deadline, self.shared, &mut self.farewell);
        }
        end_shared(&self.socket, self.shared);
    }
}

/// Run `farewell` on the socket in blocking mode: its writes until they are done, fail, or
/// `deadline` passes; then its wait for the peer, within its own bound. The descriptor must
/// be out of the poller.
fn finish_blocking(socket: &Socket, deadline: Instant, shared: bool, farewell: &mut impl Farewell) {
    if socket.set_nonblocking(false).is_err() {
        return;
    }
    let written = blocking(
        deadline,
        |left| socket.set_write_timeout(Some(left)),
        || farewell.write(socket),
    );
    if written && start_waiting(socket, farewell, shared) {
        if let Some(until) = farewell.wait_for_peer_until(Instant::now()) {
            blocking(
                until,
                |left| socket.set_read_timeout(Some(left)),
                || farewell.read_peer(socket),
            );
        }
    }
}

/// Run `step` until it is done (`true`), or fails or `until` passes (`false`), with the
/// socket's timeout set (`set`) to what is left before each try: a step's `Ok(false)` is that
/// timeout running out (`EAGAIN`).
fn blocking(
    until: Instant,
    set: impl Fn(Duration) -> io::Result<()>,
    mut step: impl FnMut() -> io::Result<bool>,
) -> bool {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        // A zero timeout would mean "no timeout" to the kernel.
        if left < Duration::from_millis(1) || set(left).is_err() {
            return false;
        }
        match step() {
            Ok(true) => return true,
            Ok(false) => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full at the close; all written when the task polls.
    struct FullOnce {
        steps: u32,
    }

    impl Farewell for FullOnce {
        fn write(&mut self, _: &Socket) -> io::Result<bool> {
            self.steps += 1;
            Ok(self.steps > 1)
        }
    }

    /// A closed socket whose last bytes the kernel takes by the time its background task
    /// first runs (the peer read them meanwhile) ends that work in the task's first poll,
    /// which also leaves the poller: `wait_for`, whose future had returned, then returns too,
    /// instead of sleeping in a loop with nothing left to wake it (found as a rare hang of a
    /// writer thread that sent 100 MB and closed).
    #[test]
    fn background_work_over_at_its_first_poll_lets_wait_for_return() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = crate::wait_for(async {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                let stream = std::net::TcpStream::connect(listener.local_addr()?)?;
                let _peer = listener.accept()?;
                stream.set_nonblocking(true)?;
                let driver = crate::dispatch::driver()?;
                let step = FullOnce { steps: 0 };
                in_background(&driver, Socket::from(stream), CLOSE_LINGER, false, step);
                Ok::<(), io::Error>(())
            });
            let _ = done.send(r);
        });
        let r = finished
            .recv_timeout(Duration::from_secs(20))
            .expect("wait_for returned");
        r.expect("the body");
    }
}
