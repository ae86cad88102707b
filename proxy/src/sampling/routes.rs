//! Sampling routes: the rules and the default route, with the state that makes
//! them adapt — the adaptive probability of a `target_traces_per_second` route,
//! the cap that keeps a traffic step from overshooting its target, the sliding
//! window of outcomes that boost triggers read, and the boost itself.
//!
//! One [`Routes`] is shared by both listeners' samplers (a route's target is the
//! workload's, whichever direction its root requests arrive on). The request
//! path only does relaxed atomic loads and adds on it; [`Routes::tick`], every
//! `sampling.adaptive.period`, does the arithmetic.
//!
//! - A route's root probability is one `AtomicU64` (threshold bits): fixed
//!   routes never change it, adaptive ones get a new one at each tick from their
//!   [controller](super::adaptive), plus a cap on sampled roots per period
//!   ([`Cap`], renewed at the tick).
//! - Roots are counted per route (`roots`, `sampled`: cumulative, for the
//!   controller and the control plane's report).
//! - A route with a `boost` has a [window](super::window) of outcomes
//!   ([`Routes::observe`]) and a [boost](super::boost) state machine; while any
//!   route is boosted, one counter tells the request path to look.
//!
//! The mutexes (controller, boost phase) are taken only by ticks, shares,
//! reloads and reports, never by a request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshtrace_config::report::RouteReport;
use meshtrace_config::{RateMode, RoutePolicy, Sampling};
use tokio::time::Instant;

use super::adaptive::{Cap, Controller, Limits};
use super::boost::{self, Boost};
use super::consistent::{randomness, Threshold};
use super::window::Window;
use crate::propagation::TraceId;

/// A route's index: `sampling.rules[i]` is `i`, the default route is
/// `rules.len()`.
pub type RouteId = usize;

/// Every route of one config, with its live state.
#[derive(Debug)]
pub struct Routes {
    routes: Vec<Route>,
    period: Duration,
    /// `sampling.adaptive.boosts`.
    boosts: bool,
    /// How many routes are boosted (or decaying): the request path looks no
    /// further while it is 0.
    boosting: AtomicUsize,
    /// Time zero of the routes' token buckets (kept across reloads).
    epoch: Instant,
}

/// One route.
#[derive(Debug)]
struct Route {
    policy: RoutePolicy,
    /// The probability in force for root requests, as a threshold's bits
    /// (`u64::MAX`: rate 0).
    threshold: AtomicU64,
    roots: AtomicU64,
    sampled: AtomicU64,
    /// An adaptive route's controller and cap.
    adaptive: Option<Adaptive>,
    /// The outcomes its boost triggers read (shared with the route of the same
    /// name in a reloaded `Routes` while the shape is the same).
    window: Option<Arc<Window>>,
    boost: Boost,
}

/// What an adaptive route has on top of a fixed one.
#[derive(Debug)]
struct Adaptive {
    limits: Limits,
    /// Touched only by ticks, shares, reloads and reports.
    controller: Mutex<Controller>,
    /// Sampled roots allowed until the next tick: holds a step until `p`
    /// catches up.
    cap: Cap,
}

/// Something that happened to a route at a tick, for the sidecar's log.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteEvent {
    /// A trigger held: the route is boosted.
    BoostStarted {
        /// The route's name.
        route: String,
        /// What held, e.g. `error ratio 0.21 > 0.05 over 30s (120 requests)`.
        trigger: String,
        /// The boost's probability.
        rate: f64,
        /// How long it lasts at that rate.
        duration: Duration,
    },
    /// The boost's time is up; its rate now falls back over `decay`.
    BoostDecaying {
        /// The route's name.
        route: String,
    },
    /// The boost is over (decayed, or boosts were turned off).
    BoostEnded {
        /// The route's name.
        route: String,
        /// `decayed`, `disabled` (boosts off) or `removed` (a reload dropped it).
        why: &'static str,
    },
}

// === impl Routes ===

impl Routes {
    /// The routes of `config`, fresh: adaptive routes start at their ceiling.
    pub fn new(config: &Sampling, now: Instant) -> Self {
        let period = config.adaptive.period.get();
        let routes = config
            .routes()
            .into_iter()
            .map(|policy| Route::new(policy, period, now))
            .collect();
        Self {
            routes,
            period,
            boosts: config.adaptive.boosts,
            boosting: AtomicUsize::new(0),
            epoch: now,
        }
    }

    /// The routes of a reloaded `config`: a route whose name carries over keeps
    /// its counts, its adaptive state (estimate, probability, share, spent cap),
    /// its window (while its shape is the same) and its boost. A boost whose
    /// route lost its `boost`, or with `adaptive.boosts` off, ends at the next
    /// tick.
    pub fn reloaded(config: &Sampling, previous: &Routes, now: Instant) -> Self {
        let mut next = Self {
            epoch: previous.epoch,
            ..Self::new(config, now)
        };
        for route in &mut next.routes {
            let old = previous
                .routes
                .iter()
                .find(|o| o.policy.name == route.policy.name);
            if let Some(old) = old {
                route.carry(old, now, next.period);
            }
        }
        next.recount();
        next
    }

    /// How many routes (rules + the default).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are none (never: the default route is always there).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The adjustment period (`sampling.adaptive.period`).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The route's resolved policy.
    pub fn policy(&self, id: RouteId) -> Option<&RoutePolicy> {
        self.routes.get(id).map(|r| &r.policy)
    }

    /// The probability in force for the route's root requests.
    pub fn threshold(&self, id: RouteId) -> Option<Threshold> {
        let bits = self.routes.get(id)?.threshold.load(Ordering::Relaxed);
        Threshold::from_bits(bits)
    }

    /// Counts a root decision of the route (hot path). [`super::Sampler::decide`]
    /// counts its own root decisions; this is for callers that decide elsewhere.
    pub fn count_root(&self, id: RouteId, sampled: bool) {
        if let Some(r) = self.routes.get(id) {
            r.roots.fetch_add(1, Ordering::Relaxed);
            if sampled {
                r.sampled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records one finished request of the route for its boost triggers (hot
    /// path): whether it failed (HTTP 5xx, gRPC server error) and how long it took.
    pub fn observe(&self, id: RouteId, error: bool, elapsed: Duration) {
        if let Some(window) = self.routes.get(id).and_then(|r| r.window.as_ref()) {
            window.observe(error, elapsed);
        }
    }

    /// Whether the route is boosted (or decaying) now.
    pub fn boost_active(&self, id: RouteId) -> bool {
        self.routes.get(id).is_some_and(|r| r.boost.is_active())
    }

    /// Whether any route is boosted (one relaxed load: the request path's check).
    pub fn any_boost(&self) -> bool {
        self.boosting.load(Ordering::Relaxed) > 0
    }

    /// Every `period`: adjusts adaptive probabilities, evaluates boost triggers
    /// and moves boosts along. Returns what the log should say.
    pub fn tick(&self, now: Instant) -> Vec<RouteEvent> {
        let mut events = Vec::new();
        for route in &self.routes {
            route.adapt(now, self.period);
            let cx = boost::Context {
                route: &route.policy.name,
                config: route.policy.boost.as_ref(),
                enabled: self.boosts,
                own_rate: route.rate(),
                window: route.window.as_deref(),
            };
            events.extend(route.boost.tick(now, &cx));
            if let Some(window) = &route.window {
                window.rotate();
            }
        }
        self.recount();
        events
    }

    /// This sidecar's share of each adaptive route's fleet target, from the
    /// control plane's report reply; routes left out (all of them, for an empty
    /// map) adapt to the whole target. The probability follows at the next
    /// tick, the cap at once.
    pub fn set_shares(&self, shares: &BTreeMap<String, f64>) {
        for route in &self.routes {
            if let Some(adaptive) = &route.adaptive {
                let share = shares.get(&route.policy.name).copied();
                let mut controller = lock(&adaptive.controller);
                controller.share = share.filter(|s| s.is_finite() && *s >= 0.0);
                adaptive
                    .cap
                    .set_limit(controller.cap(&adaptive.limits, self.period));
            }
        }
    }

    /// The routes for the control plane's report.
    pub fn report(&self, now: Instant) -> BTreeMap<String, RouteReport> {
        self.routes
            .iter()
            .map(|r| {
                let target = match r.policy.rate {
                    RateMode::Fixed(_) => None,
                    RateMode::Target {
                        traces_per_second, ..
                    } => Some(traces_per_second),
                };
                let report = RouteReport {
                    roots: r.roots.load(Ordering::Relaxed),
                    sampled: r.sampled.load(Ordering::Relaxed),
                    target_traces_per_second: target,
                    rate: r.rate(),
                    boost: r.boost.report(now),
                };
                (r.policy.name.clone(), report)
            })
            .collect()
    }

    /// The root decision of route `id` by probability (after its reservoir):
    /// its live threshold, then for an adaptive route its cap. `Some(threshold)`
    /// when sampled.
    pub(super) fn decide_root(&self, id: RouteId, trace_id: TraceId) -> Option<Threshold> {
        let route = self.routes.get(id)?;
        let threshold = Threshold::from_bits(route.threshold.load(Ordering::Relaxed))?;
        if !threshold.accepts(randomness(trace_id)) {
            return None;
        }
        match &route.adaptive {
            Some(a) if !a.cap.try_take() => None,
            _ => Some(threshold),
        }
    }

    /// The boost's decision for a request of route `id` (the caller checked
    /// that the parent did not sample): `None` when the route is not boosted,
    /// `Some(Err(()))` over the boost's budget, else `Some(Ok(threshold))` with
    /// the boost's threshold (`None`: rate 0).
    pub(super) fn boosted(
        &self,
        id: RouteId,
        now: Instant,
    ) -> Option<Result<Option<Threshold>, ()>> {
        let boost = &self.routes.get(id)?.boost;
        if !boost.is_active() {
            return None;
        }
        if !boost.budget.try_take(self.nanos(now)) {
            return Some(Err(()));
        }
        Some(Ok(Threshold::from_bits(
            boost.threshold.load(Ordering::Relaxed),
        )))
    }

    /// Counts the routes boosted now.
    fn recount(&self) {
        let n = self.routes.iter().filter(|r| r.boost.is_active()).count();
        self.boosting.store(n, Ordering::Relaxed);
    }

    /// `now` on the token buckets' clock.
    fn nanos(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }
}

// === impl Route ===

impl Route {
    fn new(policy: RoutePolicy, period: Duration, now: Instant) -> Self {
        let (rate, adaptive) = match policy.rate {
            RateMode::Fixed(rate) => (rate, None),
            RateMode::Target {
                traces_per_second,
                min_rate,
                max_rate,
            } => {
                let limits = Limits {
                    target: traces_per_second,
                    min_rate,
                    max_rate,
                };
                let controller = Controller::new(&limits, 0, now);
                let adaptive = Adaptive {
                    limits,
                    cap: Cap::new(controller.cap(&limits, period)),
                    controller: Mutex::new(controller),
                };
                (max_rate, Some(adaptive))
            }
        };
        let window = policy
            .boost
            .as_ref()
            .map(|b| Arc::new(Window::new(b.window.get(), period, b.latency.is_some())));
        let budget = policy.boost.as_ref().map_or(1.0, |b| b.traces_per_second);
        Self {
            threshold: AtomicU64::new(bits(Threshold::for_rate(rate))),
            roots: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            adaptive,
            window,
            boost: Boost::new(budget),
            policy,
        }
    }

    /// Takes over what `old` (the route of the same name before a reload) had.
    fn carry(&mut self, old: &Route, now: Instant, period: Duration) {
        let roots = old.roots.load(Ordering::Relaxed);
        *self.roots.get_mut() = roots;
        *self.sampled.get_mut() = old.sampled.load(Ordering::Relaxed);
        if let Some(next) = self.adaptive.as_mut() {
            let controller = match &old.adaptive {
                Some(a) => {
                    next.cap.carry(&a.cap);
                    lock(&a.controller).clone().reclamped(&next.limits)
                }
                None => Controller::new(&next.limits, roots, now),
            };
            *self.threshold.get_mut() = bits(Threshold::for_rate(controller.rate()));
            next.cap.set_limit(controller.cap(&next.limits, period));
            *next.controller.get_mut().unwrap_or_else(|e| e.into_inner()) = controller;
        }
        if let (Some(window), Some(old)) = (self.window.as_mut(), old.window.as_ref()) {
            if window.same_shape(old) {
                *window = Arc::clone(old);
            }
        }
        self.boost.carry(&old.boost);
    }

    /// An adaptive route's tick: the controller, then the threshold and cap.
    fn adapt(&self, now: Instant, period: Duration) {
        let Some(adaptive) = &self.adaptive else {
            return;
        };
        let mut controller = lock(&adaptive.controller);
        let p = controller.tick(self.roots.load(Ordering::Relaxed), now, &adaptive.limits);
        self.threshold
            .store(bits(Threshold::for_rate(p)), Ordering::Relaxed);
        adaptive.cap.renew(controller.cap(&adaptive.limits, period));
    }

    /// The probability in force for root requests.
    fn rate(&self) -> f64 {
        Threshold::from_bits(self.threshold.load(Ordering::Relaxed)).map_or(0.0, |t| t.rate())
    }
}

/// A threshold as stored in an atomic (`u64::MAX` for "keep nothing").
pub(super) fn bits(threshold: Option<Threshold>) -> u64 {
    threshold.map_or(u64::MAX, Threshold::to_bits)
}

/// A lock that a panic elsewhere does not poison for good.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
