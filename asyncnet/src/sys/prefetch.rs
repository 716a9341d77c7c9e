//! A hint to the processor: start loading cache lines now, because the program is about to
//! read them. When thousands of connections take turns, each connection's state has left
//! the cache by its next turn; loading the state of a whole batch of ready connections at
//! once overlaps those misses instead of taking them one after another.

/// The size of a cache line assumed (x86-64's, and most processors').
const LINE: usize = 64;

/// How many connections a loop serves before it prefetches their state: the state of fewer
/// stays in the caches between their turns (at 50 connections an echo round trip misses
/// about 3 first-level lines, at 500 about 11: `bench/README.md`), and prefetching it would
/// cost about 90 instructions per round trip and save nothing.
pub(crate) const PREFETCH_FROM: usize = 128;

/// Start loading the cache line holding `p` into every cache level. A hint only: nothing is
/// read that the program sees, it never faults whatever `p` is (dangling, unmapped or null),
/// and it is nothing on processors other than x86-64.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` reads nothing the program can observe and never faults, whatever
    // the address: it is a hint to the cache, valid for any pointer.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The cache lines a run of bytes spans, in one word: the first line's address, and in its
/// six low bits (zero in a line's address) how many lines (at most 63). [`Lines::NONE`] is
/// none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lines(usize);

impl Lines {
    /// No lines.
    pub(crate) const NONE: Lines = Lines(0);

    /// The lines that the `len` bytes at `at` span (those of the first 63 lines of them).
    pub(crate) fn new<T: ?Sized>(at: *const T, len: usize) -> Lines {
        if len == 0 {
            return Lines::NONE;
        }
        let at = at.cast::<u8>() as usize;
        let first = at & !(LINE - 1);
        let count = (at - first)
            .saturating_add(len)
            .div_ceil(LINE)
            .min(LINE - 1);
        Lines(first | count)
    }

    /// The lines of an `Rc`'s block: the two counts before its value (a clone or a drop
    /// touches them) and the value's first `len` bytes.
    pub(crate) fn of_rc<T>(rc: &std::rc::Rc<T>, len: usize) -> Lines {
        let counts = 2 * std::mem::size_of::<usize>();
        let block = std::rc::Rc::as_ptr(rc).cast::<u8>().wrapping_sub(counts);
        Lines::new(block, counts + len)
    }

    /// How many lines.
    pub(crate) fn count(self) -> usize {
        self.0 & (LINE - 1)
    }

    /// [`prefetch`] each of the lines.
    #[inline(always)]
    pub(crate) fn prefetch(self) {
        let first = self.0 & !(LINE - 1);
        for i in 0..self.count() {
            prefetch(std::ptr::without_provenance::<u8>(
                first.wrapping_add(i * LINE),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_every_cache_line_a_run_of_bytes_touches() {
        let at = |a: usize| std::ptr::without_provenance::<u8>(a);
        assert_eq!(Lines::new(at(0x1000), 64).count(), 1);
        assert_eq!(Lines::new(at(0x1000), 65).count(), 2);
        // 208 bytes (an `Rc` block from the allocator, 16-byte aligned) take four lines from
        // any of its starts; a byte more, five from the last one.
        for start in [0x1000, 0x1010, 0x1020, 0x1030] {
            assert_eq!(Lines::new(at(start), 208).count(), 4, "{start:x}");
        }
        assert_eq!(Lines::new(at(0x1030), 209).count(), 5);
        assert_eq!(Lines::new(at(0x1030), 0).count(), 0);
        assert_eq!(Lines::new(at(0x1030), 1 << 20).count(), 63, "capped");
        assert_eq!(
            Lines::new(at(usize::MAX - 10), usize::MAX).count(),
            63,
            "no overflow"
        );
        assert_eq!(Lines::NONE.count(), 0);
        // An `Rc`'s block: its 16 bytes of counts and a 200-byte value span four lines or five.
        let rc = std::rc::Rc::new([0u8; 200]);
        assert!((4..=5).contains(&Lines::of_rc(&rc, 200).count()));
    }

    #[test]
    fn prefetching_any_address_is_harmless() {
        let x = [7u64; 32];
        prefetch(&x);
        prefetch(std::ptr::null::<u8>());
        prefetch(std::ptr::without_provenance::<u8>(usize::MAX));
        Lines::new(x.as_ptr(), std::mem::size_of_val(&x)).prefetch();
        Lines::new(std::ptr::without_provenance::<u8>(8), 4096).prefetch();
        Lines::NONE.prefetch();
        assert_eq!(x[31], 7);
    }
}
