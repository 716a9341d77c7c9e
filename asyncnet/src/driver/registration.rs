//! A socket's place in the poller, and the one seam every socket operation goes through.
//!
//! The seam owns "try the operation, retry `EINTR`, on `WouldBlock` clear readiness and park,
//! wake": [`Registration::poll_io`] waits, [`Registration::try_io`] does not. The caller says
//! only *what* to do (a closure that makes one system call); nothing outside this file reads
//! or changes readiness.
//!
//! ```text
//!  poll_io(dir, op) ── ready(dir)? ──no──> park the task in waiters(dir) ──> Pending
//!                          │yes
//!                          op() ── Ok / Err ───────────────────────────────> Ready
//!                           ├── Interrupted ──> op() again
//!                           └── WouldBlock ──> clear(dir), park ──────────> Pending
//!  Driver::turn ── event(token) ──> set(dir), wake every waiter of dir
//! ```
#![forbid(unsafe_code)]

use std::cell::{Cell, OnceCell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use socket2::Socket;

use super::deadline::Deadlines;
use super::Driver;
use crate::sys::RawSocket;

/// A direction of readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    fn bit(self) -> u8 {
        match self {
            Direction::Read => READ,
            Direction::Write => WRITE,
        }
    }
}

pub(super) const READ: u8 = 1;
pub(super) const WRITE: u8 = 2;
/// The peer will send nothing more (an event said so); kept until the socket closes.
pub(super) const READ_CLOSED: u8 = 4;

/// Per-socket readiness and the tasks waiting on it, shared by the socket's [`Registration`]
/// and the driver's table (which sets it when events come).
///
/// Invariant: `ready` holds a direction's bit from the moment an event reports it (or the
/// socket is registered: the first operation is tried before anyone waits) until an
/// operation in that direction returns `WouldBlock` (or a stream read returns short, which
/// says the same without the extra system call); every task in `readers`/`writers` is woken
/// (and removed) whenever that bit is set or the socket closes.
#[derive(Debug)]
// Laid out by hand, what every operation looks at first: the readiness bits and flags, the
// deadlines' word and the readers, in the first 48 bytes (with the `Rc`'s counts, one or two
// cache lines whatever the block's alignment). When thousands of connections take turns,
// each line touched is a miss.
#[repr(C)]
pub(super) struct IoState {
    /// `READ`, `WRITE`, `READ_CLOSED` bits.
    ready: Cell<u8>,
    /// Deregistered: every operation fails from now on.
    closed: Cell<bool>,
    /// A connect finished after a hang-up was reported: the next short read does not clear
    /// read readiness (see [`Registration::connect_finished`]).
    unsure: Cell<bool>,
    /// io_uring: the inbox is folded away (`inbox` is `None`): it is in the state
    /// `Inbox::armed` makes, a receive in flight and nothing held, kept as this flag rather
    /// than a block of its own, so that an idle connection holds no inbox (`uring.rs`).
    #[cfg(uring)]
    pub(super) inbox_folded: Cell<bool>,
    /// io_uring: the socket's poll was dropped, the ring answering its reads and writes
    /// (`uring.rs`); it is added again when a task must wait on the kernel.
    #[cfg(uring)]
    pub(super) poll_off: Cell<bool>,
    /// io_uring: flipped each time the poll is added again, and carried in its user data,
    /// so that a late completion of the dropped poll is told from the new one's.
    #[cfg(uring)]
    pub(super) poll_epoch: Cell<bool>,
    /// io_uring: the errno of a send on the ring that failed, until an operation reports it
    /// (0: none).
    #[cfg(uring)]
    pub(super) send_failed: Cell<i16>,
    /// Read and write deadlines (`deadline.rs`), made when one is first set.
    pub(super) deadlines: OnceCell<Box<Deadlines>>,
    readers: RefCell<Waiters>,
    /// The socket's slot in the driver's table (32 bits, as in a completion's user data;
    /// see [`key`](IoState::key)).
    key: u32,
    /// The slot's generation: completions of an io_uring poll name both (`uring.rs`).
    #[cfg_attr(not(uring), allow(dead_code))]
    pub(super) gen: u32,
    /// The descriptor (for the io_uring poller, which polls it again if a poll ends).
    #[cfg_attr(not(uring), allow(dead_code))]
    pub(super) fd: RawSocket,
    /// io_uring: the slot of the socket's send on the ring, while one is in flight (the
    /// socket counts as not writable until its completion comes); [`NO_SEND`] otherwise.
    #[cfg(uring)]
    pub(super) send: Cell<u32>,
    /// io_uring, while the inbox is folded: a provided buffer whose bytes are the socket's
    /// next ones, held for the socket's read rather than copied into an inbox (`uring.rs`;
    /// 0: none).
    #[cfg(uring)]
    pub(super) held: Cell<u64>,
    /// io_uring: the bytes received ahead of the socket's reads (`inbox.rs`), once it
    /// receives ahead.
    #[cfg(uring)]
    pub(super) inbox: RefCell<Option<Box<super::inbox::Inbox>>>,
    writers: RefCell<Waiters>,
    /// io_uring: the connections a listener accepted ahead of its accepts (`backlog.rs`),
    /// once it accepts ahead.
    #[cfg(uring)]
    pub(super) backlog: RefCell<Option<Box<super::backlog::Backlog>>>,
    /// Windows: the socket's place in mio's poller, told to report again whenever readiness
    /// is cleared (mio's Windows backend reports each readiness once until told so).
    #[cfg(windows)]
    pub(super) source: crate::sys::PollSource,
}

/// [`IoState::send`] when no send of the socket's is on the ring.
#[cfg(uring)]
pub(super) const NO_SEND: u32 = u32::MAX;

impl IoState {
    /// io_uring: a send of the socket's is on the ring.
    #[cfg(uring)]
    #[inline]
    pub(super) fn sending(&self) -> bool {
        self.send.get() != NO_SEND
    }

    /// The state of the socket in slot `key` (below 2^32: see [`Driver::register`]).
    pub(super) fn new(key: usize, gen: u32, fd: RawSocket) -> IoState {
        IoState {
            key: key as u32,
            gen,
            fd,
            // Optimistic: the first operation tries the system call before waiting.
            ready: Cell::new(READ | WRITE),
            closed: Cell::new(false),
            unsure: Cell::new(false),
            readers: RefCell::new(Waiters::default()),
            writers: RefCell::new(Waiters::default()),
            deadlines: OnceCell::new(),
            #[cfg(uring)]
            inbox: RefCell::new(None),
            #[cfg(uring)]
            inbox_folded: Cell::new(false),
            #[cfg(uring)]
            backlog: RefCell::new(None),
            #[cfg(uring)]
            send: Cell::new(NO_SEND),
            #[cfg(uring)]
            send_failed: Cell::new(0),
            #[cfg(uring)]
            held: Cell::new(0),
            #[cfg(uring)]
            poll_off: Cell::new(false),
            #[cfg(uring)]
            poll_epoch: Cell::new(false),
            #[cfg(windows)]
            source: crate::sys::PollSource::default(),
        }
    }

    /// The socket's slot in the driver's table.
    #[inline]
    pub(super) fn key(&self) -> usize {
        self.key as usize
    }

    /// Deregistered.
    #[cfg_attr(not(uring), allow(dead_code))]
    pub(super) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Wake every task waiting in `dir`, readiness unchanged.
    pub(super) fn wake_waiters(&self, dir: Direction) {
        wake_all(self.waiters(dir));
    }

    /// Ready in `dir`: an event said so and nothing has consumed it. Once the peer has shut
    /// down its side, reads stay ready for good: the data and the hang-up can come in one
    /// event, and after a short read consumed the data the end of the stream must still be
    /// read (no new edge will announce it).
    #[inline]
    fn is_ready(&self, dir: Direction) -> bool {
        let r = self.ready.get();
        r & dir.bit() != 0 || (dir == Direction::Read && r & READ_CLOSED != 0)
    }

    #[inline]
    pub(super) fn clear(&self, bits: u8) {
        self.ready.set(self.ready.get() & !bits);
        #[cfg(windows)]
        if bits & (READ | WRITE) != 0 {
            self.source.rearm();
        }
    }

    #[inline]
    fn waiters(&self, dir: Direction) -> &RefCell<Waiters> {
        match dir {
            Direction::Read => &self.readers,
            Direction::Write => &self.writers,
        }
    }

    /// Whether every bit of `bits` is set in the readiness.
    #[cfg(uring)]
    pub(super) fn is_ready_bits(&self, bits: u8) -> bool {
        self.ready.get() & bits == bits
    }

    /// An event: set `bits` and wake the waiters of the directions they concern; whether a
    /// task was woken.
    /// A direction that was ready already has no waiter (a task parks only while its bit is
    /// clear, and setting the bit wakes every waiter), so its list is left untouched: an echo
    /// whose writes never block is reported writable on every event, and looking at the
    /// empty list would cost a cache line per event.
    pub(super) fn wake(&self, bits: u8) -> bool {
        let was = self.ready.get();
        self.ready.set(was | bits);
        let newly = bits & !was;
        let mut woke = false;
        if newly & READ != 0 {
            woke |= wake_all(&self.readers);
        }
        if newly & WRITE != 0 {
            woke |= wake_all(&self.writers);
        }
        woke
    }

    /// Deregistered: fail every waiter from now on. Returns false if it already was.
    pub(super) fn close(&self) -> bool {
        if self.closed.replace(true) {
            return false;
        }
        wake_all(&self.readers);
        wake_all(&self.writers);
        true
    }
}

/// The tasks waiting on one direction of a socket. Almost always one: it is kept inline, so
/// that waiting costs no allocation; more go to a list.
///
/// A future dropped while it waits (a read under `with_timeout`, a cancelled `select`) leaves
/// its waker here: nothing tells the list, and a waker cannot say whether its task still
/// waits. Such wakers are shed without scanning. A task adds its waker without looking
/// through the list (only the last entry is compared, which catches a task polled twice in a
/// row), and once the list is `limit` long every waiter is woken (a spurious wake: a task
/// that still waits is polled and waits again, a finished one is gone) and the list starts
/// over with the newcomer.
///
/// ```text
///  add ── first empty? ──yes──> first = waker                      (one waiter: no allocation)
///          │no
///          same as first or as the last of more? ──yes──> nothing
///          │no
///          a probe coming back? ──yes──> limit = 2 × the probe's list length
///          more.len() == limit? ──yes──> wake all (keep the oldest as a probe), list = [waker]
///          │no
///          more.push(waker)
///  event ── wake all, limit halves (not below MIN_LIMIT), probes forgotten
/// ```
///
/// The limit adapts to the tasks that really wait: a woken waiter that comes back (a probe)
/// proves that the list held live waiters, so the limit doubles past them and a herd of live
/// waiters (many tasks sending on one slow socket) settles instead of waking itself for ever;
/// wakers of finished tasks never come back, so on a quiet socket with many dropped waits the
/// list stays within [`MIN_LIMIT`]. A list of `n` entries is woken only after `n` additions
/// since it was last emptied, so waiting costs O(1) per poll, amortized. (The one case this
/// misjudges: all [`MAX_PROBES`] probes are wakers of finished tasks while more live tasks
/// than the limit wait; those are then woken once per `limit` additions until the socket's
/// next event. Extra polls, never a lost wake.)
#[derive(Debug, Default)]
struct Waiters {
    /// The first waiter (on a socket with one reader, the only one).
    first: Option<Waker>,
    /// The others, allocated the first time a second task waits and kept after.
    rest: Option<Box<Rest>>,
}

/// The waiters after the first, and what sheds the wakers of dropped futures.
#[derive(Debug, Default)]
struct Rest {
    more: Vec<Waker>,
    /// `more`'s length that wakes everyone; below [`MIN_LIMIT`] (0 at first) counts as it.
    limit: usize,
    /// Oldest waiters of lists that were woken to start over, with the list's length then;
    /// at most [`MAX_PROBES`], forgotten at the next event.
    probes: Vec<(Waker, usize)>,
}

/// The smallest length of [`Rest::more`] that wakes every waiter to shed stale wakers.
const MIN_LIMIT: usize = 64;

/// How many probes a list watches for at once.
const MAX_PROBES: usize = 8;

impl Waiters {
    /// Add `waker` to a list that already has a first waiter; returns the wakers to wake
    /// (outside the list's borrow) when the list was full and started over.
    fn add_more(&mut self, waker: &Waker) -> Option<(Option<Waker>, Vec<Waker>)> {
        let rest = self.rest.get_or_insert_with(Box::default);
        if rest.more.last().is_some_and(|w| w.will_wake(waker)) {
            return None;
        }
        if let Some(i) = rest.probes.iter().position(|(w, _)| w.will_wake(waker)) {
            let (_, len) = rest.probes.swap_remove(i);
            rest.limit = rest.limit.max(len.saturating_mul(2));
        }
        let limit = rest.limit.max(MIN_LIMIT);
        if rest.more.len() < limit {
            rest.more.push(waker.clone());
            return None;
        }
        let oldest = self.first.replace(waker.clone());
        if let Some(oldest) = &oldest {
            if rest.probes.len() < MAX_PROBES {
                rest.probes.push((oldest.clone(), limit));
            }
        }
        Some((oldest, std::mem::take(&mut rest.more)))
    }

    /// How many wakers the list holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |r| r.more.len())
    }
}

impl Rest {
    /// An event woke the list: take the waiters out; the limit halves, the probes are
    /// forgotten.
    fn on_event(&mut self) -> Vec<Waker> {
        self.limit /= 2;
        self.probes.clear();
        std::mem::take(&mut self.more)
    }
}

/// Park the current task in `list`.
#[inline]
fn park(list: &RefCell<Waiters>, waker: &Waker) {
    let mut l = list.borrow_mut();
    match &l.first {
        None => l.first = Some(waker.clone()),
        Some(w) if w.will_wake(waker) => {}
        Some(_) => {
            drop(l);
            park_more(list, waker);
        }
    }
}

#[cold]
fn park_more(list: &RefCell<Waiters>, waker: &Waker) {
    // Wake outside the borrow: a woken waker may run code that registers again.
    let full = list.borrow_mut().add_more(waker);
    if let Some((first, more)) = full {
        if let Some(w) = first {
            w.wake();
        }
        wake_each(more);
    }
}

/// Wake every waiter of `list`; whether there was one.
fn wake_all(list: &RefCell<Waiters>) -> bool {
    // Take the wakers out first: a woken waker may run code that registers again.
    let (first, more) = {
        let mut l = list.borrow_mut();
        let Some(first) = l.first.take() else {
            return false;
        };
        (first, l.rest.as_mut().map(|r| r.on_event()))
    };
    first.wake();
    if let Some(more) = more {
        wake_each(more);
    }
    true
}

#[cold]
fn wake_each(more: Vec<Waker>) {
    for w in more {
        w.wake();
    }
}

/// The fewest bytes a write hands its buffer over for, rather than a copy
/// ([`Registration::send_stream_buf`]): below a page a copy costs less than exchanging
/// buffers.
pub(crate) const HANDOVER_MIN: usize = 4096;

/// One socket registered with this thread's driver, edge-triggered, for both directions.
///
/// Every operation on the socket goes through [`poll_io`](Registration::poll_io) or
/// [`try_io`](Registration::try_io). Dropping the registration does not deregister: call
/// [`deregister`](Registration::deregister) before the descriptor is closed.
#[derive(Debug)]
pub(crate) struct Registration {
    driver: Rc<Driver>,
    state: Rc<IoState>,
}

impl Registration {
    /// Register `fd` with this thread's driver (any socket: domain, type and protocol do not
    /// matter).
    pub(crate) fn new(driver: &Rc<Driver>, fd: RawSocket) -> io::Result<Registration> {
        let state = driver.register(fd)?;
        Ok(Registration {
            driver: driver.clone(),
            state,
        })
    }

    /// Name the state that the socket's owner reads first when its task runs: an event
    /// fetches those lines into the cache together with the socket's readiness, for a whole
    /// batch of events at once, before their tasks run one after another. A hint only: any
    /// address is harmless.
    pub(crate) fn set_hint(&self, hint: crate::sys::Lines) {
        self.driver.set_hint(&self.state, hint);
    }

    /// The driver the socket is registered with.
    pub(crate) fn driver(&self) -> &Rc<Driver> {
        &self.driver
    }

    /// Run `op` (one system call) once the socket is ready in `dir`, parking the task until
    /// it is. `EINTR` is retried; `WouldBlock` clears readiness and parks. Fails once the
    /// socket is closed, and instead of parking where the loop is not running (nothing would
    /// wake the task: it is polled by another runtime).
    #[inline]
    pub(crate) fn poll_io<T>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        op: impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.poll_io_draining(dir, cx, op, |_| false)
    }

    /// [`poll_io`](Registration::poll_io) for a stream read of up to `len` bytes: a read that
    /// returns fewer (but some) has drained the kernel's queue for now, so read readiness is
    /// cleared without a second system call to hear `WouldBlock`.
    #[inline]
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        self.poll_io_draining(Direction::Read, cx, op, |&n| n > 0 && n < len)
    }

    /// The seam's loop; `drained` says whether a result consumed the readiness.
    #[inline]
    fn poll_io_draining<T>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut() -> io::Result<T>,
        drained: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        let state = &*self.state;
        loop {
            if state.closed.get() {
                return Poll::Ready(Err(crate::error::closed()));
            }
            if !state.is_ready(dir) {
                if !self.driver.is_driven() {
                    return Poll::Ready(Err(crate::error::not_driven()));
                }
                if let Some(d) = state.deadlines.get() {
                    if let Err(e) = d.check(&self.driver.deadlines, &self.state, dir) {
                        return Poll::Ready(Err(e));
                    }
                }
                self.driver.parking(state, dir);
                park(state.waiters(dir), cx.waker());
                return Poll::Pending;
            }
            match op() {
                Ok(v) => {
                    // (A read after a connect saw a hang-up does not trust a short read.)
                    if drained(&v) && !(dir == Direction::Read && state.unsure.replace(false)) {
                        state.clear(dir.bit());
                    }
                    return Poll::Ready(Ok(v));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    state.clear(dir.bit());
                    if dir == Direction::Read {
                        state.unsure.set(false);
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Ready in `dir`, or park the task until an event says it is (the operation itself
    /// is then tried with [`try_io`](Registration::try_io)). Fails once the socket is closed.
    #[inline]
    pub(crate) fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_io(dir, cx, || Ok(()))
    }

    /// Run `op` once if the socket is ready in `dir`, without waiting: `WouldBlock` when it is
    /// not (or `op` says so, which clears readiness). `EINTR` is retried.
    #[inline]
    pub(crate) fn try_io<T>(
        &self,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        let state = &*self.state;
        if state.closed.get() {
            return Err(crate::error::closed());
        }
        loop {
            if !state.is_ready(dir) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    state.clear(dir.bit());
                    return Err(e);
                }
                r => return r,
            }
        }
    }

    /// Read from stream socket `socket` (its registration is this one): what the driver
    /// received ahead first, else the kernel. The operation of [`poll_read`](Self::poll_read)
    /// and of TLS's record reads: every stream read goes through here, so that none can
    /// overtake bytes the driver holds.
    #[inline]
    pub(crate) fn recv_stream(&self, socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(r) = self.driver.read_received(&self.state, buf, false) {
            return r;
        }
        let r = (&mut &*socket).read(buf);
        // The kernel's queue is empty now (it said so, or a read took less than it asked
        // for): receive ahead from here on, where the driver can.
        match &r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.driver.start_receiving(&self.state)
            }
            Ok(n) if *n > 0 && *n < buf.len() => self.driver.start_receiving(&self.state),
            _ => {}
        }
        r
    }

    /// Look at stream socket `socket`'s next bytes without taking them (as
    /// [`recv_stream`](Self::recv_stream) would read them).
    pub(crate) fn peek_stream(&self, socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(r) = self.driver.read_received(&self.state, buf, true) {
            return r;
        }
        let r = crate::sys::peek(socket, buf);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.driver.start_receiving(&self.state);
        }
        r
    }

    /// Accept a connection on listener `socket` (its registration is this one): one the
    /// driver accepted ahead first, else the kernel's. The operation of a listener's
    /// [`poll_io`](Self::poll_io) for reading.
    pub(crate) fn accept(&self, socket: &Socket) -> io::Result<(Socket, socket2::SockAddr)> {
        #[cfg(uring)]
        if let Some(r) = self.driver.accepted_ahead(&self.state) {
            let socket = Socket::from(r?);
            let addr = match socket.peer_addr() {
                Ok(addr) => addr,
                // Reset before we took it: as accept(2) would say of it.
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                    return Err(io::Error::from_raw_os_error(libc::ECONNABORTED))
                }
                Err(e) => return Err(e),
            };
            return Ok((socket, addr));
        }
        let r = crate::sys::accept(socket);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.driver.start_accepting(&self.state);
        }
        r
    }

    /// Stop receiving (or accepting) ahead for good (the descriptor is about to leave the
    /// loop). Returns whether nothing received or accepted ahead waits in the driver (if
    /// something does, taking the descriptor out would lose it).
    pub(crate) fn stop_receiving(&self) -> bool {
        self.driver.stop_receiving(&self.state)
    }

    /// Whether the socket's io_uring poll is dropped now (the ring answers its reads and
    /// writes).
    #[cfg(all(test, uring))]
    pub(crate) fn poll_dropped(&self) -> bool {
        self.state.poll_off.get()
    }

    /// Bytes of room the driver holds for this socket (io_uring: its inbox's and its send's;
    /// the poll driver holds none).
    #[cfg(test)]
    pub(crate) fn held_room(&self) -> usize {
        self.driver.held_room(&self.state)
    }

    /// Whether the socket has an inbox block of its own (io_uring; an idle one is folded
    /// away).
    #[cfg(test)]
    pub(crate) fn holds_inbox(&self) -> bool {
        #[cfg(uring)]
        return self.state.inbox.borrow().is_some();
        #[cfg(not(uring))]
        false
    }

    /// Whether the socket holds a provided buffer of the ring's, its bytes unread (io_uring,
    /// while its inbox is folded away).
    #[cfg(test)]
    pub(crate) fn holds_buffer(&self) -> bool {
        #[cfg(uring)]
        return self.state.held.get() != 0;
        #[cfg(not(uring))]
        false
    }

    /// The socket's slot in the driver's table.
    #[cfg(test)]
    pub(crate) fn key(&self) -> usize {
        self.state.key()
    }

    /// How many wakers wait in `dir` (the wakers of dropped futures included).
    #[cfg(test)]
    pub(crate) fn waiting(&self, dir: Direction) -> usize {
        self.state.waiters(dir).borrow().len()
    }

    /// Whether an operation in `dir` would wait rather than be tried now.
    #[cfg(test)]
    fn would_wait(&self, dir: Direction) -> bool {
        !self.state.closed.get() && !self.state.is_ready(dir)
    }

    /// A `connect(2)` is under way: forget what the socket reported before it (an
    /// unconnected socket reports a hang-up, and may look writable), so that
    /// [`poll_io`](Registration::poll_io) waits for the connect's own event.
    pub(crate) fn connect_started(&self) {
        self.state.clear(WRITE | READ_CLOSED);
    }

    /// The connect completed (or failed). A hang-up reported meanwhile may be the
    /// unconnected socket's (it polls as hung up, and that event can come after the connect
    /// started) or the new peer's real end of stream, whose edge will not come again. So it
    /// is forgotten, and the next read is tried even if it drains less than it asks for: a
    /// short read then does not clear readiness, so the read after it meets the end (or
    /// `WouldBlock`) in the kernel rather than wait for an edge that already came.
    pub(crate) fn connect_finished(&self) {
        let state = &*self.state;
        if state.ready.get() & READ_CLOSED != 0 {
            state.ready.set((state.ready.get() & !READ_CLOSED) | READ);
            state.unsure.set(true);
        }
    }

    /// Whether an event said that the peer has shut down its sending side.
    #[inline]
    pub(crate) fn peer_closed(&self) -> bool {
        self.state.ready.get() & READ_CLOSED != 0
    }

    /// Whether the socket was deregistered (closed).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.closed.get()
    }

    /// Wake every task waiting in `dir` without changing readiness: what they wait for
    /// (bytes of theirs written by another task) has happened without an event.
    pub(crate) fn wake(&self, dir: Direction) {
        wake_all(self.state.waiters(dir));
    }

    /// Leave the poller and fail every task waiting on the socket. Call before `close(2)`,
    /// so that the descriptor number cannot be reused while it is still in the poller.
    ///
    /// Returns the bytes that a send made by the driver (io_uring) had taken and not sent:
    /// its request is cancelled (or finished) before this returns, so they come before
    /// anything written to the descriptor from now on. Empty on the poll driver.
    #[must_use = "unsent bytes come before anything else written to the descriptor"]
    pub(crate) fn deregister(&self, fd: RawSocket) -> Vec<u8> {
        if self.state.closed.get() {
            return Vec::new();
        }
        let unsent = self.driver.deregister(&self.state, fd);
        if let Some(d) = self.state.deadlines.get() {
            for key in d.take_armed() {
                self.driver.deadlines.remove(key);
            }
        }
        self.state.close();
        unsent
    }

    /// Write to stream socket `socket` (its registration is this one), without waiting: the
    /// operation of every stream write but TLS's. On io_uring the bytes are copied into a
    /// send on the ring, which leaves with the loop's next enter; until its completion
    /// [`sending`](Self::sending) says so, and nothing may be written to the socket
    /// otherwise (TLS records, a shutdown): [`poll_sent`](Self::poll_sent) waits for it.
    #[inline]
    pub(crate) fn send_stream(&self, socket: &Socket, buf: &[u8]) -> io::Result<usize> {
        self.try_io(Direction::Write, || {
            match self.driver.send(&self.state, buf) {
                Some(r) => r,
                None => socket.send_with_flags(buf, crate::sys::SEND_FLAGS),
            }
        })
    }

    /// [`send_stream`](Self::send_stream) of `buf[from..]` (from a socket's output buffer):
    /// on io_uring a write of at least [`HANDOVER_MIN`] bytes takes `buf` itself rather
    /// than a copy of its bytes, and leaves an empty buffer in its place; else `buf` is as
    /// it was. Returns how many bytes were written.
    #[inline]
    pub(crate) fn send_stream_buf(
        &self,
        socket: &Socket,
        buf: &mut Vec<u8>,
        from: usize,
    ) -> io::Result<usize> {
        self.try_io(Direction::Write, || {
            let r = if buf.len() - from >= HANDOVER_MIN {
                self.driver.send_owned(&self.state, buf, from)
            } else {
                self.driver.send(&self.state, &buf[from..])
            };
            match r {
                Some(r) => r,
                None => socket.send_with_flags(&buf[from..], crate::sys::SEND_FLAGS),
            }
        })
    }

    /// Whether a send made by the driver has not completed yet.
    #[inline]
    pub(crate) fn sending(&self) -> bool {
        #[cfg(uring)]
        return self.state.sending();
        #[cfg(not(uring))]
        false
    }

    /// Enter the kernel once to finish a send the driver made (for calls that are about to
    /// act on the socket at once, such as a shutdown); whether no send is in flight now.
    pub(crate) fn finish_sending_now(&self) -> bool {
        #[cfg(uring)]
        if self.state.sending() {
            return self.driver.finish_send_now(&self.state);
        }
        true
    }

    /// Wait until every send the driver made has completed (at once on the poll driver). A
    /// failed one is then told by [`take_send_failure`](Self::take_send_failure).
    pub(crate) fn poll_sent(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        #[cfg(uring)]
        if self.state.sending() {
            let state = &*self.state;
            return self.poll_io(Direction::Write, cx, || {
                if state.sending() && !self.driver.finish_send_now(state) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
        }
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    /// The error of a send the driver made that failed, once.
    pub(crate) fn take_send_failure(&self) -> Option<io::Error> {
        #[cfg(uring)]
        return match i32::from(self.state.send_failed.replace(0)) {
            0 => None,
            errno => Some(io::Error::from_raw_os_error(errno)),
        };
        #[cfg(not(uring))]
        None
    }

    /// Set (or clear, `None`) the deadline of every wait in `dir` from now on; operations
    /// waiting now look again (`deadline.rs`).
    pub(crate) fn set_deadline(&self, dir: Direction, at: Option<Instant>) {
        let d = match (self.state.deadlines.get(), at) {
            (Some(d), _) => d,
            (None, None) => return,
            (None, Some(_)) => self.state.deadlines.get_or_init(Box::default),
        };
        d.set(dir, at);
        self.state.wake_waiters(dir);
    }

    /// The deadline of waits in `dir`.
    pub(crate) fn deadline(&self, dir: Direction) -> Option<Instant> {
        self.state.deadlines.get().and_then(|d| d.get(dir))
    }

    /// `TimedOut` if the deadline of `dir` has passed: for waits that are not on readiness
    /// (a back-off on a timer).
    pub(crate) fn check_deadline(&self, dir: Direction) -> io::Result<()> {
        match self.deadline(dir) {
            Some(at) if at <= Instant::now() => Err(super::deadline::deadline_passed(dir)),
            _ => Ok(()),
        }
    }

    /// Run `f` (the library's background writing of queued bytes) with the socket's
    /// deadlines ignored: they bound the caller's waits, never the delivery of bytes that a
    /// completed send handed over.
    #[inline]
    pub(crate) fn without_deadlines<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.state.deadlines.get() {
            None => f(),
            Some(d) => d.exempt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// What every read and write looks at (readiness and flags, the deadlines' word, the
    /// readers) is in the first 48 bytes: with the `Rc`'s 16-byte counts, within 64 bytes
    /// of the block's start. Spread over the struct, it took three cache lines per round
    /// trip at 5,000 connections.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn what_every_operation_reads_of_a_sockets_readiness_is_in_its_first_48_bytes() {
        use std::mem::{offset_of, size_of};
        let end = |offset: usize, size: usize| offset + size;
        let hot = [
            end(offset_of!(IoState, ready), 1),
            end(offset_of!(IoState, closed), 1),
            end(offset_of!(IoState, unsure), 1),
            end(offset_of!(IoState, deadlines), size_of::<usize>()),
            end(offset_of!(IoState, readers), size_of::<RefCell<Waiters>>()),
        ];
        assert!(hot.iter().all(|&e| e <= 48), "{hot:?}");
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A registration of no descriptor, its loop running: the seam's logic without a socket.
    /// Every socket has one, idle ones too: with the `Rc`'s counts it stays within a
    /// 160-byte block of glibc's allocator (8 bytes more would take a 176-byte one; the
    /// `idle` row of the bench suite saw it, 16 bytes more per connection).
    #[test]
    #[cfg(uring)]
    fn a_sockets_io_state_fits_in_136_bytes() {
        assert!(std::mem::size_of::<IoState>() <= 136);
    }

    fn bare() -> Registration {
        let driver = Rc::new(Driver::new(crate::DriverKind::Poll).expect("a poller"));
        driver.set_driven(true);
        Registration {
            driver,
            state: Rc::new(IoState::new(0, 0, crate::sys::INVALID_SOCKET)),
        }
    }

    fn counting_waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn would_block_clears_readiness_and_parks_until_an_event_wakes_and_retries() {
        let reg = bare();
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut calls = 0;
        let mut op = || {
            calls += 1;
            if calls == 1 {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(7)
            }
        };
        assert!(reg.poll_io(Direction::Read, &mut cx, &mut op).is_pending());
        assert!(reg.would_wait(Direction::Read));
        assert!(
            reg.poll_io(Direction::Read, &mut cx, &mut op).is_pending(),
            "no retry"
        );
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        reg.state.wake(READ);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the event wakes the task"
        );
        assert!(matches!(
            reg.poll_io(Direction::Read, &mut cx, &mut op),
            Poll::Ready(Ok(7))
        ));
        assert_eq!(calls, 2);
    }

    /// The io_uring driver waits on in the same turn when a batch of completions woke no
    /// task: it relies on this answer being exact.
    #[test]
    fn an_event_says_whether_it_woke_a_task() {
        let reg = bare();
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(!reg.state.wake(READ | WRITE), "ready already, no one waits");
        let mut op = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        assert!(reg.poll_io(Direction::Read, &mut cx, &mut op).is_pending());
        assert!(!reg.state.wake(WRITE), "the other direction has no waiter");
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert!(reg.state.wake(READ), "the reader's event");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(
            !reg.state.wake(READ),
            "taken already: no one is left to wake"
        );
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn interrupted_is_retried_and_other_errors_are_returned() {
        let reg = bare();
        let mut cx = Context::from_waker(Waker::noop());
        let mut calls = 0;
        let r = reg.poll_io(Direction::Write, &mut cx, || {
            calls += 1;
            match calls {
                1 => Err::<(), _>(io::ErrorKind::Interrupted.into()),
                _ => Err(io::ErrorKind::ConnectionReset.into()),
            }
        });
        assert!(matches!(r, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset));
        assert_eq!(calls, 2);
        assert!(
            !reg.would_wait(Direction::Write),
            "an error is no WouldBlock"
        );
    }

    #[test]
    fn a_short_stream_read_drains_readiness_and_a_full_one_does_not() {
        let reg = bare();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            reg.poll_read(&mut cx, 10, || Ok(10)),
            Poll::Ready(Ok(10))
        ));
        assert!(!reg.would_wait(Direction::Read));
        assert!(matches!(
            reg.poll_read(&mut cx, 10, || Ok(4)),
            Poll::Ready(Ok(4))
        ));
        assert!(reg.would_wait(Direction::Read));
    }

    #[test]
    fn a_hang_up_keeps_reads_ready_until_connect_forgets_it() {
        let reg = bare();
        reg.state.clear(READ);
        reg.state.wake(READ | READ_CLOSED);
        reg.state.clear(READ);
        assert!(
            !reg.would_wait(Direction::Read),
            "the end of stream must still be read"
        );
        assert!(reg.peer_closed());
        reg.connect_started();
        assert!(reg.would_wait(Direction::Read) && reg.would_wait(Direction::Write));
        assert!(!reg.peer_closed());
    }

    #[test]
    fn a_hang_up_seen_across_a_connect_is_checked_by_reading_not_forgotten() {
        let reg = bare();
        let mut cx = Context::from_waker(Waker::noop());
        reg.connect_started();
        // The connect's event, with the peer's data and end of stream already there.
        reg.state.wake(READ | WRITE | READ_CLOSED);
        reg.connect_finished();
        assert!(!reg.peer_closed(), "maybe the unconnected socket's hang-up");
        // A short read (the data) does not clear readiness: the next read goes to the
        // kernel and meets the end, instead of waiting for an edge that came already.
        assert!(matches!(
            reg.poll_read(&mut cx, 10, || Ok(6)),
            Poll::Ready(Ok(6))
        ));
        assert!(!reg.would_wait(Direction::Read));
        assert!(matches!(
            reg.poll_read(&mut cx, 10, || Ok(0)),
            Poll::Ready(Ok(0))
        ));
        // Once: after that, short reads drain as usual.
        assert!(matches!(
            reg.poll_read(&mut cx, 10, || Ok(3)),
            Poll::Ready(Ok(3))
        ));
        assert!(reg.would_wait(Direction::Read));
    }

    #[test]
    fn an_operation_that_would_park_where_no_loop_runs_fails_instead_of_hanging() {
        let reg = bare();
        reg.driver.set_driven(false);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            reg.poll_io(Direction::Read, &mut cx, || Ok(1)),
            Poll::Ready(Ok(1))
        ));
        let r = reg.poll_io(Direction::Read, &mut cx, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
        let Poll::Ready(Err(e)) = r else {
            panic!("parked where nothing would wake it: {r:?}")
        };
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("asyncnet::wait_for"), "{e}");
    }

    #[test]
    fn closing_fails_waiters_and_every_later_operation() {
        let reg = bare();
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let r = reg.poll_io(Direction::Write, &mut cx, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
        assert!(r.is_pending());
        assert!(reg.state.close());
        assert!(!reg.state.close(), "once");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let r = reg.poll_io(Direction::Write, &mut cx, || Ok(()));
        assert!(matches!(r, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected));
        assert!(reg.try_io(Direction::Read, || Ok(())).is_err());
    }

    #[test]
    fn wakers_of_dropped_waits_stay_bounded_and_a_live_waiter_is_still_woken() {
        let reg = bare();
        let quiet = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        let (live, live_waker) = counting_waker();
        assert!(reg
            .poll_io(
                Direction::Read,
                &mut Context::from_waker(&live_waker),
                quiet
            )
            .is_pending());
        // 80,000 tasks, each waiting once and then dropped (a read under a zero timeout).
        for _ in 0..80_000 {
            let (_, waker) = counting_waker();
            assert!(reg
                .poll_io(Direction::Read, &mut Context::from_waker(&waker), quiet)
                .is_pending());
            assert!(
                reg.waiting(Direction::Read) <= MIN_LIMIT + 1,
                "{} wakers wait",
                reg.waiting(Direction::Read)
            );
        }
        // The live task was woken (spuriously) when the list started over; polled again, it
        // waits again, and the socket's event wakes it.
        let spurious = live.0.load(Ordering::SeqCst);
        assert!(spurious >= 1);
        assert!(reg
            .poll_io(
                Direction::Read,
                &mut Context::from_waker(&live_waker),
                quiet
            )
            .is_pending());
        reg.state.wake(READ);
        assert_eq!(live.0.load(Ordering::SeqCst), spurious + 1);
        assert_eq!(reg.waiting(Direction::Read), 0);
    }

    #[test]
    fn many_live_waiters_settle_instead_of_waking_each_other_for_ever() {
        let reg = bare();
        let quiet = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        let tasks: Vec<_> = (0..1000).map(|_| counting_waker()).collect();
        // Every woken task is polled again (and waits again), round after round, until no
        // task is woken: the limit has grown past the number of live waiters.
        let mut to_poll: Vec<usize> = (0..tasks.len()).collect();
        let mut seen = vec![0; tasks.len()];
        let mut rounds = 0;
        while !to_poll.is_empty() {
            rounds += 1;
            assert!(rounds < 20, "still waking each other after {rounds} rounds");
            for &i in &to_poll {
                let mut cx = Context::from_waker(&tasks[i].1);
                assert!(reg.poll_io(Direction::Read, &mut cx, quiet).is_pending());
            }
            to_poll.clear();
            for (i, (count, _)) in tasks.iter().enumerate() {
                let now = count.0.load(Ordering::SeqCst);
                if now != seen[i] {
                    seen[i] = now;
                    to_poll.push(i);
                }
            }
        }
        assert_eq!(reg.waiting(Direction::Read), tasks.len());
        reg.state.wake(READ);
        for (count, _) in &tasks {
            assert!(count.0.load(Ordering::SeqCst) >= 1);
        }
    }

    #[test]
    fn a_task_polled_twice_in_a_row_waits_once() {
        let reg = bare();
        let quiet = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        let (_, a) = counting_waker();
        let (_, b) = counting_waker();
        for w in [&a, &b, &b, &b, &a, &a] {
            assert!(reg
                .poll_io(Direction::Read, &mut Context::from_waker(w), quiet)
                .is_pending());
        }
        assert_eq!(reg.waiting(Direction::Read), 2);
    }
}
