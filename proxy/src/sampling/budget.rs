//! A lock-free token bucket for the budgets (force signals, forced tenants, the
//! forced workload) and rule reservoirs.
//!
//! It runs on every request a tenant or rule sees, from every worker thread, so
//! its state is one `AtomicU64` updated by compare-and-swap; no lock is held.
//!
//! The state is the generic cell rate algorithm's form of a token bucket: instead
//! of a token count and a refill time, it stores `full_at`, the instant (in
//! nanoseconds since the sampler's epoch) at which the bucket would be full again.
//! With `interval` = the refill time of one token and capacity `C`:
//!
//! - tokens at `now` = `C - max(0, full_at - now) / interval` (refill is continuous);
//! - a token can be taken iff at least one is left, i.e.
//!   `full_at - now <= (C - 1) · interval` (the `tolerance`);
//! - taking one moves `full_at` to `max(full_at, now) + interval`.
//!
//! A refused take writes nothing, so an exhausted bucket costs one load.

use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds per second.
const NANOS: f64 = 1e9;
/// Intervals are capped well below `u64::MAX` so that `full_at` never overflows.
const MAX_INTERVAL: u64 = u64::MAX >> 4;

/// `per_second` tokens a second, at most `max(1, per_second)` stored (a burst of
/// one second's worth, and at least one token).
#[derive(Debug)]
pub(super) struct TokenBucket {
    /// When the bucket is full again, in nanoseconds since the epoch; 0 = full
    /// from the start.
    full_at: AtomicU64,
    /// Nanoseconds to refill one token.
    interval: u64,
    /// `(capacity - 1) · interval`: how far `full_at` may lie ahead of now for a
    /// token to be left.
    tolerance: u64,
}

// === impl TokenBucket ===

impl TokenBucket {
    /// A full bucket refilling `per_second` tokens a second. `per_second` must be
    /// positive (the config validation requires it); anything else refills once
    /// in a very long time, so at most one token is ever taken.
    pub(super) fn new(per_second: f64) -> Self {
        let capacity = per_second.max(1.0);
        let interval = if per_second > 0.0 {
            (NANOS / per_second).round().clamp(1.0, MAX_INTERVAL as f64) as u64
        } else {
            MAX_INTERVAL
        };
        let tolerance = ((capacity - 1.0) * interval as f64).round();
        Self {
            full_at: AtomicU64::new(0),
            interval,
            tolerance: tolerance.clamp(0.0, MAX_INTERVAL as f64) as u64,
        }
    }

    /// Carries what `spent` has used up into this (not yet shared) bucket, for a
    /// reload: the state is the instant the bucket is full again, so a bucket of
    /// a new rate starts exactly as empty, in time, as the one it replaces.
    pub(super) fn carry(&mut self, spent: &TokenBucket) {
        *self.full_at.get_mut() = spent.full_at.load(Ordering::Relaxed);
    }

    /// Takes a token at `now` (nanoseconds since the epoch) if one is left.
    pub(super) fn try_take(&self, now: u64) -> bool {
        // Relaxed is enough: the atomic is the whole state, publishing nothing else.
        let mut full_at = self.full_at.load(Ordering::Relaxed);
        loop {
            if full_at.saturating_sub(now) > self.tolerance {
                return false;
            }
            let next = full_at.max(now).saturating_add(self.interval);
            match self.full_at.compare_exchange_weak(
                full_at,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => full_at = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn take_all(bucket: &TokenBucket, now: u64) -> usize {
        std::iter::from_fn(|| bucket.try_take(now).then_some(()))
            .take(1_000)
            .count()
    }

    #[test]
    fn starts_full_with_one_seconds_worth() {
        assert_eq!(take_all(&TokenBucket::new(5.0), 0), 5);
    }

    #[test]
    fn fractional_rate_holds_its_whole_tokens() {
        // 2.5 tokens: two can be taken, the half stays.
        assert_eq!(take_all(&TokenBucket::new(2.5), 0), 2);
    }

    #[test]
    fn rate_below_one_holds_one_token() {
        let bucket = TokenBucket::new(0.5);
        assert_eq!(take_all(&bucket, 0), 1);
        assert_eq!(take_all(&bucket, SECOND), 0);
        assert_eq!(take_all(&bucket, 2 * SECOND), 1);
    }

    #[test]
    fn refills_continuously() {
        let bucket = TokenBucket::new(10.0);
        assert_eq!(take_all(&bucket, 0), 10);
        assert_eq!(take_all(&bucket, SECOND / 10 - 1), 0);
        assert_eq!(take_all(&bucket, SECOND / 10), 1);
        assert_eq!(take_all(&bucket, SECOND / 2), 4);
    }

    #[test]
    fn idle_time_refills_no_more_than_capacity() {
        let bucket = TokenBucket::new(3.0);
        assert_eq!(take_all(&bucket, 0), 3);
        assert_eq!(take_all(&bucket, 3600 * SECOND), 3);
    }

    #[test]
    fn concurrent_takers_share_exactly_the_capacity() {
        let bucket = TokenBucket::new(100.0);
        let taken: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1_000).filter(|_| bucket.try_take(7)).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        assert_eq!(taken, 100);
    }
}
