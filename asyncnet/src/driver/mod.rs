//! The readiness driver (Nim's `selectors` layer): the only code that talks to the OS poller.
//!
//! Built on `mio`, which registers each socket once, edge-triggered (epoll on Linux, kqueue on
//! the BSDs and macOS). Readiness is remembered per direction in an [`IoState`] and cleared only
//! when an operation meets `WouldBlock` (or reads short), so an edge is never lost because the
//! task that was woken for it was dropped before doing the I/O.
//!
//! ```text
//!  socket ──try I/O──> WouldBlock ──clear(dir), poll_ready(dir)──> task parks
//!  epoll_wait ──event(token)──> IoState::set(dir) ──wake every waiter of dir──> task runs again
//! ```
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;

/// The token of the cross-thread waker; no socket can have it (slab keys are far below).
const WAKE_TOKEN: Token = Token(usize::MAX);

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

const READ: u8 = 1;
const WRITE: u8 = 2;
/// The peer will send nothing more (an event said so); kept until the socket closes.
const READ_CLOSED: u8 = 4;

/// Size of the loop's scratch buffer, which takes a read when the socket has nothing buffered.
pub(crate) const SCRATCH_SIZE: usize = 64 * 1024;

/// Per-socket readiness and the tasks waiting on it.
///
/// Invariant: `ready` holds a direction's bit from the moment an event reports it until an
/// operation in that direction returns `WouldBlock` (or a stream read returns short); tasks in
/// `readers`/`writers` are woken (and removed) whenever the bit is set or the socket closes.
#[derive(Debug)]
pub(crate) struct IoState {
    key: usize,
    ready: Cell<u8>,
    closed: Cell<bool>,
    readers: RefCell<Waiters>,
    writers: RefCell<Waiters>,
}

impl IoState {
    /// Whether the last event said the socket is ready in `dir` (and nothing has consumed it).
    ///
    /// Once the peer has shut down its side, reads stay ready for good: the data and the
    /// hang-up can come in one event, and after a short read consumed the data, the end of
    /// the stream must still be read (no new edge will announce it).
    pub(crate) fn is_ready(&self, dir: Direction) -> bool {
        let r = self.ready.get();
        r & dir.bit() != 0 || (dir == Direction::Read && r & READ_CLOSED != 0)
    }

    /// Forget readiness in `dir`: the last operation met `WouldBlock`.
    pub(crate) fn clear(&self, dir: Direction) {
        self.ready.set(self.ready.get() & !dir.bit());
    }

    /// Mark `dir` ready without an event: bytes wait in a layer above the kernel (TLS).
    pub(crate) fn set_ready(&self, dir: Direction) {
        self.ready.set(self.ready.get() | dir.bit());
    }

    /// Whether an event said that the peer has shut down its sending side.
    pub(crate) fn is_read_closed(&self) -> bool {
        self.ready.get() & READ_CLOSED != 0
    }

    /// Forget a hang-up reported before the socket was connected (an unconnected socket
    /// reports `EPOLLHUP` when registered).
    pub(crate) fn reset_read_closed(&self) {
        self.ready.set(self.ready.get() & !READ_CLOSED);
    }

    /// Whether the socket was deregistered (closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Ready in `dir`, or park the task until it is. Fails once the socket is closed.
    pub(crate) fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed.get() {
            return Poll::Ready(Err(crate::error::closed()));
        }
        if self.is_ready(dir) {
            return Poll::Ready(Ok(()));
        }
        let list = match dir {
            Direction::Read => &self.readers,
            Direction::Write => &self.writers,
        };
        list.borrow_mut().add(cx.waker());
        Poll::Pending
    }

    /// Wake every task waiting in `dir` (they re-check their condition) without changing
    /// readiness.
    pub(crate) fn wake_waiters(&self, dir: Direction) {
        match dir {
            Direction::Read => wake_all(&self.readers),
            Direction::Write => wake_all(&self.writers),
        }
    }

    fn wake(&self, bits: u8) {
        self.ready.set(self.ready.get() | bits);
        if bits & READ != 0 {
            wake_all(&self.readers);
        }
        if bits & WRITE != 0 {
            wake_all(&self.writers);
        }
    }
}

/// The tasks waiting on one direction of a socket. Almost always one: it is kept inline, so
/// that waiting costs no allocation; more go to a list.
#[derive(Debug, Default)]
struct Waiters {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Waiters {
    fn add(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                if !self.more.iter().any(|w| w.will_wake(waker)) {
                    self.more.push(waker.clone());
                }
            }
        }
    }
}

fn wake_all(list: &RefCell<Waiters>) {
    // Take the wakers out first: a woken waker may run code that registers again.
    let (first, more) = {
        let mut l = list.borrow_mut();
        if l.first.is_none() {
            return;
        }
        (l.first.take(), std::mem::take(&mut l.more))
    };
    if let Some(w) = first {
        w.wake();
    }
    for w in more {
        w.wake();
    }
}

/// Work that must be done before the loop next sleeps: a socket's coalesced output.
pub(crate) trait BeforeSleep {
    /// Do it (at most once per [`Driver::defer`]).
    fn before_sleep(self: Rc<Self>);
}

/// The OS poller and the table of registered sockets.
#[derive(Debug)]
pub(crate) struct Driver {
    poll: RefCell<mio::Poll>,
    events: RefCell<Events>,
    ios: RefCell<Slab<Rc<IoState>>>,
    waker: Arc<mio::Waker>,
    /// Takes reads for sockets with nothing buffered; only leftovers are copied out, so
    /// sockets need no buffer of their own between messages.
    pub(crate) scratch: RefCell<Box<[u8]>>,
    /// Empty byte buffers, lent to sockets while they hold bytes (read or write).
    pub(crate) pool: crate::net::BufferPool,
    /// Run before the loop sleeps (weak: an item dropped meanwhile has finished on its own).
    deferred: RefCell<Vec<Weak<dyn BeforeSleep>>>,
    /// The list's previous allocation, reused turn after turn.
    spare: RefCell<Vec<Weak<dyn BeforeSleep>>>,
    /// Closed sockets whose owed bytes are still being written in the background
    /// (`net/linger.rs`); `wait_for` does not return while any is left.
    pub(crate) lingering: std::cell::Cell<usize>,
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE_TOKEN)?);
        Ok(Driver {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(1024)),
            ios: RefCell::new(Slab::new()),
            waker,
            scratch: RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice()),
            pool: crate::net::BufferPool::default(),
            deferred: RefCell::new(Vec::new()),
            spare: RefCell::new(Vec::new()),
            lingering: std::cell::Cell::new(0),
        })
    }

    /// A handle that wakes `turn` from any thread.
    pub(crate) fn remote_waker(&self) -> Arc<mio::Waker> {
        self.waker.clone()
    }

    /// Register `fd` for both directions, once, edge-triggered.
    ///
    /// Any socket can be registered, whatever its domain, type or protocol.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<Rc<IoState>> {
        let mut ios = self.ios.borrow_mut();
        let entry = ios.vacant_entry();
        let key = entry.key();
        self.poll.borrow().registry().register(
            &mut SourceFd(&fd),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let state = Rc::new(IoState {
            key,
            // Optimistic: the first operation tries the system call before waiting.
            ready: Cell::new(READ | WRITE),
            closed: Cell::new(false),
            readers: RefCell::new(Waiters::default()),
            writers: RefCell::new(Waiters::default()),
        });
        entry.insert(state.clone());
        Ok(state)
    }

    /// Deregister `fd` and fail every task waiting on it. Call before `close(2)`, so that the
    /// descriptor number cannot be reused while it is still in the poller.
    pub(crate) fn deregister(&self, io: &IoState, fd: RawFd) {
        if io.closed.replace(true) {
            return;
        }
        // An error here means the fd was already gone from the poller; nothing more to undo.
        let _ = self.poll.borrow().registry().deregister(&mut SourceFd(&fd));
        self.ios.borrow_mut().try_remove(io.key);
        wake_all(&io.readers);
        wake_all(&io.writers);
    }

    /// Have `item` run before the loop next sleeps.
    pub(crate) fn defer(&self, item: Weak<dyn BeforeSleep>) {
        self.deferred.borrow_mut().push(item);
    }

    /// Run the deferred items (the loop is about to sleep, or `wait_for` to return).
    pub(crate) fn run_deferred(&self) {
        if self.deferred.borrow().is_empty() {
            return;
        }
        let spare = std::mem::take(&mut *self.spare.borrow_mut());
        let mut batch = std::mem::replace(&mut *self.deferred.borrow_mut(), spare);
        for item in batch.drain(..) {
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

    /// Wait up to `timeout` for events and wake the tasks they concern. Returns the number of
    /// events that concerned sockets.
    pub(crate) fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut n = 0;
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKE_TOKEN {
                continue;
            }
            // Clone out of the table so that waking (which may close sockets) never runs
            // while the table is borrowed. Unknown tokens belong to sockets closed since.
            let io = match self.ios.borrow().get(token.0) {
                Some(io) => io.clone(),
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
        }
        Ok(n)
    }
}
