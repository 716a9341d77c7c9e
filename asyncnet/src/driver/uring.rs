//! The io_uring poller (Linux): readiness through multishot polls on one ring, one
//! `io_uring_enter` per loop turn.
//!
//! Each registered socket has one multishot `POLL_ADD` for reading, writing and hang-ups. The
//! kernel posts a completion at every wake-up of the socket (as edge-triggered epoll reports an
//! edge), with the events true then, and the driver turns it into the same readiness bits the
//! epoll poller sets; everything above (`Registration`, the socket code) is shared. New polls
//! and removals are queued in the ring and leave with the turn's one enter, which also waits.
//! An enter whose completions woke no task (a send done at once, which nobody waited for,
//! and a poll's report of it) is followed by another in the same turn: the loop would find
//! nothing to do between them. An echo thus costs one turn per round trip, not two (the
//! enters stay two, as in the C io_uring floor: one submits the reply, one waits).
//!
//! Completions name their socket by slot *and* generation: a removed poll may still post a
//! completion after its slot went to a new socket, and such a completion is dropped instead of
//! waking (or marking as hung up) the newcomer. (A poll's user data also carries its epoch:
//! see below.)
//!
//! Stream reads go further: once a read of a connected stream socket would block, the socket
//! gets a multishot receive into the ring's provided buffers (`sys/uring.rs`), and its bytes
//! are copied into the socket's inbox (`inbox.rs`) as they come; the socket's reads take them
//! from there without a system call. (Bytes that come while the inbox is idle skip the inbox:
//! the socket holds the buffer they came in until it reads them, and what it has not read when
//! the turn ends goes to the inbox then, the buffer back to the kernel: see [`Held`]. An inbox
//! read empty gives its room back to the ring, as a send does once done, for the next socket
//! that needs room, and a send holds a slot of the ring's table of sends only while it is
//! under way: a connection between messages holds no buffer and no slot.) The poll is then dropped (unless a connect may still be
//! under way): the receive's completions wake readers and the sends' completions writers,
//! and the poll would only report every arrival and every send again, a completion each
//! that the loop reads for nothing. It comes back, in a new epoch (a bit of its user data,
//! so that the dropped poll's late completions are told apart), when a task must wait on the
//! kernel: a write that went to the kernel (TLS records do), or a read once receiving ahead
//! stopped for good ([`Uring::parking`]).
//!
//! Listeners likewise: once an accept would block, a multishot accept takes connections ahead
//! into the listener's backlog (`backlog.rs`), which its accepts take from. A receive or accept
//! whose socket is gone has its buffer given back and its new descriptor closed: nothing
//! leaks, whenever the completion comes.
//!
//! A poll holds its socket open, so a removal is submitted at once, with the kernel asked to
//! finish it: a close would otherwise send its FIN (or fail the peer's pending send) only at
//! the next turn. A poll caught in the middle of reporting an event refuses removal
//! (`EALREADY`) and goes on; the removal is then made again, at once (the enter that carried
//! the first one has let the poll finish its report), and at every later completion of a poll
//! that should be gone.
#![forbid(unsafe_code)]

use std::cell::{RefCell, RefMut};
use std::fs::File;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::sys::uring::{Completion, Ring, Sent, SEND};
use crate::sys::RawSocket;

use super::inbox::{End, Inbox};
use super::registration::{Direction, IoState, NO_SEND, READ, READ_CLOSED, WRITE};

/// User data of the cross-thread waker's poll.
const WAKE: u64 = u64::MAX;
/// Set in the user data of a removal or cancellation (with the user data of the request it
/// ends).
const REMOVAL: u64 = 1 << 63;
/// Set in the user data of a socket's multishot receive (with the socket's slot and
/// generation).
const RECEIVE: u64 = 1 << 62;
/// Set in the user data of a listener's multishot accept.
const ACCEPT: u64 = 1 << 61;
/// Set in the user data of a socket's poll in odd epochs: each time a dropped poll is added
/// again (see [`Uring::parking`]) the bit flips, so that a late completion of the dropped
/// poll (its last one, `ECANCELED`, may come after the new poll was queued) is not taken for
/// the new poll's.
const EPOCH: u64 = 1 << 59;
/// The provided buffers: how many at most, how many the kernel gets first, and their size.
/// Each is given back as soon as its bytes are copied, so they need only cover one turn's
/// arrivals; a receive that finds none left ends (`ENOBUFS`), the kernel gets twice as many
/// (up to `BUFFERS`), and the receive is made again at the end of the turn. The kernel takes
/// them in turn, round the ring: every buffer it was given is soon touched, and resident, so
/// a loop that never has many arrivals at once keeps `FIRST_BUFFERS` of them (32 KiB), not
/// all (2 MiB).
const BUFFERS: u16 = 512;
const FIRST_BUFFERS: u16 = 8;
const BUFFER_SIZE: usize = 4096;
/// How many folded-away inboxes' blocks are kept for the next inbox to unfold (see
/// [`Uring::fold`]); others are freed.
const SPARE_INBOXES: usize = 64;
/// How many times a removal is made at once before it is left to later turns.
const REMOVAL_TRIES: usize = 3;
/// The longest a send queued during a turn waits for the submission, roughly (checked
/// between chunks of events: see `submit_if_due`).
const SUBMIT_EVERY: Duration = Duration::from_micros(500);
/// How long a deregistration waits, at most, for a cancelled send's completion (the kernel
/// cancels a send waiting for room at once; one under way finishes first).
const SEND_CANCEL_WAIT: Duration = Duration::from_secs(1);

/// What every socket's poll watches (errors and hang-ups are always reported).
const EVENTS: u32 = (libc::POLLIN | libc::POLLPRI | libc::POLLOUT | libc::POLLRDHUP) as u32;

/// The user data of a socket's poll: its slot and the slot's generation (28 bits: the four
/// top bits say what a request is; a send's is [`SEND`]).
pub(super) fn user_data(key: usize, gen: u32) -> u64 {
    (u64::from(gen & super::MAX_GEN) << 32) | (key as u64 & 0xffff_ffff)
}

/// The user data of `io`'s poll in its current epoch.
fn poll_data(io: &IoState) -> u64 {
    user_data(io.key(), io.gen) | if io.poll_epoch.get() { EPOCH } else { 0 }
}

fn slot_of(user_data: u64) -> (usize, u32) {
    (
        (user_data & 0xffff_ffff) as usize,
        ((user_data >> 32) as u32) & super::MAX_GEN,
    )
}

/// The ring, what another thread writes to wake it, and the completions of the last turn.
#[derive(Debug)]
pub(super) struct Uring {
    ring: RefCell<Ring>,
    /// The read side of the cross-thread waker's eventfd (the write side is the driver's
    /// `RemoteWaker`).
    wake_fd: File,
    completions: RefCell<Vec<Completion>>,
    /// The provided buffers could not be set up: stream reads go to the kernel.
    no_buffers: std::cell::Cell<bool>,
    /// A receive of this turn found no buffer left (`ENOBUFS`): the kernel gets more.
    out_of_buffers: std::cell::Cell<bool>,
    /// Blocks of inboxes folded away, for the next inbox to unfold (boxed: the blocks
    /// themselves are what is kept, to be handed out again without an allocation).
    #[allow(clippy::vec_box)]
    spare_inboxes: RefCell<Vec<Box<Inbox>>>,
    /// The sockets (slot and generation) that were handed a provided buffer to hold this
    /// turn (see [`Held`]): what they have not read by the next enter goes to their inbox.
    holding: RefCell<Vec<(usize, u32)>>,
    /// Provided buffers the kernel filled and the driver has not given back yet (tests).
    #[cfg(test)]
    buffers_out: std::cell::Cell<usize>,
}

/// A provided buffer held for a socket whose inbox is folded ([`IoState::held`]): the
/// socket's next bytes are the buffer's from `off` to `len`. A message that comes while the
/// socket's inbox is idle stays in the kernel's buffer until the socket reads it, most often
/// later in the same turn: no copy into an inbox, and the inbox stays folded. Whatever is
/// left unread when the turn ends goes to the inbox then, and the buffer back to the ring, so
/// that every buffer is the kernel's again when the ring is next entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    bid: u16,
    off: u32,
    len: u32,
}

impl Held {
    /// What `io` holds, if anything.
    fn of(io: &IoState) -> Option<Held> {
        match io.held.get() {
            0 => None,
            v => Some(Held {
                bid: (v >> 48) as u16,
                off: ((v >> 24) & 0xff_ffff) as u32,
                len: (v & 0xff_ffff) as u32,
            }),
        }
    }

    /// Make `io` hold this (`None`: nothing).
    fn set(io: &IoState, held: Option<Held>) {
        io.held.set(held.map_or(0, |h| {
            debug_assert!(h.off < h.len && h.len as usize <= BUFFER_SIZE);
            (u64::from(h.bid) << 48) | (u64::from(h.off) << 24) | u64::from(h.len)
        }));
    }
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
            no_buffers: std::cell::Cell::new(false),
            out_of_buffers: std::cell::Cell::new(false),
            spare_inboxes: RefCell::new(Vec::new()),
            holding: RefCell::new(Vec::new()),
            #[cfg(test)]
            buffers_out: std::cell::Cell::new(0),
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

    /// Stop watching the socket `io` now (see the module docs); a receive in flight is
    /// cancelled (bytes it brings meanwhile are dropped with the socket, as a close drops
    /// unread bytes).
    ///
    /// A send in flight is cancelled and waited for (see [`finish_send`](Self::finish_send)):
    /// returns the bytes it did not send.
    pub(super) fn deregister(&self, io: &IoState) -> Vec<u8> {
        let unsent = self.finish_send(io);
        self.remove(io);
        unsent
    }

    fn remove(&self, io: &IoState) {
        let slot = user_data(io.key(), io.gen);
        let mut ring = self.ring.borrow_mut();
        if receive_armed(io) {
            let _ = ring.cancel(slot | RECEIVE, slot | RECEIVE | REMOVAL);
        }
        if io.backlog.borrow().as_ref().is_some_and(|b| b.armed) {
            let _ = ring.cancel(slot | ACCEPT, slot | ACCEPT | REMOVAL);
        }
        // (A poll dropped earlier is removed again: the kernel says it is not there, or, if
        // its removal is still queued, this makes sure it leaves now.)
        let target = poll_data(io);
        // Closed now, not when the last handle goes: the connections taken ahead, and the
        // bytes received ahead (later completions find no inbox and drop theirs).
        drop(io.backlog.take());
        drop(io.inbox.take());
        io.inbox_folded.set(false);
        if let Some(h) = Held::of(io) {
            Held::set(io, None);
            self.give_back(&mut ring, h.bid);
        }
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

    /// Submit, wait up to `timeout`, and hand each socket's events to it (looked up by slot
    /// and generation: `None` when the socket is gone), calling `between` after every
    /// [`EVENT_CHUNK`](super::EVENT_CHUNK) of them (the loop runs the woken tasks there).
    /// Returns the number of events that concerned sockets.
    pub(super) fn turn(
        &self,
        timeout: Option<Duration>,
        lookup: impl Fn(usize, u32) -> Option<std::rc::Rc<IoState>>,
        prefetch: Option<impl Fn(usize)>,
        between: &mut impl FnMut(),
    ) -> io::Result<usize> {
        // Completions collected by a deregistration since the last turn come first (and then
        // the enter does not wait: there is work already).
        let mut completions = std::mem::take(&mut *self.completions.borrow_mut());
        let mut wait = if completions.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let entered = timeout.filter(|t| !t.is_zero()).map(|_| Instant::now());
        let mut submitted = None;
        let mut n = 0;
        let mut later = Later::default();
        let mut handed = 0;
        self.unhold_all(&lookup);
        loop {
            {
                let mut ring = self.ring.borrow_mut();
                ring.enter(wait)?;
                ring.take_completions(&mut completions);
            }
            // Whether the completions woke no task and asked for nothing more.
            let mut quiet = !completions.is_empty();
            for i in 0..completions.len() {
                if let Some(prefetch) = prefetch.as_ref().filter(|_| i % super::EVENT_CHUNK == 0) {
                    prefetch_chunk(&completions[i..], prefetch);
                }
                let c = completions[i];
                let ud = c.user_data;
                // The receives' and the sends' completions, the ones a round trip makes, are
                // handled here; the rest out of line, so that this loop's code stays short.
                if ud & (REMOVAL | RECEIVE) == RECEIVE {
                    quiet = false;
                    let (key, gen) = slot_of(ud);
                    let io = lookup(key, gen);
                    if self.received(io.as_deref(), &c) {
                        later.receive_again.extend(io);
                    }
                    n += 1;
                } else if ud & (REMOVAL | RECEIVE | SEND) == SEND {
                    let owner = self.ring.borrow().send_owner(ud);
                    let io = owner.and_then(|o| {
                        let (key, gen) = slot_of(o);
                        lookup(key, gen)
                    });
                    quiet &= self.sent(io.as_deref(), ud);
                    n += 1;
                } else {
                    let (woke, events) = self.other_completion(&c, &lookup, &mut later);
                    quiet &= !woke;
                    n += events;
                }
                if n != handed && n % super::EVENT_CHUNK == 0 {
                    between();
                    handed = n;
                    self.submit_if_due(&mut submitted);
                }
            }
            completions.clear();
            // Nothing woken, nothing to report: most often the sends this enter submitted,
            // done at once. Nothing is due for the turn that was not before (no task ran, so
            // no timer, task or output is new): wait on in the same turn, for what the loop
            // waits for (an echo's next request then costs one turn, not two).
            if !quiet || later.removals {
                break;
            }
            wait = match (timeout, entered) {
                (None, _) => None,
                (Some(t), Some(at)) => match t.checked_sub(at.elapsed()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break,
                },
                (Some(_), None) => break,
            };
        }
        // (Most turns have nothing left to do: skip the call.)
        if later.any() || self.out_of_buffers.get() {
            self.finish_turn(later);
        }
        // Keep the allocation, and anything a deregistration (run by a woken task's waker)
        // collected meanwhile.
        let mut slot = self.completions.borrow_mut();
        if slot.is_empty() {
            *slot = completions;
        }
        Ok(n)
    }

    /// A completion neither of a receive nor of a send: the cross-thread waker's, a removal's,
    /// an accept's, a poll's. Returns whether it woke a task (or asked for more) and how many
    /// socket events it was (0 or 1).
    #[inline(never)]
    fn other_completion(
        &self,
        c: &Completion,
        lookup: &impl Fn(usize, u32) -> Option<std::rc::Rc<IoState>>,
        later: &mut Later,
    ) -> (bool, usize) {
        match c.user_data {
            WAKE => {
                self.woken(c);
                (true, 0)
            }
            ud if ud & REMOVAL != 0 => {
                if c.result == -libc::EALREADY && ud & (RECEIVE | ACCEPT | SEND) == 0 {
                    later.removals |= self.remove_again(ud & !REMOVAL);
                }
                (false, 0)
            }
            ud if ud & ACCEPT != 0 => {
                let (key, gen) = slot_of(ud);
                let io = lookup(key, gen);
                if self.accepted(io.as_deref(), c) {
                    later.accept_again.extend(io);
                }
                (true, 1)
            }
            ud => {
                let (key, gen) = slot_of(ud);
                match lookup(key, gen) {
                    // A poll of an earlier epoch still reporting: remove it again.
                    Some(io) if ud != poll_data(&io) && c.more() => {
                        later.removals |= self.remove_again(ud);
                        (false, 0)
                    }
                    // A dropped poll's report (its removal's end, or one that came first):
                    // nothing to tell.
                    Some(io) if io.poll_off.get() || ud != poll_data(&io) => (false, 0),
                    Some(io) => (self.socket_event(&io, c), 1),
                    // A poll that should be gone and is not: remove it (again).
                    None if c.more() => {
                        later.removals |= self.remove_again(ud);
                        (false, 0)
                    }
                    None => (false, 0),
                }
            }
        }
    }

    /// The end of a turn that left something to do: receives and accepts to make again, the
    /// kernel's buffers to add to, removals to submit.
    #[inline(never)]
    fn finish_turn(&self, later: Later) {
        // Receives that ended for want of buffers, now that this turn gave them all back (and
        // the kernel got more, once per turn however many ran short).
        if self.out_of_buffers.take() {
            self.ring.borrow_mut().more_buffers();
        }
        for io in later.receive_again {
            self.receive(&io);
        }
        for io in later.accept_again {
            self.accept(&io);
        }
        if later.removals {
            // At once, as a deregistration does: the socket is closed and its peer waits.
            let _ = self.ring.borrow_mut().submit_now();
        }
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

    ///
    /// Returns whether a task was woken.
    fn socket_event(&self, io: &IoState, c: &Completion) -> bool {
        let mut woke = false;
        if c.result >= 0 {
            let mut bits = bits(c.result as u32);
            // (Also while a stopped receive's last completion is awaited: until it comes, an
            // empty inbox says `WouldBlock`, which must be waited on, not spun on.)
            let ahead = reads_on_ring(io)
                || io
                    .backlog
                    .borrow()
                    .as_ref()
                    .is_some_and(|b| !b.stopped || b.armed);
            if ahead {
                // Reads (accepts) wait on the receive's (accept's) completions, not on the
                // poll.
                bits &= !(READ | READ_CLOSED);
            }
            if io.sending() {
                // Writes wait on the send's completion.
                bits &= !WRITE;
            }
            woke = io.wake(bits);
        }
        if c.more() {
            return woke;
        }
        // The poll ended without being removed: the kernel could not post a completion (its
        // queue was full), or failed the poll. Events may have been missed: say both
        // directions are ready (an operation that finds nothing hears `WouldBlock` and waits
        // again), and poll again unless the kernel refused the poll itself.
        woke |= io.wake(READ | WRITE);
        if c.result >= 0 || c.result == -libc::ECANCELED || c.result == -libc::ENOMEM {
            let _ = self
                .ring
                .borrow_mut()
                .poll_multi(io.fd, EVENTS, poll_data(io));
        }
        woke
    }

    /// Write `data` on stream socket `io` through the ring: its bytes (up to
    /// [`SEND_MAX`](crate::sys::uring::SEND_MAX)) are copied into a send that leaves with the
    /// next enter. While a send is in flight, the ring is entered at once to finish it (a
    /// writer with more to write need not wait for the turn's end; as many kernel entries as
    /// `send(2)` calls would make), and `WouldBlock` if it is still in flight. The error of
    /// a send that failed, once.
    pub(super) fn send(&self, io: &IoState, data: &[u8]) -> io::Result<usize> {
        let owner = self.clear_to_send(io)?;
        if data.is_empty() {
            return Ok(0);
        }
        let (slot, n) = self.ring.borrow_mut().send(io.fd, owner, data)?;
        io.send.set(slot);
        Ok(n)
    }

    /// [`send`](Self::send) of `buf[from..]` without a copy: the send takes `buf` itself
    /// (its bytes before `from` are not sent) and leaves an empty buffer in its place. More
    /// than [`SEND_MAX`](crate::sys::uring::SEND_MAX) bytes (or none) are sent as `send`
    /// does, `buf` untouched. Returns how many bytes the send took.
    pub(super) fn send_owned(
        &self,
        io: &IoState,
        buf: &mut Vec<u8>,
        from: usize,
    ) -> io::Result<usize> {
        let n = buf.len().saturating_sub(from);
        if n == 0 || n > crate::sys::uring::SEND_MAX {
            return self.send(io, &buf[from.min(buf.len())..]);
        }
        let owner = self.clear_to_send(io)?;
        let slot = self.ring.borrow_mut().send_owned(io.fd, owner, buf, from)?;
        io.send.set(slot);
        Ok(n)
    }

    /// Before a send on `io`: its send in flight, if any, finished (else `WouldBlock`), and
    /// the error of one that failed taken (and returned, once). Returns the owner tag of the
    /// socket's sends.
    #[inline]
    fn clear_to_send(&self, io: &IoState) -> io::Result<u64> {
        if io.sending() && !self.finish_now(io) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match i32::from(io.send_failed.replace(0)) {
            0 => Ok(user_data(io.key(), io.gen) | SEND),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Whether `io`'s send is over, after entering the ring once to let the kernel finish it
    /// (submitted, and its retry run if the socket has room now). Other completions taken
    /// meanwhile wait for the turn.
    pub(super) fn finish_now(&self, io: &IoState) -> bool {
        let slot = io.send.get();
        {
            let mut ring = self.ring.borrow_mut();
            if ring.send_in_flight(slot) {
                if ring.submit_now().is_err() {
                    return false;
                }
                ring.take_completions(&mut self.completions.borrow_mut());
            }
        }
        self.sent(Some(io), SEND | u64::from(slot));
        !io.sending()
    }

    /// The completion of a send (user data `ud`) has come: a short one goes on; otherwise
    /// the socket is writable again (and remembers a failure for its next write or flush).
    /// A send whose socket is gone (`io` is `None`, or no longer has this send: its
    /// deregistration stopped waiting for it) is let go: its slot is freed, its bytes
    /// dropped.
    ///
    /// Returns whether that was all: nothing to report and no task woken (the socket's writer
    /// had not waited for it).
    fn sent(&self, io: Option<&IoState>, ud: u64) -> bool {
        let slot = (ud & 0xffff_ffff) as u32;
        let Some(io) = io.filter(|io| io.send.get() == slot) else {
            let _ = self.ring.borrow_mut().send_completed(slot, false);
            return true;
        };
        let outcome = self.ring.borrow_mut().send_completed(slot, true);
        let quiet = match outcome {
            None | Some(Sent::Partly) => return true,
            Some(Sent::All) => true,
            Some(Sent::Cancelled(_)) => false,
            Some(Sent::Failed(errno)) => {
                // (An errno fits in 16 bits; one that did not would still be a failure.)
                io.send_failed
                    .set(i16::try_from(errno).unwrap_or(libc::EIO as i16));
                false
            }
        };
        io.send.set(NO_SEND);
        !io.wake(WRITE) && quiet
    }

    /// Before `io` leaves the ring: cancel its send in flight, if any, and wait (at most
    /// [`SEND_CANCEL_WAIT`]) for the completion. Returns the bytes not sent, which the caller
    /// writes before anything else. (Should the completion not come in time, the ring keeps
    /// the bytes until it does, and they may still go: nothing is freed under the kernel.
    /// The slot is freed when that completion comes: see [`sent`](Self::sent).)
    fn finish_send(&self, io: &IoState) -> Vec<u8> {
        let slot = io.send.replace(NO_SEND);
        if slot == NO_SEND {
            return Vec::new();
        }
        let ud = SEND | u64::from(slot);
        let deadline = Instant::now() + SEND_CANCEL_WAIT;
        let mut ring = self.ring.borrow_mut();
        let mut asked = false;
        while ring.send_in_flight(slot) {
            if !asked {
                asked = ring.cancel(ud, ud | REMOVAL).is_ok();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || ring
                    .enter(Some(left.min(Duration::from_millis(10))))
                    .is_err()
            {
                return Vec::new();
            }
            // Other completions wait for the turn (this send's is seen by the ring).
            ring.take_completions(&mut self.completions.borrow_mut());
        }
        match ring.send_completed(slot, false) {
            Some(Sent::Cancelled(unsent)) => unsent,
            _ => Vec::new(),
        }
    }

    /// Between two chunks of a turn's events: submit what the tasks queued (sends) if the
    /// last submission is [`SUBMIT_EVERY`] old. A turn with many events (a socket whose
    /// poll reports every arrival, thousands of connections) would otherwise hold the
    /// sends of its first chunks until its end.
    /// (`submitted`: when the last submission was made, `None` before the first chunk that
    /// found sends queued: the clock starts there.)
    fn submit_if_due(&self, submitted: &mut Option<Instant>) {
        let mut ring = self.ring.borrow_mut();
        if ring.queued() == 0 {
            return;
        }
        let now = Instant::now();
        match submitted {
            None => *submitted = Some(now),
            Some(last) if now.duration_since(*last) >= SUBMIT_EVERY => {
                let _ = ring.submit_now();
                *submitted = Some(now);
            }
            Some(_) => {}
        }
    }

    /// Bytes of room held for `io`: its inbox's, a provided buffer it holds, and its send's.
    #[cfg(test)]
    pub(super) fn held_room(&self, io: &IoState) -> usize {
        let inbox = io.inbox.borrow().as_ref().map_or(0, |i| i.room());
        let held = Held::of(io).map_or(0, |_| BUFFER_SIZE);
        inbox + held + self.ring.borrow().send_room(io.send.get())
    }

    /// How many slots the ring's table of sends has.
    #[cfg(test)]
    pub(super) fn send_slots(&self) -> usize {
        self.ring.borrow().send_slots()
    }

    /// How many receive buffers the kernel was given so far.
    #[cfg(test)]
    pub(super) fn buffers_given(&self) -> u16 {
        self.ring.borrow().buffers_given()
    }

    /// Submit what is queued now (the loop hands control back to its caller).
    pub(super) fn submit(&self) {
        let _ = self.ring.borrow_mut().submit_now();
    }

    /// A read of stream socket `io` would block: receive ahead from now on (unless the
    /// buffers cannot be had: reads then go on going to the kernel).
    pub(super) fn start_receiving(&self, io: &IoState) {
        if self.no_buffers.get() || io.inbox.borrow().is_some() || io.inbox_folded.get() {
            return;
        }
        if self
            .ring
            .borrow_mut()
            .provide_buffers(BUFFERS, FIRST_BUFFERS, BUFFER_SIZE)
            .is_err()
        {
            self.no_buffers.set(true);
            return;
        }
        *io.inbox.borrow_mut() = Some(Box::new(Inbox::new()));
        // From now on the receive reports the end of the stream, after the bytes before it;
        // a hang-up the poll reported already would keep reads ready (and a read that finds
        // the inbox empty would be tried again and again instead of waiting).
        io.clear(READ_CLOSED);
        self.receive(io);
        // Reads now wait on the receive, and writes on the ring's sends: the poll would only
        // report every arrival and every send again (a completion each, which the kernel
        // makes and the loop reads for nothing). It is dropped, unless the socket is not
        // known to be writable yet (a connect under way waits on it); `parking` adds it
        // back when a task must wait on the kernel (a TLS write, which does not go through
        // the ring; reads once receiving ahead stopped).
        if receive_armed(io) && io.is_ready_bits(WRITE) && !io.poll_off.get() {
            let target = poll_data(io);
            if self
                .ring
                .borrow_mut()
                .poll_remove(target, target | REMOVAL)
                .is_ok()
            {
                io.poll_off.set(true);
            }
        }
    }

    /// A task is about to wait on `io` in `dir`. If the socket's poll was dropped and what
    /// the task waits for is not the ring's to report (the receive's bytes, a send's
    /// completion), the poll is added again, in a new epoch, from the next enter on; its
    /// first report says what is true then, so nothing that happened meanwhile is missed.
    pub(super) fn parking(&self, io: &IoState, dir: Direction) {
        if !io.poll_off.get() {
            return;
        }
        let ring_answers = match dir {
            Direction::Read => reads_on_ring(io),
            Direction::Write => io.sending(),
        };
        if ring_answers {
            return;
        }
        io.poll_epoch.set(!io.poll_epoch.get());
        let added = self
            .ring
            .borrow_mut()
            .poll_multi(io.fd, EVENTS, poll_data(io));
        match added {
            Ok(()) => io.poll_off.set(false),
            Err(_) => {
                // No room in the ring now: back to the old epoch, and the task is woken to
                // try again at the next turn rather than wait on a poll that is not there.
                io.poll_epoch.set(!io.poll_epoch.get());
                io.wake(READ | WRITE);
            }
        }
    }

    /// Put a multishot receive in flight for `io` if its inbox wants one.
    fn receive(&self, io: &IoState) {
        if io.inbox_folded.get() {
            // Its receive is in flight.
            return;
        }
        let mut slot = io.inbox.borrow_mut();
        if let Some(inbox) = slot.as_mut() {
            if inbox.wants_receive() {
                Self::arm(io, inbox, &mut self.ring.borrow_mut());
            }
        }
        self.fold(io, &mut slot);
    }

    /// `io`'s inbox, unfolded first if it was folded away (see [`fold`](Self::fold)), with
    /// the bytes of a buffer it held ([`Held`]) in it, the buffer given back.
    fn inbox<'a>(&self, io: &'a IoState, ring: &mut Ring) -> RefMut<'a, Option<Box<Inbox>>> {
        let mut slot = io.inbox.borrow_mut();
        if io.inbox_folded.replace(false) {
            let mut inbox = match self.spare_inboxes.borrow_mut().pop() {
                Some(mut spare) => {
                    *spare = Inbox::armed();
                    spare
                }
                None => Box::new(Inbox::armed()),
            };
            if let Some(h) = Held::of(io) {
                Held::set(io, None);
                inbox.give_room(ring.take_room());
                inbox.push(&ring.buffer(h.bid, h.len as usize)[h.off as usize..]);
                self.give_back(ring, h.bid);
            }
            *slot = Some(inbox);
        }
        slot
    }

    /// The turn is over: the bytes of buffers still held (their sockets did not read them)
    /// go to the sockets' inboxes, and the buffers back to the kernel, before it is entered.
    fn unhold_all(&self, lookup: &impl Fn(usize, u32) -> Option<std::rc::Rc<IoState>>) {
        let mut holding = std::mem::take(&mut *self.holding.borrow_mut());
        if holding.is_empty() {
            return;
        }
        for (key, gen) in holding.drain(..) {
            let Some(io) = lookup(key, gen) else { continue };
            if io.inbox_folded.get() && io.held.get() != 0 {
                drop(self.inbox(&io, &mut self.ring.borrow_mut()));
            }
        }
        *self.holding.borrow_mut() = holding;
    }

    /// Give provided buffer `bid` back to the kernel.
    fn give_back(&self, ring: &mut Ring, bid: u16) {
        ring.recycle(bid);
        #[cfg(test)]
        self.buffers_out.set(self.buffers_out.get() - 1);
    }

    /// Provided buffers filled by the kernel and not given back yet.
    #[cfg(test)]
    pub(super) fn buffers_out(&self) -> usize {
        self.buffers_out.get()
    }

    /// A read from the buffer `io` holds, if it holds one (see [`Held`]).
    fn read_held(&self, io: &IoState, buf: &mut [u8], peek: bool) -> Option<usize> {
        let h = Held::of(io)?;
        let mut ring = self.ring.borrow_mut();
        let bytes = &ring.buffer(h.bid, h.len as usize)[h.off as usize..];
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        if !peek {
            // (`n` is at most a buffer's size.)
            let off = h.off + n as u32;
            if off == h.len {
                Held::set(io, None);
                self.give_back(&mut ring, h.bid);
            } else {
                Held::set(io, Some(Held { off, ..h }));
            }
        }
        Some(n)
    }

    /// Fold `io`'s inbox away if it is idle ([`Inbox::is_idle`]: its receive in flight,
    /// nothing held): the flag `inbox_folded` stands for it, and its block goes to a short
    /// spare list for the next inbox that unfolds (when bytes come). An idle connection so
    /// holds no inbox of its own, and the inboxes of busy ones are a few blocks in cache.
    fn fold(&self, io: &IoState, slot: &mut Option<Box<Inbox>>) {
        if !slot.as_ref().is_some_and(|i| i.is_idle()) {
            return;
        }
        let Some(inbox) = slot.take() else { return };
        io.inbox_folded.set(true);
        let mut spare = self.spare_inboxes.borrow_mut();
        if spare.len() < SPARE_INBOXES {
            spare.push(inbox);
        }
    }

    /// Put `io`'s multishot receive in flight (its inbox wants one), unless it is closed.
    fn arm(io: &IoState, inbox: &mut Inbox, ring: &mut Ring) {
        let ud = user_data(io.key(), io.gen) | RECEIVE;
        if !io.is_closed() && ring.recv_multi(io.fd, ud).is_ok() {
            inbox.armed = true;
        }
    }

    /// A read (or with `peek`, a look) of stream socket `io`, from its inbox: `None` when the
    /// kernel must answer (no inbox, or receiving ahead has stopped and the inbox is empty).
    pub(super) fn read(
        &self,
        io: &IoState,
        buf: &mut [u8],
        peek: bool,
    ) -> Option<io::Result<usize>> {
        if io.inbox_folded.get() {
            // A buffer held for it, else what an idle inbox answers: its receive is awaited.
            return Some(
                self.read_held(io, buf, peek)
                    .ok_or_else(|| io::ErrorKind::WouldBlock.into()),
            );
        }
        let mut slot = io.inbox.borrow_mut();
        let inbox = slot.as_mut()?;
        let r = inbox.read(buf, peek);
        if !peek {
            // Read empty: its room waits in the ring for the next bytes (of any socket); and
            // read down below the bound, receiving ahead resumes.
            let room = inbox.take_room();
            let wants = inbox.wants_receive();
            if room.is_some() || wants {
                let mut ring = self.ring.borrow_mut();
                if let Some(room) = room {
                    ring.put_room(room);
                }
                if wants {
                    Self::arm(io, inbox, &mut ring);
                }
            }
            self.fold(io, &mut slot);
        }
        r
    }

    /// Stop receiving ahead on `io` for good (it is being taken out of the loop): cancel its
    /// receive and take what that receive brought. Returns whether no received byte waits
    /// in the inbox (none would be lost if reads went to the kernel now).
    pub(super) fn stop_receiving(&self, io: &IoState) -> bool {
        if io.backlog.borrow().is_some() {
            return self.stop_accepting(io);
        }
        let ud = user_data(io.key(), io.gen) | RECEIVE;
        {
            let mut inbox = self.inbox(io, &mut self.ring.borrow_mut());
            let Some(inbox) = inbox.as_mut() else {
                return true;
            };
            inbox.stopped = true;
        }
        // (Stopped, it is never folded again.)
        self.cancel_now(
            ud,
            || receive_armed(io),
            |c| {
                self.received(Some(io), c);
            },
        );
        io.inbox
            .borrow()
            .as_ref()
            .is_none_or(|i| i.len() == 0 && !i.armed)
    }

    /// [`stop_receiving`](Self::stop_receiving) for a listener.
    fn stop_accepting(&self, io: &IoState) -> bool {
        let ud = user_data(io.key(), io.gen) | ACCEPT;
        if let Some(b) = io.backlog.borrow_mut().as_mut() {
            b.stopped = true;
        }
        let armed = || io.backlog.borrow().as_ref().is_some_and(|b| b.armed);
        self.cancel_now(ud, armed, |c| {
            self.accepted(Some(io), c);
        });
        io.backlog
            .borrow()
            .as_ref()
            .is_none_or(|b| b.len() == 0 && !b.armed)
    }

    /// Cancel request `ud` and handle its completions (`own`) at once, while `armed` says it
    /// is in flight (a few tries: the kernel may be finishing a completion).
    fn cancel_now(&self, ud: u64, armed: impl Fn() -> bool, mut own: impl FnMut(&Completion)) {
        for _ in 0..REMOVAL_TRIES {
            if !armed() {
                break;
            }
            let mine = {
                let mut ring = self.ring.borrow_mut();
                if ring.cancel(ud, ud | REMOVAL).is_err() || ring.submit_now().is_err() {
                    break;
                }
                let mut stash = self.completions.borrow_mut();
                ring.take_completions(&mut stash);
                // This request's completions are taken now; the others wait for the turn.
                let mine: Vec<Completion> = stash
                    .iter()
                    .filter(|c| c.user_data == ud)
                    .copied()
                    .collect();
                stash.retain(|c| c.user_data != ud);
                mine
            };
            for c in &mine {
                own(c);
            }
        }
    }

    /// An accept on listener `io` would block: accept ahead from now on.
    pub(super) fn start_accepting(&self, io: &IoState) {
        {
            let mut backlog = io.backlog.borrow_mut();
            if backlog.is_none() {
                *backlog = Some(Box::default());
            }
        }
        self.accept(io);
    }

    /// Put a multishot accept in flight for listener `io` if its backlog wants one.
    fn accept(&self, io: &IoState) {
        let mut backlog = io.backlog.borrow_mut();
        let Some(backlog) = backlog.as_mut().filter(|b| b.wants_accept()) else {
            return;
        };
        if io.is_closed() {
            return;
        }
        let ud = user_data(io.key(), io.gen) | ACCEPT;
        if self.ring.borrow_mut().accept_multi(io.fd, ud).is_ok() {
            backlog.armed = true;
        }
    }

    /// A connection listener `io` accepted ahead: `None` when the kernel must answer.
    pub(super) fn take_accepted(&self, io: &IoState) -> Option<io::Result<std::os::fd::OwnedFd>> {
        let r = io.backlog.borrow_mut().as_mut()?.take();
        self.accept(io);
        r
    }

    /// A completion of listener `io`'s multishot accept (`None`: the listener is gone, and
    /// the new connection is closed at once: no descriptor leaks). Returns whether the accept
    /// ended while the backlog wants one (made again at the end of the turn).
    fn accepted(&self, io: Option<&IoState>, c: &Completion) -> bool {
        let fd = (c.result >= 0).then(|| crate::sys::uring::accepted(c.result));
        let mut slot = io.map(|io| io.backlog.borrow_mut());
        let Some(backlog) = slot.as_mut().and_then(|b| b.as_mut()) else {
            drop(fd);
            if c.more() {
                let _ = self
                    .ring
                    .borrow_mut()
                    .cancel(c.user_data, c.user_data | REMOVAL);
            }
            return false;
        };
        match fd {
            Some(fd) => backlog.push(fd),
            None if c.result == -libc::ECANCELED => {}
            None => backlog.error = Some(-c.result),
        }
        if !c.more() {
            backlog.armed = false;
            backlog.cancelling = false;
        }
        if backlog.too_full() {
            let _ = self
                .ring
                .borrow_mut()
                .cancel(c.user_data, c.user_data | REMOVAL);
            backlog.cancelling = true;
        }
        let again = !backlog.armed && backlog.wants_accept();
        // (Stopped and ended: the kernel answers accepts from now on; let them try it.)
        let woken =
            backlog.len() > 0 || backlog.error.is_some() || (backlog.stopped && !backlog.armed);
        drop(slot);
        if let Some(io) = io.filter(|_| woken) {
            io.wake(READ);
        }
        again
    }

    /// A completion of `io`'s multishot receive (`None`: the socket is gone): its bytes go to
    /// the inbox, the buffer back to the kernel, readers are woken. Returns whether the
    /// receive ended short of the stream's end while the inbox wants bytes (out of buffers,
    /// or cancelled when full and read down since): it is made again at the end of the turn,
    /// once this turn's buffers are all back.
    fn received(&self, io: Option<&IoState>, c: &Completion) -> bool {
        #[cfg(test)]
        if c.buffer().is_some() {
            self.buffers_out.set(self.buffers_out.get() + 1);
        }
        let mut ring = self.ring.borrow_mut();
        if let (Some(io), Some(bid)) = (io, c.buffer()) {
            // Bytes for an idle inbox, the receive going on: the socket holds the buffer.
            if io.inbox_folded.get() && io.held.get() == 0 && c.result > 0 && c.more() {
                let len = c.result as u32;
                Held::set(io, Some(Held { bid, off: 0, len }));
                self.holding.borrow_mut().push((io.key(), io.gen));
                drop(ring);
                io.wake(READ);
                return false;
            }
        }
        let mut slot = io.map(|io| self.inbox(io, &mut ring));
        let Some(inbox) = slot.as_mut().and_then(|i| i.as_mut()) else {
            if let Some(bid) = c.buffer() {
                self.give_back(&mut ring, bid);
            }
            // A receive of a socket that is gone: make sure it ends.
            if c.more() {
                let _ = ring.cancel(c.user_data, c.user_data | REMOVAL);
            }
            return false;
        };
        let mut bits = 0;
        if let Some(bid) = c.buffer() {
            let len = usize::try_from(c.result).unwrap_or(0);
            if inbox.has_no_room() {
                inbox.give_room(ring.take_room());
            }
            inbox.push(ring.buffer(bid, len));
            self.give_back(&mut ring, bid);
            bits |= READ;
        }
        match c.result {
            0 => inbox.end = End::Eof,
            r if r < 0 => match -r {
                libc::ENOBUFS => self.out_of_buffers.set(true),
                libc::ECANCELED => {}
                errno => inbox.end = End::Failed(errno),
            },
            _ => {}
        }
        if !c.more() {
            inbox.armed = false;
            inbox.cancelling = false;
        }
        if inbox.end != End::Open {
            bits |= READ | READ_CLOSED;
        }
        if inbox.stopped && !inbox.armed {
            // The kernel answers reads from now on (after the bytes here): let them try it,
            // as the poll's events were not heeded meanwhile.
            bits |= READ;
        }
        if inbox.too_full() {
            let _ = ring.cancel(c.user_data, c.user_data | REMOVAL);
            inbox.cancelling = true;
        }
        // Ended without reaching the end (out of buffers, cancelled when full and read down
        // since, or the kernel's own reasons): the bytes still queued in the kernel are
        // received by the next one.
        let again = !inbox.armed && inbox.wants_receive();
        if let (Some(io), Some(slot)) = (io, slot.as_mut()) {
            self.fold(io, slot);
        }
        // Wake outside the borrows: a woken waker may run code that reads the socket.
        drop(slot);
        drop(ring);
        if let Some(io) = io.filter(|_| bits != 0) {
            io.wake(bits);
        }
        again
    }
}

/// What a turn leaves for its end (see [`Uring::finish_turn`]).
#[derive(Default)]
struct Later {
    /// Sockets whose receive ended short of the stream's end: made again.
    receive_again: Vec<std::rc::Rc<IoState>>,
    /// Listeners whose accept ended: made again.
    accept_again: Vec<std::rc::Rc<IoState>>,
    /// Removals were queued: submitted at once.
    removals: bool,
}

impl Later {
    fn any(&self) -> bool {
        self.removals || !self.receive_again.is_empty() || !self.accept_again.is_empty()
    }
}

/// Prefetch the state of the sockets of the next [`EVENT_CHUNK`](super::EVENT_CHUNK) of
/// `completions` (see `Driver::turn`).
#[inline(never)]
fn prefetch_chunk(completions: &[Completion], prefetch: &impl Fn(usize)) {
    for c in completions.iter().take(super::EVENT_CHUNK) {
        if c.user_data & (REMOVAL | SEND) == 0 && c.user_data != WAKE {
            prefetch(slot_of(c.user_data).0);
        }
    }
}

/// Whether `io`'s multishot receive is in flight.
fn receive_armed(io: &IoState) -> bool {
    io.inbox_folded.get() || io.inbox.borrow().as_ref().is_some_and(|i| i.armed)
}

/// Whether `io`'s reads wait on the ring rather than on the poll: it receives ahead, or its
/// receive was stopped and its last completion is still awaited (until then an empty inbox
/// says `WouldBlock`, which must be waited on, not spun on).
fn reads_on_ring(io: &IoState) -> bool {
    io.inbox_folded.get()
        || io
            .inbox
            .borrow()
            .as_ref()
            .is_some_and(|i| !i.stopped || i.armed)
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
