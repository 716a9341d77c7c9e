//! Random schedules for the cancel-safety tests (`socket_cancel_schedules.rs`,
//! `accept_schedules.rs`): a seeded generator of operations' fates (dropped before their
//! first poll, after a few, cut by a deadline, or run to the end), and the wrapper that drops
//! a future after so many polls.
//!
//! Include with `#[path = "support/schedule.rs"] mod schedule;` next to `mod support;`.
#![allow(dead_code)]

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use asyncnet::sleep_async;

/// How long an operation that is to be dropped waits for its own wake-up before it is polled
/// again anyway: short, so that a schedule runs in well under a second.
pub const TICK: Duration = Duration::from_micros(300);

/// Schedules per test.
pub const SEEDS: [u64; 6] = [
    0x9e37_79b9_7f4a_7c15,
    0x2545_f491_4f6c_dd1d,
    0xd1b5_4a32_d192_ed03,
    0x8cb9_2ba7_2f3d_8dd7,
    0x5851_f42d_4c95_7f2d,
    0x1405_7b7e_f767_814f,
];

/// The schedules to run: [`SEEDS`], and `ASYNCNET_SCHEDULES=N` more (to look for trouble by
/// hand: `ASYNCNET_SCHEDULES=1000 cargo test --test socket_cancel_schedules`).
pub fn seeds() -> Vec<u64> {
    let more: u64 = std::env::var("ASYNCNET_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // splitmix64 of 1, 2, ...: seeds far apart.
    let mixed = (1..=more).map(|i| {
        let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    });
    SEEDS.into_iter().chain(mixed).collect()
}

/// xorshift64*: a schedule from a seed, the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    /// How many times the next operation is polled before it is dropped (`None`: until it
    /// completes). Half of all operations are dropped, a sixth before their first poll.
    pub fn polls(&mut self) -> Option<u32> {
        match self.below(12) {
            0 | 1 => Some(0),
            2..=4 => Some(1),
            5..=7 => Some(2 + self.below(4) as u32),
            _ => None,
        }
    }

    /// A deadline for the socket, for the next operation: mostly none, sometimes within a
    /// millisecond, sometimes passed already.
    pub fn deadline(&mut self) -> Option<Instant> {
        match self.below(10) {
            0 => Some(Instant::now() + Duration::from_micros(self.below(1000) as u64)),
            1 => Some(Instant::now() - Duration::from_millis(1)),
            _ => None,
        }
    }

    /// A read size: mostly small, sometimes a buffer's worth, now and then more than the
    /// kernel holds.
    pub fn read_size(&mut self) -> usize {
        match self.below(10) {
            0 => 1,
            1..=5 => 1 + self.below(200),
            6..=8 => 1 + self.below(16 * 1024),
            _ => 1 + self.below(256 * 1024),
        }
    }
}

/// A pause of up to two milliseconds.
pub fn pause(rng: &mut Rng) -> Duration {
    Duration::from_micros(rng.below(2000) as u64)
}

/// `fut` polled at most `polls` times (`None`: until it completes), then dropped: `None` if
/// it had not completed. Between two polls it waits for its own wake-up or a [`TICK`],
/// whichever comes first, so that a dropped operation may be half-way through.
pub async fn at_most<F: Future>(fut: F, polls: Option<u32>) -> Option<F::Output> {
    let Some(mut left) = polls else {
        return Some(fut.await);
    };
    let mut fut = pin!(fut);
    let mut tick: Option<Pin<Box<asyncnet::Sleep>>> = None;
    poll_fn(|cx| {
        if left == 0 {
            return Poll::Ready(None);
        }
        left -= 1;
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if left == 0 {
            return Poll::Ready(None);
        }
        let t = tick.insert(Box::pin(sleep_async(TICK)));
        if t.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}

/// The outcome of an operation that may have been dropped (`None`) or timed out by the
/// socket's deadline (`TimedOut`): both `None`; any other error is the test's.
pub fn timed_out<T>(r: Option<io::Result<T>>) -> io::Result<Option<T>> {
    match r {
        Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Ok(None),
        Some(r) => r.map(Some),
        None => Ok(None),
    }
}
