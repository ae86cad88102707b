//! HTTP requests: counts by response status class and the request duration
//! histogram (`meshtrace_requests_total`, `meshtrace_request_duration_seconds`).
//!
//! Every series appears on first use: a listener resolves one counter per
//! status class and protocol when it starts, but a sidecar that has answered
//! only `2xx` over HTTP/1 shows just that line (and one histogram).

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::family::{Family, Show};
use crate::histogram::DurationHistogram;
use crate::target::{Direction, Protocol};

/// The request families, resolved per direction and protocol by
/// [`Families::handles`].
#[derive(Debug)]
pub(super) struct Families {
    requests: Family<RequestLabels, Counter>,
    durations: Family<ProtocolLabels, DurationHistogram>,
}

/// Pre-resolved request metrics for one direction and protocol.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    by_class: Arc<[Counter; 5]>,
    duration: DurationHistogram,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RequestLabels {
    direction: Direction,
    protocol: Protocol,
    status_class: StatusClass,
}

/// The labels of families kept per direction and protocol (shared with the
/// connection counters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(super) struct ProtocolLabels {
    pub(super) direction: Direction,
    pub(super) protocol: Protocol,
}

/// A response status class (`2xx`…), the `status_class` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct StatusClass(u8);

const CLASSES: [StatusClass; 5] = [
    StatusClass(1),
    StatusClass(2),
    StatusClass(3),
    StatusClass(4),
    StatusClass(5),
];

// === impl Families ===

impl Families {
    /// Registers the request families.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            requests: Family::register(
                registry,
                "requests",
                "HTTP requests by direction, protocol and response status class",
            ),
            durations: Family::register(
                registry,
                "request_duration_seconds",
                "Time from request arrival to the end of the response body",
            ),
        }
    }

    /// Handles for HTTP requests of one direction and protocol.
    pub(super) fn handles(&self, direction: Direction, protocol: Protocol) -> HttpMetrics {
        HttpMetrics {
            by_class: Arc::new(CLASSES.map(|status_class| {
                let labels = RequestLabels {
                    direction,
                    protocol,
                    status_class,
                };
                self.requests.get(labels, Show::WhenUsed)
            })),
            duration: self.durations.get(
                ProtocolLabels {
                    direction,
                    protocol,
                },
                Show::WhenUsed,
            ),
        }
    }
}

// === impl HttpMetrics ===

impl HttpMetrics {
    /// Records one finished request.
    pub fn record(&self, status: http::StatusCode, elapsed: std::time::Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed);
    }
}

// === impl StatusClass ===

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        write!(encoder, "{}xx", self.0)
    }
}
