//! Sidecar reports (`POST /v1/report`): a bounded window of traffic per sidecar.
//!
//! A sidecar reports cumulative counts since its process started
//! ([`Report`]); what an operator wants is the last five minutes. So each sidecar
//! (`namespace/pod`) keeps its newest report and a short list of **steps**: the
//! receive time of a report and the traffic between the previous step and it. The
//! traffic of the window ([`WINDOW`]) is the sum of the steps after the newest
//! step at least [`WINDOW`] older than the newest one (or after the oldest kept).
//!
//! * **Restarts**: a step across a restart (a new `boot`, or a counter that went
//!   backwards) counts the new process's totals, so nothing is lost or negative.
//! * **Bounds**: steps older than [`KEEP`] before the newest are dropped; beyond
//!   [`MAX_STEPS`] the two closest steps are merged (their traffic added), so a
//!   fast reporter keeps even coverage of the window and sums stay exact. A report
//!   names at most [`MAX_CALLERS`] callers (the sidecar sends at most
//!   `meshtrace_config::report::MAX_CALLERS + 2`). A
//!   sidecar silent for [`FORGET_AFTER`] is forgotten; at most
//!   [`MAX_SIDECARS`] are kept, and a new one beyond that is refused.
//! * **Time** is the store's clock at receipt (so tests drive it), never the
//!   sidecar's.
//!
//! A sidecar's first report counts in full when its process is younger than
//! [`KEEP`] (`uptime_seconds`: its counts began within the kept span, at a zero
//! baseline that many seconds ago); from an older process it is only the
//! baseline, and traffic shows from its second report on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use meshtrace_config::report::{FormatCounts, Report};
use meshtrace_config::{MigrationStage, PropagationFormat};

/// The span of the migration view.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// How far back steps are kept (the window plus a margin for late reports).
pub const KEEP: Duration = Duration::from_secs(6 * 60);
/// A sidecar that has not reported for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(10 * 60);
/// Steps kept per sidecar (24 at the default 15 s interval).
pub const MAX_STEPS: usize = 32;
/// Sidecars kept.
pub const MAX_SIDECARS: usize = 10_000;
/// Callers accepted in one report: the sidecar's bound plus `unknown` and
/// `other`, and room for a sidecar of a later version with a higher bound.
pub const MAX_CALLERS: usize = meshtrace_config::report::MAX_CALLERS + 28;
/// Largest report body accepted.
pub const MAX_REPORT_BODY: usize = 64 * 1024;

/// Traffic counted by format: per direction and, inbound, per caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests from the mesh.
    pub inbound: FormatCounts,
    /// Requests from the local app.
    pub outbound: FormatCounts,
    /// Inbound requests by calling workload.
    pub callers: BTreeMap<String, FormatCounts>,
}

/// One sidecar's window, as the migration view reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct SidecarTraffic {
    /// Its namespace.
    pub namespace: String,
    /// Its pod.
    pub pod: String,
    /// Its service, when it said.
    pub service: Option<String>,
    /// The stage it last reported.
    pub stage: MigrationStage,
    /// Traffic over the window.
    pub traffic: Traffic,
    /// Formats its app sent, with seconds since each was last seen (as of now).
    pub app_formats: Option<BTreeMap<PropagationFormat, u64>>,
}

/// Why a report was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// Too many sidecars are kept already (503).
    #[error("report refused: {0} sidecars are reporting, the most this control plane keeps")]
    Full(usize),
}

/// Every sidecar's window; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reports {
    inner: Arc<Mutex<HashMap<String, Window>>>,
    max_sidecars: usize,
}

#[derive(Debug)]
struct Window {
    latest: Report,
    /// The gap between its last two reports (`None` after one report).
    interval: Option<Duration>,
    /// Root requests a second per route, over the last minute of reports.
    rates: BTreeMap<String, f64>,
    /// Oldest first; the first step is the baseline (its traffic is not counted).
    steps: VecDeque<Step>,
}

#[derive(Debug)]
struct Step {
    at: SystemTime,
    traffic: Traffic,
    /// Root requests per sampling route (for fleet shares).
    roots: BTreeMap<String, u64>,
}

// === impl Traffic ===

impl Traffic {
    /// The traffic between two reports of one sidecar.
    pub fn between(earlier: &Report, later: &Report) -> Self {
        if later.boot != earlier.boot {
            return Self::of(later);
        }
        let none = FormatCounts::default();
        Self {
            inbound: later.inbound.since(&earlier.inbound),
            outbound: later.outbound.since(&earlier.outbound),
            callers: later
                .callers
                .iter()
                .map(|(k, c)| (k.clone(), c.since(earlier.callers.get(k).unwrap_or(&none))))
                .filter(|(_, c)| c.requests > 0)
                .collect(),
        }
    }

    /// A report's totals (its process's traffic so far).
    fn of(report: &Report) -> Self {
        Self {
            inbound: report.inbound.clone(),
            outbound: report.outbound.clone(),
            callers: report.callers.clone(),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Traffic) {
        self.inbound.add(&other.inbound);
        self.outbound.add(&other.outbound);
        for (k, c) in &other.callers {
            self.callers.entry(k.clone()).or_default().add(c);
        }
    }
}

// === impl Reports ===

impl Default for Reports {
    fn default() -> Self {
        Self::new(MAX_SIDECARS)
    }
}

impl Reports {
    /// Keeps at most `max_sidecars` sidecars.
    pub fn new(max_sidecars: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_sidecars,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Window>> {
        // A panic while holding this lock cannot leave a window half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a report received at `now`.
    pub fn record(&self, mut report: Report, now: SystemTime) -> Result<(), Refused> {
        report.service = report.service.filter(|s| !s.is_empty());
        if report.namespace.is_empty() || report.pod.is_empty() {
            return Err(Refused::Invalid(
                "a report needs `namespace` and `pod`".into(),
            ));
        }
        if report.callers.len() > MAX_CALLERS {
            return Err(Refused::Invalid(format!(
                "a report may name at most {MAX_CALLERS} callers, this one names {}",
                report.callers.len()
            )));
        }
        let identity = format!("{}/{}", report.namespace, report.pod);
        let mut all = self.lock();
        forget_silent(&mut all, now);
        if let Some(window) = all.get_mut(&identity) {
            window.push(report, now);
            return Ok(());
        }
        if all.len() >= self.max_sidecars {
            return Err(Refused::Full(all.len()));
        }
        let started = report
            .uptime_seconds
            .map(Duration::from_secs)
            .filter(|uptime| *uptime < KEEP)
            .and_then(|uptime| now.checked_sub(uptime));
        let steps = match started {
            // A young process: its counts began at zero, within the kept span.
            Some(started) => VecDeque::from([
                Step {
                    at: started,
                    traffic: Traffic::default(),
                    roots: BTreeMap::new(),
                },
                Step {
                    at: now,
                    traffic: Traffic::of(&report),
                    roots: shares::roots_between(&Report::default(), &report),
                },
            ]),
            None => VecDeque::from([Step {
                at: now,
                traffic: Traffic::default(),
                roots: BTreeMap::new(),
            }]),
        };
        let mut window = Window {
            latest: report,
            interval: None,
            rates: BTreeMap::new(),
            steps,
        };
        window.refresh_rates();
        all.insert(identity, window);
        Ok(())
    }

    /// Every sidecar heard from in the last [`FORGET_AFTER`], with its window's
    /// traffic, by identity.
    pub fn windows(&self, now: SystemTime) -> Vec<SidecarTraffic> {
        let mut all = self.lock();
        forget_silent(&mut all, now);
        let mut list: Vec<SidecarTraffic> = all.values().map(|w| w.summary(now)).collect();
        list.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        list
    }

    /// Whether a sidecar of `service` (in `namespace`, if given) has reported in
    /// the last [`FORGET_AFTER`].
    pub fn has_service(&self, service: &str, namespace: Option<&str>, now: SystemTime) -> bool {
        self.lock().values().any(|w| {
            w.latest.service.as_deref() == Some(service)
                && namespace.is_none_or(|ns| w.latest.namespace == ns)
                && age(now, w.latest_at()) < FORGET_AFTER
        })
    }

    /// How many sidecars reported in the last [`FORGET_AFTER`].
    pub fn count(&self, now: SystemTime) -> usize {
        let mut all = self.lock();
        forget_silent(&mut all, now);
        all.len()
    }
}

fn forget_silent(all: &mut HashMap<String, Window>, now: SystemTime) {
    all.retain(|_, w| age(now, w.latest_at()) < FORGET_AFTER);
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

// === impl Window ===

impl Window {
    fn latest_at(&self) -> SystemTime {
        self.steps.back().map_or(SystemTime::UNIX_EPOCH, |s| s.at)
    }

    fn push(&mut self, report: Report, now: SystemTime) {
        let traffic = Traffic::between(&self.latest, &report);
        let roots = shares::roots_between(&self.latest, &report);
        self.interval = Some(age(now, self.latest_at()));
        self.latest = report;
        self.steps.push_back(Step {
            at: now,
            traffic,
            roots,
        });
        while self.steps.len() > 1 && self.steps.get(1).is_some_and(|s| age(now, s.at) >= KEEP) {
            // The next step becomes the baseline; the dropped one ends the kept span.
            self.steps.pop_front();
        }
        while self.steps.len() > MAX_STEPS {
            self.merge_closest();
        }
        self.refresh_rates();
    }

    /// Removes the inner step whose neighbours are closest together, adding its
    /// traffic to the next one: sums stay exact, coverage stays even.
    fn merge_closest(&mut self) {
        let gap = |i: usize| age(self.steps[i + 1].at, self.steps[i - 1].at);
        let Some(i) = (1..self.steps.len() - 1).min_by_key(|&i| gap(i)) else {
            return;
        };
        if let Some(removed) = self.steps.remove(i) {
            let next = &mut self.steps[i];
            next.traffic.add(&removed.traffic);
            for (route, n) in removed.roots {
                *next.roots.entry(route).or_default() += n;
            }
        }
    }

    /// Traffic since the newest step at least [`WINDOW`] older than the newest
    /// step, or since the oldest kept.
    fn traffic(&self) -> Traffic {
        let newest = self.latest_at();
        let baseline = self
            .steps
            .iter()
            .rposition(|s| age(newest, s.at) >= WINDOW)
            .unwrap_or(0);
        let mut sum = Traffic::default();
        for step in self.steps.iter().skip(baseline + 1) {
            sum.add(&step.traffic);
        }
        sum
    }

    fn summary(&self, now: SystemTime) -> SidecarTraffic {
        let since_report = age(now, self.latest_at()).as_secs();
        let r = &self.latest;
        SidecarTraffic {
            namespace: r.namespace.clone(),
            pod: r.pod.clone(),
            service: r.service.clone(),
            stage: r.stage,
            traffic: self.traffic(),
            app_formats: r.app_formats.as_ref().map(|formats| {
                formats
                    .iter()
                    .map(|(f, secs)| (*f, secs.saturating_add(since_report)))
                    .collect()
            }),
        }
    }
}

mod shares;

pub use self::shares::{shares, ActiveBoost, DEFAULT_REPORT_INTERVAL, LIVE_INTERVALS, RATE_WINDOW};

#[cfg(test)]
mod tests;
