//! Requests counted by the trace formats they carried.

use meshtrace_config::report;
use prometheus_client::metrics::counter::Counter;

use crate::propagation::extract::Formats;
use crate::propagation::Format;

/// Cumulative counts of one kind of request; one relaxed atomic add per counter
/// a request touches. The per-format and `none` counters may be registered
/// Prometheus series ([`FormatCounts::with_series`]).
#[derive(Debug, Default)]
pub struct FormatCounts {
    requests: Counter,
    legacy: Counter,
    /// Per format, then `none`.
    formats: [Counter; Format::ALL.len() + 1],
}

// === impl FormatCounts ===

impl FormatCounts {
    /// Counts whose per-format and `none` counters are `series` (in that order).
    pub fn with_series(series: [Counter; Format::ALL.len() + 1]) -> Self {
        Self {
            formats: series,
            ..Self::default()
        }
    }

    /// Counts one request that carried `formats` (present, valid or not).
    pub fn count(&self, formats: Formats) {
        self.requests.inc();
        if formats.is_empty() {
            self.formats[Format::ALL.len()].inc();
            return;
        }
        if formats.any_legacy() {
            self.legacy.inc();
        }
        for format in formats.iter() {
            self.formats[format as usize].inc();
        }
    }

    /// The counts so far, as reported.
    pub fn snapshot(&self) -> report::FormatCounts {
        report::FormatCounts {
            requests: self.requests.get(),
            legacy: self.legacy.get(),
            none: self.formats[Format::ALL.len()].get(),
            formats: Format::ALL
                .into_iter()
                .map(|f| (f, self.formats[f as usize].get()))
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
