//! Tasks: the table of spawned futures, their wakers and their join handles.
//!
//! A task lives in a slot of the loop's table; its waker names the slot (key and generation)
//! and is `Send + Sync`: woken on the loop's thread it pushes the key onto a thread-local
//! queue, woken from any other thread (the resolver pool, a user's thread) it pushes onto a
//! mutex-guarded queue and wakes the poller. No `Rc` ever sits inside a waker.
#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use pin_project_lite::pin_project;
use slab::Slab;

/// The key that stands for the future given to `wait_for` in the ready queues.
pub(crate) const MAIN_KEY: usize = usize::MAX;

/// A ready task: slot key and the slot's generation when the waker was made.
pub(crate) type TaskId = (usize, u64);

thread_local! {
    /// Tasks of this thread's loop woken on this thread.
    pub(crate) static LOCAL_READY: RefCell<VecDeque<TaskId>> = const { RefCell::new(VecDeque::new()) };
    /// The id of the loop that lives on this thread (0: none yet).
    pub(crate) static CURRENT_LOOP: Cell<u64> = const { Cell::new(0) };
}

/// What other threads share with a loop: where they post wake-ups, and how they rouse it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) remote: Mutex<Vec<TaskId>>,
    /// Set when `remote` has entries, so that the loop takes the lock only then.
    pub(crate) remote_pending: AtomicBool,
    pub(crate) poller: Arc<crate::driver::RemoteWaker>,
}

impl Shared {
    /// Move wake-ups posted from other threads onto the local queue.
    pub(crate) fn drain_remote(&self) {
        // Cross-thread wakes are rare: look at the flag before taking the lock.
        if !self.remote_pending.swap(false, Ordering::Acquire) {
            return;
        }
        let mut remote = match self.remote.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if remote.is_empty() {
            return;
        }
        LOCAL_READY.with(|q| q.borrow_mut().extend(remote.drain(..)));
    }
}

/// The waker of one task (or of the `wait_for` future).
#[derive(Debug)]
pub(crate) struct TaskWaker {
    id: TaskId,
    /// Set when the task is queued, cleared just before it is polled: one queue entry per poll.
    notified: AtomicBool,
    shared: Arc<Shared>,
}

impl TaskWaker {
    pub(crate) fn new(id: TaskId, shared: Arc<Shared>) -> Arc<TaskWaker> {
        Arc::new(TaskWaker {
            id,
            notified: AtomicBool::new(false),
            shared,
        })
    }

    pub(crate) fn clear(&self) {
        self.notified.store(false, Ordering::Release);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.notified.swap(true, Ordering::AcqRel) {
            return;
        }
        let local = CURRENT_LOOP
            .try_with(|c| c.get() == self.shared.id)
            .unwrap_or(false)
            && LOCAL_READY
                .try_with(|q| q.borrow_mut().push_back(self.id))
                .is_ok();
        if !local {
            {
                let mut remote = match self.shared.remote.lock() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                remote.push(self.id);
                // Under the lock, after the push: a drain that sees the flag sees the entry.
                self.shared.remote_pending.store(true, Ordering::Release);
            }
            // If the loop is gone, nobody is left to wake.
            let _ = self.shared.poller.wake();
        }
    }
}

/// What a detached task (one whose [`JoinHandle`] was dropped) leaves behind when it fails:
/// handed to this thread's failure handler (see
/// [`set_task_failure_handler`](crate::set_task_failure_handler)).
pub enum TaskFailure {
    /// The task returned `Err`.
    Error(io::Error),
    /// The task panicked: the payload, as `std::panic::catch_unwind` gives it (the panic
    /// hook has already printed the message and where it happened).
    Panic(Box<dyn Any + Send>),
}

impl fmt::Debug for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskFailure::Error(e) => write!(f, "Error({e})"),
            TaskFailure::Panic(_) => f.write_str("Panic(..)"),
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskFailure::Error(e) => write!(f, "a detached task failed: {e}"),
            TaskFailure::Panic(p) => {
                let message = p
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(a payload that is not text)");
                write!(f, "a detached task panicked: {message}")
            }
        }
    }
}

/// The output of a spawned task, as far as the loop needs to know whether it failed.
///
/// A task whose [`JoinHandle`] was dropped (a detached task, Nim's `asyncCheck`) and that
/// ends in failure hands that failure to the loop's failure handler instead of swallowing it
/// (see [`set_task_failure_handler`](crate::set_task_failure_handler)). Implemented
/// for `()` (never a failure) and `Result<T, E>` (`Err` is a failure); wrap other outputs in
/// `Ok::<_, std::io::Error>(value)` or implement this trait for them.
pub trait TaskOutput: 'static {
    /// The failure this output stands for, if any.
    fn into_failure(self) -> Option<io::Error>;
}

impl TaskOutput for () {
    fn into_failure(self) -> Option<io::Error> {
        None
    }
}

impl<T: 'static, E: Into<Box<dyn Error + Send + Sync>> + 'static> TaskOutput for Result<T, E> {
    fn into_failure(self) -> Option<io::Error> {
        self.err().map(|e| match e.into().downcast::<io::Error>() {
            Ok(io) => *io,
            Err(other) => io::Error::other(other),
        })
    }
}

/// State shared by a task and its join handle.
struct JoinState<T> {
    result: RefCell<Option<std::thread::Result<T>>>,
    waiter: RefCell<Option<Waker>>,
    detached: Cell<bool>,
}

fn failure_of<T: TaskOutput>(result: std::thread::Result<T>) -> Option<TaskFailure> {
    match result {
        Ok(v) => v.into_failure().map(TaskFailure::Error),
        Err(p) => Some(TaskFailure::Panic(p)),
    }
}

pin_project! {
    /// A spawned future and its join state, in one allocation: catches the future's panic
    /// and hands its output to the join handle (or, detached, reports its failure).
    struct TaskFuture<F: Future> {
        #[pin]
        future: F,
        state: Rc<JoinState<F::Output>>,
    }
}

impl<F: Future> Future for TaskFuture<F>
where
    F::Output: TaskOutput,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let mut future = this.future;
        let result = match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(p) => Err(p),
        };
        let state = this.state;
        if state.detached.get() {
            if let Some(f) = failure_of(result) {
                super::report_failure(f);
            }
        } else {
            *state.result.borrow_mut() = Some(result);
            if let Some(w) = state.waiter.borrow_mut().take() {
                w.wake();
            }
        }
        Poll::Ready(())
    }
}

/// A handle to a spawned task: await it for the task's output.
///
/// Dropping the handle detaches the task: it runs on, and if it then fails (returns `Err` or
/// panics) the failure goes to the loop's failure handler (see [`spawn`](crate::spawn)).
pub struct JoinHandle<T: TaskOutput> {
    state: Rc<JoinState<T>>,
    id: TaskId,
}

impl<T: TaskOutput> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T: TaskOutput> JoinHandle<T> {
    /// Whether the task has finished (its output is waiting in this handle).
    pub fn is_finished(&self) -> bool {
        self.state.result.borrow().is_some()
    }

    /// Cancel the task: its future is dropped now (or, if the task is the one running this
    /// call, as soon as it yields). Its output is never produced.
    pub fn abort(self) {
        self.state.detached.set(true);
        // A task that finished already has nothing left to cancel; its result goes with
        // the handle, unreported: the caller asked not to have it.
        self.state.result.borrow_mut().take();
        super::try_with_loop(|rt| rt.tasks.cancel(self.id));
    }
}

impl<T: TaskOutput> Future for JoinHandle<T> {
    type Output = T;

    /// # Panics
    ///
    /// Resumes the task's panic, if it panicked; panics when polled where no asyncnet loop
    /// runs (by another runtime), as the task would never run there.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let taken = self.state.result.borrow_mut().take();
        match taken {
            Some(Ok(v)) => Poll::Ready(v),
            Some(Err(p)) => panic::resume_unwind(p),
            None => {
                super::assert_driven();
                *self.state.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T: TaskOutput> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.state.detached.set(true);
        // A task that already finished with a failure nobody looked at is reported now.
        let taken = self.state.result.borrow_mut().take();
        if let Some(f) = taken.and_then(failure_of) {
            super::report_failure(f);
        }
    }
}

/// One slot of the task table.
struct Slot {
    gen: u64,
    /// `None` while the task is being polled.
    run: Option<Running>,
    /// Set when `abort` hits the task while it is being polled.
    cancelled: bool,
}

struct Running {
    future: Pin<Box<dyn Future<Output = ()>>>,
    waker: Waker,
    wake: Arc<TaskWaker>,
}

/// The table of live tasks.
pub(crate) struct Tasks {
    slots: RefCell<Slab<Slot>>,
    next_gen: Cell<u64>,
    /// Makes the table (and so the loop) `!Send` and `!Sync`.
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks").field("live", &self.len()).finish()
    }
}

impl Tasks {
    pub(crate) fn new() -> Tasks {
        Tasks {
            slots: RefCell::new(Slab::new()),
            next_gen: Cell::new(1),
            _not_send: PhantomData,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    pub(crate) fn spawn<F>(&self, future: F, shared: &Arc<Shared>) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: TaskOutput,
    {
        let state = Rc::new(JoinState {
            result: RefCell::new(None),
            waiter: RefCell::new(None),
            detached: Cell::new(false),
        });
        let gen = self.next_gen.get();
        self.next_gen.set(gen + 1);
        let mut slots = self.slots.borrow_mut();
        let entry = slots.vacant_entry();
        let id = (entry.key(), gen);
        let wake = TaskWaker::new(id, shared.clone());
        let waker = Waker::from(wake.clone());
        entry.insert(Slot {
            gen,
            run: Some(Running {
                future: Box::pin(TaskFuture {
                    future,
                    state: state.clone(),
                }),
                waker: waker.clone(),
                wake,
            }),
            cancelled: false,
        });
        drop(slots);
        waker.wake();
        JoinHandle { state, id }
    }

    /// Poll the task `id` once, if it still exists.
    pub(crate) fn run(&self, id: TaskId) {
        let mut running = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(id.0) {
                Some(slot) if slot.gen == id.1 => match slot.run.take() {
                    Some(r) => r,
                    None => return,
                },
                _ => return,
            }
        };
        running.wake.clear();
        let mut cx = Context::from_waker(&running.waker);
        let done = running.future.as_mut().poll(&mut cx).is_ready();
        let mut slots = self.slots.borrow_mut();
        let cancelled = slots.get(id.0).is_none_or(|s| s.cancelled);
        if done || cancelled {
            slots.remove(id.0);
            drop(slots);
            drop(running); // outside the borrow: dropping a future may touch the table
        } else if let Some(slot) = slots.get_mut(id.0) {
            slot.run = Some(running);
        }
    }

    /// Drop the task's future (or mark it, if it is running now).
    pub(crate) fn cancel(&self, id: TaskId) {
        let taken = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(id.0) {
                Some(slot) if slot.gen == id.1 => match slot.run.take() {
                    Some(r) => {
                        slots.remove(id.0);
                        Some(r)
                    }
                    None => {
                        slot.cancelled = true;
                        None
                    }
                },
                _ => None,
            }
        };
        drop(taken);
    }

    /// Drop every task (the loop is going away). Futures are dropped one at a time, outside
    /// the table's borrow, since dropping one may cancel or spawn others.
    pub(crate) fn clear(&self) {
        loop {
            let keys: Vec<usize> = self.slots.borrow().iter().map(|(k, _)| k).collect();
            if keys.is_empty() {
                return;
            }
            for key in keys {
                let slot = self.slots.borrow_mut().try_remove(key);
                drop(slot);
            }
        }
    }
}
