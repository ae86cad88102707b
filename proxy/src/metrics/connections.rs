//! Downstream connections (open, accepted by protocol) and upstream failures by
//! kind (`meshtrace_open_connections`, `meshtrace_connections_total`,
//! `meshtrace_upstream_errors_total`).
//!
//! `open_connections` is shown from the start for each listener (zero open
//! connections is a reading); the counters appear on first use. Which error
//! kinds a direction can produce is [`ErrorKind::happens`]: the handles of
//! the others count into no series.

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::family::{Family, Show};
use super::http::ProtocolLabels;
use crate::target::{Direction, Protocol};

/// The connection families, resolved per direction by [`Families::handles`].
#[derive(Debug)]
pub(super) struct Families {
    open_connections: Family<DirectionLabels, Gauge>,
    connections: Family<ProtocolLabels, Counter>,
    upstream_errors: Family<ErrorLabels, Counter>,
}

/// Pre-resolved connection metrics for one direction.
#[derive(Clone, Debug)]
pub struct ConnMetrics {
    direction: Direction,
    open: Gauge,
    by_protocol: Arc<[Counter; 4]>,
    errors: Arc<[Counter; ErrorKind::ALL.len()]>,
}

/// Decrements the open-connection gauge when the connection ends.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

/// Why the sidecar could not get a response from (or a connection to) an upstream:
/// the `kind` label of `meshtrace_upstream_errors_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The upstream actively refused the TCP connection.
    ConnectRefused = 0,
    /// The TCP connection was not established within `timeouts.connect`.
    ConnectTimeout,
    /// No route to the upstream host, or its name did not resolve.
    Unreachable,
    /// No response headers within `timeouts.request`.
    RequestTimeout,
    /// The upstream closed or reset the connection mid-request.
    UpstreamReset,
    /// Explicit mode: no route matches the authority.
    NoRoute,
    /// Transparent mode: the connection has no original destination — the
    /// kernel has no redirect record for it, or reports the listener itself (a
    /// client dialled the capture port directly): it was not redirected.
    NoOriginalDst,
    /// A connection not identified as HTTP on a listener that closes those
    /// (`inbound.unidentified`): it never reached an upstream.
    UnidentifiedClosed,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ErrorLabels {
    direction: Direction,
    kind: ErrorKind,
}

// === impl Families ===

impl Families {
    /// Registers the connection and upstream-error families.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            open_connections: Family::register(
                registry,
                "open_connections",
                "Downstream connections currently open",
            ),
            connections: Family::register(
                registry,
                "connections",
                "Downstream connections accepted, by detected protocol",
            ),
            upstream_errors: Family::register(
                registry,
                "upstream_errors",
                "Requests or connections that failed upstream, by kind",
            ),
        }
    }

    /// Handles for connections and upstream errors of one direction.
    pub(super) fn handles(&self, direction: Direction) -> ConnMetrics {
        let protocol = |protocol| ProtocolLabels {
            direction,
            protocol,
        };
        let error = |kind: ErrorKind| {
            if kind.happens(direction) {
                let labels = ErrorLabels { direction, kind };
                self.upstream_errors.get(labels, Show::WhenUsed)
            } else {
                Counter::default()
            }
        };
        ConnMetrics {
            direction,
            open: self
                .open_connections
                .get(DirectionLabels { direction }, Show::Always),
            // gRPC is a request-level refinement: a connection is never `grpc`.
            by_protocol: Arc::new(Protocol::ALL.map(|p| match p {
                Protocol::Grpc => Counter::default(),
                _ => self.connections.get(protocol(p), Show::WhenUsed),
            })),
            errors: Arc::new(ErrorKind::ALL.map(error)),
        }
    }
}

// === impl ConnMetrics ===

impl ConnMetrics {
    /// Counts an open connection until the returned guard drops.
    pub fn open(&self) -> OpenGuard {
        self.open.inc();
        OpenGuard(self.open.clone())
    }

    /// Counts a connection's detected protocol.
    pub fn detected(&self, protocol: Protocol) {
        self.by_protocol[protocol as usize].inc();
    }

    /// Counts an upstream failure (one [`ErrorKind::happens`] in this
    /// direction; another counts into no series).
    pub fn error(&self, kind: ErrorKind) {
        debug_assert!(
            kind.happens(self.direction),
            "{kind:?} {:?}",
            self.direction
        );
        self.errors[kind as usize].inc();
    }
}

// === impl OpenGuard ===

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl ErrorKind ===

impl ErrorKind {
    /// Every kind, in discriminant order.
    pub const ALL: [ErrorKind; 8] = [
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::Unreachable,
        Self::RequestTimeout,
        Self::UpstreamReset,
        Self::NoRoute,
        Self::NoOriginalDst,
        Self::UnidentifiedClosed,
    ];

    /// Whether a listener of `direction` can count this kind: routes exist only
    /// outbound (explicit mode), and only the inbound listener closes
    /// unidentified connections. The one place that says so; the others have
    /// no series.
    pub const fn happens(self, direction: Direction) -> bool {
        match self {
            Self::NoRoute => matches!(direction, Direction::Outbound),
            Self::UnidentifiedClosed => matches!(direction, Direction::Inbound),
            _ => true,
        }
    }

    /// The label, log and `meshtrace-proxy-error` header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Unreachable => "unreachable",
            Self::RequestTimeout => "request_timeout",
            Self::UpstreamReset => "upstream_reset",
            Self::NoRoute => "no_route",
            Self::NoOriginalDst => "no_original_dst",
            Self::UnidentifiedClosed => "unidentified_closed",
        }
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}
