//! The adaptive controller of a `target_traces_per_second` route: every
//! `sampling.adaptive.period` ([`Controller::tick`]) it turns the route's root
//! count into a probability.
//!
//! # The algorithm (one tick)
//!
//! 1. **Observe.** `o = (roots now − roots at the last tick) / seconds since it`:
//!    the route's root-request rate over the period just ended. The rate is
//!    independent of the probability (every root is counted, sampled or not), so
//!    the loop has no feedback through `p` and cannot oscillate on its own.
//! 2. **Estimate** the root rate `r` — fast attack, slow release:
//!    - first tick: `r = o`;
//!    - a rise is believed at once: `o ≥ r` → `r = o`;
//!    - a fall is smoothed: `o < r` → `r = max(o, r / 2)` (the estimate at most
//!      halves per period, so a short dip does not open the gates).
//! 3. **Desired probability** `d = clamp(share / r, min_rate, max_rate)`, with
//!    `share` the control plane's budget for this sidecar ([`super::Routes::set_shares`])
//!    or, without one, the whole target; `r = 0` gives `max_rate`.
//! 4. **Damp.** A decrease applies at once (`n = d`); an increase at most doubles
//!    (`n = min(d, 2p)`). A change of less than 10 % of `p` is ignored when it
//!    reverses the direction of the last applied change (the dead band: an
//!    estimate jittering up and down leaves `p` alone); a small change that
//!    continues the last one is applied, so a monotone approach ends exactly on
//!    `d` instead of stalling up to 10 % short of it.
//! 5. **Apply** `p` as a consistent-probability threshold (the route's atomic,
//!    read by every root decision; `ot=th` carries it), and renew the route's
//!    [`Cap`]: an allowance of `max(⌊1.2 · share · period⌋, ⌈share · period⌉ + 1)`
//!    sampled roots until the next tick (the second term matters below 5 traces
//!    a period, where 20 % is less than one trace). Until `p` catches up with a traffic step, no period
//!    records more than 1.2 × its share; a new share ([`super::Routes::set_shares`])
//!    changes the allowance at once.
//!
//! The cap is a per-period allowance rather than a token bucket refilling at
//! `share` a second with a burst of `0.2 · share · period` (which bounds every
//! period-long stretch the same way): at steady state the sampled roots arrive
//! at exactly the bucket's rate, randomly, and such a bucket trims its
//! share of that noise all the time — 9.1 % of the target in the two-sidecar
//! test (shares 6 and 4 a second, 5 s periods). The allowance only trims the
//! rare period whose binomial noise exceeds +20 %.
//!
//! # Convergence (the documented number of periods)
//!
//! Ticks at the end of each period; a step of the root rate by a factor `F`
//! happening at a period boundary:
//!
//! - **step up** (any `F`): the first tick after the step sets `r = o` and `p`
//!   falls to `d` at once. The step's own period is held to `1.2 ×` the target by
//!   the cap (all of it early in the period); **from the 2nd period on** the route records its target.
//! - **step down** by `F`: `r` halves and `p` doubles each tick, so `p` reaches
//!   `d` after `⌈log₂ F⌉` ticks: **`1 + ⌈log₂ F⌉` periods** including the step's
//!   own. For the 10 000 → 10 req/s (`F = 1000`): 11 periods; for
//!   10 → 10 000: 2.
//!
//! In steady state `p = d` exactly; the error left is the binomial noise of
//! sampling (`±1/√(target · period)` per period) and what the cap trims from the
//! top of that noise.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Changes of less than this fraction of `p` that reverse the last change are
/// ignored.
const DEAD_BAND: f64 = 0.1;
/// The cap: sampled roots per period, as a multiple of one period's share.
const CAP: f64 = 1.2;

/// The fixed parameters of an adaptive route.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Limits {
    /// The fleet-wide target, in traces a second.
    pub(super) target: f64,
    /// The floor of `p`.
    pub(super) min_rate: f64,
    /// The ceiling of `p`.
    pub(super) max_rate: f64,
}

/// The controller's state; behind the route's mutex, touched only by ticks,
/// shares and reports (never by a request).
#[derive(Clone, Debug)]
pub(super) struct Controller {
    /// The route's root count at the last tick.
    last_roots: u64,
    /// When the last tick (or the start) was.
    last_tick: Instant,
    /// The estimated root rate; `None` before the first tick.
    estimate: Option<f64>,
    /// The probability in force.
    p: f64,
    /// The sign of the last applied change (−1, 0, +1).
    last_move: i8,
    /// This sidecar's share of the fleet target, from the control plane.
    pub(super) share: Option<f64>,
}

// === impl Controller ===

impl Controller {
    /// A fresh controller at the ceiling, counting from `roots` at `now`.
    pub(super) fn new(limits: &Limits, roots: u64, now: Instant) -> Self {
        Self {
            last_roots: roots,
            last_tick: now,
            estimate: None,
            p: limits.max_rate,
            last_move: 0,
            share: None,
        }
    }

    /// The probability in force.
    pub(super) fn rate(&self) -> f64 {
        self.p
    }

    /// The estimated root rate, if a tick has made one.
    #[cfg(test)]
    pub(super) fn estimate(&self) -> Option<f64> {
        self.estimate
    }

    /// Carried over a reload into new `limits`: `p` clamped to them.
    pub(super) fn reclamped(mut self, limits: &Limits) -> Self {
        self.p = self.p.clamp(limits.min_rate, limits.max_rate);
        self
    }

    /// What this sidecar aims at: its share, else the whole target.
    pub(super) fn aim(&self, limits: &Limits) -> f64 {
        self.share.unwrap_or(limits.target)
    }

    /// The [`Cap`]'s allowance for one `period`: 1.2 periods' worth of the
    /// aim, and at least one sampled root more than one period's worth.
    pub(super) fn cap(&self, limits: &Limits, period: std::time::Duration) -> u64 {
        let per_period = self.aim(limits) * period.as_secs_f64();
        // The epsilons keep 1.2 · 50 = 60.000…01 from rounding to 61, and a
        // whole period's worth from rounding up.
        let bound = (CAP * per_period + 1e-9).floor();
        // Below 5 traces a period, 20 % is less than one trace: rounding down
        // would trim every period the binomial noise lifts above its mean (a
        // route at 1 trace a period would record 37 % less than its aim).
        let one_more = (per_period - 1e-9).ceil().max(0.0) + 1.0;
        bound.max(one_more) as u64
    }

    /// One tick (steps 1–4 of the [module docs](self)): returns the new `p`.
    pub(super) fn tick(&mut self, roots: u64, now: Instant, limits: &Limits) -> f64 {
        let seconds = now.saturating_duration_since(self.last_tick).as_secs_f64();
        if seconds <= 0.0 {
            return self.p;
        }
        let observed = roots.saturating_sub(self.last_roots) as f64 / seconds;
        self.last_roots = roots;
        self.last_tick = now;
        let r = match self.estimate {
            Some(r) if observed < r => observed.max(r / 2.0),
            _ => observed,
        };
        self.estimate = Some(r);
        let desired = if r > 0.0 {
            (self.aim(limits) / r).clamp(limits.min_rate, limits.max_rate)
        } else {
            limits.max_rate
        };
        let next = if desired < self.p {
            desired
        } else {
            desired.min(2.0 * self.p)
        };
        self.damped(next);
        self.p
    }

    /// Step 4's dead band: applies `next` unless it is a small reversal.
    fn damped(&mut self, next: f64) {
        let change = next - self.p;
        let step: i8 = if change > 0.0 {
            1
        } else if change < 0.0 {
            -1
        } else {
            return;
        };
        let small = self.p > 0.0 && change.abs() < DEAD_BAND * self.p;
        if small && step != self.last_move {
            return;
        }
        self.p = next;
        self.last_move = step;
    }
}

/// An adaptive route's allowance of sampled roots until the next tick (step 5):
/// two relaxed atomics, no lock; a refused take writes nothing.
#[derive(Debug)]
pub(super) struct Cap {
    used: AtomicU64,
    limit: AtomicU64,
}

// === impl Cap ===

impl Cap {
    /// An unused allowance of `limit`.
    pub(super) fn new(limit: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        }
    }

    /// Takes one sampled root from the allowance if some is left (hot path).
    pub(super) fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if self.used.load(Ordering::Relaxed) >= limit {
            return false;
        }
        self.used.fetch_add(1, Ordering::Relaxed) < limit
    }

    /// A new period's allowance (at a tick).
    pub(super) fn renew(&self, limit: u64) {
        self.used.store(0, Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// A new limit for what is left of this period (a new share).
    pub(super) fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Carries what `old` used this period into this (not yet shared) cap.
    pub(super) fn carry(&mut self, old: &Cap) {
        *self.used.get_mut() = old.used.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: Limits = Limits {
        target: 10.0,
        min_rate: 0.000_01,
        max_rate: 1.0,
    };

    /// Ticks once a second with `per_second` roots each.
    fn run(c: &mut Controller, start: Instant, roots: &mut u64, per_second: u64, ticks: u32) {
        for _ in 0..ticks {
            *roots += per_second;
            let at = c.last_tick + Duration::from_secs(1);
            c.tick(*roots, at, &LIMITS);
        }
        assert!(c.last_tick > start);
    }

    #[test]
    fn a_rise_is_believed_at_once_and_p_falls_at_once() {
        let start = Instant::now();
        let mut c = Controller::new(&LIMITS, 0, start);
        let mut roots = 0;
        run(&mut c, start, &mut roots, 10, 3);
        assert_eq!(c.rate(), 1.0);
        run(&mut c, start, &mut roots, 10_000, 1);
        assert_eq!(c.estimate(), Some(10_000.0));
        assert!((c.rate() - 0.001).abs() < 1e-12);
    }

    #[test]
    fn a_fall_halves_the_estimate_and_p_at_most_doubles() {
        let start = Instant::now();
        let mut c = Controller::new(&LIMITS, 0, start);
        let mut roots = 0;
        run(&mut c, start, &mut roots, 10_000, 2);
        let mut rates = Vec::new();
        for _ in 0..11 {
            run(&mut c, start, &mut roots, 10, 1);
            rates.push(c.rate());
        }
        assert!((rates[0] - 0.002).abs() < 1e-12, "{rates:?}");
        assert!(rates.windows(2).all(|w| w[1] <= 2.0 * w[0] + 1e-12));
        // ⌈log₂ 1000⌉ = 10 ticks to reach the target exactly.
        assert!(rates[8] < 1.0, "{rates:?}");
        assert_eq!(rates[9], 1.0, "{rates:?}");
    }

    #[test]
    fn a_small_reversal_is_ignored_but_a_small_continuation_is_not() {
        let start = Instant::now();
        let mut c = Controller::new(&LIMITS, 0, start);
        let mut roots = 0;
        run(&mut c, start, &mut roots, 100, 1);
        assert!((c.rate() - 0.1).abs() < 1e-12);
        // 105 roots: p would fall 5 %, continuing the last fall: applied.
        run(&mut c, start, &mut roots, 105, 1);
        assert!((c.rate() - 10.0 / 105.0).abs() < 1e-12);
        // 100 again: p would rise 5 %, a reversal inside the band: ignored.
        run(&mut c, start, &mut roots, 100, 1);
        assert!((c.rate() - 10.0 / 105.0).abs() < 1e-12);
        // 80: a rise of 31 %: applied.
        run(&mut c, start, &mut roots, 80, 2);
        assert!((c.rate() - 0.125).abs() < 1e-12);
    }

    #[test]
    fn the_share_replaces_the_target_and_sets_the_cap() {
        let start = Instant::now();
        let mut c = Controller::new(&LIMITS, 0, start);
        c.share = Some(4.0);
        let mut roots = 0;
        run(&mut c, start, &mut roots, 400, 1);
        assert!((c.rate() - 0.01).abs() < 1e-12);
        assert_eq!(c.cap(&LIMITS, Duration::from_secs(5)), 24);
        c.share = None;
        assert_eq!(c.cap(&LIMITS, Duration::from_secs(5)), 60);
        c.share = Some(0.1);
        assert_eq!(
            c.cap(&LIMITS, Duration::from_secs(1)),
            2,
            "one more than 0.1"
        );
        c.share = Some(2.0);
        assert_eq!(
            c.cap(&LIMITS, Duration::from_secs(1)),
            3,
            "⌊2.4⌋ is no more than 2"
        );
        c.share = Some(0.0);
        assert_eq!(c.cap(&LIMITS, Duration::from_secs(1)), 1);
    }

    #[test]
    fn the_cap_allows_its_limit_per_period() {
        let cap = Cap::new(3);
        assert_eq!((0..10).filter(|_| cap.try_take()).count(), 3);
        cap.set_limit(4);
        assert_eq!((0..10).filter(|_| cap.try_take()).count(), 1);
        cap.renew(2);
        assert_eq!((0..10).filter(|_| cap.try_take()).count(), 2);
    }
}
