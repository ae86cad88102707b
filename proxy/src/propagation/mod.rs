//! Trace-context propagation: read whatever trace headers arrive, normalise them
//! into one [`TraceContext`], and write the formats the next hop needs.
//!
//! One module per format, each with the spec's rules as its module doc and three
//! pure functions over a header map:
//!
//! - `extract(&HeaderMap) -> Extracted`
//! - `inject(&Outgoing, &mut HeaderMap)` (replaces that format's headers)
//! - `strip(&mut HeaderMap)` (removes them)
//!
//! ([`b3`] holds two formats, so its functions come in `_multi` / `_single` pairs.)
//!
//! | module | format | headers |
//! |---|---|---|
//! | [`w3c`] | W3C Trace Context Level 2 | `traceparent`, `tracestate` |
//! | [`b3`] | Zipkin B3 multi and single | `X-B3-*`, `b3` |
//! | [`datadog`] | Datadog | `x-datadog-*` (+ the `dd=` tracestate member) |
//! | [`jaeger`] | Jaeger | `uber-trace-id` |
//!
//! Shared pieces live once: ids and sampling in [`context`], hex in [`hex`],
//! tracestate in [`tracestate`]. [`extract`] reads the configured formats,
//! merges agreeing contexts and resolves conflicting ones; [`inject`] owns every
//! trace header that leaves the sidecar (which formats are written toward a
//! neighbour, and nothing stale beside them), written into a header map or
//! rendered for the wire ([`Rendered`]); [`learn`] remembers which formats the
//! local app speaks.

pub mod b3;
pub mod context;
pub mod datadog;
pub mod extract;
pub mod hex;
pub mod inject;
pub mod jaeger;
pub mod learn;
mod rendered;
mod swar;
pub mod tracestate;
mod value;
pub mod w3c;

/// The header one sidecar names its workload in for the next (`service.namespace`),
/// so the receiving sidecar can count trace formats per calling workload. It travels
/// beside the trace headers and is owned the same way, so extraction knows it.
pub const CALLER_HEADER_NAME: &str = "x-meshtrace-caller";

pub use context::{DatadogMeta, Sampling, SpanId, TraceContext, TraceId};
pub use meshtrace_config::PropagationFormat as Format;
pub use rendered::{settle, Rendered};
pub use tracestate::TraceState;

/// What one format found in a request's headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extracted {
    /// None of the format's headers are present.
    Absent,
    /// Present but malformed: treated as absent (a new trace starts), and counted.
    /// Carries the rule of the format's spec that the headers break.
    Invalid(Invalid),
    /// A sampling decision without ids (`b3: 0`, a lone `X-B3-Sampled: 1`).
    DecisionOnly {
        /// The decision.
        sampling: Sampling,
        /// Debug / force-trace.
        debug: bool,
    },
    /// A complete context.
    Context(TraceContext),
}

/// Why a codec rejected a format's headers: the rule of the format's spec that
/// they break, in words (`"traceparent version ff is forbidden"`). A static
/// string, so a rejection costs the request path no allocation or formatting;
/// the offending values are the headers themselves, for whoever shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

// === impl Invalid ===

impl Invalid {
    /// The rule, in words.
    pub fn reason(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What to write toward the next hop.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The context to send: `context.parent_id` is the sidecar's own span id, so
    /// the next hop's spans become children of the sidecar's span.
    pub context: &'a TraceContext,
    /// The parent of the sidecar's span (the caller's span id), for formats that
    /// carry it (`X-B3-ParentSpanId`, the 4th field of `b3`).
    pub span_parent: Option<SpanId>,
    /// Write 64-bit trace ids to formats that allow either width (B3, Jaeger) when
    /// the id fits in 64 bits: for neighbours that only understand 64-bit ids.
    pub narrow_ids: bool,
}

// === impl Outgoing ===

#[cfg(test)]
impl<'a> Outgoing<'a> {
    /// `context` written as it is: no caller span, ids at their own width — what
    /// a codec's own tests write.
    pub(crate) fn of(context: &'a TraceContext) -> Self {
        Self {
            context,
            span_parent: None,
            narrow_ids: false,
        }
    }
}

/// How a format fared in one request, the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Read and used.
    Valid = 0,
    /// Present but malformed; ignored.
    Invalid = 1,
    /// Valid, but its trace id lost to another format's.
    Conflict = 2,
}

/// The context to send downstream: the caller's, re-parented onto a new span id,
/// or a new trace. Returns it with the caller's span id.
pub fn start_span(
    caller: Option<TraceContext>,
    decision: Option<(Sampling, bool)>,
) -> (TraceContext, Option<SpanId>) {
    let span_id = SpanId::random();
    match caller {
        Some(mut context) => {
            let parent = context.parent_id;
            context.parent_id = span_id;
            if context.sampling == Sampling::Deferred {
                context.sampling = Sampling::Sampled;
            }
            (context, Some(parent))
        }
        None => {
            let (sampling, debug) = decision.unwrap_or((Sampling::Sampled, false));
            let sampling = if sampling == Sampling::Deferred {
                Sampling::Sampled
            } else {
                sampling
            };
            let mut context = TraceContext::new(TraceId::random(), span_id, sampling);
            context.debug = debug;
            context.random = true;
            (context, None)
        }
    }
}
