//! Timers: `sleep_async`, `with_timeout`, and the loop's ordered timer queue.
//!
//! Pending timers sit in a `BTreeMap` keyed by `(deadline, id)`, so adding, cancelling and
//! firing each cost `O(log n)` however many are pending (100,000 is routine).
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

type Key = (Instant, u64);

/// The loop's pending timers.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    map: RefCell<BTreeMap<Key, Waker>>,
    next_id: Cell<u64>,
}

impl Timers {
    fn insert(&self, deadline: Instant, waker: Waker) -> Key {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let key = (deadline, id);
        self.map.borrow_mut().insert(key, waker);
        key
    }

    fn update(&self, key: Key, waker: &Waker) {
        if let Some(w) = self.map.borrow_mut().get_mut(&key) {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
    }

    fn remove(&self, key: Key) {
        self.map.borrow_mut().remove(&key);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// The earliest deadline, if any timer is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.borrow().first_key_value().map(|(k, _)| k.0)
    }

    /// Wake every timer due at or before `now`. Returns how many fired.
    pub(crate) fn fire(&self, now: Instant) -> usize {
        let due = {
            let mut map = self.map.borrow_mut();
            // Nothing due (the common case on a busy loop): no split, no allocation.
            if map
                .first_key_value()
                .is_none_or(|((deadline, _), _)| *deadline > now)
            {
                return 0;
            }
            // Split just after `now`: a timer due exactly now fires. No id reaches u64::MAX.
            let later = map.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *map, later)
        };
        let n = due.len();
        for (_, w) in due {
            w.wake();
        }
        n
    }
}

/// The future returned by [`sleep_async`].
#[must_use = "futures do nothing unless you .await or poll them"]
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    key: Option<Key>,
}

/// Complete after `duration` has passed (Nim's `sleepAsync`).
///
/// The timer is registered when the future is first polled, counted from when it was created.
///
/// # Cancel safety
///
/// Dropping the future cancels the timer; nothing else is lost.
///
/// # Panics
///
/// When polled where no asyncnet loop runs (by another runtime): nothing would ever fire the
/// timer (see the crate docs, "Living next to tokio").
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// asyncnet::wait_for(asyncnet::sleep_async(Duration::from_millis(20)));
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// ```
pub fn sleep_async(duration: Duration) -> Sleep {
    sleep_until(after(duration))
}

/// `duration` from now (30 years for a duration past what the clock can say).
fn after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or(now + Duration::from_secs(86400 * 365 * 30))
}

/// Complete at `deadline`.
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

impl Sleep {
    /// When the sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(key) = self.key.take() {
                super::with_loop(|rt| rt.timers.remove(key));
            }
            return Poll::Ready(());
        }
        super::assert_driven();
        let deadline = self.deadline;
        match self.key {
            Some(key) => super::with_loop(|rt| rt.timers.update(key, cx.waker())),
            None => {
                let key = super::with_loop(|rt| rt.timers.insert(deadline, cx.waker().clone()));
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            super::try_with_loop(|rt| rt.timers.remove(key));
        }
    }
}

/// The error of [`with_timeout`] when the time ran out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation timed out")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(e: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// Run `future` for at most `duration` (Nim's `withTimeout`, but the inner future is
/// cancelled when the time runs out).
///
/// Returns `Ok(output)` if the future finished first, `Err(Elapsed)` if the time ran out; in
/// that case the future has been dropped. `Elapsed` converts into an `io::Error` of kind
/// `TimedOut`, so `?` works in functions returning `io::Result`.
///
/// # Cancel safety
///
/// What a timeout loses is what dropping the inner future loses: each socket operation
/// documents it (for `recv_line`, nothing: a partial line stays buffered).
///
/// # Examples
///
/// ```
/// use std::io;
/// use std::time::Duration;
/// use asyncnet::{sleep_async, wait_for, with_timeout, Elapsed};
///
/// // The future finished first: its output.
/// let r = wait_for(with_timeout(async { 7 }, Duration::from_secs(1)));
/// assert_eq!(r, Ok(7));
///
/// // The time ran out first: `Err(Elapsed)`, and the sleep was dropped (cancelled).
/// let r = wait_for(with_timeout(sleep_async(Duration::from_secs(60)), Duration::from_millis(10)));
/// let elapsed: Elapsed = r.unwrap_err();
/// assert_eq!(elapsed.to_string(), "operation timed out");
///
/// // In a function returning `io::Result`, `?` turns `Elapsed` into `TimedOut`.
/// async fn quick() -> io::Result<()> {
///     with_timeout(sleep_async(Duration::from_secs(60)), Duration::from_millis(10)).await?;
///     Ok(())
/// }
/// assert_eq!(wait_for(quick()).unwrap_err().kind(), io::ErrorKind::TimedOut);
/// ```
///
/// A socket read under a timeout, and what a timeout loses there: crate docs, [Timeouts on a
/// server](crate#timeouts-on-a-server).
pub async fn with_timeout<F: Future>(future: F, duration: Duration) -> Result<F::Output, Elapsed> {
    with_deadline(future, after(duration)).await
}

/// Run `future` until `deadline` at most: [`with_timeout`] with an absolute time, for a
/// budget shared by several steps.
///
/// The future is polled first, so one that can complete at once does, even past the deadline
/// (a read whose bytes are buffered, a send that fits the output buffer). For socket
/// operations, [`IoTimeout::deadline`] returns the `io::Result` itself (`TimedOut`), with no
/// `Elapsed` to unwrap. The rule: [Deadlines](crate#deadlines).
///
/// # Cancel safety
///
/// As [`with_timeout`]: a timeout loses what dropping the inner future loses.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use asyncnet::{sleep_async, wait_for, with_deadline};
///
/// wait_for(async {
///     let budget = Instant::now() + Duration::from_millis(50);
///     // Two steps share one budget: the first uses some of it, the second runs out.
///     assert_eq!(with_deadline(async { 1 }, budget).await, Ok(1));
///     sleep_async(Duration::from_millis(10)).await;
///     let r = with_deadline(sleep_async(Duration::from_secs(60)), budget).await;
///     assert!(r.is_err());
///     assert!(Instant::now() >= budget);
/// });
/// ```
pub async fn with_deadline<F: Future>(future: F, deadline: Instant) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut sleep = sleep_until(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

pin_project_lite::pin_project! {
    /// The future of [`IoTimeout::timeout`] and [`IoTimeout::deadline`]: the operation's own
    /// result, or `TimedOut` when the time ran out first.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.sleep.deadline)
            .finish_non_exhaustive()
    }
}

impl<F, T> Future for Timeout<F>
where
    F: Future<Output = io::Result<T>>,
{
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(v);
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()).into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A time limit on one operation (any future of an `io::Result`: a socket operation, or an
/// `async` block of several), as `.timeout(duration)` or `.deadline(instant)`, whose result is
/// the operation's own: `TimedOut` when the time ran out, no `Elapsed` to unwrap.
///
/// This is the per-call form; every operation that waits takes it the same way, so no method
/// has a `_timeout` twin. Per-socket deadlines, which every later operation of a direction
/// obeys, are [`AsyncSocket::set_read_deadline`](crate::AsyncSocket::set_read_deadline) and
/// [`AsyncSocket::set_write_deadline`](crate::AsyncSocket::set_write_deadline). What a timeout
/// loses is what dropping the operation loses, which for every socket operation is nothing:
/// [Deadlines](crate#deadlines).
///
/// # Examples
///
/// ```
/// use std::io;
/// use std::time::{Duration, Instant};
/// use asyncnet::{AsyncSocket, IoTimeout, wait_for};
///
/// wait_for(async {
///     let server = AsyncSocket::new()?;
///     server.bind_addr(0, "127.0.0.1")?;
///     server.listen()?;
///     let client = asyncnet::dial("127.0.0.1", server.local_addr()?.1)
///         .timeout(Duration::from_secs(5))
///         .await?;
///     let peer = server.accept().deadline(Instant::now() + Duration::from_secs(5)).await?;
///     client.send("par").await?;
///     let e = peer.recv_line().timeout(Duration::from_millis(20)).await.unwrap_err();
///     assert_eq!(e.kind(), io::ErrorKind::TimedOut);
///     client.send("tial\n").await?;
///     // Nothing was lost: the line comes back whole.
///     let line = peer.recv_line().timeout(Duration::from_secs(5)).await?;
///     assert_eq!(line.as_deref(), Some("partial"));
///     Ok::<(), io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait IoTimeout<T>: Future<Output = io::Result<T>> + Sized {
    /// Run the operation for at most `duration` (counted from this call).
    fn timeout(self, duration: Duration) -> Timeout<Self> {
        self.deadline(after(duration))
    }

    /// Run the operation until `deadline` at most. It is polled first, so one that can
    /// complete at once does, even past the deadline.
    fn deadline(self, deadline: Instant) -> Timeout<Self> {
        Timeout {
            future: self,
            sleep: sleep_until(deadline),
        }
    }
}

impl<F, T> IoTimeout<T> for F where F: Future<Output = io::Result<T>> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn timer_due_exactly_now_fires_and_later_ones_wait() {
        let t = Timers::default();
        let c = Arc::new(Count(0.into()));
        let now = Instant::now();
        t.insert(now, Waker::from(c.clone()));
        t.insert(now + Duration::from_secs(1), Waker::from(c.clone()));
        assert_eq!(t.fire(now), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn hundred_thousand_timers_fire_in_deadline_order() {
        let t = Timers::default();
        let c = Arc::new(Count(0.into()));
        let base = Instant::now();
        for i in (0..100_000u64).rev() {
            t.insert(base + Duration::from_micros(i), Waker::from(c.clone()));
        }
        assert_eq!(t.next_deadline(), Some(base));
        assert_eq!(t.fire(base + Duration::from_micros(49_999)), 50_000);
        assert_eq!(t.len(), 50_000);
        assert_eq!(
            t.next_deadline(),
            Some(base + Duration::from_micros(50_000))
        );
    }
}
