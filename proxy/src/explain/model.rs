//! The answer `explain` gives, as data: rendered as text ([`super::render`]) or
//! serialised as JSON (field names are stable; see the README).

use serde::Serialize;

/// Everything `explain` says about one request.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The request as given.
    pub request: RequestLine,
    /// Whether the listener honours incoming context (`inbound.trusted`;
    /// outbound always).
    pub trusted: bool,
    /// `propagation.on_conflict`: `first` or `tracecontext`.
    pub on_conflict: &'static str,
    /// Per format that the request carries headers of, in `propagation.extract`
    /// order then the unconfigured ones.
    pub read: Vec<FormatRead>,
    /// The context read from the request, merged across agreeing formats.
    pub incoming: Option<ContextView>,
    /// A decision carried without ids (`b3: 0`), when no format carried a context.
    pub incoming_decision: Option<DecisionOnly>,
    /// The sampling decision.
    pub sampling: SamplingView,
    /// The context the sidecar forwards.
    pub forwarded: ContextView,
    /// Which neighbour gets what, and why.
    pub next_hop: NextHop,
    /// Headers the sidecar writes, with their values, in header order.
    pub write: Vec<HeaderView>,
    /// Headers the request carried that the sidecar removes.
    pub remove: Vec<String>,
    /// What depends on live state, and what was assumed for it.
    pub assumptions: Vec<String>,
}

/// The request as explained.
#[derive(Clone, Debug, Serialize)]
pub struct RequestLine {
    /// Method.
    pub method: String,
    /// `host[:port]`.
    pub authority: String,
    /// Path (and query).
    pub path: String,
}

/// How one format's headers were read.
#[derive(Clone, Debug, Serialize)]
pub struct FormatRead {
    /// The format's config name.
    pub format: &'static str,
    /// Its headers in the request.
    pub headers: Vec<HeaderView>,
    /// `valid`, `invalid`, `decision_only`, `conflict`, `not_configured`
    /// (not in `propagation.extract`) or `ignored` (untrusted listener).
    pub status: &'static str,
    /// Whether the merged context (or decision) came from it.
    pub used: bool,
    /// Whether it is the primary context (its ids win).
    pub primary: bool,
    /// Why: the rule broken (invalid), the winner (conflict), a dropped tracestate.
    pub why: Option<String>,
}

/// A trace context.
#[derive(Clone, Debug, Serialize)]
pub struct ContextView {
    /// 32 hex digits.
    pub trace_id: String,
    /// Incoming: the caller's span id. Forwarded: the sidecar's new span id.
    pub span_id: String,
    /// Forwarded only: the parent of the sidecar's span (the caller's span id).
    pub parent_span_id: Option<String>,
    /// `sampled`, `not_sampled` or `deferred`.
    pub sampling: &'static str,
    /// The debug / force flag.
    pub debug: bool,
    /// The `tracestate` list, if any.
    pub tracestate: Option<String>,
    /// Datadog sampling priority, when the context has Datadog fields.
    pub datadog_priority: Option<i8>,
    /// Incoming: the formats the context was read from. Forwarded: those written.
    pub formats: Vec<&'static str>,
    /// Ids drawn at random for this run (a real request draws its own):
    /// `span_id` always when forwarded, `trace_id` for a new trace.
    pub generated: Vec<&'static str>,
}

/// A decision carried without ids.
#[derive(Clone, Debug, Serialize)]
pub struct DecisionOnly {
    /// `sampled` or `not_sampled`.
    pub sampling: &'static str,
    /// Debug / force.
    pub debug: bool,
}

/// The sampling decision and what made it.
#[derive(Clone, Debug, Serialize)]
pub struct SamplingView {
    /// Recorded and propagated as sampled.
    pub sampled: bool,
    /// The `reason` label of `meshtrace_sampling_decisions_total`.
    pub reason: &'static str,
    /// The config that decided (`sampling.rules[0]`, `sampling.default_rate`,
    /// a forced tenant or workload), or the caller.
    pub decided_by: String,
    /// The tenant read from the request, if any.
    pub tenant: Option<String>,
    /// The rate a probability decision used.
    pub rate: Option<f64>,
    /// `ot=th:` written for it, if any.
    pub threshold: Option<String>,
    /// The sampling route the request falls in (`sampling.rules[].name`,
    /// `rules[<i>]`, `default`).
    pub route: String,
    /// How the route keeps traces: its fixed rate, or its adaptive target and
    /// bounds, its tier and boost.
    pub route_policy: String,
}

/// The next hop and the propagation policy toward it.
#[derive(Clone, Debug, Serialize)]
pub struct NextHop {
    /// `app` (inbound) or `upstream` (outbound).
    pub toward: &'static str,
    /// The `target` label of `meshtrace_trace_context_written_total`.
    pub target: String,
    /// The `propagation.upstreams` rule that matched (`propagation.upstreams[0]`).
    pub rule: Option<String>,
    /// A trust boundary: nothing written.
    pub external: bool,
    /// `propagation.stage`.
    pub stage: String,
    /// The formats written; every other format that arrived is removed.
    pub formats: Vec<&'static str>,
    /// Where the app's formats came from (inbound, by stage): the config,
    /// `--app-sends`, or unknown (every format written).
    pub app_formats: Option<String>,
}

/// One header.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HeaderView {
    /// Lower-case name.
    pub name: String,
    /// The value (lossy when not visible ASCII).
    pub value: String,
}
