//! Tasks: the table of spawned futures, their wakers and their join handles.
//!
//! A task lives in a slot of the loop's table; its waker names the loop and the slot (key and
//! generation) and is `Send + Sync` (a plain number where it fits, `waker.rs`): woken on the
//! loop's thread it marks the slot and pushes the key onto the table's ready queue (once until
//! the task is polled), woken from any other thread (the resolver pool, a user's thread) it
//! pushes onto the loop's mutex-guarded queue and wakes the poller. No `Rc` ever sits inside
//! a waker.
#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
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

use super::waker::same_gen;
use crate::sys::{Lines, PREFETCH_FROM};

/// How much of a woken task's future is fetched into the cache ahead of its poll (see
/// `sys::Lines`): a connection task's state and what it awaits, not a large future's tail.
const FUTURE_PREFETCH: usize = 256;

/// The key that stands for the future given to `wait_for` in the ready queues.
pub(crate) const MAIN_KEY: usize = usize::MAX;

/// A ready task: slot key and the slot's generation when the waker was made.
pub(crate) type TaskId = (usize, u64);

/// The loops alive in this process, by number: where a wake-up from another thread goes. A
/// number is reused once its loop is gone (a late waker of the old loop then wakes a task of
/// the new one spuriously at worst).
static LOOPS: Mutex<Vec<Option<Arc<Shared>>>> = Mutex::new(Vec::new());

fn loops() -> std::sync::MutexGuard<'static, Vec<Option<Arc<Shared>>>> {
    LOOPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Number a new loop (the lowest free number) and enter what `make` builds for it.
pub(crate) fn register_loop(make: impl FnOnce(u32) -> Arc<Shared>) -> Arc<Shared> {
    let mut loops = loops();
    let free = loops.iter().position(Option::is_none);
    let no = free.unwrap_or(loops.len());
    // Beyond 2^32 loops the numbers alias: spurious wake-ups, never lost ones.
    let shared = make(no as u32);
    match free {
        Some(i) => loops[i] = Some(shared.clone()),
        None => loops.push(Some(shared.clone())),
    }
    shared
}

/// The loop numbered `no` is gone: its number is free again.
pub(crate) fn unregister_loop(no: u32) {
    if let Some(entry) = loops().get_mut(no as usize) {
        *entry = None;
    }
}

/// Wake task `id` of the loop numbered `loop_no` (`shared`: that loop's, if the caller has
/// it; otherwise it is looked up, for a wake-up from another thread).
pub(crate) fn wake_task(loop_no: u32, id: TaskId, shared: Option<&Shared>) {
    // This thread's loop, if the task is one of its own (live loops have distinct numbers).
    let here = super::try_with_loop(|l| l.shared.id == loop_no && l.tasks.notify(id));
    if here == Some(true) {
        return;
    }
    match shared {
        Some(s) => s.post(id),
        None => {
            let target = loops().get(loop_no as usize).cloned().flatten();
            if let Some(s) = target {
                s.post(id);
            }
        }
    }
}

/// What other threads share with a loop: where they post wake-ups, and how they rouse it.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The loop's number (see [`register_loop`]).
    pub(crate) id: u32,
    pub(crate) remote: Mutex<Vec<TaskId>>,
    /// Set when `remote` has entries, so that the loop takes the lock only then.
    pub(crate) remote_pending: AtomicBool,
    pub(crate) poller: Arc<crate::driver::RemoteWaker>,
}

impl Shared {
    /// Post a wake-up from another thread (or from this one, while its loop is torn down).
    fn post(&self, id: TaskId) {
        {
            let mut remote = match self.remote.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            remote.push(id);
            // Under the lock, after the push: a drain that sees the flag sees the entry.
            self.remote_pending.store(true, Ordering::Release);
        }
        // If the loop is gone, nobody is left to wake.
        let _ = self.poller.wake();
    }

    /// Move wake-ups posted from other threads onto the loop's ready queue.
    #[inline]
    pub(crate) fn drain_remote(&self, tasks: &Tasks) {
        // Cross-thread wakes are rare: look at the flag before taking the lock, and read it
        // before clearing it (a plain load costs nothing; a swap is a locked instruction, and
        // this runs several times per turn). A flag set just after the load is not lost: its
        // poster wakes the poller after setting it, so the next turn drains it. The test is
        // inlined, the rest is not.
        if self.remote_pending.load(Ordering::Relaxed) {
            self.drain_remote_now(tasks);
        }
    }

    #[inline(never)]
    fn drain_remote_now(&self, tasks: &Tasks) {
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
        tasks.ready.borrow_mut().extend(remote.drain(..));
    }
}

/// The waker of the `wait_for` future, and of a task whose number does not fit in a word
/// (`waker.rs`).
#[derive(Debug)]
pub(crate) struct TaskWaker {
    id: TaskId,
    /// `wait_for`'s future only (a task's mark is in its slot): set when it is queued,
    /// cleared just before it is polled: one queue entry per poll.
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
        if self.id.0 != MAIN_KEY {
            wake_task(self.shared.id, self.id, Some(&self.shared));
            return;
        }
        if self.notified.swap(true, Ordering::AcqRel) {
            return;
        }
        let local = super::try_with_loop(|l| {
            Arc::ptr_eq(&l.shared, &self.shared) && {
                l.tasks.ready.borrow_mut().push_back(self.id);
                true
            }
        });
        if local != Some(true) {
            self.shared.post(self.id);
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

/// One slot of the task table: 32 bytes, two to a cache line.
struct Slot {
    gen: u64,
    /// `None` while the task is being polled.
    run: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The task is in the ready queue (set by a wake-up on the loop's thread, cleared just
    /// before the task is polled): one queue entry per poll.
    notified: bool,
    /// Set when `abort` hits the task while it is being polled.
    cancelled: bool,
}

/// The table of live tasks.
pub(crate) struct Tasks {
    slots: RefCell<Slab<Slot>>,
    /// Tasks to poll (and `wait_for`'s future, as [`MAIN_KEY`]), in the order they were woken.
    ready: RefCell<VecDeque<TaskId>>,
    /// The wakers of tasks whose number does not fit in a packed waker (`waker.rs`), by
    /// slot; empty on 64-bit targets short of 2^32 tasks or 2^16 loops.
    boxed_wakers: RefCell<HashMap<usize, Waker>>,
    /// This loop's part of its tasks' packed wakers (`None`: they are all boxed).
    pack_base: Option<usize>,
    shared: Arc<Shared>,
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
    pub(crate) fn new(shared: Arc<Shared>) -> Tasks {
        Tasks {
            slots: RefCell::new(Slab::new()),
            ready: RefCell::new(VecDeque::new()),
            boxed_wakers: RefCell::new(HashMap::new()),
            pack_base: super::waker::loop_base(shared.id),
            shared,
            next_gen: Cell::new(1),
            _not_send: PhantomData,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
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
        entry.insert(Slot {
            gen,
            run: Some(Box::pin(TaskFuture {
                future,
                state: state.clone(),
            })),
            notified: false,
            cancelled: false,
        });
        drop(slots);
        if self.packed_waker(id).is_none() {
            let waker = Waker::from(TaskWaker::new(id, self.shared.clone()));
            self.boxed_wakers.borrow_mut().insert(id.0, waker);
        }
        self.notify(id);
        JoinHandle { state, id }
    }

    /// The next task (or `wait_for`'s future) to poll.
    pub(crate) fn next_ready(&self) -> Option<TaskId> {
        self.ready.borrow_mut().pop_front()
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.borrow().is_empty()
    }

    /// Queue task `id` to be polled, unless it is queued already or gone (always true: the
    /// wake-up is dealt with). Called on the loop's thread.
    pub(crate) fn notify(&self, id: TaskId) -> bool {
        // Borrowed only while the table itself changes; a wake-up then (a dropped future's
        // waker) is queued as it is, and `run` drops it if the task is gone.
        if let Ok(mut slots) = self.slots.try_borrow_mut() {
            let many = slots.len() >= PREFETCH_FROM;
            match slots.get_mut(id.0) {
                Some(slot) if same_gen(slot.gen, id.1) => {
                    if slot.notified {
                        return true;
                    }
                    slot.notified = true;
                    // Its poll comes after the rest of the chunk's wake-ups: load the
                    // future meanwhile (with enough tasks that it left the cache).
                    if let Some(run) = slot.run.as_ref().filter(|_| many) {
                        let future: &dyn Future<Output = ()> = &**run;
                        let len = std::mem::size_of_val(future).min(FUTURE_PREFETCH);
                        Lines::new(future as *const dyn Future<Output = ()>, len).prefetch();
                    }
                }
                _ => return true,
            }
        }
        self.ready.borrow_mut().push_back(id);
        true
    }

    /// Poll the task `id` once, if it still exists.
    pub(crate) fn run(&self, id: TaskId) {
        let (mut running, gen) = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(id.0) {
                Some(slot) if same_gen(slot.gen, id.1) => match slot.run.take() {
                    Some(r) => {
                        slot.notified = false;
                        (r, slot.gen)
                    }
                    None => return,
                },
                _ => return,
            }
        };
        let waker = match self.packed_waker((id.0, gen)) {
            Some(w) => w,
            // (Every task without a packed waker got a boxed one at its spawn.)
            None => match self.boxed_wakers.borrow().get(&id.0) {
                Some(w) => w.clone(),
                None => Waker::from(TaskWaker::new((id.0, gen), self.shared.clone())),
            },
        };
        let done = running
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        let mut slots = self.slots.borrow_mut();
        let cancelled = slots.get(id.0).is_none_or(|s| s.cancelled);
        if done || cancelled {
            slots.remove(id.0);
            drop(slots);
            self.forget_waker(id.0);
            drop(running); // outside the borrow: dropping a future may touch the table
        } else if let Some(slot) = slots.get_mut(id.0) {
            // The slot was emptied to poll the task and only `run` fills it: nothing to drop
            // (a plain assignment would call the drop code of a `None` on every poll).
            let empty = slot.run.replace(running);
            debug_assert!(empty.is_none());
            std::mem::forget(empty);
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
                        drop(slots);
                        self.forget_waker(id.0);
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
                self.forget_waker(key);
                drop(slot);
            }
        }
    }

    #[inline]
    fn packed_waker(&self, id: TaskId) -> Option<Waker> {
        super::waker::packed_at(self.pack_base?, id)
    }

    /// The task in slot `key` is gone: so is its boxed waker, if it had one.
    fn forget_waker(&self, key: usize) {
        let mut boxed = self.boxed_wakers.borrow_mut();
        if !boxed.is_empty() {
            boxed.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::poll_fn;
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};
    use std::time::Duration;

    use crate::dispatch::{spawn, try_with_loop, wait_for, waker::NEVER_PACK};

    /// A slot is a future's box, its generation and two flags: two slots to a cache line, so
    /// that waking a task and then polling it touches one line of the table.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_task_slot_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<super::Slot>(), 32);
    }

    /// Where a task's number does not fit in a packed waker (forced here), its waker is an
    /// `Arc` kept by the table: local and remote wake-ups reach the task, repeated ones poll
    /// it once, and the waker goes with the task.
    #[test]
    fn tasks_with_boxed_wakers_are_woken_polled_once_per_wake_up_and_forgotten_at_their_end() {
        std::thread::spawn(|| {
            NEVER_PACK.with(|n| n.set(true));
            let polls = Rc::new(Cell::new(0));
            let shared: Arc<Mutex<Option<Waker>>> = Arc::default();
            let (p, w) = (polls.clone(), shared.clone());
            let task = spawn(poll_fn(move |cx| {
                p.set(p.get() + 1);
                *w.lock().unwrap() = Some(cx.waker().clone());
                if p.get() < 3 {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }));
            // One turn of the loop: it polls the ready task (a short sleep could be over at
            // its first poll on a slow machine, and end `wait_for` before the task ran).
            crate::dispatch::poll(Some(Duration::ZERO)).expect("a turn");
            assert_eq!(polls.get(), 1);
            assert_eq!(
                try_with_loop(|l| l.tasks.boxed_wakers.borrow().len()),
                Some(1)
            );
            // Local wake-ups, many: one poll.
            let waker = shared.lock().unwrap().clone().unwrap();
            for _ in 0..100 {
                waker.wake_by_ref();
            }
            crate::dispatch::poll(Some(Duration::ZERO)).expect("a turn");
            assert_eq!(polls.get(), 2);
            // A wake-up from another thread.
            let waker = shared.lock().unwrap().clone().unwrap();
            std::thread::spawn(move || waker.wake()).join().unwrap();
            wait_for(task);
            assert_eq!(polls.get(), 3);
            assert_eq!(
                try_with_loop(|l| l.tasks.boxed_wakers.borrow().len()),
                Some(0)
            );
        })
        .join()
        .unwrap();
    }
}
