//! The readiness driver (Nim's `selectors` layer): the only code that talks to the OS poller.
//!
//! Two pollers, chosen per loop ([`DriverKind`]): `mio`, which registers each socket once,
//! edge-triggered (epoll on Linux, kqueue on the BSDs and macOS, its Windows backend); or, on
//! Linux, io_uring (`uring.rs`): one multishot poll per socket on the loop's ring, whose
//! completions are the same edges, and one `io_uring_enter` per turn. A socket's
//! [`Registration`] remembers readiness per direction and is the one seam every socket
//! operation goes through ([`Registration::poll_io`], [`Registration::try_io`]): try the
//! system call, retry `EINTR`, on `WouldBlock` clear readiness and park the task, wake it when
//! an event comes. Readiness is cleared only when an
//! operation meets `WouldBlock` (or a stream read returns short), so an edge is never lost
//! because the task that was woken for it was dropped before doing the I/O.
//!
//! The layers point one way: `net` (sockets, buffers, TLS) calls the seam; the seam knows
//! nothing of sockets' buffers, TLS or lines.
//!
//! # Many connections: what a turn keeps in cache
//!
//! With thousands of connections taking turns, a connection's state has left the cache by
//! its next event, and the user-space cost of a round trip is its cache misses more than its
//! instructions. Two things keep that cost from growing with the number of connections:
//!
//! - **Chunks.** A turn hands out its events [`EVENT_CHUNK`] at a time and runs the tasks a
//!   chunk woke before the next chunk, so that what a wake-up touched is still in cache when
//!   its task runs.
//! - **Prefetching.** With 128 sockets or more (`sys::PREFETCH_FROM`; the state of fewer
//!   stays in cache), before a chunk's wake-ups the driver starts loading every socket of
//!   the chunk at once: the readiness and readers (`IoState`'s first line), and the lines its
//!   owner named with [`Registration::set_hint`] (the socket's own state, in `net`); a
//!   wake-up starts loading its task's future (`dispatch`, with as many tasks). The misses
//!   of a chunk then overlap, where one socket after another they would be paid end to end.
//!   The hint is an address kept with the socket's entry in the table (`sys::Lines`): the
//!   driver learns nothing of what is there, and a prefetch of any address is harmless.
//!
//! # How the completion side of io_uring plugs in
//!
//! A readiness driver lets the caller make the system call; a completion driver makes it
//! itself and reports later. The seam is shaped so that the second fits behind the same
//! socket code:
//!
//! - **Where the calls are.** Every operation on a registered socket that can wait is made in
//!   one file of `net` (`net/transport.rs`: read, write, accept, connect, datagrams, and TLS
//!   records, which are reads and writes too) and passes through the seam; the only other
//!   user of the seam is `net/linger.rs`, which writes a closed socket's last bytes. Stream
//!   reads and accepts go through [`Registration::recv_stream`], [`Registration::peek_stream`]
//!   and [`Registration::accept`], which the io_uring driver answers from what it received or
//!   accepted ahead (built: `inbox.rs`, `backlog.rs`); nothing above `net/transport.rs` knows.
//! - **Who owns a buffer while the kernel may write into it.** Never the future, nor the
//!   socket: the ring's provided buffers (`sys/uring.rs`), which the kernel picks when bytes
//!   arrive and hands back in the completion; the driver copies the bytes into the socket's
//!   inbox and gives the buffer back at once, or, when the socket's inbox is idle, lets the
//!   socket hold the buffer until it reads the bytes (most often later in the same turn) and
//!   copies what is left unread into the inbox before the ring is entered again, so that every
//!   buffer is the kernel's at each enter. A future dropped meanwhile loses nothing (the
//!   bytes wait in the buffer or the inbox, as they would in the kernel), a socket closed
//!   meanwhile gives back the buffer it held and its later completions' buffers, and the
//!   buffers are freed only after the
//!   kernel can no longer pick one (the group is unregistered first). An accept that completes
//!   after its listener closed has its descriptor closed, never leaked.
//! - **Sends.** A stream write ([`Registration::send_stream`]) on io_uring copies its bytes
//!   (up to 256 KiB) into a send on the ring, owned by the ring's table of sends until the
//!   completion (`sys/uring.rs`); a socket writing out its output buffer
//!   ([`Registration::send_stream_buf`]) hands the buffer itself over instead when it holds
//!   a page or more, and gets an empty one back (one an earlier send left), so that a
//!   stream's bytes are not copied a second time on their way out. Either returns at once: the send leaves with the turn's one
//!   enter, so a turn's replies cost no system call of their own. One send per socket is in
//!   flight; a short one goes on with its rest. Until it completes
//!   ([`Registration::sending`]) nothing else is written to the socket: a further write
//!   enters the ring once to let it finish (as many kernel entries as `send(2)` calls, on the
//!   rare path of a writer with more to write), TLS records wait, a shutdown waits
//!   (`shutdown_write` enters once, then leaves it to the background), `flush` and a send
//!   without `SAFE_DISCONN` wait for the completion ([`Registration::poll_sent`]), and a
//!   send that failed is the next write's or flush's error. Closing cancels the send and
//!   waits for its completion: what it did not send goes first in the linger. A turn whose
//!   events keep its tasks busy submits what they queued every half millisecond, and a loop
//!   that hands control back to its caller (`wait_for`, `poll`) submits before it returns.
//!   The poll driver's writes are `send(2)` calls.
//! - **Closing.** `deregister` cancels the socket's requests and removes its poll at once
//!   (the kernel is asked to finish the removal before `deregister` returns: a poll holds the
//!   socket open, so a close would otherwise reach the peer only at the next turn).
//! - **Submission failures.** Every entry pushed refers either to no memory or to memory the
//!   ring owns for as long as the kernel may use it, so a failed `io_uring_enter` cannot
//!   leave the kernel a dangling pointer.
#![forbid(unsafe_code)]

#[cfg(uring)]
mod backlog;
mod deadline;
// Plain bookkeeping, with no system call of its own: its unit tests run on every platform,
// although only the io_uring driver (Linux) uses it.
#[cfg(any(uring, test))]
#[cfg_attr(not(uring), allow(dead_code))]
mod inbox;
mod registration;
#[cfg(uring)]
mod uring;

pub(crate) use registration::{Direction, Registration};

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

#[cfg(unix)]
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;

use crate::sys::{Lines, RawSocket};
use registration::{IoState, READ, READ_CLOSED, WRITE};

/// The token of the cross-thread waker; no socket can have it (slab keys are far below).
const WAKE_TOKEN: Token = Token(usize::MAX);

/// Generations of slots wrap at 27 bits (the io_uring poller's user data keeps its four top
/// bits to say what a request is, and the next one for a poll's epoch).
const MAX_GEN: u32 = 0x07ff_ffff;

/// Which kernel interface a loop waits on (see [`use_driver`](crate::use_driver)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DriverKind {
    /// Readiness through `mio`: epoll on Linux, kqueue on macOS and the BSDs, the Windows
    /// backend (AFD polling) on Windows. The default.
    Poll,
    /// io_uring (Linux 6.0 and later): each socket's readiness through a multishot poll on
    /// the loop's ring, and one `io_uring_enter` per loop turn that both submits and waits.
    IoUring,
}

/// Events dispatched before the woken tasks run: with a thousand events in one wait, waking
/// every task before running any touches each connection's state twice, far apart, so that
/// both touches miss the cache (the user-space cost per round trip doubled from 50 to 500
/// connections); a chunk's tasks run while their state is still in cache.
const EVENT_CHUNK: usize = 16;

/// Work that must be done before the loop next sleeps: a socket's coalesced output.
pub(crate) trait BeforeSleep {
    /// Do it (at most once per [`Driver::defer`]).
    fn before_sleep(self: Rc<Self>);
}

/// What wakes a loop from another thread.
#[derive(Debug)]
pub(crate) enum RemoteWaker {
    Mio(mio::Waker),
    /// The write side of the io_uring poller's eventfd.
    #[cfg(uring)]
    EventFd(std::fs::File),
}

impl RemoteWaker {
    /// Wake the loop (harmless when it is awake).
    pub(crate) fn wake(&self) -> io::Result<()> {
        match self {
            RemoteWaker::Mio(w) => w.wake(),
            #[cfg(uring)]
            RemoteWaker::EventFd(f) => {
                use std::io::Write;
                match (&*f).write(&1u64.to_ne_bytes()) {
                    // The count is full: the loop has a wake-up pending anyway.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    r => r.map(drop),
                }
            }
        }
    }
}

/// The kernel interface the loop waits on.
#[derive(Debug)]
enum Poller {
    Mio {
        poll: RefCell<mio::Poll>,
        events: RefCell<Events>,
    },
    #[cfg(uring)]
    Uring(Box<uring::Uring>),
}

/// A socket in the driver's table: its readiness state, and the cache lines of its owner's
/// state that the socket's task reads first (see [`Registration::set_hint`]).
#[derive(Debug)]
struct Registered {
    io: Rc<IoState>,
    hint: Lines,
}

impl Registered {
    /// Start loading what an event's wake-up and then its task read: the state's first line
    /// (the `Rc`'s two counts before it, then the readiness and the readers) and the owner's
    /// lines.
    #[inline]
    fn prefetch(&self) {
        Lines::of_rc(&self.io, 48).prefetch();
        self.hint.prefetch();
    }
}

/// The OS poller and the table of registered sockets.
#[derive(Debug)]
pub(crate) struct Driver {
    poller: Poller,
    ios: RefCell<Slab<Registered>>,
    /// The generation the next registration gets (`MAX_GEN` wraps to 0).
    next_gen: Cell<u32>,
    waker: Arc<RemoteWaker>,
    /// Run before the loop sleeps (weak: an item dropped meanwhile has finished on its own),
    /// each with its owner's address (see [`undefer_last`](Self::undefer_last)).
    deferred: RefCell<Vec<(usize, Weak<dyn BeforeSleep>)>>,
    /// The list's previous allocation, reused turn after turn.
    spare: RefCell<Vec<(usize, Weak<dyn BeforeSleep>)>>,
    /// The loop is running (inside `wait_for`, `poll`, ...): a task that parks will be woken.
    /// Outside, an operation that would park fails instead of hanging.
    driven: Cell<bool>,
    /// Timers of sockets' deadlines (`deadline.rs`); the loop waits no longer than the first.
    pub(crate) deadlines: deadline::DeadlineQueue,
    /// `turn` is handing out a batch of events (and running tasks between its chunks).
    dispatching: Cell<bool>,
    /// Slots of sockets closed meanwhile, freed when the batch is done: until then no new
    /// socket can take a slot that a later event of the batch still names.
    closed_in_batch: RefCell<Vec<usize>>,
}

/// Whether io_uring can serve a loop here: `Ok` if so, else why not (found out once per
/// process).
pub(crate) fn io_uring_support() -> io::Result<()> {
    #[cfg(uring)]
    return crate::sys::uring::support().map_err(|(kind, why)| io::Error::new(kind, why));
    #[cfg(all(not(uring), target_os = "linux"))]
    return Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "this build has no io_uring driver: the io-uring crate has no bindings for {}",
            std::env::consts::ARCH
        ),
    ));
    #[cfg(not(target_os = "linux"))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring is Linux's: this system has none",
    ))
}

impl Driver {
    /// A driver of `kind`; io_uring where it cannot serve (see [`io_uring_support`]) falls
    /// back to [`DriverKind::Poll`].
    pub(crate) fn new(kind: DriverKind) -> io::Result<Driver> {
        let (poller, waker) = match kind {
            #[cfg(uring)]
            DriverKind::IoUring if io_uring_support().is_ok() => {
                let read_side = std::fs::File::from(crate::sys::uring::eventfd()?);
                let write_side = read_side.try_clone()?;
                (
                    Poller::Uring(Box::new(uring::Uring::new(read_side)?)),
                    RemoteWaker::EventFd(write_side),
                )
            }
            _ => {
                let poll = mio::Poll::new()?;
                let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
                let poller = Poller::Mio {
                    poll: RefCell::new(poll),
                    events: RefCell::new(Events::with_capacity(1024)),
                };
                (poller, RemoteWaker::Mio(waker))
            }
        };
        Ok(Driver {
            poller,
            ios: RefCell::new(Slab::new()),
            next_gen: Cell::new(0),
            waker: Arc::new(waker),
            deferred: RefCell::new(Vec::new()),
            spare: RefCell::new(Vec::new()),
            driven: Cell::new(false),
            deadlines: deadline::DeadlineQueue::default(),
            dispatching: Cell::new(false),
            closed_in_batch: RefCell::new(Vec::new()),
        })
    }

    /// The kernel interface this driver waits on.
    pub(crate) fn kind(&self) -> DriverKind {
        match self.poller {
            Poller::Mio { .. } => DriverKind::Poll,
            #[cfg(uring)]
            Poller::Uring(_) => DriverKind::IoUring,
        }
    }

    /// Whether the io_uring ring runs with `DEFER_TASKRUN` (false for other drivers).
    #[cfg(all(test, uring))]
    pub(crate) fn defer_taskrun(&self) -> bool {
        match &self.poller {
            Poller::Uring(u) => u.defer_taskrun(),
            _ => false,
        }
    }

    /// Say whether the loop that owns this driver is running (and so will wake what parks).
    pub(crate) fn set_driven(&self, driven: bool) {
        self.driven.set(driven);
    }

    /// Whether the loop that owns this driver is running.
    #[inline]
    pub(crate) fn is_driven(&self) -> bool {
        self.driven.get()
    }

    /// A handle that wakes `turn` from any thread.
    pub(crate) fn remote_waker(&self) -> Arc<RemoteWaker> {
        self.waker.clone()
    }

    /// Register `fd` for both directions, once, edge-triggered (through
    /// [`Registration::new`]).
    fn register(&self, fd: RawSocket) -> io::Result<Rc<IoState>> {
        let mut ios = self.ios.borrow_mut();
        let entry = ios.vacant_entry();
        let key = entry.key();
        if u32::try_from(key).is_err() {
            // Completions name a socket's slot in 32 bits.
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "more than 2^32 sockets registered with one loop",
            ));
        }
        let gen = self.next_gen.get();
        self.next_gen.set(if gen >= MAX_GEN { 0 } else { gen + 1 });
        let state = Rc::new(IoState::new(key, gen, fd));
        match &self.poller {
            #[cfg(unix)]
            Poller::Mio { poll, .. } => poll.borrow().registry().register(
                &mut SourceFd(&fd),
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )?,
            #[cfg(windows)]
            Poller::Mio { poll, .. } => state.source.register(
                poll.borrow().registry(),
                fd,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )?,
            #[cfg(uring)]
            Poller::Uring(u) => u.register(fd, key, gen)?,
        }
        entry.insert(Registered {
            io: state.clone(),
            hint: Lines::NONE,
        });
        Ok(state)
    }

    /// Keep `hint` with `io`'s entry in the table (through [`Registration::set_hint`]).
    fn set_hint(&self, io: &Rc<IoState>, hint: Lines) {
        if let Ok(mut ios) = self.ios.try_borrow_mut() {
            if let Some(r) = ios.get_mut(io.key()).filter(|r| Rc::ptr_eq(&r.io, io)) {
                r.hint = hint;
            }
        }
    }

    /// Take `fd` out of the poller and the table (through [`Registration::deregister`]).
    /// Returns the bytes of a send on the ring that did not go (see `uring.rs`).
    fn deregister(&self, io: &IoState, fd: RawSocket) -> Vec<u8> {
        let unsent = match &self.poller {
            // An error here means the fd was already gone from the poller; nothing more to
            // undo.
            #[cfg(unix)]
            Poller::Mio { poll, .. } => {
                let _ = poll.borrow().registry().deregister(&mut SourceFd(&fd));
                Vec::new()
            }
            #[cfg(windows)]
            Poller::Mio { poll, .. } => {
                let _ = fd;
                io.source.deregister(poll.borrow().registry());
                Vec::new()
            }
            #[cfg(uring)]
            Poller::Uring(u) => u.deregister(io),
        };
        if self.dispatching.get() {
            self.closed_in_batch.borrow_mut().push(io.key());
        } else {
            self.ios.borrow_mut().try_remove(io.key());
        }
        unsent
    }

    /// `r`, the outcome of a send just made on the ring, once the send is sure to leave: with
    /// no loop driving this driver no turn is sure to come and submit it, so it is submitted
    /// now.
    #[cfg(uring)]
    #[inline]
    fn submitted<T>(&self, u: &uring::Uring, r: T) -> T {
        if !self.is_driven() {
            u.submit();
        }
        r
    }

    /// A write of `data` on stream socket `io` as the driver makes it (io_uring: a send on
    /// the ring, whose bytes it owns); `None` when the caller makes the system call.
    #[inline]
    fn send(&self, io: &IoState, data: &[u8]) -> Option<io::Result<usize>> {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => Some(self.submitted(u, u.send(io, data))),
            _ => {
                let _ = (io, data);
                None
            }
        }
    }

    /// [`send`](Self::send) of `buf[from..]`, which on io_uring may take `buf` itself
    /// instead of a copy and leave an empty buffer in its place (`Uring::send_owned`);
    /// `None` when the caller makes the system call.
    #[inline]
    fn send_owned(
        &self,
        io: &IoState,
        buf: &mut Vec<u8>,
        from: usize,
    ) -> Option<io::Result<usize>> {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => Some(self.submitted(u, u.send_owned(io, buf, from))),
            _ => {
                let _ = (io, buf, from);
                None
            }
        }
    }

    /// Enter the ring to finish `io`'s send now (io_uring); whether it is over.
    #[cfg(uring)]
    fn finish_send_now(&self, io: &IoState) -> bool {
        match &self.poller {
            Poller::Uring(u) => u.finish_now(io),
            _ => true,
        }
    }

    /// Submit what is queued for the kernel now (a loop hands control back to its caller:
    /// sends queued on the ring must not wait for a turn that may never come).
    pub(crate) fn submit(&self) {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.submit(),
            _ => {}
        }
    }

    /// Bytes of room held for `io` (see [`Registration::held_room`]).
    #[cfg(test)]
    fn held_room(&self, io: &IoState) -> usize {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.held_room(io),
            _ => {
                let _ = io;
                0
            }
        }
    }

    /// How many slots the io_uring ring's table of sends has (0 on the poll driver).
    #[cfg(test)]
    fn send_slots(&self) -> usize {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.send_slots(),
            _ => 0,
        }
    }

    /// How many provided buffers the kernel filled that the driver has not given back (0 on
    /// the poll driver).
    #[cfg(test)]
    fn buffers_out(&self) -> usize {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.buffers_out(),
            _ => 0,
        }
    }

    /// How many receive buffers the io_uring ring gave the kernel so far (0 on the poll
    /// driver).
    #[cfg(test)]
    fn buffers_given(&self) -> u16 {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.buffers_given(),
            _ => 0,
        }
    }

    /// A read (with `peek`, a look) of stream socket `io` from what was received ahead (see
    /// `inbox.rs`); `None` when the kernel must answer.
    #[inline]
    fn read_received(&self, io: &IoState, buf: &mut [u8], peek: bool) -> Option<io::Result<usize>> {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.read(io, buf, peek),
            _ => {
                let _ = (io, buf, peek);
                None
            }
        }
    }

    /// A task is about to wait on `io` in `dir`: if what it waits for can only come from the
    /// kernel's readiness (io_uring: the socket's poll was dropped), the poll comes back.
    #[inline]
    fn parking(&self, io: &IoState, dir: registration::Direction) {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.parking(io, dir),
            _ => {
                let _ = (io, dir);
            }
        }
    }

    /// A read of stream socket `io` would block: receive ahead, where the driver can.
    #[inline]
    fn start_receiving(&self, io: &IoState) {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.start_receiving(io),
            _ => {
                let _ = io;
            }
        }
    }

    /// A connection listener `io` accepted ahead (see `backlog.rs`); `None` when the kernel
    /// must answer.
    #[cfg(uring)]
    fn accepted_ahead(&self, io: &IoState) -> Option<io::Result<std::os::fd::OwnedFd>> {
        match &self.poller {
            Poller::Uring(u) => u.take_accepted(io),
            _ => None,
        }
    }

    /// An accept on listener `io` would block: accept ahead, where the driver can.
    #[inline]
    fn start_accepting(&self, io: &IoState) {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.start_accepting(io),
            _ => {
                let _ = io;
            }
        }
    }

    /// Stop receiving (or accepting) ahead on `io` for good; whether nothing waits.
    fn stop_receiving(&self, io: &IoState) -> bool {
        match &self.poller {
            #[cfg(uring)]
            Poller::Uring(u) => u.stop_receiving(io),
            _ => {
                let _ = io;
                true
            }
        }
    }

    /// Have `item` run before the loop next sleeps; `key` is its owner's address.
    pub(crate) fn defer(&self, key: usize, item: Weak<dyn BeforeSleep>) {
        self.deferred.borrow_mut().push((key, item));
    }

    /// Take back the deferral made with `key` if it is the last one made, and say whether it
    /// was. Its owner does what the item would have done before the loop sleeps: the common
    /// case is a task's sends and then its read that waits, which writes them. Taking it
    /// back here, where the list's end is in cache, spares the visit before the sleep. Keys
    /// do not collide: an entry's weak reference keeps its owner's allocation, so no other
    /// owner has that address while the entry is on the list.
    #[inline]
    pub(crate) fn undefer_last(&self, key: usize) -> bool {
        let mut deferred = self.deferred.borrow_mut();
        let last = deferred.last().is_some_and(|&(k, _)| k == key);
        if last {
            deferred.pop();
        }
        last
    }

    /// Run the deferred items (the loop is about to sleep, or `wait_for` to return).
    ///
    /// Called several times a turn and mostly with nothing to do: the test is inlined, the
    /// visit is not (at one connection that spares a turn some 60 instructions of saving and
    /// restoring registers).
    #[inline]
    pub(crate) fn run_deferred(&self) {
        if !self.deferred.borrow().is_empty() {
            self.run_deferred_items();
        }
    }

    #[inline(never)]
    fn run_deferred_items(&self) {
        let spare = std::mem::take(&mut *self.spare.borrow_mut());
        let mut batch = std::mem::replace(&mut *self.deferred.borrow_mut(), spare);
        for (_, item) in batch.drain(..) {
            if let Some(item) = item.upgrade() {
                item.before_sleep();
            }
        }
        *self.spare.borrow_mut() = batch;
    }

    /// Number of registered sockets.
    pub(crate) fn registered(&self) -> usize {
        self.ios.borrow().len()
    }

    /// Whether a turn prefetches the state of the sockets its events concern: once there are
    /// enough that it leaves the cache between their turns.
    fn prefetching(&self) -> bool {
        self.registered() >= crate::sys::PREFETCH_FROM
    }

    /// Wait up to `timeout` for events and wake the tasks they concern, calling `between`
    /// after every [`EVENT_CHUNK`] of them (the loop runs the woken tasks there, while what
    /// the wake touched is still in cache). Returns the number of events that concerned
    /// sockets.
    pub(crate) fn turn(
        &self,
        timeout: Option<Duration>,
        mut between: impl FnMut(),
    ) -> io::Result<usize> {
        let (poll, events) = match &self.poller {
            Poller::Mio { poll, events } => (poll, events),
            #[cfg(uring)]
            Poller::Uring(u) => {
                let _batch = Batch::start(self);
                return u.turn(
                    timeout,
                    |key, gen| {
                        self.ios
                            .borrow()
                            .get(key)
                            .filter(|r| r.io.gen == gen)
                            .map(|r| r.io.clone())
                    },
                    self.prefetching().then_some(|key| {
                        if let Some(r) = self.ios.borrow().get(key) {
                            r.prefetch();
                        }
                    }),
                    &mut between,
                );
            }
        };
        let mut events = events.borrow_mut();
        match poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut n = 0;
        let _batch = Batch::start(self);
        // With many sockets: a second pass over the events, a chunk ahead of the wake-ups,
        // loading the chunk's sockets' state (and their owners') all at once, before the
        // wake-ups and tasks read it one socket after another.
        let mut ahead = self.prefetching().then(|| events.iter());
        for (i, ev) in events.iter().enumerate() {
            if let Some(ahead) = ahead.as_mut().filter(|_| i % EVENT_CHUNK == 0) {
                let ios = self.ios.borrow();
                for ev in ahead.take(EVENT_CHUNK) {
                    if let Some(r) = ios.get(ev.token().0) {
                        r.prefetch();
                    }
                }
            }
            let token = ev.token();
            if token == WAKE_TOKEN {
                continue;
            }
            // Clone out of the table so that waking (which may close sockets) never runs
            // while the table is borrowed. Unknown tokens belong to sockets closed since.
            let io = match self.ios.borrow().get(token.0) {
                Some(r) => r.io.clone(),
                None => continue,
            };
            let mut bits = 0;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                bits |= READ;
            }
            if ev.is_read_closed() {
                bits |= READ_CLOSED;
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                bits |= WRITE;
            }
            io.wake(bits);
            n += 1;
            if n % EVENT_CHUNK == 0 {
                between();
            }
        }
        Ok(n)
    }
}

/// A batch of events being handed out (see [`Driver::closed_in_batch`]); frees the slots of
/// the sockets closed meanwhile when it ends, also if a task's failure handler panics.
struct Batch<'a>(&'a Driver);

impl<'a> Batch<'a> {
    fn start(driver: &'a Driver) -> Batch<'a> {
        driver.dispatching.set(true);
        Batch(driver)
    }
}

impl Drop for Batch<'_> {
    #[inline]
    fn drop(&mut self) {
        let d = self.0;
        d.dispatching.set(false);
        if !d.closed_in_batch.borrow().is_empty() {
            d.forget_closed_in_batch();
        }
    }
}

impl Driver {
    /// The table entries of sockets closed while a batch of events was handed out.
    #[cold]
    fn forget_closed_in_batch(&self) {
        let mut ios = self.ios.borrow_mut();
        for key in self.closed_in_batch.borrow_mut().drain(..) {
            ios.try_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// The architectures the io_uring driver is built for are written twice: in `build.rs`
    /// (which sets `cfg(uring)`) and in `Cargo.toml` (which brings in the `io-uring` crate).
    /// They must agree: a driver without its crate does not compile, a crate without the
    /// driver is dead weight. And this build has the driver exactly where they say.
    #[test]
    fn build_rs_and_cargo_toml_name_the_same_io_uring_architectures() {
        let build = include_str!("../../build.rs");
        let manifest = include_str!("../../Cargo.toml");
        let line = build
            .lines()
            .find(|l| l.contains("const URING_ARCHES"))
            .expect("URING_ARCHES in build.rs");
        let from_build: BTreeSet<&str> = line.split('"').skip(1).step_by(2).collect();
        let dependency = manifest
            .lines()
            .find(|l| l.starts_with("[target.") && l.contains("target_arch"))
            .expect("the io-uring dependency's target in Cargo.toml");
        let from_manifest: BTreeSet<&str> = dependency
            .split("target_arch = \"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert!(from_build.contains("x86_64"), "{from_build:?}");
        assert_eq!(from_build, from_manifest);
        let expected = cfg!(target_os = "linux") && from_build.contains(std::env::consts::ARCH);
        assert_eq!(
            cfg!(uring),
            expected,
            "cfg(uring) on {}",
            std::env::consts::ARCH
        );
    }

    /// The handle of `s`, as the socket code registers it.
    fn raw(s: &TcpStream) -> RawSocket {
        crate::sys::raw(&socket2::SockRef::from(s))
    }

    /// Turn `driver` until the send `reg` has on the ring completes (at once on poll).
    fn wait_sent(driver: &Driver, reg: &Registration, what: &str) {
        let mut turns = 0;
        while reg.sending() {
            assert!(turns < 50, "{what}: the send never completed");
            driver
                .turn(Some(Duration::from_millis(100)), || {})
                .expect("a turn");
            turns += 1;
        }
    }

    /// `n` connected loopback TCP pairs (Unix socket pairs would do on Unix only).
    fn tcp_pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
        let addr = listener.local_addr().expect("its address");
        (0..n)
            .map(|_| {
                let a = TcpStream::connect(addr).expect("connected");
                let (b, _) = listener.accept().expect("accepted");
                (a, b)
            })
            .collect()
    }

    /// Run `f` on the poll driver, then on io_uring where it can serve: a machine without it
    /// skips that half, saying so, except a Linux one under CI, where it must be there.
    fn on_each_driver(f: impl Fn(DriverKind)) {
        f(DriverKind::Poll);
        match io_uring_support() {
            Ok(()) => f(DriverKind::IoUring),
            Err(e) => {
                assert!(
                    !cfg!(uring) || std::env::var_os("CI").is_none(),
                    "io_uring is needed under CI: {e}"
                );
                eprintln!("skipping the io_uring half: {e}");
            }
        }
    }

    /// The hint of the socket in `reg`'s slot of the table.
    fn hint_in_slot(driver: &Driver, reg: &Registration) -> Option<Lines> {
        driver.ios.borrow().get(reg.key()).map(|r| r.hint)
    }

    #[test]
    fn a_hint_stays_with_its_socket_and_a_late_one_never_lands_on_the_next_socket_in_its_slot() {
        let driver = Rc::new(Driver::new(DriverKind::Poll).expect("a poller"));
        let pairs = tcp_pairs(2);
        let first = Registration::new(&driver, raw(&pairs[0].0)).expect("registered");
        assert_eq!(hint_in_slot(&driver, &first), Some(Lines::NONE));
        let owner = [0u64; 24];
        let hint = Lines::new(owner.as_ptr(), std::mem::size_of_val(&owner));
        assert!(hint.count() >= 3);
        first.set_hint(hint);
        assert_eq!(hint_in_slot(&driver, &first), Some(hint));
        drop(first.deregister(raw(&pairs[0].0)));
        // The next socket takes the slot; the first one's owner names itself again too late.
        let second = Registration::new(&driver, raw(&pairs[1].0)).expect("registered");
        assert_eq!(second.key(), first.key(), "the slot is reused");
        first.set_hint(Lines::new(owner.as_ptr(), 8));
        assert_eq!(hint_in_slot(&driver, &second), Some(Lines::NONE));
        drop(second.deregister(raw(&pairs[1].0)));
    }

    /// A driver of `kind` (driven, as in a running loop) and a loopback TCP pair, `a`
    /// registered with it, non-blocking, `sock` a handle of it for the operations.
    struct Pair {
        driver: Rc<Driver>,
        a: TcpStream,
        b: TcpStream,
        reg: Registration,
        sock: socket2::Socket,
    }

    impl Pair {
        fn on(kind: DriverKind) -> Pair {
            let driver = Rc::new(Driver::new(kind).expect("a poller"));
            driver.set_driven(true);
            let (a, b) = tcp_pairs(1).pop().expect("a pair");
            a.set_nonblocking(true).expect("non-blocking");
            let reg = Registration::new(&driver, raw(&a)).expect("registered");
            let sock = socket2::Socket::from(a.try_clone().expect("a handle"));
            Pair {
                driver,
                a,
                b,
                reg,
                sock,
            }
        }

        /// Read until `want` bytes came or the stream ended (then `true`), turning the
        /// driver while reads wait.
        fn read(&self, want: usize) -> (Vec<u8>, bool) {
            use std::task::{Context, Poll, Waker};
            let mut cx = Context::from_waker(Waker::noop());
            let mut got = Vec::new();
            let mut turns = 0;
            while got.len() < want {
                let mut buf = vec![0u8; want - got.len()];
                match self.reg.poll_read(&mut cx, buf.len(), || {
                    self.reg.recv_stream(&self.sock, &mut buf)
                }) {
                    Poll::Ready(Ok(0)) => return (got, true),
                    Poll::Ready(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Poll::Ready(Err(e)) => panic!("a read failed: {e}"),
                    Poll::Pending => {
                        assert!(turns < 50, "the bytes never came");
                        self.driver
                            .turn(Some(Duration::from_millis(100)), || {})
                            .expect("a turn");
                        turns += 1;
                    }
                }
            }
            (got, false)
        }
    }

    /// A socket's output buffer written out through the seam: on io_uring one of a page or
    /// more goes to the ring whole (no copy) and an empty buffer comes back in its place,
    /// one that the last such send left once that send is over, so that buffers go round;
    /// a smaller one, and every write of the poll driver, leaves the buffer as it was. The
    /// peer reads exactly the bytes from the offset on, in order, either way.
    #[test]
    fn an_output_buffer_is_handed_to_the_ring_whole_or_copied_and_its_bytes_arrive() {
        use std::io::Read;
        on_each_driver(|kind| {
            let Pair {
                driver,
                a,
                b,
                reg,
                sock,
            } = Pair::on(kind);
            b.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let uring = kind == DriverKind::IoUring;
            let mut expected = Vec::new();
            let mut got = Vec::new();
            for (round, (len, from)) in
                [(100_000, 1_000), (70_000, 0), (600, 10), (100_000, 99_000)]
                    .into_iter()
                    .enumerate()
            {
                let mut buf: Vec<u8> = (0..len).map(|i| ((i + round * 7) % 251) as u8).collect();
                let before = buf.clone();
                let n = reg.send_stream_buf(&sock, &mut buf, from).expect("sent");
                let handed = uring && len - from >= registration::HANDOVER_MIN;
                if handed {
                    assert_eq!(n, len - from, "{kind:?}, round {round}: the whole rest");
                    assert!(buf.is_empty(), "{kind:?}, round {round}: an empty one back");
                    if round == 1 {
                        assert!(
                            buf.capacity() >= 100_000,
                            "{kind:?}: the buffer the first send took came back"
                        );
                    }
                } else {
                    assert!(n > 0 && n <= len - from, "{kind:?}, round {round}: {n}");
                    assert_eq!(buf, before, "{kind:?}, round {round}: left as it was");
                }
                expected.extend_from_slice(&before[from..from + n]);
                wait_sent(&driver, &reg, &format!("{kind:?}"));
                let mut piece = vec![0u8; n];
                (&b).read_exact(&mut piece).expect("the send's bytes");
                got.extend_from_slice(&piece);
            }
            assert!(
                got == expected,
                "{kind:?}: every byte from the offsets on, in order"
            );
            drop(reg.deregister(raw(&a)));
        });
    }

    /// Sockets whose peers write messages of random sizes, read in pieces of random sizes,
    /// looked at, and turned at random moments, then ended: each reads exactly what its peer
    /// wrote, in order, then the end (on io_uring through buffers held, inboxes folded and
    /// unfolded, in every order the steps make), and no buffer stays out.
    #[test]
    fn random_arrivals_reads_looks_and_turns_keep_every_byte_in_order() {
        on_each_driver(|kind| {
            for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 42] {
                random_on(kind, seed);
            }
        });
    }

    fn random_on(kind: DriverKind, seed: u64) {
        use std::task::{Context, Poll, Waker};
        const SOCKETS: usize = 6;
        let mut state = seed;
        let mut next = move |bound: usize| {
            // xorshift64*: a fixed sequence per seed, so that a failure can be replayed.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
        };
        let byte = |i: usize, at: usize| ((at * 7 + i * 13) % 251) as u8;
        let driver = Rc::new(Driver::new(kind).expect("a poller"));
        driver.set_driven(true);
        let pairs = tcp_pairs(SOCKETS);
        let regs: Vec<(Registration, socket2::Socket)> = pairs
            .iter()
            .map(|(a, _)| {
                a.set_nonblocking(true).expect("non-blocking");
                let reg = Registration::new(&driver, raw(a)).expect("registered");
                (reg, socket2::Socket::from(a.try_clone().expect("a handle")))
            })
            .collect();
        let mut sent = [0usize; SOCKETS];
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); SOCKETS];
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = vec![0u8; 9000];
        let check = |i: usize, from: usize, bytes: &[u8], what: &str| {
            for (k, b) in bytes.iter().enumerate() {
                assert_eq!(
                    *b,
                    byte(i, from + k),
                    "{kind:?}, seed {seed}: socket {i}, {what} byte {}",
                    from + k
                );
            }
        };
        for _ in 0..3000 {
            let i = next(SOCKETS);
            let (reg, sock) = &regs[i];
            match next(6) {
                0 if sent[i] - got[i].len() < 100_000 => {
                    let len = 1 + next(6000);
                    let data: Vec<u8> = (sent[i]..sent[i] + len).map(|at| byte(i, at)).collect();
                    (&pairs[i].1).write_all(&data).expect("written");
                    sent[i] += len;
                }
                1 | 2 => {
                    let len = 1 + next(buf.len());
                    let read =
                        reg.poll_read(&mut cx, len, || reg.recv_stream(sock, &mut buf[..len]));
                    if let Poll::Ready(r) = read {
                        let n = r.expect("a read");
                        assert!(n > 0, "{kind:?}, seed {seed}: no end before the peer's");
                        check(i, got[i].len(), &buf[..n], "read");
                        got[i].extend_from_slice(&buf[..n]);
                    }
                }
                3 => {
                    let len = 1 + next(buf.len());
                    if let Ok(n) = reg.peek_stream(sock, &mut buf[..len]) {
                        check(i, got[i].len(), &buf[..n], "looked-at");
                    }
                }
                _ => {
                    driver.turn(Some(Duration::ZERO), || {}).expect("a turn");
                }
            }
        }
        for (_, b) in &pairs {
            b.shutdown(std::net::Shutdown::Write).expect("the end");
        }
        for (i, (reg, sock)) in regs.iter().enumerate() {
            let mut turns = 0;
            loop {
                match reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(sock, &mut buf)) {
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(n)) => {
                        check(i, got[i].len(), &buf[..n], "read");
                        got[i].extend_from_slice(&buf[..n]);
                    }
                    Poll::Ready(Err(e)) => panic!("{kind:?}, seed {seed}: {e}"),
                    Poll::Pending => {
                        assert!(turns < 200, "{kind:?}, seed {seed}: the end never came");
                        driver
                            .turn(Some(Duration::from_millis(50)), || {})
                            .expect("a turn");
                        turns += 1;
                    }
                }
            }
            assert_eq!(got[i].len(), sent[i], "{kind:?}, seed {seed}: socket {i}");
        }
        assert_eq!(
            driver.buffers_out(),
            0,
            "{kind:?}, seed {seed}: buffers out"
        );
        for ((reg, _), (a, _)) in regs.iter().zip(&pairs) {
            drop(reg.deregister(raw(a)));
        }
    }

    /// Bytes that come while a socket's inbox is idle stay in the ring's buffer (io_uring)
    /// until the socket reads them. Reads in pieces, a look, a turn that ends with bytes
    /// unread, more bytes, the end of the stream and a deregistration all keep every byte,
    /// in order, and every buffer goes back to the kernel.
    #[test]
    fn bytes_held_in_a_receive_buffer_are_read_in_order_across_turns_and_the_buffer_goes_back() {
        on_each_driver(held_on);
    }

    fn held_on(kind: DriverKind) {
        let uring = kind == DriverKind::IoUring;
        let p = Pair::on(kind);
        let zero = Some(Duration::ZERO);
        // A read that waits starts receiving ahead.
        let (got, _) = p.read(0);
        assert!(got.is_empty());
        let mut buf = [0u8; 8];
        let waits = p.reg.recv_stream(&p.sock, &mut buf);
        assert!(
            matches!(&waits, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "{waits:?}"
        );
        p.driver.turn(zero, || {}).expect("a turn");
        let first: Vec<u8> = (0..100u8).collect();
        (&p.b).write_all(&first).expect("written");
        assert_eq!(p.read(10).0, first[..10], "{kind:?}");
        if uring {
            assert!(
                p.reg.holds_buffer() && !p.reg.holds_inbox(),
                "held, no inbox"
            );
            assert_eq!(p.driver.buffers_out(), 1);
        }
        let mut look = [0u8; 5];
        assert_eq!(p.reg.peek_stream(&p.sock, &mut look).expect("a look"), 5);
        assert_eq!(look, first[10..15], "{kind:?}: a look sees the next bytes");
        // The turn ends with bytes unread: they go to the inbox, the buffer back.
        p.driver.turn(zero, || {}).expect("a turn");
        if uring {
            assert!(
                !p.reg.holds_buffer() && p.reg.holds_inbox(),
                "in the inbox now"
            );
            assert_eq!(p.driver.buffers_out(), 0);
        }
        let second: Vec<u8> = (100..200u8).collect();
        (&p.b).write_all(&second).expect("written");
        let (got, end) = p.read(190);
        assert!(!end);
        assert_eq!(
            got,
            [&first[10..], &second[..]].concat(),
            "{kind:?}: in order"
        );
        // Held again, partly read; then the end of the stream.
        (&p.b).write_all(&first).expect("written");
        assert_eq!(p.read(1).0, first[..1], "{kind:?}");
        if uring {
            assert!(p.reg.holds_buffer(), "held again");
        }
        p.b.shutdown(std::net::Shutdown::Write).expect("the end");
        let (got, end) = p.read(1000);
        assert!(end, "{kind:?}: the end comes");
        assert_eq!(got, first[1..], "{kind:?}: every byte before the end");
        if uring {
            assert!(!p.reg.holds_buffer());
            assert_eq!(p.driver.buffers_out(), 0, "every buffer given back");
        }
        drop(p.reg.deregister(raw(&p.a)));
        // A socket taken out of the loop while it holds a buffer gives it back.
        let p = Pair::on(kind);
        assert!(p.read(0).0.is_empty());
        let waits = p.reg.recv_stream(&p.sock, &mut buf);
        assert!(waits.is_err(), "{waits:?}");
        p.driver.turn(zero, || {}).expect("a turn");
        (&p.b).write_all(&first).expect("written");
        assert_eq!(p.read(1).0, first[..1], "{kind:?}");
        if uring {
            assert!(p.reg.holds_buffer());
        }
        drop(p.reg.deregister(raw(&p.a)));
        assert_eq!(p.driver.buffers_out(), 0, "{kind:?}: given back");
    }

    #[test]
    fn tasks_run_between_chunks_of_events_and_slots_closed_meanwhile_stay_taken_until_the_batch_ends(
    ) {
        on_each_driver(chunks_on);
    }

    fn chunks_on(kind: DriverKind) {
        let driver = Rc::new(Driver::new(kind).expect("a poller"));
        let pairs = tcp_pairs(2 * EVENT_CHUNK + 1);
        let (extra, _extra_peer) = &pairs[2 * EVENT_CHUNK];
        let pairs = &pairs[..2 * EVENT_CHUNK];
        let regs: Vec<Registration> = pairs
            .iter()
            .map(|(a, _)| Registration::new(&driver, raw(a)).expect("registered"))
            .collect();
        // Every socket readable: one batch of 2 x EVENT_CHUNK events.
        for (_, b) in pairs {
            (&*b).write_all(b"x").expect("written");
        }
        let mut chunks = 0;
        let mut taken_meanwhile = 0;
        let mut new_reg = None;
        let n = driver
            .turn(Some(Duration::from_secs(10)), || {
                chunks += 1;
                if chunks == 1 {
                    // Close every socket (half of them have events still to come in this
                    // batch) and register a new one: it must not take a closed one's slot.
                    for (r, (a, _)) in regs.iter().zip(pairs) {
                        drop(r.deregister(raw(a)));
                    }
                    new_reg = Some(Registration::new(&driver, raw(extra)).expect("new"));
                    taken_meanwhile = driver.registered();
                }
            })
            .expect("turn");
        // epoll and mio's Windows backend report one event per socket; kqueue one per
        // direction (they are writable too).
        assert!(
            n >= 2 * EVENT_CHUNK,
            "every socket's event in one batch: {n}"
        );
        assert_eq!(
            chunks,
            n / EVENT_CHUNK,
            "the callback runs after every chunk"
        );
        assert_eq!(
            taken_meanwhile,
            2 * EVENT_CHUNK + 1,
            "the closed sockets' slots stay taken while the batch is handed out"
        );
        assert_eq!(driver.registered(), 1, "and are freed when it ends");
        drop(new_reg);
    }

    /// On io_uring a send completes in its own completion, most often at once, in the enter
    /// that submits it: when that wakes no one (nobody waits for the send), the turn waits
    /// on instead of ending with nothing done, and an echo costs one turn per round trip,
    /// not two. Here the peer answers well after the send's completion came: the one turn
    /// still ends with the reader woken by the answer. (On the poll driver a send is a
    /// system call with no completion: there the answer wakes the reader too.)
    #[test]
    fn a_turn_waits_on_past_completions_that_wake_no_one() {
        on_each_driver(send_then_answer_on);
    }

    fn send_then_answer_on(kind: DriverKind) {
        use std::io::Read;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Poll, Wake, Waker};
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let Pair {
            driver,
            a,
            b,
            reg,
            sock,
        } = Pair::on(kind);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 8];
        // Nothing to read yet: the reader waits (on io_uring the driver starts receiving
        // ahead). The events of the registration itself are taken first.
        let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(&sock, &mut buf));
        assert!(read.is_pending());
        driver.turn(Some(Duration::ZERO), || {}).expect("a turn");
        assert_eq!(reg.send_stream(&sock, b"ping").expect("sent"), 4);
        let peer = std::thread::spawn(move || {
            let mut got = [0u8; 4];
            (&b).read_exact(&mut got).expect("the send's bytes");
            assert_eq!(&got, b"ping");
            // Late, so that the send's completion surely comes in an enter of its own.
            std::thread::sleep(Duration::from_millis(100));
            (&b).write_all(b"pong").expect("answered");
            b
        });
        let mut turns = 0;
        while woken.0.load(Ordering::SeqCst) == 0 && turns < 10 {
            driver
                .turn(Some(Duration::from_secs(10)), || {})
                .expect("a turn");
            turns += 1;
        }
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "the answer woke the reader"
        );
        if kind == DriverKind::IoUring {
            assert_eq!(
                turns, 1,
                "one turn took the send's completion and waited on for the answer"
            );
        }
        assert!(!reg.sending(), "the send is over");
        let _b = peer.join().expect("the peer");
        let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(&sock, &mut buf));
        assert!(matches!(read, Poll::Ready(Ok(4))), "{kind:?}: {read:?}");
        assert_eq!(&buf[..4], b"pong");
        drop(reg.deregister(raw(&a)));
    }

    /// A socket that receives ahead on io_uring has no poll (the ring reports its bytes and
    /// its sends' completions); a write that goes to the kernel (as TLS records do) and finds
    /// it full must still be woken when the peer makes room: the poll comes back for it.
    /// On the poll driver the same wait is the ordinary one.
    #[test]
    fn a_write_blocked_in_the_kernel_is_woken_when_the_peer_makes_room_after_reads_went_ahead() {
        on_each_driver(blocked_write_on);
    }

    fn blocked_write_on(kind: DriverKind) {
        use std::io::Read;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Poll, Wake, Waker};
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let Pair {
            driver,
            a,
            b,
            reg,
            sock,
        } = Pair::on(kind);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 8];
        // A read finds nothing: on io_uring the socket receives ahead from now on.
        let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(&sock, &mut buf));
        assert!(read.is_pending());
        driver.turn(Some(Duration::ZERO), || {}).expect("a turn");
        #[cfg(uring)]
        if kind == DriverKind::IoUring {
            assert!(reg.poll_dropped(), "the ring answers this socket now");
        }
        // Writes straight to the kernel until it is full: the writer waits.
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0;
        loop {
            match reg.poll_io(Direction::Write, &mut cx, || (&a).write(&chunk)) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => panic!("{kind:?}: {e}"),
                Poll::Pending => break,
            }
            assert!(written < 1 << 30, "{kind:?}: the kernel never filled");
        }
        let peer = std::thread::spawn(move || {
            let mut left = written;
            let mut sink = vec![0u8; 1 << 16];
            while left > 0 {
                left = left.saturating_sub((&b).read(&mut sink).expect("read"));
            }
            b
        });
        let mut turns = 0;
        while woken.0.load(Ordering::SeqCst) == 0 && turns < 4 {
            driver
                .turn(Some(Duration::from_secs(5)), || {})
                .expect("a turn");
            turns += 1;
        }
        assert!(
            woken.0.load(Ordering::SeqCst) > 0,
            "{kind:?}: the writer was not woken when the peer made room"
        );
        let r = reg.poll_io(Direction::Write, &mut cx, || (&a).write(b"more"));
        assert!(matches!(r, Poll::Ready(Ok(4))), "{kind:?}: {r:?}");
        let _b = peer.join().expect("the peer");
        drop(reg.deregister(raw(&a)));
    }

    /// On io_uring the kernel first gets a few receive buffers (each one it was given is soon
    /// touched, and resident), and more, twice as many per turn, when arrivals in one turn
    /// outnumber them: a receive that found none left ends, is made again, and no byte is
    /// lost. On the poll driver the same reads go to the kernel.
    #[test]
    fn many_arrivals_at_once_get_every_byte_and_the_kernel_more_buffers() {
        on_each_driver(arrivals_on);
    }

    fn arrivals_on(kind: DriverKind) {
        use std::task::{Context, Poll, Waker};
        const SOCKETS: usize = 300;
        let driver = Rc::new(Driver::new(kind).expect("a poller"));
        driver.set_driven(true);
        let pairs = tcp_pairs(SOCKETS);
        let socks: Vec<socket2::Socket> = pairs
            .iter()
            .map(|(a, _)| {
                a.set_nonblocking(true).expect("non-blocking");
                socket2::Socket::from(a.try_clone().expect("a handle"))
            })
            .collect();
        let regs: Vec<Registration> = pairs
            .iter()
            .map(|(a, _)| Registration::new(&driver, raw(a)).expect("registered"))
            .collect();
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 64];
        // Every read finds nothing: on io_uring each socket receives ahead from now on.
        for (reg, sock) in regs.iter().zip(&socks) {
            let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(sock, &mut buf));
            assert!(read.is_pending());
        }
        driver.turn(Some(Duration::ZERO), || {}).expect("a turn");
        let first = driver.buffers_given();
        for (i, (_, b)) in pairs.iter().enumerate() {
            (&*b).write_all(&[i as u8; 40]).expect("written");
        }
        let mut got = vec![0usize; SOCKETS];
        let mut grown = vec![first];
        for _ in 0..50 {
            driver
                .turn(Some(Duration::from_millis(100)), || {})
                .expect("a turn");
            grown.push(driver.buffers_given());
            for (i, (reg, sock)) in regs.iter().zip(&socks).enumerate() {
                while let Poll::Ready(r) =
                    reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(sock, &mut buf))
                {
                    let n = r.expect("a read");
                    assert!(n > 0, "{kind:?}: an end before the bytes");
                    assert!(buf[..n].iter().all(|&x| x == i as u8), "{kind:?}: mixed up");
                    got[i] += n;
                }
            }
            if got.iter().all(|&n| n == 40) {
                break;
            }
        }
        assert!(got.iter().all(|&n| n == 40), "{kind:?}: {got:?}");
        if kind == DriverKind::IoUring {
            assert!(
                first > 0 && (first as usize) < SOCKETS,
                "a few buffers first: {first}"
            );
            let last = *grown.last().expect("turns");
            assert!(
                last > first,
                "{grown:?}: no more buffers when they ran short"
            );
            assert!(
                grown.windows(2).all(|w| w[1] <= 2 * w[0].max(1)),
                "at most twice as many per turn: {grown:?}"
            );
        }
        for ((reg, (a, _)), sock) in regs.into_iter().zip(&pairs).zip(socks) {
            drop(reg.deregister(raw(a)));
            drop(sock);
        }
    }

    /// A connection between messages holds no buffer in the driver: on io_uring its inbox's
    /// room goes back to the ring once every byte in it was read, and its send's once the
    /// send is done, for the next socket that needs room; and the inbox itself, idle, is
    /// folded away. (The poll driver holds none.)
    #[test]
    fn a_socket_between_messages_holds_no_room_in_the_driver() {
        on_each_driver(room_on);
    }

    fn room_on(kind: DriverKind) {
        use std::io::Read;
        use std::task::{Context, Poll, Waker};
        let Pair {
            driver,
            a,
            b,
            reg,
            sock,
        } = Pair::on(kind);
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 64];
        let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(&sock, &mut buf));
        assert!(read.is_pending());
        driver.turn(Some(Duration::ZERO), || {}).expect("a turn");
        for round in 0..3u8 {
            (&b).write_all(&[round; 40]).expect("written");
            // Half of it: the rest waits, in the inbox on io_uring.
            let mut got = 0;
            let mut turns = 0;
            while got == 0 {
                assert!(turns < 50, "{kind:?}: the bytes never came");
                driver
                    .turn(Some(Duration::from_millis(100)), || {})
                    .expect("a turn");
                turns += 1;
                if let Poll::Ready(r) =
                    reg.poll_read(&mut cx, 20, || reg.recv_stream(&sock, &mut buf[..20]))
                {
                    got = r.expect("a read");
                }
            }
            if kind == DriverKind::IoUring && got < 40 {
                assert!(reg.held_room() > 0, "bytes wait: their room is held");
            }
            while got < 40 {
                match reg.poll_read(&mut cx, 64, || reg.recv_stream(&sock, &mut buf)) {
                    Poll::Ready(r) => got += r.expect("a read"),
                    Poll::Pending => {
                        driver
                            .turn(Some(Duration::from_millis(100)), || {})
                            .expect("a turn");
                    }
                }
            }
            assert_eq!(got, 40, "{kind:?}");
            assert_eq!(reg.send_stream(&sock, &[round; 40]).expect("sent"), 40);
            let mut echoed = [0u8; 40];
            wait_sent(&driver, &reg, &format!("{kind:?}"));
            (&b).read_exact(&mut echoed).expect("the send's bytes");
            assert_eq!(echoed, [round; 40]);
            assert_eq!(
                reg.held_room(),
                0,
                "{kind:?}, round {round}: every byte read and sent, yet room is held"
            );
            assert!(
                !reg.holds_inbox(),
                "{kind:?}, round {round}: an idle socket's inbox is folded away"
            );
        }
        drop(reg.deregister(raw(&a)));
    }

    /// Sockets that send one after another, and all at once, get every byte to their peers,
    /// in order. On io_uring the ring's table of sends has a slot per send under way, not
    /// per socket: sockets that send in turn share one slot, sockets that send at once take
    /// a slot each and give it back (before, every socket that ever sent kept a slot, about
    /// 56 bytes, for as long as it lived).
    #[test]
    fn sends_in_turn_and_at_once_arrive_whole_and_the_ring_holds_a_slot_per_send_under_way() {
        on_each_driver(send_slots_on);
    }

    fn send_slots_on(kind: DriverKind) {
        use std::io::Read;
        let uring = kind == DriverKind::IoUring;
        let driver = Rc::new(Driver::new(kind).expect("a poller"));
        driver.set_driven(true);
        let pairs = tcp_pairs(40);
        let regs: Vec<_> = pairs
            .iter()
            .map(|(a, _)| {
                a.set_nonblocking(true).expect("non-blocking");
                let sock = socket2::Socket::from(a.try_clone().expect("a handle"));
                (
                    Registration::new(&driver, raw(a)).expect("registered"),
                    sock,
                )
            })
            .collect();
        let settle = |regs: &[(Registration, socket2::Socket)]| {
            let mut turns = 0;
            while regs.iter().any(|(r, _)| r.sending()) {
                assert!(turns < 100, "{kind:?}: the sends never completed");
                driver
                    .turn(Some(Duration::from_millis(100)), || {})
                    .expect("a turn");
                turns += 1;
            }
        };
        // One after another: one slot, used again and again.
        for (i, (reg, sock)) in regs.iter().enumerate() {
            assert_eq!(reg.send_stream(sock, &[i as u8; 30]).expect("sent"), 30);
            settle(&regs);
        }
        if uring {
            assert_eq!(driver.send_slots(), 1, "one send at a time needs one slot");
        }
        // All at once: a slot each, given back when done; none taken after that.
        for (i, (reg, sock)) in regs.iter().enumerate() {
            assert_eq!(reg.send_stream(sock, &[i as u8; 30]).expect("sent"), 30);
        }
        settle(&regs);
        if uring {
            assert_eq!(driver.send_slots(), regs.len());
        }
        for (i, (reg, sock)) in regs.iter().enumerate() {
            assert_eq!(reg.send_stream(sock, &[i as u8; 30]).expect("sent"), 30);
            settle(&regs);
        }
        if uring {
            assert_eq!(
                driver.send_slots(),
                regs.len(),
                "freed slots are used again"
            );
        }
        for (i, (_, b)) in pairs.iter().enumerate() {
            let mut got = [0u8; 90];
            (&*b).read_exact(&mut got).expect("every byte");
            assert_eq!(got, [i as u8; 90], "{kind:?}");
        }
        for ((reg, _), (a, _)) in regs.into_iter().zip(&pairs) {
            drop(reg.deregister(raw(a)));
        }
    }

    /// A socket that went quiet between messages (on io_uring its inbox folded away) still
    /// gets each new message whole, and then the peer's end of the stream.
    #[test]
    fn a_socket_quiet_between_messages_gets_each_message_and_then_the_end() {
        on_each_driver(quiet_on);
    }

    fn quiet_on(kind: DriverKind) {
        let p = Pair::on(kind);
        for round in 0..4u8 {
            // Quiet: a read waits.
            p.driver.turn(Some(Duration::ZERO), || {}).expect("a turn");
            (&p.b).write_all(&[round; 50]).expect("written");
            let (got, end) = p.read(50);
            assert!(!end, "{kind:?}");
            assert_eq!(got, [round; 50], "{kind:?}, round {round}");
        }
        p.b.shutdown(std::net::Shutdown::Write).expect("the end");
        let (got, end) = p.read(1);
        assert!(end && got.is_empty(), "{kind:?}: the end, after every byte");
        drop(p.reg.deregister(raw(&p.a)));
    }

    /// A socket taken out of the loop just after a send loses no byte: what the driver had
    /// not sent comes back to be written first, and the peer gets everything in order.
    #[test]
    fn a_socket_deregistered_right_after_a_send_loses_no_byte() {
        on_each_driver(deregister_after_send_on);
    }

    fn deregister_after_send_on(kind: DriverKind) {
        use std::io::Read;
        let Pair {
            driver: _driver,
            a,
            b,
            reg,
            sock,
        } = Pair::on(kind);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let n = reg.send_stream(&sock, &data).expect("sent");
        assert!(n > 0, "{kind:?}");
        let unsent = reg.deregister(raw(&a));
        a.set_nonblocking(false).expect("blocking");
        (&a).write_all(&unsent).expect("the unsent bytes");
        (&a).write_all(&data[n..]).expect("the rest");
        drop(a);
        drop(sock);
        let mut got = Vec::new();
        (&b).read_to_end(&mut got).expect("every byte");
        assert_eq!(got.len(), data.len(), "{kind:?}");
        assert!(got == data, "{kind:?}: the bytes arrive in order");
    }

    /// Once receiving ahead stops for good (a refused `into_fd` leaves the socket in the
    /// loop that way), reads go to the kernel again: one that finds nothing must be woken by
    /// the kernel's readiness, which on io_uring needs the socket's poll back.
    #[test]
    fn a_read_after_receiving_ahead_stopped_waits_on_the_kernel_and_is_woken() {
        on_each_driver(read_after_stop_on);
    }

    fn read_after_stop_on(kind: DriverKind) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Poll, Wake, Waker};
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let Pair {
            driver,
            a,
            b,
            reg,
            sock,
        } = Pair::on(kind);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 8];
        let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(&sock, &mut buf));
        assert!(read.is_pending());
        driver.turn(Some(Duration::ZERO), || {}).expect("a turn");
        assert!(reg.stop_receiving(), "{kind:?}: nothing was received ahead");
        let woken_before = woken.0.load(Ordering::SeqCst);
        let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(&sock, &mut buf));
        assert!(read.is_pending(), "{kind:?}: {read:?}");
        let peer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            (&b).write_all(b"late").expect("written");
            b
        });
        let mut turns = 0;
        while woken.0.load(Ordering::SeqCst) == woken_before && turns < 4 {
            driver
                .turn(Some(Duration::from_secs(5)), || {})
                .expect("a turn");
            turns += 1;
        }
        assert!(
            woken.0.load(Ordering::SeqCst) > woken_before,
            "{kind:?}: the reader was not woken by the bytes"
        );
        let read = reg.poll_read(&mut cx, buf.len(), || reg.recv_stream(&sock, &mut buf));
        assert!(matches!(read, Poll::Ready(Ok(4))), "{kind:?}: {read:?}");
        assert_eq!(&buf[..4], b"late");
        let _b = peer.join().expect("the peer");
        drop(reg.deregister(raw(&a)));
    }
}
