//! The sliding window of a boosted route's outcomes that its triggers read.
//!
//! The window is a ring of sub-buckets, **one per adjustment period**: a
//! request's outcome ([`Window::observe`], on the request path: relaxed atomic
//! adds only) goes to the current sub-bucket; each tick first evaluates the
//! triggers over the ring, then rotates it (the oldest sub-bucket is cleared and
//! becomes the current one). A `window` of `W` with period `P` is
//! `k = ⌈W / P⌉` sub-buckets (1 to [`MAX_SLOTS`]): the window is rounded up to
//! whole periods, so with the defaults (30 s, 5 s) it is exactly 30 s, and a
//! trigger is evaluated at the first tick at which the window holds it. The
//! rotation costs the request path nothing (no clock read), and a request that
//! finishes while a tick rotates lands in one of the two neighbouring
//! sub-buckets.
//!
//! Latency percentiles come from a log-bucketed histogram per sub-bucket:
//! durations in microseconds, exact below 8 µs, above that 8 buckets per power of
//! two (bucket `[m·2^e, (m+1)·2^e)` for `m` in 8..16). A percentile is the
//! middle of the bucket holding its rank, so the estimate is within
//! `±1/16` (**6.25 %**) of a duration in that bucket; durations of 2^41 µs
//! (25 days) and more count as just under it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The most sub-buckets a window has (a window over 64 periods is cut to 64).
pub(super) const MAX_SLOTS: usize = 64;
/// Sub-buckets of the histogram per power of two (3 mantissa bits).
const PER_OCTAVE: u64 = 8;
/// The largest exponent kept (durations below 2^41 µs).
const MAX_EXPONENT: u64 = 40;
/// Histogram buckets: 8 exact ones, then 8 per octave from 2^3 to 2^40.
const BUCKETS: usize = (PER_OCTAVE + (MAX_EXPONENT - 2) * PER_OCTAVE) as usize;

/// A ring of per-period sub-buckets.
#[derive(Debug)]
pub(super) struct Window {
    slots: Box<[Slot]>,
    /// The sub-bucket being filled.
    current: AtomicUsize,
    /// The ring's span (sub-buckets × period).
    span: Duration,
}

/// One period's outcomes.
#[derive(Debug)]
struct Slot {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Present when a latency trigger needs it.
    histogram: Option<Box<[AtomicU64]>>,
}

/// What a window holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) requests: u64,
    pub(super) errors: u64,
}

// === impl Window ===

impl Window {
    /// A window of `window` over ticks every `period`, with a latency histogram
    /// when `latency` is set.
    pub(super) fn new(window: Duration, period: Duration, latency: bool) -> Self {
        let period_nanos = period.as_nanos().max(1);
        let k = window
            .as_nanos()
            .div_ceil(period_nanos)
            .clamp(1, MAX_SLOTS as u128) as usize;
        let slots = (0..k)
            .map(|_| Slot {
                requests: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                histogram: latency.then(|| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect()),
            })
            .collect();
        let span = period.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
        Self {
            slots,
            current: AtomicUsize::new(0),
            span,
        }
    }

    /// Whether `other` has the same shape (a reload may keep this window).
    pub(super) fn same_shape(&self, other: &Window) -> bool {
        self.slots.len() == other.slots.len()
            && self.span == other.span
            && self.slots[0].histogram.is_some() == other.slots[0].histogram.is_some()
    }

    /// The window's span, rounded up to whole periods.
    pub(super) fn span(&self) -> Duration {
        self.span
    }

    /// Records one finished request (hot path).
    pub(super) fn observe(&self, error: bool, elapsed: Duration) {
        let at = self.current.load(Ordering::Relaxed) % self.slots.len();
        let Some(slot) = self.slots.get(at) else {
            return;
        };
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bucket) = slot.histogram.as_ref().and_then(|h| h.get(bucket(elapsed))) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests and errors over the window.
    pub(super) fn totals(&self) -> Totals {
        self.slots.iter().fold(Totals::default(), |t, s| Totals {
            requests: t.requests + s.requests.load(Ordering::Relaxed),
            errors: t.errors + s.errors.load(Ordering::Relaxed),
        })
    }

    /// The `percentile` (in (0, 100)) of the window's durations; `None` without
    /// a histogram or requests.
    pub(super) fn percentile(&self, percentile: f64) -> Option<Duration> {
        let mut counts = vec![0u64; BUCKETS];
        for slot in self.slots.iter() {
            for (sum, count) in counts.iter_mut().zip(slot.histogram.as_ref()?.iter()) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((percentile / 100.0 * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let at = counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        })?;
        Some(middle(at))
    }

    /// After a tick's evaluation: the oldest sub-bucket is cleared and becomes
    /// the current one.
    pub(super) fn rotate(&self) {
        let next = (self.current.load(Ordering::Relaxed) + 1) % self.slots.len();
        if let Some(slot) = self.slots.get(next) {
            slot.requests.store(0, Ordering::Relaxed);
            slot.errors.store(0, Ordering::Relaxed);
            for count in slot.histogram.iter().flat_map(|h| h.iter()) {
                count.store(0, Ordering::Relaxed);
            }
        }
        self.current.store(next, Ordering::Relaxed);
    }
}

/// The histogram bucket of a duration.
fn bucket(elapsed: Duration) -> usize {
    let micros = u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .min((1 << (MAX_EXPONENT + 1)) - 1);
    if micros < PER_OCTAVE {
        return micros as usize;
    }
    let exponent = u64::from(63 - micros.leading_zeros());
    let mantissa = (micros >> (exponent - 3)) & (PER_OCTAVE - 1);
    (PER_OCTAVE + (exponent - 3) * PER_OCTAVE + mantissa) as usize
}

/// The middle of histogram bucket `at`.
fn middle(at: usize) -> Duration {
    let at = at as u64;
    if at < PER_OCTAVE {
        return Duration::from_micros(at);
    }
    let exponent = (at - PER_OCTAVE) / PER_OCTAVE + 3;
    let mantissa = PER_OCTAVE + (at - PER_OCTAVE) % PER_OCTAVE;
    let low = mantissa << (exponent - 3);
    let width = 1u64 << (exponent - 3);
    Duration::from_micros(low + width / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_window_is_whole_periods() {
        assert_eq!(
            Window::new(30 * SECOND, 5 * SECOND, false).span(),
            30 * SECOND
        );
        assert_eq!(
            Window::new(31 * SECOND, 5 * SECOND, false).span(),
            35 * SECOND
        );
        assert_eq!(Window::new(SECOND, 5 * SECOND, false).span(), 5 * SECOND);
    }

    #[test]
    fn rotation_forgets_the_oldest_period() {
        let w = Window::new(2 * SECOND, SECOND, false);
        w.observe(true, SECOND);
        w.rotate();
        w.observe(false, SECOND);
        assert_eq!(
            w.totals(),
            Totals {
                requests: 2,
                errors: 1
            }
        );
        w.rotate();
        assert_eq!(
            w.totals(),
            Totals {
                requests: 1,
                errors: 0
            }
        );
    }

    #[test]
    fn percentiles_are_within_a_sixteenth() {
        let w = Window::new(SECOND, SECOND, true);
        for ms in 1..=1000u64 {
            w.observe(false, Duration::from_millis(ms));
        }
        for (p, want) in [(50.0, 500.0), (99.0, 990.0), (99.9, 999.0), (10.0, 100.0)] {
            let got = w.percentile(p).map_or(0.0, |d| d.as_secs_f64() * 1e3);
            assert!((got - want).abs() <= want / 16.0, "p{p}: {got} vs {want}");
        }
        assert_eq!(Window::new(SECOND, SECOND, false).percentile(99.0), None);
    }

    #[test]
    fn every_duration_has_a_bucket_around_it() {
        for micros in (0..5000).chain([1 << 20, (1 << 40) - 1, 123_456_789]) {
            let got = middle(bucket(Duration::from_micros(micros))).as_micros() as f64;
            let want = micros as f64;
            assert!((got - want).abs() <= want / 16.0 + 0.5, "{micros}: {got}");
        }
        assert!(bucket(Duration::MAX) < BUCKETS);
    }
}
