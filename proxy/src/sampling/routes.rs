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
//! SKELETON: the API the wiring codes against. The adaptive controller, the
//! windows and the boost state machine are filled in behind it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshtrace_config::report::RouteReport;
use meshtrace_config::{RateMode, RoutePolicy, Sampling};
use tokio::time::Instant;

use super::consistent::Threshold;

/// A route's index: `sampling.rules[i]` is `i`, the default route is
/// `rules.len()`.
pub type RouteId = usize;

/// Every route of one config, with its live state.
#[derive(Debug)]
pub struct Routes {
    routes: Vec<Route>,
    period: Duration,
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

impl Routes {
    /// The routes of `config`, fresh: adaptive routes start at their ceiling.
    pub fn new(config: &Sampling, _now: Instant) -> Self {
        let routes = config
            .routes()
            .into_iter()
            .map(|policy| {
                let rate = match policy.rate {
                    RateMode::Fixed(rate) => rate,
                    RateMode::Target { max_rate, .. } => max_rate,
                };
                Route {
                    threshold: AtomicU64::new(bits(Threshold::for_rate(rate))),
                    roots: AtomicU64::new(0),
                    sampled: AtomicU64::new(0),
                    policy,
                }
            })
            .collect();
        Self {
            routes,
            period: config.adaptive.period.get(),
        }
    }

    /// The routes of a reloaded `config`: a route whose name carries over keeps
    /// its adaptive state, counts, window and boost.
    pub fn reloaded(config: &Sampling, _previous: &Routes, now: Instant) -> Self {
        Self::new(config, now)
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

    /// Counts a root decision of the route (hot path).
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
    pub fn observe(&self, _id: RouteId, _error: bool, _elapsed: Duration) {}

    /// Whether the route is boosted (or decaying) now.
    pub fn boost_active(&self, _id: RouteId) -> bool {
        false
    }

    /// Every `period`: adjusts adaptive probabilities, evaluates boost triggers
    /// and moves boosts along. Returns what the log should say.
    pub fn tick(&self, _now: Instant) -> Vec<RouteEvent> {
        Vec::new()
    }

    /// This sidecar's share of each adaptive route's fleet target, from the
    /// control plane's report reply; routes left out adapt to the whole target.
    pub fn set_shares(&self, _shares: &BTreeMap<String, f64>) {}

    /// The routes for the control plane's report.
    pub fn report(&self, _now: Instant) -> BTreeMap<String, RouteReport> {
        self.routes
            .iter()
            .map(|r| {
                let target = match r.policy.rate {
                    RateMode::Fixed(_) => None,
                    RateMode::Target {
                        traces_per_second, ..
                    } => Some(traces_per_second),
                };
                let rate = Threshold::from_bits(r.threshold.load(Ordering::Relaxed))
                    .map_or(0.0, |t| t.rate());
                let report = RouteReport {
                    roots: r.roots.load(Ordering::Relaxed),
                    sampled: r.sampled.load(Ordering::Relaxed),
                    target_traces_per_second: target,
                    rate,
                    boost: None,
                };
                (r.policy.name.clone(), report)
            })
            .collect()
    }
}

/// A threshold as stored in a route (`u64::MAX` for "keep nothing").
fn bits(threshold: Option<Threshold>) -> u64 {
    threshold.map_or(u64::MAX, Threshold::to_bits)
}
