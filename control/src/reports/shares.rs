//! Fleet shares of adaptive targets, and the boosts sidecars report.
//!
//! A route with `target_traces_per_second: N` means N root traces a second for
//! the whole **workload** (namespace + service; a sidecar without a service is a
//! workload of its own, its pod). Each live sidecar of the workload that reports
//! the route gets `N × r_i / Σ r`, where `r_i` is its root-request rate over the
//! last [`RATE_WINDOW`] of its reports ([`shares`] does the arithmetic). The
//! control plane answers each report with the reporter's shares
//! ([`meshtrace_config::report::ReportReply::budgets`]).
//!
//! **Live** is the sidecars' own freshness rule for a budget: heard from within
//! [`LIVE_INTERVALS`] report intervals. The control plane does not know a
//! sidecar's `control.report_interval`; it takes the gap between the sidecar's
//! last two reports (the default interval, [`DEFAULT_REPORT_INTERVAL`], until
//! there are two), so a sidecar that stopped reporting drops out of the split
//! after three of its own intervals.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use meshtrace_config::report::Report;
use serde::Serialize;

use super::{age, Reports, Window};

/// How far back a sidecar's root rate is measured: long enough to smooth a
/// burst, short enough that a traffic shift between sidecars moves the shares
/// within a minute.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// A sidecar is live while it reported within this many of its intervals.
pub const LIVE_INTERVALS: u32 = 3;
/// The sidecars' default `control.report_interval`, assumed until a sidecar's
/// second report shows its own.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(15);

/// An active boost on some sidecar's route, as `GET /v1/status` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActiveBoost {
    /// The sidecar's namespace.
    pub namespace: String,
    /// Its pod.
    pub pod: String,
    /// Its service, when it said.
    pub service: Option<String>,
    /// The route boosted.
    pub route: String,
    /// What triggered it.
    pub trigger: String,
    /// Seconds since it started (as of now).
    pub started_seconds_ago: u64,
    /// Seconds until it has decayed (as of now).
    pub ends_in_seconds: u64,
    /// The boost's probability when last reported.
    pub rate: f64,
}

/// Splits `target` between sidecars by their root rates (`None`: no rate yet).
///
/// A sidecar without a rate gets `target / n`; the others share the rest in
/// proportion to their rates, or equally when those are all zero. The shares
/// always add up to `target`.
pub fn shares(target: f64, rates: &[Option<f64>]) -> Vec<f64> {
    let n = rates.len();
    if n == 0 {
        return Vec::new();
    }
    let equal = target / n as f64;
    let rated: Vec<f64> = rates.iter().flatten().map(|r| r.max(0.0)).collect();
    let rest = equal * rated.len() as f64;
    let sum: f64 = rated.iter().sum();
    rates
        .iter()
        .map(|rate| match rate {
            None => equal,
            Some(_) if sum <= 0.0 => equal,
            Some(r) => rest * r.max(0.0) / sum,
        })
        .collect()
}

/// Whether two sidecars share targets: same namespace and service (a sidecar
/// without a service shares with nobody).
fn same_workload(a: &Report, b: &Report) -> bool {
    a.namespace == b.namespace
        && match (&a.service, &b.service) {
            (Some(x), Some(y)) => x == y,
            (None, None) => a.pod == b.pod,
            _ => false,
        }
}

/// Root requests of each route between two reports of one sidecar: a new
/// `boot`, or a count that went backwards, counts the new process in full.
pub(super) fn roots_between(earlier: &Report, later: &Report) -> BTreeMap<String, u64> {
    let restarted = later.boot != earlier.boot;
    later
        .routes
        .iter()
        .map(|(name, route)| {
            let before = earlier.routes.get(name).map_or(0, |r| r.roots);
            let n = if restarted || route.roots < before {
                route.roots
            } else {
                route.roots - before
            };
            (name.clone(), n)
        })
        .collect()
}

// === impl Window ===

impl Window {
    /// The sidecar's report interval, as its last two reports show it.
    fn interval(&self) -> Duration {
        self.interval
            .filter(|gap| !gap.is_zero())
            .unwrap_or(DEFAULT_REPORT_INTERVAL)
    }

    fn is_live(&self, now: SystemTime) -> bool {
        age(now, self.latest_at()) <= self.interval() * LIVE_INTERVALS
    }

    /// Computes the root rate of each route of the latest report (on each
    /// report, so that answering one costs a lookup per peer).
    pub(super) fn refresh_rates(&mut self) {
        let rates = self
            .latest
            .routes
            .keys()
            .filter_map(|route| Some((route.clone(), self.root_rate(route)?)))
            .collect();
        self.rates = rates;
    }

    /// Root requests per second of `route` over the last [`RATE_WINDOW`] of
    /// reports; `None` before a first interval was seen.
    fn root_rate(&self, route: &str) -> Option<f64> {
        let newest = self.latest_at();
        let baseline = self
            .steps
            .iter()
            .rposition(|s| age(newest, s.at) >= RATE_WINDOW)
            .unwrap_or(0);
        let span = age(newest, self.steps.get(baseline)?.at);
        if span.is_zero() {
            return None;
        }
        let roots: u64 = self
            .steps
            .iter()
            .skip(baseline + 1)
            .map(|s| s.roots.get(route).copied().unwrap_or(0))
            .sum();
        Some(roots as f64 / span.as_secs_f64())
    }
}

// === impl Reports ===

impl Reports {
    /// Sidecar `namespace/pod`'s share of each adaptive route's target among
    /// the live sidecars of its workload (empty for an unknown sidecar).
    pub fn budgets(&self, namespace: &str, pod: &str, now: SystemTime) -> BTreeMap<String, f64> {
        let all = self.lock();
        let Some(me) = all.get(&format!("{namespace}/{pod}")) else {
            return BTreeMap::new();
        };
        let peers: Vec<&Window> = all
            .values()
            .filter(|w| same_workload(&w.latest, &me.latest) && w.is_live(now))
            .collect();
        let mut budgets = BTreeMap::new();
        for (route, report) in &me.latest.routes {
            let Some(target) = report.target_traces_per_second else {
                continue;
            };
            let sharing: Vec<&Window> = peers
                .iter()
                .copied()
                .filter(|w| w.latest.routes.contains_key(route))
                .collect();
            let rates: Vec<Option<f64>> = sharing
                .iter()
                .map(|w| w.rates.get(route).copied())
                .collect();
            let split = shares(target, &rates);
            let mine = sharing.iter().position(|w| std::ptr::eq(*w, me));
            // The reporter itself is live: it just reported (else it has the whole target).
            let share = mine.and_then(|i| split.get(i).copied()).unwrap_or(target);
            budgets.insert(route.clone(), share);
        }
        budgets
    }

    /// Every active boost in the latest report of each live sidecar, with its
    /// times advanced to `now`; a boost that must have ended since is left out.
    pub fn boosts(&self, now: SystemTime) -> Vec<ActiveBoost> {
        let all = self.lock();
        let mut list: Vec<ActiveBoost> = all
            .values()
            .filter(|w| w.is_live(now))
            .flat_map(|w| {
                let since = age(now, w.latest_at()).as_secs();
                let r = &w.latest;
                r.routes.iter().filter_map(move |(route, report)| {
                    let boost = report.boost.as_ref()?;
                    let ends_in_seconds = boost.ends_in_seconds.checked_sub(since)?;
                    Some(ActiveBoost {
                        namespace: r.namespace.clone(),
                        pod: r.pod.clone(),
                        service: r.service.clone(),
                        route: route.clone(),
                        trigger: boost.trigger.clone(),
                        started_seconds_ago: boost.started_seconds_ago.saturating_add(since),
                        ends_in_seconds,
                        rate: boost.rate,
                    })
                })
            })
            .collect();
        list.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.route).cmp(&(&b.namespace, &b.pod, &b.route))
        });
        list
    }
}

#[cfg(test)]
mod tests;
