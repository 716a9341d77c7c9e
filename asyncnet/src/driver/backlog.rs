//! Connections a multishot accept (io_uring) took ahead of the listener's accepts: each
//! completion of the accept is a new descriptor, kept here (owned: a listener that closes
//! meanwhile closes them, none leaks) until an accept takes it, oldest first.
//!
//! Accepting ahead stops at [`FULL`] waiting connections (the driver cancels the accept, and
//! the kernel's own backlog takes over, as for a listener nobody accepts on) and starts again
//! once accepts bring it down to [`RESUME`].
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;

/// Waiting connections at which accepting ahead stops.
pub(super) const FULL: usize = 64;
/// Waiting connections at or below which accepting ahead starts again.
pub(super) const RESUME: usize = 16;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    accepted: VecDeque<OwnedFd>,
    /// An accept failed with this `errno` (out of descriptors, for one): the next accept
    /// reports it, once.
    pub(super) error: Option<i32>,
    /// A multishot accept is in flight (its last completion has not come).
    pub(super) armed: bool,
    /// Its cancellation was asked for.
    pub(super) cancelling: bool,
    /// Accepting ahead is over for good (the listener is being taken out of the loop).
    pub(super) stopped: bool,
}

impl Backlog {
    /// Connections waiting.
    pub(super) fn len(&self) -> usize {
        self.accepted.len()
    }

    /// A connection the kernel accepted.
    pub(super) fn push(&mut self, fd: OwnedFd) {
        self.accepted.push_back(fd);
    }

    /// Whether an accept should be put in flight now. Not while an error waits to be
    /// reported: the accept that reports it tries the kernel itself first.
    pub(super) fn wants_accept(&self) -> bool {
        !self.armed
            && !self.cancelling
            && !self.stopped
            && self.error.is_none()
            && self.len() <= RESUME
    }

    /// Whether the accept in flight should be cancelled (too many connections wait).
    pub(super) fn too_full(&self) -> bool {
        self.armed && !self.cancelling && self.len() >= FULL
    }

    /// An accept: `Some` with its result when the backlog answers it (a connection, the
    /// error, or `WouldBlock` while an accept is awaited); `None` when the kernel must.
    pub(super) fn take(&mut self) -> Option<io::Result<OwnedFd>> {
        if let Some(fd) = self.accepted.pop_front() {
            return Some(Ok(fd));
        }
        if let Some(errno) = self.error.take() {
            return Some(Err(io::Error::from_raw_os_error(errno)));
        }
        if !self.armed {
            return None;
        }
        Some(Err(io::ErrorKind::WouldBlock.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
    }

    #[test]
    fn connections_come_out_oldest_first_then_an_error_once() {
        let mut b = Backlog {
            armed: true,
            ..Backlog::default()
        };
        let (first, second) = (fd(), fd());
        let raw = |f: &OwnedFd| std::os::fd::AsRawFd::as_raw_fd(f);
        let (r1, r2) = (raw(&first), raw(&second));
        b.push(first);
        b.push(second);
        b.error = Some(libc::EMFILE);
        assert_eq!(raw(&b.take().unwrap().unwrap()), r1);
        assert_eq!(raw(&b.take().unwrap().unwrap()), r2);
        let e = b.take().unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        assert_eq!(
            b.take().unwrap().unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "its accept is still in flight"
        );
        b.armed = false;
        assert!(b.take().is_none(), "then the kernel");
    }

    #[test]
    fn accepting_ahead_stops_when_full_and_resumes_when_taken_down() {
        let mut b = Backlog::default();
        assert!(b.wants_accept());
        b.armed = true;
        while b.len() < FULL {
            assert!(!b.too_full());
            b.push(fd());
        }
        assert!(b.too_full());
        b.cancelling = true;
        b.armed = false;
        b.cancelling = false;
        assert!(!b.wants_accept());
        while b.len() > RESUME {
            b.take().unwrap().unwrap();
        }
        assert!(b.wants_accept());
        b.error = Some(libc::ENFILE);
        assert!(!b.wants_accept(), "the error is reported first");
    }
}
