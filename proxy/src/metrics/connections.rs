//! Downstream connections (open, accepted by protocol) and upstream failures by
//! kind (`meshtrace_open_connections`, `meshtrace_connections_total`,
//! `meshtrace_upstream_errors_total`).

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::http::ProtocolLabels;
use super::register;
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
    open: Gauge,
    by_protocol: Arc<[Counter; 4]>,
    errors: Arc<[Counter; 9]>,
}

/// Decrements the open-connection gauge when the connection ends.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

/// Why the sidecar could not get a response from (or a connection to) an upstream:
/// the `kind` label of `meshtrace_upstream_errors_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
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
    /// Transparent mode: the connection was addressed to the sidecar itself.
    LoopDetected,
    /// Transparent mode: the kernel has no original destination for the connection.
    NoOriginalDst,
    /// A connection not identified as HTTP on a listener that closes those
    /// (`inbound.unidentified`): it never reached an upstream.
    UnidentifiedClosed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    direction: Direction,
    kind: ErrorKind,
}

// === impl Families ===

impl Families {
    /// Registers the connection and upstream-error families.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            open_connections: register(
                registry,
                "open_connections",
                "Downstream connections currently open",
            ),
            connections: register(
                registry,
                "connections",
                "Downstream connections accepted, by detected protocol",
            ),
            upstream_errors: register(
                registry,
                "upstream_errors",
                "Requests or connections that failed upstream, by kind",
            ),
        }
    }

    /// Handles for connections and upstream errors of one direction.
    pub(super) fn handles(&self, direction: Direction) -> ConnMetrics {
        ConnMetrics {
            open: self
                .open_connections
                .get_or_create_owned(&DirectionLabels { direction }),
            by_protocol: Arc::new(Protocol::ALL.map(|protocol| {
                self.connections.get_or_create_owned(&ProtocolLabels {
                    direction,
                    protocol,
                })
            })),
            errors: Arc::new(ErrorKind::ALL.map(|kind| {
                self.upstream_errors
                    .get_or_create_owned(&ErrorLabels { direction, kind })
            })),
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

    /// Counts an upstream failure.
    pub fn error(&self, kind: ErrorKind) {
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
    const ALL: [ErrorKind; 9] = [
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::Unreachable,
        Self::RequestTimeout,
        Self::UpstreamReset,
        Self::NoRoute,
        Self::LoopDetected,
        Self::NoOriginalDst,
        Self::UnidentifiedClosed,
    ];

    /// The label, log and `meshtrace-proxy-error` header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Unreachable => "unreachable",
            Self::RequestTimeout => "request_timeout",
            Self::UpstreamReset => "upstream_reset",
            Self::NoRoute => "no_route",
            Self::LoopDetected => "loop_detected",
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
