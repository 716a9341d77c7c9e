//! Per-socket deadlines (Go's `SetReadDeadline`/`SetWriteDeadline`), kept by the seam.
//!
//! A socket's deadline for a direction bounds every wait of that direction in
//! [`Registration::poll_io`](super::Registration::poll_io): an operation that would park
//! after the deadline fails with `TimedOut` instead; one that parks before it arms a timer
//! (one per socket and direction, in the driver's [`DeadlineQueue`]) that wakes every waiter of
//! that direction when it comes. Nothing here reads the clock: "passed" is judged by the
//! time the loop read at its last turn, and a deadline that passed since is caught by its
//! timer, already due, at the next turn.
//!
//! ```text
//!  park(dir) ── deadline set? ──no──────────────────────────────> park
//!                  │yes
//!                  passed (at the loop's last turn)? ──yes──> TimedOut
//!                  │no
//!                  a timer armed at or before it? ──no──> arm one at it ──> park
//!                  │yes ────────────────────────────────────────────────> park
//!  timer due ── disarm, wake every waiter of dir (each re-checks: passed, or re-arms later)
//!  set_deadline(dir) ── wake every waiter of dir (the same re-check)
//! ```
//!
//! The timer is lazy: a deadline pushed later (a server that sets "now + 30 s" before each
//! read) keeps the timer armed for the earlier one; when that one comes, the waiters look
//! again and re-arm for the new deadline. So a deadline that never fires costs, per
//! operation, no system call and no allocation, and at most one timer insertion per
//! deadline period.
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::rc::{Rc, Weak};
use std::time::Instant;

use super::registration::{Direction, IoState};

/// A timer's key in the queue: its instant, then a sequence number (unique).
pub(super) type Key = (Instant, u64);

/// One socket's deadlines, made the first time one is set (most sockets never have one).
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// The deadline of reads, then of writes.
    at: [Cell<Option<Instant>>; 2],
    /// The timer armed for each direction, if any (at or before its deadline).
    armed: [Cell<Option<Key>>; 2],
    /// The library's own background work (writing queued bytes of completed sends) is
    /// running: it waits without deadlines.
    exempt: Cell<bool>,
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

/// The error of an operation whose socket deadline has passed.
pub(crate) fn deadline_passed(dir: Direction) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        match dir {
            Direction::Read => "the socket's read deadline has passed",
            Direction::Write => "the socket's write deadline has passed",
        },
    )
}

impl Deadlines {
    pub(super) fn get(&self, dir: Direction) -> Option<Instant> {
        self.at[index(dir)].get()
    }

    pub(super) fn set(&self, dir: Direction, at: Option<Instant>) {
        self.at[index(dir)].set(at);
    }

    /// Run `f` with deadlines ignored (the library's background writes).
    pub(super) fn exempt<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore<'a>(&'a Cell<bool>, bool);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.set(self.1);
            }
        }
        let _restore = Restore(&self.exempt, self.exempt.replace(true));
        f()
    }

    /// The timers armed, to cancel when the socket leaves the poller.
    pub(super) fn take_armed(&self) -> impl Iterator<Item = Key> + '_ {
        self.armed.iter().filter_map(Cell::take)
    }

    /// Whether an operation about to wait in `dir` times out now (`Err`), or may wait:
    /// then a timer is armed to wake it at the deadline.
    pub(super) fn check(
        &self,
        queue: &DeadlineQueue,
        state: &Rc<IoState>,
        dir: Direction,
    ) -> io::Result<()> {
        let Some(at) = self.get(dir) else {
            return Ok(());
        };
        if self.exempt.get() {
            return Ok(());
        }
        // The loop's time of its last turn, not the clock: no clock read per operation. A
        // deadline that passed since that turn arms a timer that is already due, so the
        // operation times out at the next turn instead of now.
        if at <= queue.now.get() {
            return Err(deadline_passed(dir));
        }
        let armed = &self.armed[index(dir)];
        match armed.get() {
            Some(key) if key.0 <= at => {}
            old => {
                if let Some(key) = old {
                    queue.map.borrow_mut().remove(&key);
                }
                armed.set(Some(queue.insert(at, Rc::downgrade(state), dir)));
            }
        }
        Ok(())
    }

    /// The timer `key` of `dir` came: it is no longer armed.
    fn disarm(&self, dir: Direction, key: Key) {
        let armed = &self.armed[index(dir)];
        if armed.get() == Some(key) {
            armed.set(None);
        }
    }
}

/// The driver's deadline timers: at most two per socket.
#[derive(Debug)]
pub(crate) struct DeadlineQueue {
    map: RefCell<BTreeMap<Key, (Weak<IoState>, Direction)>>,
    next_id: Cell<u64>,
    /// When the loop last looked at the clock (each turn, in [`expire`](Self::expire)).
    now: Cell<Instant>,
}

impl Default for DeadlineQueue {
    fn default() -> DeadlineQueue {
        DeadlineQueue {
            map: RefCell::default(),
            next_id: Cell::new(0),
            now: Cell::new(Instant::now()),
        }
    }
}

impl DeadlineQueue {
    fn insert(&self, at: Instant, state: Weak<IoState>, dir: Direction) -> Key {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let key = (at, id);
        self.map.borrow_mut().insert(key, (state, dir));
        key
    }

    pub(super) fn remove(&self, key: Key) {
        self.map.borrow_mut().remove(&key);
    }

    /// The earliest armed deadline.
    #[inline]
    pub(crate) fn next(&self) -> Option<Instant> {
        self.map.borrow().first_key_value().map(|(k, _)| k.0)
    }

    /// Whether no deadline timer is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Wake the waiters of every deadline due at or before `now`.
    #[inline]
    pub(crate) fn expire(&self, now: Instant) {
        self.now.set(now);
        let due = {
            let mut map = self.map.borrow_mut();
            if map.first_key_value().is_none_or(|(k, _)| k.0 > now) {
                return;
            }
            let later = map.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *map, later)
        };
        for (key, (state, dir)) in due {
            if let Some(state) = state.upgrade() {
                state.deadline_came(dir, key);
            }
        }
    }

    /// How many timers are armed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.borrow().len()
    }
}

impl IoState {
    /// The timer `key` of `dir` came: every waiter of `dir` looks again (the deadline passed,
    /// or moved later and they re-arm).
    fn deadline_came(&self, dir: Direction, key: Key) {
        if let Some(d) = self.deadlines.get() {
            d.disarm(dir, key);
        }
        self.wake_waiters(dir);
    }
}
