//! Metric families that render in a stable order and only with the series an
//! operator can use.
//!
//! prometheus-client's `Family` keeps its series in a `HashMap`, so a scrape
//! lists them in an order that changes from one scrape to the next, and it
//! renders every series it holds, so the request path's pre-resolved handles
//! (one per label combination it may ever count) all show up as zero lines.
//! The families here keep their series in a `BTreeMap` ordered by the label
//! values (in each label's declared order: `inbound` before `outbound`, `1xx`
//! before `5xx`, callers and targets by name), and each series is created
//! [`Show::Always`] — rendered from the start, even at zero — or
//! [`Show::WhenUsed`] — rendered from its first count on. The handles are the
//! same atomics either way: the request path still only does relaxed adds.
//!
//! Every family renders its `HELP` and `TYPE` lines even before it has a
//! series, so a scrape names every metric the sidecar exports.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;

use crate::histogram::DurationHistogram;

/// When a series appears in a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Show {
    /// From its creation, zero included: for series that alerts take a `rate()`
    /// of, which must exist before their first increment.
    Always,
    /// From its first count (a counter above zero, a histogram with an
    /// observation): the label combinations a sidecar has actually seen.
    WhenUsed,
}

/// Whether a metric has counted anything, for [`Show::WhenUsed`].
pub(super) trait Used {
    /// True once the metric holds something other than its initial value.
    fn used(&self) -> bool;
}

/// A labelled family; clones share the series.
#[derive(Clone, Debug)]
pub(super) struct Family<L, M> {
    name: &'static str,
    help: &'static str,
    series: Arc<RwLock<BTreeMap<L, (M, Show)>>>,
}

/// A family of one series without labels. It renders no sample until the
/// series is created, so a metric that exists only in some setups (the
/// control-plane connection) is absent elsewhere.
#[derive(Clone, Debug)]
pub(super) struct Single<M> {
    name: &'static str,
    help: &'static str,
    metric: Arc<OnceLock<M>>,
}

// === impl Family ===

impl<L, M> Family<L, M>
where
    L: EncodeLabelSet + Ord + Clone + Debug + Send + Sync + 'static,
    M: EncodeMetric + TypedMetric + Used + Clone + Default + Debug + Send + Sync + 'static,
{
    /// Registers the family as `meshtrace_{name}`; families render in the order
    /// they are registered.
    pub(super) fn register(
        registry: &mut Registry,
        name: &'static str,
        help: &'static str,
    ) -> Self {
        let family = Self {
            name,
            help,
            series: Arc::default(),
        };
        registry.register_collector(Box::new(family.clone()));
        family
    }

    /// The series of `labels`, created (shown as `show` says) if new. A series
    /// created [`Show::WhenUsed`] and later asked for [`Show::Always`] is
    /// shown from then on.
    pub(super) fn get(&self, labels: L, show: Show) -> M {
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let entry = series.entry(labels).or_insert_with(|| (M::default(), show));
        if show == Show::Always {
            entry.1 = Show::Always;
        }
        entry.0.clone()
    }

    /// Drops every series whose labels `keep` refuses (a reload removed what
    /// they describe).
    pub(super) fn retain(&self, keep: impl Fn(&L) -> bool) {
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        series.retain(|labels, _| keep(labels));
    }
}

impl<L, M> Collector for Family<L, M>
where
    L: EncodeLabelSet + Ord + Debug + Send + Sync + 'static,
    M: EncodeMetric + TypedMetric + Used + Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(self.name, self.help, None, M::TYPE)?;
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        for (labels, (metric, show)) in series.iter() {
            if *show == Show::Always || metric.used() {
                metric.encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

// === impl Single ===

impl<M> Single<M>
where
    M: EncodeMetric + TypedMetric + Clone + Default + Debug + Send + Sync + 'static,
{
    /// Registers the family as `meshtrace_{name}`, without its series.
    pub(super) fn register(
        registry: &mut Registry,
        name: &'static str,
        help: &'static str,
    ) -> Self {
        let single = Self {
            name,
            help,
            metric: Arc::default(),
        };
        registry.register_collector(Box::new(single.clone()));
        single
    }

    /// The series, created (and shown from now on, zero included) if new.
    pub(super) fn get(&self) -> M {
        self.metric.get_or_init(M::default).clone()
    }

    /// Shows `metric`, one counted elsewhere (process-wide), as the series.
    pub(super) fn show(&self, metric: M) {
        self.metric.get_or_init(|| metric);
    }
}

impl<M> Collector for Single<M>
where
    M: EncodeMetric + TypedMetric + Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let family = encoder.encode_descriptor(self.name, self.help, None, M::TYPE)?;
        match self.metric.get() {
            Some(metric) => metric.encode(family),
            None => Ok(()),
        }
    }
}

// === impl Used ===

impl Used for Counter {
    fn used(&self) -> bool {
        self.get() != 0
    }
}

impl Used for Gauge<i64, AtomicI64> {
    fn used(&self) -> bool {
        self.get() != 0
    }
}

impl Used for Gauge<f64, AtomicU64> {
    fn used(&self) -> bool {
        self.get() != 0.0
    }
}

impl Used for DurationHistogram {
    fn used(&self) -> bool {
        self.count() != 0
    }
}
