//! A lock-free latency histogram for the request path.
//!
//! prometheus-client's `Histogram` takes a mutex on every `observe`, which every
//! request on every worker would contend on. This one is a fixed array of atomic
//! bucket counters plus an atomic sum (in nanoseconds), encoded through
//! prometheus-client like any other metric.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds: 100 µs to 30 s, roughly ×2.5 apart.
const BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// Request durations in seconds. Clones share the same counters.
#[derive(Clone, Debug, Default)]
pub struct DurationHistogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Counts per bucket (not cumulative); the last slot is `+Inf`.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

// === impl DurationHistogram ===

impl DurationHistogram {
    /// Records one duration: two relaxed atomic adds.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        self.0.counts[slot].fetch_add(1, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Total observations.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|b| b.load(Relaxed)).sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder makes them cumulative (`le`).
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BOUNDS.len() + 1);
        for (i, count) in self.0.counts.iter().enumerate() {
            let count = count.load(Relaxed);
            total += count;
            buckets.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), count));
        }
        let sum = self.0.sum_nanos.load(Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_fits() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.0.counts[0].load(Relaxed), 1);
        assert_eq!(h.0.counts[5].load(Relaxed), 1);
        assert_eq!(h.0.counts[BOUNDS.len()].load(Relaxed), 1);
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn rendered_buckets_are_cumulative_once() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(40));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("d", "durations", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let bucket = |le: &str| {
            let prefix = format!("d_bucket{{le=\"{le}\"}} ");
            let line = text.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
            line.unwrap_or_else(|| panic!("no bucket {le} in {text}"))
                .to_string()
        };
        assert_eq!(bucket("0.0001"), "1");
        assert_eq!(bucket("0.025"), "1");
        assert_eq!(bucket("0.05"), "2");
        assert_eq!(bucket("30.0"), "2");
        assert_eq!(bucket("+Inf"), "2");
        assert!(text.contains("d_count 2\n"), "{text}");
    }
}
