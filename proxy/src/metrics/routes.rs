//! Sampling routes (`sampling.rules` by name, and `default`):
//! `meshtrace_sampling_boost_active{route}` — 1 while the route's incident boost
//! is on (boosted or decaying), else 0 — and `meshtrace_sampling_route_rate{route}`,
//! the probability in force for the route's root requests (an adaptive route's
//! moves every `sampling.adaptive.period`).
//!
//! Both are set by the adaptive ticker, never on the request path, and list
//! exactly the routes of the running config: a reload that removes a route
//! removes its series.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::family::{Family, Show};

/// The route families.
#[derive(Debug)]
pub(super) struct Families {
    boost: Family<RouteLabels, Gauge<i64, AtomicI64>>,
    rate: Family<RouteLabels, Gauge<f64, AtomicU64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// One route's state for the gauges.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteGauges {
    /// The route's name.
    pub route: String,
    /// Whether its boost is on.
    pub boost_active: bool,
    /// Its root probability.
    pub rate: f64,
}

// === impl Families ===

impl Families {
    /// Registers the families.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            boost: Family::register(
                registry,
                "sampling_boost_active",
                "1 while the route's automatic incident boost is on (boosted or decaying back), else 0",
            ),
            rate: Family::register(
                registry,
                "sampling_route_rate",
                "Probability in force for the route's root requests (adaptive routes adjust it)",
            ),
        }
    }

    /// Sets the gauges to `routes`, removing those of routes no longer there.
    pub(super) fn set(&self, routes: &[RouteGauges]) {
        let keep = |labels: &RouteLabels| routes.iter().any(|r| r.route == labels.route);
        self.boost.retain(keep);
        self.rate.retain(keep);
        for r in routes {
            let labels = RouteLabels {
                route: r.route.clone(),
            };
            self.boost
                .get(labels.clone(), Show::Always)
                .set(i64::from(r.boost_active));
            self.rate.get(labels, Show::Always).set(r.rate);
        }
    }
}
