//! The sidecar's adaptive sampling at run time: the process's one
//! [`Routes`] (shared by both listeners' samplers), the ticker that moves it
//! along every `sampling.adaptive.period` — adaptive probabilities, boost
//! triggers, boost decay — with its log events and gauges, and the shares of
//! fleet targets the control plane answers reports with.
//!
//! Shares expire: a sidecar that stops hearing from the control plane (three
//! report intervals without an answer) goes back to adapting to each route's
//! whole target on its own traffic, as a sidecar without a control plane does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use meshtrace_config::Config;
use tokio::time::Instant;

use crate::drain::Drain;
use crate::metrics::{Metrics, RouteGauges};
use crate::sampling::{RouteEvent, Routes};

/// How many report intervals the control plane's shares stay good for.
pub const SHARES_FOR_REPORTS: u32 = 3;

/// The process's sampling routes and what moves them.
#[derive(Debug)]
pub struct Adaptive {
    routes: ArcSwap<Routes>,
    metrics: Arc<Metrics>,
    /// The control plane's last shares and when they expire.
    shares: Mutex<Option<(BTreeMap<String, f64>, Instant)>>,
}

// === impl Adaptive ===

impl Adaptive {
    /// The routes of `config`, fresh.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Arc<Self> {
        let routes = Routes::new(&config.sampling, Instant::now());
        let adaptive = Arc::new(Self {
            routes: ArcSwap::from_pointee(routes),
            metrics,
            shares: Mutex::new(None),
        });
        adaptive.show();
        adaptive
    }

    /// The routes in force.
    pub fn current(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// Replaces the routes with `config`'s, carrying over what each route of
    /// the same name has learnt and spent (its share included); returns them
    /// for the listeners' samplers.
    pub fn reload(&self, config: &Config) -> Arc<Routes> {
        let routes = Routes::reloaded(&config.sampling, &self.routes.load(), Instant::now());
        let routes = Arc::new(routes);
        self.routes.store(routes.clone());
        self.show();
        routes
    }

    /// Takes the control plane's `shares` (route → traces per second for this
    /// sidecar), good for `valid_for`.
    pub fn set_shares(&self, shares: BTreeMap<String, f64>, valid_for: Duration, now: Instant) {
        self.routes.load().set_shares(&shares);
        *self.shares_lock() = Some((shares, now + valid_for));
    }

    /// One adjustment period: expires stale shares, ticks the routes, logs
    /// what happened and updates the gauges.
    pub fn tick(&self, now: Instant) -> Vec<RouteEvent> {
        let routes = self.current();
        if self.live_shares(now).is_none() && self.shares_lock().take().is_some() {
            routes.set_shares(&BTreeMap::new());
            tracing::info!(
                "control-plane shares expired: adaptive routes adapt to their whole target"
            );
        }
        let events = routes.tick(now);
        for event in &events {
            log(event);
        }
        self.show();
        events
    }

    /// Ticks every `sampling.adaptive.period` (read again after each tick, so
    /// a reload changes it) until the drain starts.
    pub fn spawn(self: &Arc<Self>, drain: &Drain) {
        let adaptive = self.clone();
        let stop = drain.clone();
        tokio::spawn(async move {
            loop {
                let period = adaptive.current().period();
                tokio::select! {
                    () = stop.signaled() => break,
                    () = tokio::time::sleep(period) => {}
                }
                adaptive.tick(Instant::now());
            }
        });
    }

    /// The shares, unless expired.
    fn live_shares(&self, now: Instant) -> Option<(BTreeMap<String, f64>, Instant)> {
        self.shares_lock()
            .as_ref()
            .filter(|(_, until)| *until > now)
            .cloned()
    }

    fn shares_lock(&self) -> std::sync::MutexGuard<'_, Option<(BTreeMap<String, f64>, Instant)>> {
        self.shares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the route gauges to the routes in force.
    fn show(&self) {
        let routes = self.current();
        let gauges: Vec<RouteGauges> = (0..routes.len())
            .filter_map(|id| {
                Some(RouteGauges {
                    route: routes.policy(id)?.name.clone(),
                    boost_active: routes.boost_active(id),
                    rate: routes.threshold(id).map_or(0.0, |t| t.rate()),
                })
            })
            .collect();
        self.metrics.routes(&gauges);
    }
}

/// The log line of a route event (target `meshtrace::sampling`).
fn log(event: &RouteEvent) {
    match event {
        RouteEvent::BoostStarted {
            route,
            trigger,
            rate,
            duration,
        } => tracing::warn!(
            target: "meshtrace::sampling",
            route = route.as_str(),
            trigger = trigger.as_str(),
            rate,
            duration = %String::from(meshtrace_config::Duration::from(*duration)),
            "sampling boost started"
        ),
        RouteEvent::BoostDecaying { route } => tracing::info!(
            target: "meshtrace::sampling",
            route = route.as_str(),
            "sampling boost decaying"
        ),
        RouteEvent::BoostEnded { route, why } => tracing::info!(
            target: "meshtrace::sampling",
            route = route.as_str(),
            why,
            "sampling boost ended"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::TraceId;
    use crate::sampling::{Input, Sampler};

    const PERIOD: Duration = Duration::from_secs(1);

    fn config() -> Config {
        let mut config = Config::default();
        config.sampling.default = Some(meshtrace_config::SamplingRule {
            target_traces_per_second: Some(10.0),
            ..Default::default()
        });
        config.sampling.adaptive.period = PERIOD.into();
        config
    }

    /// One period of 100 root requests a second through a sampler of the
    /// current routes, then a tick; the default route's rate after it.
    fn period(adaptive: &Adaptive, config: &Config, start: Instant, n: &mut u128) -> f64 {
        let sampler = Sampler::with_routes(&config.sampling, adaptive.current());
        for i in 0..100u32 {
            *n += 1;
            let input = Input {
                trusted: true,
                force_signal: false,
                tenant: None,
                parent: None,
                trace_id: TraceId::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
                    .unwrap_or(TraceId::new(1).expect("non-zero")),
                authority: None,
                method: "GET",
                path: "/",
                grpc: None,
                probe: false,
            };
            sampler.decide(&input, start + PERIOD * i / 100);
        }
        adaptive.tick(start + PERIOD);
        let routes = adaptive.current();
        routes.threshold(routes.len() - 1).map_or(0.0, |t| t.rate())
    }

    #[tokio::test(start_paused = true)]
    async fn shares_hold_across_a_reload_and_expire() {
        let config = config();
        let adaptive = Adaptive::new(&config, Metrics::new());
        let mut n = 0;
        let mut now = Instant::now();
        let shares = BTreeMap::from([("default".to_string(), 2.0)]);
        adaptive.set_shares(shares, 3 * PERIOD, now);
        let rate = period(&adaptive, &config, now, &mut n);
        assert!((rate - 0.02).abs() < 0.002, "share 2 of 100 req/s: {rate}");

        now += PERIOD;
        adaptive.reload(&config);
        let rate = period(&adaptive, &config, now, &mut n);
        assert!(
            (rate - 0.02).abs() < 0.002,
            "the reload kept the share: {rate}"
        );

        // The shares were good for 3 s: from the third tick on the route adapts
        // to its whole target again, doubling its way up to 10 / 100.
        let mut rates = Vec::new();
        for _ in 0..6 {
            now += PERIOD;
            rates.push(period(&adaptive, &config, now, &mut n));
        }
        let last = rates.last().copied().unwrap_or(0.0);
        assert!(
            (last - 0.1).abs() < 0.01,
            "back to the whole target: {rates:?}"
        );
    }
}
