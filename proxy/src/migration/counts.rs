//! Requests counted by the trace formats they carried.

use std::sync::atomic::{AtomicU64, Ordering};

use meshtrace_config::report;

use crate::propagation::extract::Formats;
use crate::propagation::Format;

/// Cumulative counts of one kind of request; relaxed atomics, one add per
/// counter a request touches.
#[derive(Debug, Default)]
pub struct FormatCounts {
    requests: AtomicU64,
    legacy: AtomicU64,
    none: AtomicU64,
    by_format: [AtomicU64; Format::ALL.len()],
}

// === impl FormatCounts ===

impl FormatCounts {
    /// Counts one request that carried `formats` (present, valid or not).
    pub fn count(&self, formats: Formats) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if formats.is_empty() {
            self.none.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if formats.any_legacy() {
            self.legacy.fetch_add(1, Ordering::Relaxed);
        }
        for format in formats.iter() {
            self.by_format[format as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts so far, as reported.
    pub fn snapshot(&self) -> report::FormatCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        report::FormatCounts {
            requests: get(&self.requests),
            legacy: get(&self.legacy),
            none: get(&self.none),
            formats: Format::ALL
                .into_iter()
                .map(|f| (f, get(&self.by_format[f as usize])))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_several_formats_counts_once_in_requests_and_legacy() {
        let counts = FormatCounts::default();
        counts.count(
            [Format::TraceContext, Format::B3Multi, Format::Datadog]
                .into_iter()
                .collect(),
        );
        counts.count(Formats::only(Format::TraceContext));
        counts.count(Formats::default());
        let s = counts.snapshot();
        assert_eq!((s.requests, s.legacy, s.none), (3, 1, 1));
        assert_eq!(s.formats[&Format::TraceContext], 2);
        assert_eq!(s.formats[&Format::B3Multi], 1);
        assert!(!s.formats.contains_key(&Format::Jaeger));
    }
}
