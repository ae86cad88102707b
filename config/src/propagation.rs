//! The `propagation` section: which trace-header formats the sidecar reads, how it
//! settles disagreements, and what it writes toward each neighbour.

use serde::{Deserialize, Serialize};

/// A trace-context wire format (names as in `OTEL_PROPAGATORS` where one exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum PropagationFormat {
    /// W3C `traceparent` / `tracestate`.
    #[serde(rename = "tracecontext")]
    TraceContext = 0,
    /// Zipkin B3, one header per field (`X-B3-TraceId`, …).
    #[serde(rename = "b3multi")]
    B3Multi = 1,
    /// Zipkin B3, single `b3` header.
    #[serde(rename = "b3single")]
    B3Single = 2,
    /// Datadog `x-datadog-*`.
    #[serde(rename = "datadog")]
    Datadog = 3,
    /// Jaeger `uber-trace-id`.
    #[serde(rename = "jaeger")]
    Jaeger = 4,
}

impl PropagationFormat {
    /// Every format, in discriminant order.
    pub const ALL: [Self; 5] = [
        Self::TraceContext,
        Self::B3Multi,
        Self::B3Single,
        Self::Datadog,
        Self::Jaeger,
    ];

    /// The config and metrics name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TraceContext => "tracecontext",
            Self::B3Multi => "b3multi",
            Self::B3Single => "b3single",
            Self::Datadog => "datadog",
            Self::Jaeger => "jaeger",
        }
    }
}

/// Which context wins when formats in one request carry different trace ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// The first format in `extract` order that carries a valid context.
    First,
    /// W3C `traceparent` when valid, else the first in order.
    Tracecontext,
}

/// The width trace ids are written in by formats that allow 64 or 128 bits (B3,
/// Jaeger). Datadog always carries the low 64 bits (and the high 64 in
/// `_dd.p.tid`); W3C always 128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdWidth {
    /// As received: a 64-bit id goes back out as 64 bits, new traces as 128.
    Auto,
    /// Always the low 64 bits (neighbours that only parse 64-bit ids).
    #[serde(rename = "64")]
    Bits64,
    /// Always 128 bits (64-bit ids left-padded with zeros).
    #[serde(rename = "128")]
    Bits128,
}

/// The `propagation` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Propagation {
    /// Formats read from incoming requests, in priority order.
    pub extract: Vec<PropagationFormat>,
    /// What to do when formats disagree on the trace id.
    pub on_conflict: ConflictPolicy,
    /// What is written toward the local application.
    pub inbound: Injection,
    /// What is written toward upstreams, unless an `upstreams` rule matches.
    pub outbound: Injection,
    /// Per-upstream rules for outbound requests; the first match wins.
    pub upstreams: Vec<UpstreamInjection>,
}

impl Default for Propagation {
    fn default() -> Self {
        Self {
            // B3 single before multi: the B3 spec gives the single header precedence.
            extract: vec![
                PropagationFormat::TraceContext,
                PropagationFormat::B3Single,
                PropagationFormat::B3Multi,
                PropagationFormat::Datadog,
                PropagationFormat::Jaeger,
            ],
            on_conflict: ConflictPolicy::First,
            inbound: Injection::default(),
            outbound: Injection::default(),
            upstreams: Vec::new(),
        }
    }
}

/// What the sidecar writes toward one neighbour.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Injection {
    /// Formats written (each replaces any incoming header of that format).
    pub inject: Vec<PropagationFormat>,
    /// Remove incoming trace headers of formats not in `inject`.
    pub strip_legacy: bool,
    /// Trace-id width for B3 and Jaeger.
    pub id_width: IdWidth,
}

impl Default for Injection {
    fn default() -> Self {
        Self {
            inject: vec![PropagationFormat::TraceContext],
            strip_legacy: false,
            id_width: IdWidth::Auto,
        }
    }
}

/// An outbound rule for the upstreams it matches.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamInjection {
    /// Which upstreams (all given criteria must hold).
    #[serde(rename = "match")]
    pub matches: UpstreamMatch,
    /// A trust boundary: strip every trace header (and write none) toward it.
    #[serde(default)]
    pub external: bool,
    /// What to write (ignored when `external`).
    #[serde(flatten)]
    pub injection: Injection,
}

/// Matches an outbound request by its authority, host or destination port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamMatch {
    /// Exact `host:port`, case-insensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Host, any port, case-insensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Destination port (the authority's, else the connection's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}
