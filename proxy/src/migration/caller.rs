//! "Who still sends me B3?": the calling workload of each inbound request, and
//! its formats counted with a bounded number of label values.
//!
//! A sidecar names its workload to the next sidecar in the
//! `x-meshtrace-caller: <service>.<namespace>` request header, set on every
//! outbound request except toward `external` upstreams (an app's own value is
//! replaced, or removed when the workload has no service name). The inbound
//! listener reads it (on trusted listeners only) and always removes it before
//! the app. A request without it — an unmeshed client — counts as `unknown`;
//! a malformed value, or a caller beyond the first [`MAX_CALLERS`], as `other`.
//!
//! The per-caller counters live in a copy-on-write map read through `arc-swap`:
//! a known caller costs one lock-free load and one hash lookup; a new one is
//! added with a compare-and-swap loop, never a lock on the request path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue};
use meshtrace_config::report;
use meshtrace_config::Workload;

use super::FormatCounts;
use crate::metrics::{FormatCounters, Metrics};
use crate::propagation::extract::Formats;

/// The header's name.
pub const HEADER_NAME: &str = crate::propagation::CALLER_HEADER_NAME;

/// The header a sidecar names its workload in.
pub static HEADER: HeaderName = HeaderName::from_static(HEADER_NAME);

pub use meshtrace_config::report::MAX_CALLERS;

/// The longest caller name accepted (a DNS name's length).
const MAX_LEN: usize = 253;

/// This workload's name for the next sidecar: `service.namespace` (or
/// `service`); `None` without a service name or when it is not a valid name.
pub fn identity(workload: &Workload) -> Option<HeaderValue> {
    let service = workload.service.as_deref()?;
    let name = match workload.namespace.as_deref() {
        Some(namespace) => format!("{service}.{namespace}"),
        None => service.to_string(),
    };
    if !valid(name.as_bytes()) {
        return None;
    }
    HeaderValue::from_str(&name).ok()
}

/// A caller name: 1–253 characters of letters, digits, `.`, `-`, `_`,
/// starting with a letter or digit.
fn valid(name: &[u8]) -> bool {
    let char_ok = |b: &u8| b.is_ascii_alphanumeric() || b"._-".contains(b);
    matches!(name.first(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= MAX_LEN
        && name.iter().all(char_ok)
}

/// Caller name (validated before it is added) → counts.
type Known = HashMap<Box<[u8]>, Arc<FormatCounts>, foldhash::fast::RandomState>;

/// Inbound requests by calling workload.
#[derive(Debug)]
pub struct Callers {
    known: ArcSwap<Known>,
    unknown: Arc<FormatCounts>,
    other: Arc<FormatCounts>,
    metrics: FormatCounters,
}

// === impl Callers ===

impl Callers {
    /// No caller seen yet; counters registered in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let metrics = metrics.by_caller();
        Self {
            known: ArcSwap::default(),
            unknown: Arc::new(FormatCounts::with_series(metrics.get("unknown"))),
            other: Arc::new(FormatCounts::with_series(metrics.get("other"))),
            metrics,
        }
    }

    /// Counts an inbound request from `caller` (the header's value, when
    /// present and trusted) that carried `formats`.
    pub fn count(&self, caller: Option<&HeaderValue>, formats: Formats) {
        let Some(name) = caller.map(HeaderValue::as_bytes) else {
            return self.unknown.count(formats);
        };
        // The common case: a known caller (validated when it was added),
        // counted under the guard, with no clone and no second look at the name.
        if let Some(counts) = self.known.load().get(name) {
            return counts.count(formats);
        }
        match std::str::from_utf8(name) {
            Ok(name) if valid(name.as_bytes()) => self.add(name).count(formats),
            _ => self.other.count(formats),
        }
    }

    /// Adds `name`'s counts (or finds them, when another request just did), or
    /// `other` beyond the bound.
    fn add(&self, name: &str) -> Arc<FormatCounts> {
        let mut found = None;
        self.known.rcu(|known| {
            if let Some(counts) = known.get(name.as_bytes()) {
                found = Some(counts.clone());
                return known.clone();
            }
            if known.len() >= MAX_CALLERS {
                found = Some(self.other.clone());
                return known.clone();
            }
            let counts = Arc::new(FormatCounts::with_series(self.metrics.get(name)));
            found = Some(counts.clone());
            let mut more = Known::clone(known);
            more.insert(name.as_bytes().into(), counts);
            Arc::new(more)
        });
        found.unwrap_or_else(|| self.other.clone())
    }

    /// Every inbound request's counts so far: the sum over callers.
    pub fn total(&self) -> report::FormatCounts {
        let mut total = self.unknown.snapshot();
        total.add(&self.other.snapshot());
        for counts in self.known.load().values() {
            total.add(&counts.snapshot());
        }
        total
    }

    /// Every caller's counts so far, for the report.
    pub fn snapshot(&self) -> BTreeMap<String, report::FormatCounts> {
        let mut all: BTreeMap<String, report::FormatCounts> = self
            .known
            .load()
            .iter()
            .map(|(name, counts)| {
                // Names are validated ASCII before they are added.
                (
                    String::from_utf8_lossy(name).into_owned(),
                    counts.snapshot(),
                )
            })
            .collect();
        for (name, counts) in [("unknown", &self.unknown), ("other", &self.other)] {
            let snapshot = counts.snapshot();
            if snapshot.requests > 0 {
                all.insert(name.into(), snapshot);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Format;

    fn value(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn identity_is_service_dot_namespace() {
        let mut w = Workload {
            service: Some("checkout".into()),
            namespace: Some("shop".into()),
            ..Workload::default()
        };
        assert_eq!(identity(&w).unwrap(), "checkout.shop");
        w.namespace = None;
        assert_eq!(identity(&w).unwrap(), "checkout");
        w.service = None;
        assert_eq!(identity(&w), None);
        w.service = Some("bad name".into());
        assert_eq!(identity(&w), None);
    }

    #[test]
    fn callers_are_counted_by_name_with_unknown_and_other() {
        let metrics = Metrics::new();
        let callers = Callers::new(&metrics);
        let b3 = Formats::only(Format::B3Multi);
        callers.count(Some(&value("web.shop")), b3);
        callers.count(
            Some(&value("web.shop")),
            Formats::only(Format::TraceContext),
        );
        callers.count(None, Formats::default());
        callers.count(Some(&value("-bad")), b3);
        let all = callers.snapshot();
        assert_eq!((all["web.shop"].requests, all["web.shop"].legacy), (2, 1));
        assert_eq!(all["unknown"].none, 1);
        assert_eq!(all["other"].requests, 1);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"meshtrace_trace_context_by_caller_total{caller="web.shop",format="b3multi"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn callers_beyond_the_bound_count_as_other() {
        let metrics = Metrics::new();
        let callers = Callers::new(&metrics);
        for i in 0..MAX_CALLERS + 5 {
            callers.count(Some(&value(&format!("svc-{i}"))), Formats::default());
        }
        let all = callers.snapshot();
        assert_eq!(all.len(), MAX_CALLERS + 1, "the bound plus `other`");
        assert_eq!(all["other"].requests, 5);
    }
}
