//! The end of a socket that was closed, or lost its last handle, with bytes still owed.
//!
//! The descriptor has already left the socket's registration. What the kernel takes at once
//! is written here; the rest gets [`CLOSE_LINGER`] in a background task with a registration
//! of its own, after which the descriptor is closed whatever is left, so a peer that never
//! reads cannot pin it for ever. (The kernel does the same after `close(2)`: it goes on
//! sending what it had accepted.) Where no loop turn is sure to come (outside a running loop,
//! or the thread ending with the task unfinished), the rest is written blocking instead,
//! within the same limit.
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
    let mut first = raw_writer(unsent);
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        // Nothing to say on a session that never finished its handshake.
        match tls_goodbye(tls, &socket, rest, CLOSE_LINGER) {
            Some((limit, mut step)) => in_background(driver, socket, limit, shared, move |s| {
                Ok(first(s)? && step(s)?)
            }),
            None => in_background(driver, socket, CLOSE_LINGER, shared, first),
        }
        return;
    }
    let mut then = raw_writer(rest);
    in_background(driver, socket, CLOSE_LINGER, shared, move |s| {
        Ok(first(s)? && then(s)?)
    });
}

/// End the connection of `socket`, whose other handle stays open (`shared`; otherwise
/// closing `socket` ends it): both directions, as a close would.
fn end_shared(socket: &Socket, shared: bool) {
    if shared {
        // Not connected any more (the peer reset it): ended already.
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

/// A step that writes `bytes` as they are: `Ok(true)` once all are written.
fn raw_writer(bytes: Vec<u8>) -> impl FnMut(&Socket) -> io::Result<bool> {
    let mut pos = 0;
    move |s| loop {
        if pos == bytes.len() {
            return Ok(true);
        }
        match s.send_with_flags(&bytes[pos..], sys::SEND_FLAGS) {
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Run `step` (`Ok(true)`: done; `Ok(false)`: the kernel is full; `Err`: give up) now, and
/// again each time the socket turns writable, for at most `limit`; then close the socket.
///
/// In a task of the loop when the loop is running (inside `wait_for`, `poll`, ...). Outside
/// it (a handle dropped after `wait_for` returned, as at the end of `main`), no loop turn
/// may ever come, so the bytes are finished here, blocking, within `limit`: nothing else on
/// this thread is waiting meanwhile. A task that the loop drops unfinished (the thread ends
/// with its loop) finishes the same way.
fn in_background(
    driver: &Rc<Driver>,
    socket: Socket,
    limit: Duration,
    shared: bool,
    mut step: impl FnMut(&Socket) -> io::Result<bool> + 'static,
) {
    if !matches!(step(&socket), Ok(false)) {
        end_shared(&socket, shared);
        return;
    }
    let deadline = Instant::now() + limit;
    if !crate::dispatch::loop_running() {
        finish_blocking(&socket, deadline, &mut step);
        end_shared(&socket, shared);
        return;
    }
    let mut bg = Lingering {
        _count: Background::start(),
        socket,
        deadline,
        step,
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
            socket, step, io, ..
        } = &mut bg;
        let io = io.as_ref().expect("just set");
        let written = poll_fn(|cx| {
            io.poll_io(Direction::Write, cx, || match step(socket) {
                Ok(true) => Ok(()),
                Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e),
            })
        });
        let _ = crate::with_timeout(written, limit).await;
        // Done (or given up): out of the poller (in `Drop`) and closed.
        bg.close();
    });
}

/// A closed socket finishing in the background, counted as the loop's background work from
/// its start until its task ends or is dropped. Dropped unfinished (the loop ends with the
/// thread), it writes the rest blocking (see [`in_background`]).
struct Lingering<F: FnMut(&Socket) -> io::Result<bool>> {
    _count: Option<Background>,
    socket: Socket,
    deadline: Instant,
    step: F,
    /// Its place in the poller while the task writes.
    io: Option<Registration>,
    done: bool,
    /// Another handle of the socket stays open: end the connection before closing this one.
    shared: bool,
}

impl<F: FnMut(&Socket) -> io::Result<bool>> Lingering<F> {
    /// Close the socket, with whatever is left unwritten.
    fn close(mut self) {
        self.done = true;
    }
}

impl<F: FnMut(&Socket) -> io::Result<bool>> Drop for Lingering<F> {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            // Its writes are `send(2)` calls (the step's own): no send of the driver's.
            let unsent = io.deregister(sys::raw(&self.socket));
            debug_assert!(unsent.is_empty());
        }
        if !self.done {
            finish_blocking(&self.socket, self.deadline, &mut self.step);
        }
        end_shared(&self.socket, self.shared);
    }
}
/// Run `step` on the socket in blocking mode until it is done, fails, or `deadline` passes.
/// The descriptor must be out of the poller.
fn finish_blocking(
    socket: &Socket,
    deadline: Instant,
    step: &mut dyn FnMut(&Socket) -> io::Result<bool>,
) {
    if socket.set_nonblocking(false).is_err() {
        return;
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout would mean "no timeout" to the kernel.
        if left < Duration::from_millis(1) || socket.set_write_timeout(Some(left)).is_err() {
            return;
        }
        // `Ok(false)`: the timeout ran out with the kernel still full (EAGAIN).
        if !matches!(step(socket), Ok(false)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                // Full at the close; all written when the task polls.
                let mut steps = 0;
                let step = move |_: &Socket| {
                    steps += 1;
                    Ok(steps > 1)
                };
                let driver = crate::dispatch::driver()?;
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
