//! What the trace layer decided about a request, as the span and the access log
//! read it.
//!
//! The trace layer ([`crate::http::trace`]) chooses the ids and the sampling
//! decision before anything else runs; the span recorder ([`super::span`]) and the
//! access log need them when the response ends. The type lives here, with its
//! readers, so that telemetry never depends on the HTTP layers that produce it.

use crate::propagation::extract::{Discarded, Formats};
use crate::propagation::{Sampling, SpanId, TraceId};
use crate::sampling::Reason;

/// The sidecar's span for one request, left in the request's extensions when the
/// access log or spans read it.
#[derive(Clone, Debug)]
pub struct SpanInfo {
    /// The trace.
    pub trace_id: TraceId,
    /// The sidecar's span id (the parent written downstream).
    pub span_id: SpanId,
    /// The caller's span, when the request carried a context.
    pub parent_id: Option<SpanId>,
    /// The decision in force.
    pub sampling: Sampling,
    /// Debug / force flag.
    pub debug: bool,
    /// The formats the context came from (empty for a new trace).
    pub formats: Formats,
    /// Contexts that lost a conflict, for span links.
    pub discarded: Vec<Discarded>,
    /// Why the trace is (not) sampled.
    pub sampling_reason: Reason,
    /// The request's tenant, when one was found.
    pub tenant: Option<Box<str>>,
}

// === impl SpanInfo ===

impl SpanInfo {
    /// Whether the span is exported as sampled: the decision says so, or the
    /// caller forced it (debug).
    pub fn sampled(&self) -> bool {
        self.sampling.is_sampled() || self.debug
    }
}
