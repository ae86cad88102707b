//! A route's automatic incident boost: the state machine ticks move along, and
//! the atomics the request path reads.
//!
//! ```text
//!   idle ──trigger holds, boosts on──▶ boosted ──duration──▶ decaying ──decay──▶ idle
//!                                          │                     │
//!                                          └── boost removed by a reload / boosts off ──▶ idle
//! ```
//!
//! - **Triggers** ([`trigger`]) are evaluated at each tick over the route's
//!   [`Window`], only when it holds at least `min_requests`: the error ratio
//!   (`errors / requests > error_ratio`) first, then the latency percentile
//!   (its estimate > `above`). The first that holds starts a boost
//!   ([`RouteEvent::BoostStarted`], trigger text like
//!   `error ratio 0.21 > 0.05 over 30s (120 requests)`). A boost is not extended
//!   while it runs; once it has ended, the next tick may start another.
//! - **Boosted**: for `duration` the route's requests whose parent did not
//!   already sample are decided at the boost's `rate`, each taking a token of its
//!   `traces_per_second` budget first.
//! - **Decaying** ([`RouteEvent::BoostDecaying`]): over `decay` the rate falls
//!   geometrically from the boost's rate `b` to the route's own `o` (its live
//!   root probability): `b · (o / b)^(t / decay)`, recomputed at each tick (so in
//!   steps of one period). Then [`RouteEvent::BoostEnded`] `decayed`.
//! - A reload that drops the route's `boost` ends it (`removed`), and
//!   `adaptive.boosts: false` ends it (`disabled`), at the next tick.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use meshtrace_config::report::BoostReport;
use tokio::time::Instant;

use super::budget::TokenBucket;
use super::consistent::Threshold;
use super::routes::{bits, RouteEvent};
use super::window::Window;

/// A route's boost: the request path's atomics and the ticks' state.
#[derive(Debug)]
pub(super) struct Boost {
    /// Boosted or decaying.
    pub(super) active: AtomicBool,
    /// The boost's probability now, as threshold bits.
    pub(super) threshold: AtomicU64,
    /// The boost's `traces_per_second` budget.
    pub(super) budget: TokenBucket,
    phase: Mutex<Option<Active>>,
}

/// A boost that is on.
#[derive(Clone, Debug)]
struct Active {
    trigger: String,
    started: Instant,
    /// End of `duration`: decay starts.
    until: Instant,
    /// End of the decay.
    ends: Instant,
    /// The configured boost rate.
    rate: f64,
    /// Its probability now.
    now_rate: f64,
    decaying: bool,
}

/// What a tick needs to know about the route.
pub(super) struct Context<'a> {
    /// The route's name, for events.
    pub(super) route: &'a str,
    /// The route's boost config (`None`: removed by a reload).
    pub(super) config: Option<&'a meshtrace_config::Boost>,
    /// `sampling.adaptive.boosts`.
    pub(super) enabled: bool,
    /// The route's own root probability.
    pub(super) own_rate: f64,
    /// The route's window.
    pub(super) window: Option<&'a Window>,
}

// === impl Boost ===

impl Boost {
    /// An idle boost with a budget of `per_second`.
    pub(super) fn new(per_second: f64) -> Self {
        Self {
            active: AtomicBool::new(false),
            threshold: AtomicU64::new(u64::MAX),
            budget: TokenBucket::new(per_second),
            phase: Mutex::new(None),
        }
    }

    /// Carries `old`'s state and spent budget into this (not yet shared) boost.
    pub(super) fn carry(&mut self, old: &Boost) {
        self.budget.carry(&old.budget);
        let phase = lock(&old.phase).clone();
        *self.active.get_mut() = phase.is_some();
        *self.threshold.get_mut() = old.threshold.load(Ordering::Relaxed);
        *self.phase.get_mut().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// Whether it is boosted or decaying.
    pub(super) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// One tick: moves the state along, returns the log's events.
    pub(super) fn tick(&self, now: Instant, cx: &Context<'_>) -> Vec<RouteEvent> {
        let mut phase = lock(&self.phase);
        let mut events = Vec::new();
        match (phase.as_mut(), cx.config) {
            (None, Some(config)) if cx.enabled => {
                if let Some(trigger) = cx.window.and_then(|w| self::trigger(config, w)) {
                    events.push(RouteEvent::BoostStarted {
                        route: cx.route.to_owned(),
                        trigger: trigger.clone(),
                        rate: config.rate,
                        duration: config.duration.get(),
                    });
                    let until = now + config.duration.get();
                    *phase = Some(Active {
                        trigger,
                        started: now,
                        until,
                        ends: until + config.decay.get(),
                        rate: config.rate,
                        now_rate: config.rate,
                        decaying: false,
                    });
                }
            }
            (None, _) => {}
            (Some(_), None) => *phase = ended(&mut events, cx.route, "removed"),
            (Some(_), Some(_)) if !cx.enabled => *phase = ended(&mut events, cx.route, "disabled"),
            (Some(active), Some(_)) => {
                if !active.decaying && now >= active.until {
                    active.decaying = true;
                    events.push(RouteEvent::BoostDecaying {
                        route: cx.route.to_owned(),
                    });
                }
                if now >= active.ends {
                    *phase = ended(&mut events, cx.route, "decayed");
                } else {
                    active.now_rate = active.rate_at(now, cx.own_rate);
                }
            }
        }
        let rate = phase.as_ref().map(|a| a.now_rate);
        self.threshold
            .store(bits(rate.and_then(Threshold::for_rate)), Ordering::Relaxed);
        self.active.store(phase.is_some(), Ordering::Relaxed);
        events
    }

    /// The boost for the report, while active.
    pub(super) fn report(&self, now: Instant) -> Option<BoostReport> {
        let phase = lock(&self.phase);
        let active = phase.as_ref()?;
        Some(BoostReport {
            trigger: active.trigger.clone(),
            started_seconds_ago: now.saturating_duration_since(active.started).as_secs(),
            ends_in_seconds: seconds_up(active.ends.saturating_duration_since(now)),
            rate: active.now_rate,
        })
    }
}

// === impl Active ===

impl Active {
    /// The probability at `now`: the boost's rate, then its geometric decay to
    /// `own`.
    fn rate_at(&self, now: Instant, own: f64) -> f64 {
        if now < self.until {
            return self.rate;
        }
        let decay = self
            .ends
            .saturating_duration_since(self.until)
            .as_secs_f64();
        let t = now.saturating_duration_since(self.until).as_secs_f64();
        // A route that keeps nothing decays towards a millionth of the boost.
        let own = own.max(self.rate * 1e-6);
        if decay <= 0.0 || self.rate <= 0.0 {
            return own;
        }
        self.rate * (own / self.rate).powf((t / decay).min(1.0))
    }
}

/// The first trigger of `config` that holds over `window`, as the log says it.
pub(super) fn trigger(config: &meshtrace_config::Boost, window: &Window) -> Option<String> {
    let totals = window.totals();
    if totals.requests == 0 || totals.requests < u64::from(config.min_requests) {
        return None;
    }
    let over = String::from(meshtrace_config::Duration::from(window.span()));
    let n = totals.requests;
    if let Some(limit) = config.error_ratio {
        let ratio = totals.errors as f64 / n as f64;
        if ratio > limit {
            return Some(format!(
                "error ratio {ratio:.2} > {limit} over {over} ({n} requests)"
            ));
        }
    }
    let latency = config.latency.as_ref()?;
    let estimate = window.percentile(latency.percentile)?;
    (estimate > latency.above.get()).then(|| {
        let above = String::from(latency.above);
        let ms = estimate.as_secs_f64() * 1e3;
        let p = latency.percentile;
        format!("p{p} latency {ms:.0}ms > {above} over {over} ({n} requests)")
    })
}

/// Ends a boost: the event, and the state it leaves.
fn ended(events: &mut Vec<RouteEvent>, route: &str, why: &'static str) -> Option<Active> {
    events.push(RouteEvent::BoostEnded {
        route: route.to_owned(),
        why,
    });
    None
}

/// Whole seconds, rounded up (a boost ending in 0.2 s still ends in 1).
fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A lock that a panic elsewhere does not poison for good.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
