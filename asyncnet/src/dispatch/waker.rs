//! Task wakers that are a number rather than an allocation.
//!
//! A task's waker names its loop, its slot in the loop's task table and the slot's
//! generation. On a 64-bit target the three fit in the waker's data word: no allocation per
//! task, cloning and dropping cost nothing, and waking touches the task's slot (which the
//! poll that follows touches anyway) instead of a separate reference-counted block: one
//! cache line fewer per wake-up when thousands of connections take turns. Where they do not
//! fit (a 32-bit target, a slot number of 2^32 or more, a loop number of 2^16 or more),
//! [`TaskWaker`](super::task::TaskWaker) carries them in an `Arc` instead, with the same
//! behaviour.
//!
//! The generation is cut to its low 16 bits. A waker that outlives its task by 65,536
//! reuses of the slot may then wake the slot's new task: a spurious wake-up, which every
//! future tolerates. Cancelling a task (its [`JoinHandle`](super::JoinHandle)) compares the
//! whole generation.

use std::ptr;
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::task::{wake_task, TaskId};

/// The generation bits a waker keeps.
pub(crate) const GEN_MASK: u64 = 0xFFFF;

/// Whether `a` and `b` are the same generation as far as a waker can tell.
#[inline]
pub(crate) fn same_gen(a: u64, b: u64) -> bool {
    (a ^ b) & GEN_MASK == 0
}

#[cfg(test)]
thread_local! {
    /// Tests: make no packed wakers on this thread, to drive the boxed ones.
    pub(crate) static NEVER_PACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The waker of task `id` of the loop numbered `loop_no`, if the three fit in one word.
#[cfg(test)]
fn packed(loop_no: u32, id: TaskId) -> Option<Waker> {
    packed_at(loop_base(loop_no)?, id)
}

/// The part of a packed waker that names loop `loop_no`, if it fits (worked out once per
/// loop).
pub(crate) fn loop_base(loop_no: u32) -> Option<usize> {
    #[cfg(test)]
    if NEVER_PACK.with(std::cell::Cell::get) {
        return None;
    }
    base(loop_no)
}

/// The waker of task `id` of the loop whose [`loop_base`] is `base`, if the task's slot
/// number fits.
#[inline]
pub(crate) fn packed_at(base: usize, id: TaskId) -> Option<Waker> {
    let word = pack(base, id)?;
    let raw = RawWaker::new(ptr::without_provenance(word), &VTABLE);
    // SAFETY: the data pointer is a number, never dereferenced: `clone` copies it, `drop`
    // does nothing, and `wake`/`wake_by_ref` decode it and post the wake-up (to this
    // thread's loop, or under a mutex to the loop's thread), which is safe from any thread
    // and at any time, before or after the task or its loop are gone. So every part of the
    // `RawWaker` contract (clones wake the same task, thread safety) holds.
    Some(unsafe { Waker::from_raw(raw) })
}

// Slot key in the high 32 bits, loop number in the next 16, generation in the low 16.

#[cfg(target_pointer_width = "64")]
fn base(loop_no: u32) -> Option<usize> {
    (loop_no <= 0xFFFF).then_some((loop_no as usize) << 16)
}

#[cfg(target_pointer_width = "64")]
#[inline]
fn pack(base: usize, (key, gen): TaskId) -> Option<usize> {
    (key < 1 << 32).then_some(key << 32 | base | (gen & GEN_MASK) as usize)
}

#[cfg(not(target_pointer_width = "64"))]
fn base(_: u32) -> Option<usize> {
    None
}

#[cfg(not(target_pointer_width = "64"))]
fn pack(_: usize, _: TaskId) -> Option<usize> {
    None
}

fn unpack(data: *const ()) -> (u32, TaskId) {
    let word = data.addr() as u64;
    (
        (word >> 16 & 0xFFFF) as u32,
        ((word >> 32) as usize, word & GEN_MASK),
    )
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);

fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake(data: *const ()) {
    let (loop_no, id) = unpack(data);
    wake_task(loop_no, id, None);
}

fn drop(_: *const ()) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_packed_waker_carries_its_loop_slot_and_generation_and_clones_compare_equal() {
        let w = packed(0xFFFF, ((1 << 32) - 1, 0x1_2345)).unwrap();
        assert_eq!(unpack(w.data()), (0xFFFF, ((1 << 32) - 1, 0x2345)));
        let w = packed(7, (0, 0)).unwrap();
        assert_eq!(unpack(w.data()), (7, (0, 0)));
        assert!(w.will_wake(&w.clone()));
        assert!(!w.will_wake(&packed(7, (1, 0)).unwrap()));
    }

    #[test]
    fn what_does_not_fit_in_a_word_gets_no_packed_waker() {
        assert!(packed(1 << 16, (0, 0)).is_none());
        #[cfg(target_pointer_width = "64")]
        assert!(packed(0, (1 << 32, 0)).is_none());
    }

    #[test]
    fn generations_compare_by_their_low_16_bits() {
        assert!(same_gen(0x1_0005, 5));
        assert!(!same_gen(6, 5));
    }
}
