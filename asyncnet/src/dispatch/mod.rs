//! The dispatcher (Nim's `asyncdispatch`): one event loop per thread, created on first use.
//!
//! A loop turn runs `call_soon` callbacks and ready tasks, waits for I/O (no longer than the
//! next timer, rounded up to a whole millisecond so that it never spins), wakes the tasks the
//! events concern, fires due timers, and runs the tasks woken by all that. The events are
//! handed out 16 at a time, each chunk's tasks run (and their coalesced output is written)
//! before the next chunk: a task then runs while what its wake-up touched is still in cache,
//! which keeps the cost per event flat from tens to thousands of connections.
//!
//! The loop and everything bound to it (sockets, join handles) are `!Send`:
//!
//! ```compile_fail
//! fn assert_send<T: Send>(_: T) {}
//! assert_send(asyncnet::AsyncSocket::new().unwrap());
//! ```
//!
//! ```compile_fail
//! fn assert_send<T: Send>(_: T) {}
//! assert_send(asyncnet::spawn(async {}));
//! ```
// No unsafe code here, nor in the submodules but one (each of which forbids it).
#![deny(unsafe_code)]

mod choice;
mod task;
mod time;
// The one unsafe block: a waker made from a number (`Waker::from_raw`).
#[allow(unsafe_code)]
mod waker;

pub use choice::{driver_kind, io_uring_support, use_driver, DRIVER_ENV};
pub use task::{JoinHandle, TaskFailure, TaskOutput};
pub(crate) use time::sleep_until;
pub use time::{sleep_async, with_deadline, with_timeout, Elapsed, IoTimeout, Sleep, Timeout};

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic;
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::driver::Driver;
use task::{Shared, TaskWaker, Tasks, MAIN_KEY};
use time::Timers;

/// How many tasks run before the loop looks at I/O again, so that a busy task set cannot
/// starve sockets.
const BUDGET: usize = 256;

/// One thread's event loop.
pub(crate) struct Loop {
    pub(crate) driver: Rc<Driver>,
    pub(crate) tasks: Tasks,
    pub(crate) timers: Timers,
    shared: Arc<Shared>,
    soon: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    /// Failures raised ([`TaskFailure::raise`]) and not yet returned by `poll`/`wait_for`.
    failures: RefCell<VecDeque<TaskFailure>>,
    /// What to do with a detached task's failure (`None`: [`TaskFailure::report`]).
    on_failure: RefCell<Option<FailureHandler>>,
    /// Set while a `wait_for`/`poll` runs, to refuse nesting.
    running: Cell<bool>,
    main_woken: Cell<bool>,
    /// `wait_for`'s future has returned: only background work keeps it (see `turn`).
    main_done: Cell<bool>,
    main_gen: Cell<u64>,
    /// Background work that `wait_for` waits for before it returns (see [`Background`]).
    background: Rc<Cell<usize>>,
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loop")
            .field("tasks", &self.tasks)
            .field("timers", &self.timers.len())
            .field("sockets", &self.driver.registered())
            .finish()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Tasks own sockets; dropping them closes those sockets while the driver still exists.
        self.tasks.clear();
        self.soon.borrow_mut().clear();
        task::unregister_loop(self.shared.id);
    }
}

thread_local! {
    static LOOP: OnceCell<Rc<Loop>> = const { OnceCell::new() };
}

/// This thread's loop, created on first use. Creation fails only if the OS refuses a poller
/// (out of descriptors); a later call tries again.
fn get_or_create(cell: &OnceCell<Rc<Loop>>) -> io::Result<&Rc<Loop>> {
    if let Some(l) = cell.get() {
        return Ok(l);
    }
    let l = Rc::new(Loop::new()?);
    Ok(cell.get_or_init(|| l))
}

/// Run `f` with this thread's loop (created on first use).
///
/// # Panics
///
/// If the OS refuses to create a poller (out of file descriptors at the very first use), or
/// if called while the thread is being torn down. Sockets report the first case as an error
/// instead (they get the loop through [`driver`]).
pub(crate) fn with_loop<R>(f: impl FnOnce(&Loop) -> R) -> R {
    LOOP.with(|c| match get_or_create(c) {
        Ok(l) => f(l),
        Err(e) => panic!("asyncnet: cannot create the event loop (epoll/kqueue): {e}"),
    })
}

/// Run `f` with this thread's loop if it exists and the thread is not being torn down.
pub(crate) fn try_with_loop<R>(f: impl FnOnce(&Loop) -> R) -> Option<R> {
    LOOP.try_with(|c| c.get().map(|l| f(l))).ok().flatten()
}

/// This thread's driver, for sockets to keep.
///
/// # Errors
///
/// The loop does not exist yet and the OS refuses a poller (out of descriptors).
pub(crate) fn driver() -> io::Result<Rc<Driver>> {
    LOOP.with(|c| get_or_create(c).map(|l| l.driver.clone()))
}

type FailureHandler = Box<dyn FnMut(TaskFailure)>;

/// A detached task failed: hand it to the thread's handler (by default, standard error).
pub(crate) fn report_failure(f: TaskFailure) {
    let handler = try_with_loop(|l| l.on_failure.borrow_mut().take()).flatten();
    match handler {
        None => f.report(),
        Some(mut handler) => {
            handler(f);
            // Put it back unless the handler installed another meanwhile.
            try_with_loop(|l| {
                let mut slot = l.on_failure.borrow_mut();
                if slot.is_none() {
                    *slot = Some(handler);
                }
            });
        }
    }
}

/// Choose what this thread's loop does when a detached task (one whose [`JoinHandle`] was
/// dropped, Nim's `asyncCheck`) fails: returns `Err`, or panics.
///
/// By default the failure is written to standard error ([`TaskFailure::report`]) and the
/// loop goes on: a server whose connection task returns `Err` on a peer's bad input (a line
/// that is not UTF-8, one too long) keeps serving everyone else, and so does one whose task
/// panics (as a thread's panic does not end the process, the panic hook prints it and the
/// task is gone). Other choices:
///
/// - [`TaskFailure::raise`]: Nim's behaviour: [`poll`], [`drain`] and [`run_forever`] return
///   the error (and resume the panic), [`wait_for`] panics with it. For programs and tests in
///   which any failure is a bug.
/// - your own function: count, log or collect failures, or end the program on some of them.
///
/// The handler runs on the loop's thread, right after the task ended. Failures of tasks
/// whose handle is kept go to the handle instead, never here.
///
/// # Examples
///
/// ```
/// use std::{cell::RefCell, io, rc::Rc};
/// use asyncnet::{set_task_failure_handler, spawn, TaskFailure};
///
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let log = seen.clone();
/// set_task_failure_handler(move |f: TaskFailure| log.borrow_mut().push(f.to_string()));
/// drop(spawn(async { Err::<(), _>(io::Error::other("bad input")) }));
/// // Run the loop until nothing is left to run (Nim's `drain`).
/// asyncnet::drain(std::time::Duration::from_secs(5))?;
/// assert_eq!(*seen.borrow(), ["a detached task failed: bad input"]);
/// # set_task_failure_handler(TaskFailure::report);
/// # Ok::<(), io::Error>(())
/// ```
pub fn set_task_failure_handler(handler: impl FnMut(TaskFailure) + 'static) {
    with_loop(|l| *l.on_failure.borrow_mut() = Some(Box::new(handler)));
}

impl TaskFailure {
    /// Write the failure to standard error and go on (the default handler).
    pub fn report(self) {
        eprintln!("asyncnet: {self}");
    }

    /// Hand the failure back to the loop: the next [`poll`], [`drain`] or [`run_forever`]
    /// returns it (a panic is resumed there), and [`wait_for`] panics with it (Nim's
    /// `waitFor` on a failed `asyncCheck`). As a handler:
    /// `set_task_failure_handler(TaskFailure::raise)`.
    pub fn raise(self) {
        try_with_loop(|l| l.failures.borrow_mut().push_back(self));
    }
}

impl Loop {
    fn new() -> io::Result<Loop> {
        let driver = Driver::new(choice::wanted())?;
        let poller = driver.remote_waker();
        let shared = task::register_loop(|id| {
            Arc::new(Shared {
                id,
                remote: Mutex::new(Vec::new()),
                remote_pending: std::sync::atomic::AtomicBool::new(false),
                poller,
            })
        });
        Ok(Loop {
            tasks: Tasks::new(shared.clone()),
            shared,
            driver: Rc::new(driver),
            timers: Timers::default(),
            soon: RefCell::new(VecDeque::new()),
            failures: RefCell::new(VecDeque::new()),
            on_failure: RefCell::new(None),
            running: Cell::new(false),
            main_woken: Cell::new(false),
            main_done: Cell::new(false),
            main_gen: Cell::new(0),
            background: Rc::new(Cell::new(0)),
        })
    }

    fn has_ready(&self) -> bool {
        self.tasks.has_ready() || !self.soon.borrow().is_empty() || self.main_woken.get()
    }

    /// Run queued callbacks and ready tasks, up to the budget.
    ///
    /// Called three times a turn, often with nothing to run: the tests are inlined, the
    /// running is not.
    #[inline]
    fn run_ready(&self) {
        if !self.soon.borrow().is_empty() {
            self.run_soon();
        }
        self.shared.drain_remote(&self.tasks);
        if self.tasks.has_ready() {
            self.run_tasks();
        }
    }

    #[inline(never)]
    fn run_soon(&self) {
        let soon: Vec<_> = self.soon.borrow_mut().drain(..).collect();
        for f in soon {
            f();
        }
    }

    /// Run ready tasks, up to the budget.
    #[inline(never)]
    fn run_tasks(&self) {
        for _ in 0..BUDGET {
            let next = self.tasks.next_ready();
            match next {
                Some((MAIN_KEY, gen)) => {
                    if gen == self.main_gen.get() {
                        self.main_woken.set(true);
                    }
                }
                Some(id) => self.tasks.run(id),
                None => return,
            }
        }
    }

    /// One turn: ready work, then I/O for at most `timeout` (`None`: until something happens).
    /// `for_main`: a `wait_for` future is waiting too, so even with no task left there is
    /// someone for an event to wake.
    fn turn(&self, timeout: Option<Duration>, for_main: bool) -> io::Result<()> {
        self.run_ready();
        // Coalesced output leaves before the loop sleeps (it may spawn flushers: count them).
        self.driver.run_deferred();
        // `wait_for` returns once its future has and the background work is over: work that
        // ended in this turn's tasks (a closed socket whose last bytes the kernel took) must
        // not leave it asleep with nothing left to wake it.
        let main_free = for_main && self.main_done.get() && self.background.get() == 0;
        let nothing_to_wait_for = !(for_main || self.pending()) || main_free;
        let failed = !self.failures.borrow().is_empty();
        let wait = if self.has_ready() || nothing_to_wait_for || failed {
            Some(Duration::ZERO)
        } else {
            let next = match (self.timers.next_deadline(), self.driver.deadlines.next()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let until_timer = next.map(|d| {
                // Round up to whole milliseconds: epoll's unit. Rounding down would wake
                // early, find nothing due, and spin with zero timeouts until the deadline.
                let left = d.saturating_duration_since(Instant::now());
                let ms = left.as_nanos().div_ceil(1_000_000);
                Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
            });
            match (timeout, until_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        // Every chunk of events: run the tasks it woke and write what they sent.
        self.driver.turn(wait, || {
            self.run_ready();
            self.driver.run_deferred();
        })?;
        // No clock read for a loop without timers (a read deadline that has passed since the
        // last read is caught when its timer is armed: it is due, and the next turn fires it).
        if self.timers.len() > 0 || !self.driver.deadlines.is_empty() {
            let now = Instant::now();
            self.timers.fire(now);
            self.driver.deadlines.expire(now);
        }
        self.run_ready();
        // The turn ends: what its tasks sent leaves now, not at the next turn.
        self.driver.run_deferred();
        Ok(())
    }

    /// Take the oldest raised failure of a detached task.
    fn take_failure(&self) -> Option<TaskFailure> {
        self.failures.borrow_mut().pop_front()
    }

    /// Anything left to run, or a failure left to report.
    fn pending(&self) -> bool {
        self.tasks.len() > 0
            || self.timers.len() > 0
            || !self.soon.borrow().is_empty()
            || !self.failures.borrow().is_empty()
    }

    fn enter(&self, what: &str) -> EnterGuard<'_> {
        if self.running.replace(true) {
            panic!("asyncnet: {what} called from inside the event loop (a task cannot block on the loop that runs it)");
        }
        self.driver.set_driven(true);
        EnterGuard(self)
    }
}

struct EnterGuard<'a>(&'a Loop);

impl Drop for EnterGuard<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
        self.0.driver.set_driven(false);
        // Sends queued on the io_uring ring by the last turn leave now: the caller may wait
        // for their bytes (no turn is coming).
        self.0.driver.submit();
    }
}

/// Panic unless this thread's loop is running: a future that parks outside it (polled by
/// another runtime) would never be woken. Futures that can return an error return
/// [`not_driven`](crate::error::not_driven) instead.
pub(crate) fn assert_driven() {
    if !loop_running() {
        panic!("{}", crate::error::NOT_DRIVEN);
    }
}

/// Surface a detached task's failure: an error becomes `Err`, a panic resumes.
fn surface(f: TaskFailure) -> io::Error {
    match f {
        TaskFailure::Error(e) => e,
        TaskFailure::Panic(p) => panic::resume_unwind(p),
    }
}

/// Run the loop until `future` completes, and return its output (Nim's `waitFor`).
///
/// Other tasks (from [`spawn`]) run meanwhile. The loop is this thread's own, created on
/// first use; it keeps its tasks and sockets between calls.
///
/// Before returning, it also waits until sockets that were closed (or dropped) with bytes
/// still queued have handed them to the kernel, for at most
/// [`CLOSE_LINGER`](crate::CLOSE_LINGER) each, so that a program which ends after
/// `wait_for` loses none of what it sent. Those are the only tasks it waits for.
///
/// # Panics
///
/// - when a detached task's failure was raised ([`TaskFailure::raise`], which is not the
///   default: see [`set_task_failure_handler`]): its panic is resumed, its error becomes a
///   panic naming it, as Nim's `waitFor` raises the exception of a failed `asyncCheck`.
/// - when called from inside a task of the loop.
///
/// # Examples
///
/// ```
/// let n = asyncnet::wait_for(async { 6 * 7 });
/// assert_eq!(n, 42);
/// ```
pub fn wait_for<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    with_loop(|l| {
        let _guard = l.enter("wait_for");
        let gen = l.main_gen.get() + 1;
        l.main_gen.set(gen);
        let wake = TaskWaker::new((MAIN_KEY, gen), l.shared.clone());
        let waker = Waker::from(wake.clone());
        let mut cx = Context::from_waker(&waker);
        l.main_woken.set(true);
        l.main_done.set(false);
        let mut output = None;
        loop {
            if output.is_none() && l.main_woken.replace(false) {
                wake.clear();
                if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                    // What the future sent last leaves before the caller gets control.
                    l.driver.run_deferred();
                    output = Some(v);
                    l.main_done.set(true);
                }
            }
            if let Some(f) = l.take_failure() {
                panic!("asyncnet: a detached task failed: {}", surface(f));
            }
            // Closed sockets' queued bytes reach the kernel (or time out) before returning.
            if l.background.get() == 0 {
                if let Some(v) = output.take() {
                    l.main_done.set(false);
                    return v;
                }
            }
            if let Err(e) = l.turn(None, true) {
                panic!("asyncnet: the event loop's poller failed: {e}");
            }
        }
    })
}

/// Run `future` as a task of this thread's loop (Nim's `asyncCheck`, with a handle).
///
/// The task starts at the next loop turn. Await the returned [`JoinHandle`] for its output,
/// or drop the handle to detach the task. A detached task that fails (returns `Err` or
/// panics) is never swallowed: its failure goes to the loop's failure handler, which by
/// default writes it to standard error and goes on (see [`set_task_failure_handler`]).
///
/// # Examples
///
/// ```
/// use asyncnet::{spawn, wait_for};
/// let h = spawn(async { Ok::<_, std::io::Error>(2 + 2) });
/// assert_eq!(wait_for(h).unwrap(), 4);
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: TaskOutput,
{
    with_loop(|l| l.tasks.spawn(future))
}

/// Spawn a detached helper task of the library itself; does nothing while the thread is
/// being torn down.
pub(crate) fn spawn_internal(future: impl Future<Output = ()> + 'static) {
    try_with_loop(|l| drop(l.tasks.spawn(future)));
}

/// Whether this thread's loop is running (inside `wait_for`, `poll`, ...): a task spawned
/// now is sure to be polled. False outside, and while the thread is being torn down.
pub(crate) fn loop_running() -> bool {
    try_with_loop(|l| l.running.get()).unwrap_or(false)
}

/// Background work of the library that [`wait_for`] waits for before it returns (a closed
/// socket's queued bytes on their way to the kernel), counted from [`Background::start`]
/// until the guard is dropped.
#[derive(Debug)]
pub(crate) struct Background(Rc<Cell<usize>>);

impl Background {
    /// Count one piece of background work on this thread's loop; `None` while the thread is
    /// being torn down (no `wait_for` can come any more).
    pub(crate) fn start() -> Option<Background> {
        try_with_loop(|l| {
            l.background.set(l.background.get() + 1);
            Background(l.background.clone())
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Run `callback` at the start of the next loop turn (Nim's `callSoon`).
pub fn call_soon(callback: impl FnOnce() + 'static) {
    with_loop(|l| l.soon.borrow_mut().push_back(Box::new(callback)));
}

/// Whether the loop has anything left to do: live tasks, pending timers or callbacks, or a
/// raised failure not yet returned (Nim's `hasPendingOperations`).
pub fn has_pending_operations() -> bool {
    with_loop(|l| l.pending())
}

/// Run one loop iteration, waiting at most `timeout` for I/O (`None`: until an event or the
/// next timer). Returns at once if nothing is pending. Due timers fire even with `None`.
///
/// # Errors
///
/// The poller's own error, or a detached task's failure that was raised
/// ([`TaskFailure::raise`]; by default failures are reported, not raised).
///
/// # Panics
///
/// Resumes a raised panic of a detached task; panics if called from inside a task.
pub fn poll(timeout: Option<Duration>) -> io::Result<()> {
    with_loop(|l| {
        let _guard = l.enter("poll");
        if let Some(f) = l.take_failure() {
            return Err(surface(f));
        }
        if !l.pending() {
            return Ok(());
        }
        l.turn(timeout, false)?;
        match l.take_failure() {
            Some(f) => Err(surface(f)),
            None => Ok(()),
        }
    })
}

/// Run the loop until nothing is pending or `timeout` has passed (Nim's `drain`).
///
/// # Errors
///
/// As [`poll`].
pub fn drain(timeout: Duration) -> io::Result<()> {
    // A timeout too large for the clock means "until nothing is pending".
    let end = Instant::now().checked_add(timeout);
    while has_pending_operations() {
        let now = Instant::now();
        match end {
            Some(end) if now >= end => break,
            Some(end) => poll(Some(end - now))?,
            None => poll(None)?,
        }
    }
    Ok(())
}

/// Run the loop until nothing is left to do (Nim's `runForever`; a server never gets there).
///
/// # Errors
///
/// As [`poll`].
pub fn run_forever() -> io::Result<()> {
    while has_pending_operations() {
        poll(None)?;
    }
    Ok(())
}
