//! The io_uring poller (Linux): readiness through multishot polls on one ring, one
//! `io_uring_enter` per loop turn.
//!
//! Each registered socket has one multishot `POLL_ADD` for reading, writing and hang-ups. The
//! kernel posts a completion at every wake-up of the socket (as edge-triggered epoll reports an
//! edge), with the events true then, and the driver turns it into the same readiness bits the
//! epoll poller sets; everything above (`Registration`, the socket code) is shared. New polls
//! and removals are queued in the ring and leave with the turn's one enter, which also waits.
//!
//! Completions name their socket by slot *and* generation: a removed poll may still post a
//! completion after its slot went to a new socket, and such a completion is dropped instead of
//! waking (or marking as hung up) the newcomer.
//!
//! A poll holds its socket open, so a removal is submitted at once, with the kernel asked to
//! finish it: a close would otherwise send its FIN (or fail the peer's pending send) only at
//! the next turn. A poll caught in the middle of reporting an event refuses removal
//! (`EALREADY`) and goes on; the removal is then made again, at once (the enter that carried
//! the first one has let the poll finish its report), and at every later completion of a poll
//! that should be gone.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

use crate::sys::uring::{Completion, Ring};
use crate::sys::RawSocket;

use super::registration::{IoState, READ, READ_CLOSED, WRITE};

/// User data of the cross-thread waker's poll.
const WAKE: u64 = u64::MAX;
/// Set in the user data of a removal (with the user data of the poll it removes).
const REMOVAL: u64 = 1 << 63;
/// How many times a removal is made at once before it is left to later turns.
const REMOVAL_TRIES: usize = 3;

/// What every socket's poll watches (errors and hang-ups are always reported).
const EVENTS: u32 = (libc::POLLIN | libc::POLLPRI | libc::POLLOUT | libc::POLLRDHUP) as u32;

/// The user data of a socket's poll: its slot and the slot's generation.
pub(super) fn user_data(key: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | (key as u64 & 0xffff_ffff)
}

fn slot_of(user_data: u64) -> (usize, u32) {
    ((user_data & 0xffff_ffff) as usize, (user_data >> 32) as u32)
}

/// The ring, what another thread writes to wake it, and the completions of the last turn.
#[derive(Debug)]
pub(super) struct Uring {
    ring: RefCell<Ring>,
    /// The read side of the cross-thread waker's eventfd (the write side is the driver's
    /// `RemoteWaker`).
    wake_fd: File,
    completions: RefCell<Vec<Completion>>,
}

impl Uring {
    /// A ring, polling `wake_fd` (an eventfd) for cross-thread wake-ups.
    pub(super) fn new(wake_fd: File) -> io::Result<Uring> {
        use std::os::fd::AsRawFd;
        let mut ring = Ring::new()?;
        ring.poll_multi(wake_fd.as_raw_fd(), libc::POLLIN as u32, WAKE)?;
        Ok(Uring {
            ring: RefCell::new(ring),
            wake_fd,
            completions: RefCell::new(Vec::with_capacity(1024)),
        })
    }

    /// Whether the ring was set up with `DEFER_TASKRUN`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn defer_taskrun(&self) -> bool {
        self.ring.borrow().defer_taskrun()
    }

    /// Watch `fd` (the socket in slot `key`, generation `gen`) from the next enter on.
    pub(super) fn register(&self, fd: RawSocket, key: usize, gen: u32) -> io::Result<()> {
        self.ring
            .borrow_mut()
            .poll_multi(fd, EVENTS, user_data(key, gen))
    }

    /// Stop watching the socket in slot `key`, generation `gen`, now (see the module docs).
    pub(super) fn deregister(&self, key: usize, gen: u32) {
        let target = user_data(key, gen);
        let mut ring = self.ring.borrow_mut();
        let mut stash = self.completions.borrow_mut();
        for _ in 0..REMOVAL_TRIES {
            // An error here leaves the poll until a later completion of it asks again, or the
            // ring closes; its completions are dropped meanwhile (wrong generation).
            if ring.poll_remove(target, target | REMOVAL).is_err() || ring.submit_now().is_err() {
                return;
            }
            // Completions that came meanwhile wait for the turn, except this removal's own
            // refusal, which is answered here.
            let seen = stash.len();
            ring.take_completions(&mut stash);
            let refused =
                |c: &Completion| c.user_data == target | REMOVAL && c.result == -libc::EALREADY;
            if !stash[seen..].iter().any(refused) {
                return;
            }
            stash.retain(|c| !refused(c));
        }
    }

    /// Remove the poll with user data `target` again (a refused removal, or a completion of a
    /// poll that should be gone). Returns false if the removal could not even be queued.
    fn remove_again(&self, target: u64) -> bool {
        self.ring
            .borrow_mut()
            .poll_remove(target, target | REMOVAL)
            .is_ok()
    }

    /// Submit, wait up to `timeout`, and hand each socket's events to `wake` (looked up by
    /// slot and generation: `None` when the socket is gone). Returns the number of events
    /// that concerned sockets.
    pub(super) fn turn(
        &self,
        timeout: Option<Duration>,
        lookup: impl Fn(usize, u32) -> Option<std::rc::Rc<IoState>>,
    ) -> io::Result<usize> {
        // Completions collected by a deregistration since the last turn come first (and then
        // the enter does not wait: there is work already).
        let mut completions = std::mem::take(&mut *self.completions.borrow_mut());
        {
            let mut ring = self.ring.borrow_mut();
            let wait = if completions.is_empty() {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            ring.enter(wait)?;
            ring.take_completions(&mut completions);
        }
        let mut n = 0;
        let mut removals = false;
        for c in completions.drain(..) {
            match c.user_data {
                WAKE => self.woken(&c),
                ud if ud & REMOVAL != 0 => {
                    if c.result == -libc::EALREADY {
                        removals |= self.remove_again(ud & !REMOVAL);
                    }
                }
                ud => {
                    let (key, gen) = slot_of(ud);
                    match lookup(key, gen) {
                        Some(io) => {
                            self.socket_event(&io, &c, key, gen);
                            n += 1;
                        }
                        // A poll that should be gone and is not: remove it (again).
                        None if c.more() => removals |= self.remove_again(ud),
                        None => {}
                    }
                }
            }
        }
        if removals {
            // At once, as a deregistration does: the socket is closed and its peer waits.
            let _ = self.ring.borrow_mut().submit_now();
        }
        // Keep the allocation, and anything a deregistration (run by a woken task's waker)
        // collected meanwhile.
        let mut slot = self.completions.borrow_mut();
        if slot.is_empty() {
            *slot = completions;
        }
        Ok(n)
    }

    /// Another thread woke the loop: empty the eventfd (its count would otherwise grow for
    /// ever), and poll it again if the poll ended.
    fn woken(&self, c: &Completion) {
        let mut count = [0u8; 8];
        let _ = (&self.wake_fd).read(&mut count);
        if !c.more() {
            use std::os::fd::AsRawFd;
            let _ = self.ring.borrow_mut().poll_multi(
                self.wake_fd.as_raw_fd(),
                libc::POLLIN as u32,
                WAKE,
            );
        }
    }

    fn socket_event(&self, io: &IoState, c: &Completion, key: usize, gen: u32) {
        if c.result >= 0 {
            io.wake(bits(c.result as u32));
        }
        if c.more() {
            return;
        }
        // The poll ended without being removed: the kernel could not post a completion (its
        // queue was full), or failed the poll. Events may have been missed: say both
        // directions are ready (an operation that finds nothing hears `WouldBlock` and waits
        // again), and poll again unless the kernel refused the poll itself.
        io.wake(READ | WRITE);
        if c.result >= 0 || c.result == -libc::ECANCELED || c.result == -libc::ENOMEM {
            let _ = self.register(io.fd, key, gen);
        }
    }
}

/// The readiness bits of a poll's events, as the epoll poller reads them (mio's rules).
fn bits(events: u32) -> u8 {
    let has = |e: libc::c_short| events & e as u32 != 0;
    let error = has(libc::POLLERR);
    let readable = has(libc::POLLIN) || has(libc::POLLPRI);
    let read_closed = has(libc::POLLHUP) || (has(libc::POLLIN) && has(libc::POLLRDHUP));
    let writable = has(libc::POLLOUT);
    let write_closed = has(libc::POLLHUP) || (writable && error) || events == libc::POLLERR as u32;
    let mut bits = 0;
    if readable || read_closed || error {
        bits |= READ;
    }
    if read_closed {
        bits |= READ_CLOSED;
    }
    if writable || write_closed || error {
        bits |= WRITE;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_names_slot_and_generation_and_never_the_reserved_values() {
        let ud = user_data(7, 3);
        assert_eq!(slot_of(ud), (7, 3));
        // Generations have 31 bits: no socket's user data is a reserved value.
        let last = user_data(0xffff_fffe, super::super::MAX_GEN);
        assert_eq!(last & REMOVAL, 0);
        assert_ne!(last | REMOVAL, WAKE);
    }

    #[test]
    fn the_ring_defers_task_work_where_the_kernel_can() {
        if crate::driver::io_uring_support().is_err() {
            return;
        }
        let driver = super::super::Driver::new(crate::DriverKind::IoUring).unwrap();
        assert_eq!(driver.kind(), crate::DriverKind::IoUring);
        // DEFER_TASKRUN came with Linux 6.1.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().unwrap().parse().unwrap();
        let minor: u32 = parts.next().unwrap().parse().unwrap();
        assert_eq!(
            driver.defer_taskrun(),
            (major, minor) >= (6, 1),
            "{release}"
        );
    }

    #[test]
    fn poll_events_map_to_the_bits_epoll_events_do() {
        let e = |x: libc::c_short| x as u32;
        assert_eq!(bits(e(libc::POLLIN)), READ);
        assert_eq!(bits(e(libc::POLLOUT)), WRITE);
        assert_eq!(bits(e(libc::POLLIN | libc::POLLRDHUP)), READ | READ_CLOSED);
        assert_eq!(
            bits(e(libc::POLLHUP | libc::POLLOUT)),
            READ | READ_CLOSED | WRITE
        );
        assert_eq!(bits(e(libc::POLLERR)), READ | WRITE);
        assert_eq!(
            bits(e(libc::POLLRDHUP)),
            0,
            "a half-close is read with the data"
        );
    }
}
