//! The end of a socket that was closed, or lost its last handle, with bytes still owed.
//!
//! The descriptor has already left the socket's registration. What the kernel takes at once
//! is written here; the rest gets [`CLOSE_LINGER`] in a background task with a registration
//! of its own, after which the descriptor is closed whatever is left, so a peer that never
//! reads cannot pin it for ever. (The kernel does the same after `close(2)`: it goes on
//! sending what it had accepted.)
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{ready, Poll};
use std::time::Duration;

use rustls::Connection;
use socket2::Socket;

use crate::driver::{Direction, Driver};
use crate::sys;

/// How long a closed socket's queued bytes may wait for the kernel to take them before the
/// descriptor is closed anyway.
///
/// The loop writes them in the background, so it must keep running meanwhile:
/// [`wait_for`](crate::wait_for), [`drain`](crate::drain) and
/// [`run_forever`](crate::run_forever) return only after they are written (or this time has
/// passed). A thread that drives its loop with [`poll`](crate::poll) alone and then ends
/// drops what is left.
pub const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Finish a closed socket: write `rest` (through the TLS session, if any, then
/// close_notify), then close the descriptor.
pub(crate) fn finish(
    driver: &Rc<Driver>,
    socket: Socket,
    rest: Vec<u8>,
    conn: Option<Box<Connection>>,
) {
    match conn {
        Some(conn) => crate::tls::close_session(driver, socket, conn, rest),
        None if rest.is_empty() => drop(socket),
        None => {
            let mut pos = 0;
            in_background(driver, socket, CLOSE_LINGER, move |s| loop {
                if pos == rest.len() {
                    return Ok(true);
                }
                match s.send_with_flags(&rest[pos..], sys::SEND_FLAGS) {
                    Ok(n) => pos += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            });
        }
    }
}

/// Run `step` (`Ok(true)`: done; `Ok(false)`: the kernel is full; `Err`: give up) now, and
/// again each time the socket turns writable, for at most `limit`; then close the socket.
pub(crate) fn in_background(
    driver: &Rc<Driver>,
    socket: Socket,
    limit: Duration,
    mut step: impl FnMut(&Socket) -> io::Result<bool> + 'static,
) {
    if !matches!(step(&socket), Ok(false)) {
        return;
    }
    let driver = driver.clone();
    let counted = Lingering::new(&driver);
    crate::dispatch::spawn_internal(async move {
        let _counted = counted;
        let fd = socket.as_raw_fd();
        let Ok(io_state) = driver.register(fd) else {
            return;
        };
        // The kernel was full a moment ago; the registration reports when it is not.
        io_state.clear(Direction::Write);
        let written = poll_fn(|cx| loop {
            if !io_state.is_ready(Direction::Write)
                && ready!(io_state.poll_ready(Direction::Write, cx)).is_err()
            {
                return Poll::Ready(());
            }
            match step(&socket) {
                Ok(false) => io_state.clear(Direction::Write),
                Ok(true) | Err(_) => return Poll::Ready(()),
            }
        });
        let _ = crate::with_timeout(written, limit).await;
        driver.deregister(&io_state, fd);
        drop(socket);
    });
}

/// Counts a closed socket still writing in the background, from its start until its task
/// ends or is dropped, in [`Driver::lingering`].
struct Lingering(Rc<Driver>);

impl Lingering {
    fn new(driver: &Rc<Driver>) -> Lingering {
        driver.lingering.set(driver.lingering.get() + 1);
        Lingering(driver.clone())
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        self.0.lingering.set(self.0.lingering.get() - 1);
    }
}
