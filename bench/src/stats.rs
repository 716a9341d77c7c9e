//! Latency histogram and medians.

/// Values below this are kept exactly; above, each power of two is split
/// into `SUB / 2` buckets (relative error under 1/64, about 1.6 %).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * HALF) as usize;

/// A log-linear histogram of `u64` values (nanoseconds here), fixed size
/// whatever the number of samples.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= SUB_BITS
        let m = v >> (e - (SUB_BITS - 1)); // in [HALF, SUB)
        (SUB + u64::from(e - SUB_BITS) * HALF + (m - HALF)) as usize
    }

    /// The middle of bucket `i`'s range.
    fn value_of(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let e = (i - SUB) / HALF + u64::from(SUB_BITS);
        let m = (i - SUB) % HALF + HALF;
        let shift = e - u64::from(SUB_BITS - 1);
        (m << shift) + ((1u64 << shift) >> 1)
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.max = 0;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0..=1.0), 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value_of(i).min(self.max);
            }
        }
        self.max
    }
}

/// The median of `values` (mean of the two middle ones for an even count);
/// NaN when empty. NaNs in the input sort last.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_two_percent() {
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            1000,
            12_345,
            1 << 20,
            987_654_321,
            u64::MAX / 3,
        ] {
            let i = Histogram::index(v);
            assert!(i < BUCKETS);
            let back = Histogram::value_of(i) as f64;
            let err = (back - v as f64).abs() / (v as f64).max(1.0);
            assert!(err < 0.02, "v={v} back={back} err={err}");
        }
        assert!(Histogram::index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=100u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.02, "{p50}");
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.02, "{p99}");
        assert_eq!(h.quantile(1.0), 100_000);
        h.clear();
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn medians() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
