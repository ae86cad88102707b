//! The `propagation` section: which trace-header formats the sidecar reads, how it
//! settles disagreements, and which it writes toward each neighbour.
//!
//! What is written is decided in one place (the proxy's injector) from the
//! direction, the workload's migration [`stage`](Propagation::stage), the formats
//! that arrived, and the formats the local app speaks ([`app_formats`], or learned
//! from the app's own outbound requests). Every trace header that is not written
//! for this hop is removed: nothing passes through stale.
//!
//! [`app_formats`]: Propagation::app_formats

use serde::{Deserialize, Serialize};

use crate::types::Duration;

/// A trace-context wire format (names as in `OTEL_PROPAGATORS` where one exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
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

    /// Whether this is a legacy format (anything but W3C Trace Context): what a
    /// migration drives to zero.
    pub const fn is_legacy(self) -> bool {
        !matches!(self, Self::TraceContext)
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

/// Where a workload is in its legacy → W3C migration: one setting that decides
/// which formats reach the app and which leave the pod.
///
/// | stage | toward the app | toward upstreams |
/// |---|---|---|
/// | `legacy` | W3C + formats that arrived + the app's formats | W3C + the formats the app sent |
/// | `dual` | as `legacy` (the app is untouched) | W3C only: legacy leaves the wire |
/// | `w3c` | W3C only | W3C only |
///
/// `propagation.upstreams` rules replace the stage for the upstreams they match.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStage {
    /// The app speaks its legacy formats; they are written both ways, W3C added.
    #[default]
    Legacy,
    /// Legacy formats stay inside the pod (toward the app); only W3C crosses the
    /// network.
    Dual,
    /// Only W3C reaches the app and leaves it.
    W3c,
}

impl MigrationStage {
    /// Every stage, in migration order.
    pub const ALL: [Self; 3] = [Self::Legacy, Self::Dual, Self::W3c];

    /// The config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Dual => "dual",
            Self::W3c => "w3c",
        }
    }

    /// The stage after this one (`None` at `w3c`).
    pub const fn next(self) -> Option<Self> {
        match self {
            Self::Legacy => Some(Self::Dual),
            Self::Dual => Some(Self::W3c),
            Self::W3c => None,
        }
    }

    /// The stage before this one (`None` at `legacy`).
    pub const fn previous(self) -> Option<Self> {
        match self {
            Self::Legacy => None,
            Self::Dual => Some(Self::Legacy),
            Self::W3c => Some(Self::Dual),
        }
    }
}

impl std::fmt::Display for MigrationStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MigrationStage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| format!("unknown migration stage {s:?}; expected legacy, dual or w3c"))
    }
}

/// The `propagation` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Propagation {
    /// Formats read from incoming requests, in priority order.
    pub extract: Vec<PropagationFormat>,
    /// What to do when formats disagree on the trace id.
    pub on_conflict: ConflictPolicy,
    /// The workload's migration stage.
    pub stage: MigrationStage,
    /// The formats the local app reads and writes, when the operator knows them;
    /// `null`: learned from the app's own outbound requests (kept `learn_for`).
    pub app_formats: Option<Vec<PropagationFormat>>,
    /// How long a format the app was seen sending is remembered.
    pub learn_for: Duration,
    /// Trace-id width for B3 and Jaeger (a rule may set its own).
    pub id_width: IdWidth,
    /// Per-upstream rules for outbound requests; the first match wins and
    /// replaces the stage's choice for that upstream.
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
            stage: MigrationStage::Legacy,
            app_formats: None,
            learn_for: Duration::from_secs(3600),
            id_width: IdWidth::Auto,
            upstreams: Vec::new(),
        }
    }
}

/// An outbound rule for the upstreams it matches: exactly which formats they get.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamInjection {
    /// A name for metrics (`target` label); default `upstreams[N]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which upstreams (all given criteria must hold).
    #[serde(rename = "match")]
    pub matches: UpstreamMatch,
    /// A trust boundary: every trace header is removed and none written.
    #[serde(default)]
    pub external: bool,
    /// Exactly the formats written toward these upstreams (not with `external`).
    #[serde(default)]
    pub inject: Vec<PropagationFormat>,
    /// Trace-id width for B3 and Jaeger; default `propagation.id_width`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_width: Option<IdWidth>,
}

impl UpstreamInjection {
    /// The `target` label of the rule at `index`.
    pub fn label(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("upstreams[{index}]"))
    }
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
