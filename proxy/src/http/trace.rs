//! The trace-context layer: extract what the request carries, start the sidecar's
//! span (a new span id under the caller's context, or a new trace), and inject
//! the formats the next hop needs — removing every other trace header
//! ([`inject`] owns them all).
//!
//! It also feeds the migration view ([`crate::migration`]): the formats each
//! request arrived with, per direction and (inbound) per calling workload, what
//! the local app sends (outbound), and what was written per target. The mesh
//! caller header is set on outbound requests and removed from inbound ones.
//!
//! It runs outermost, before anything can answer, so every request — forwarded or
//! refused — gets its span ids, which the access log then shows. On a listener
//! marked untrusted (`inbound.trusted: false`) incoming context is ignored and
//! every request starts a new trace; every incoming trace header is rewritten
//! or removed as everywhere, and the force header is removed too, so nothing
//! the caller sent can steer the app's tracing.
//!
//! The sampling decision ([`crate::sampling`], glued in [`super::decide`]) is made
//! here, after extraction and before injection, so every format written carries it.

use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::header::{HeaderMap, HeaderValue};
use http::Request;
use tokio::time::Instant;

use super::decide::{self, SamplingHeaders, Seen};
use super::{authority_of, Attachments};
use crate::metrics::{SamplingMetrics, TraceContextMetrics, WrittenMetrics};
use crate::migration::{caller, Migration};
use crate::propagation::extract::{self, Extractor, Incoming, Present};
use crate::propagation::inject::{self, Injector, Plan};
use crate::propagation::{start_span, Sampling, SpanId, TraceContext};
use crate::sampling::{Decision, Sampler};
use crate::target::Direction;
pub use crate::telemetry::SpanInfo;

/// One listener's propagation policy.
#[derive(Debug)]
pub struct TracePolicy {
    /// The listener's direction.
    pub direction: Direction,
    /// Whether incoming context (and the mesh caller header) is honoured.
    pub trusted: bool,
    /// The extraction policy.
    pub extractor: Extractor,
    /// The injection policy.
    pub injector: Injector,
    /// `meshtrace_trace_context_total` for this direction.
    pub metrics: TraceContextMetrics,
    /// The sampler.
    pub sampler: Sampler,
    /// Where the sampler's request inputs (tenant, force header) are read.
    pub sampling_headers: SamplingHeaders,
    /// `meshtrace_sampling_decisions_total` for this direction.
    pub sampling_metrics: SamplingMetrics,
    /// Whether some sampling route has boost triggers, whose requests' outcomes
    /// the record layer then feeds to it.
    pub observes_routes: bool,
    /// Whether some sampling route keeps tails other than `sampling.tail` (a
    /// tier's), which the record layer then looks the route up for.
    pub route_tails: bool,
    /// The span recorder, when spans are on.
    pub spans: Option<Arc<crate::telemetry::Recorder>>,
    /// Migration counts and what the app speaks (process-wide).
    pub migration: Arc<Migration>,
    /// How long a learned app format is kept (`propagation.learn_for`).
    pub learn_for: std::time::Duration,
    /// Outbound: this workload's name for the next sidecar.
    pub caller: Option<HeaderValue>,
    /// `meshtrace_trace_context_written_total` per target.
    pub written: WrittenMetrics,
}

// === impl TracePolicy ===

impl TracePolicy {
    /// Counts what a request arrived with: per direction, per caller (inbound),
    /// and what the app speaks (outbound).
    fn observe(&self, present: Present, headers: &HeaderMap, now: Instant) {
        let migration = &self.migration;
        match self.direction {
            Direction::Inbound => {
                let caller = (self.trusted && present.caller)
                    .then(|| headers.get(&caller::HEADER))
                    .flatten();
                migration.callers.count(caller, present.formats);
            }
            Direction::Outbound => {
                migration.outbound.count(present.formats);
                migration.app.observe(present.formats, now);
            }
        }
    }

    /// The mesh caller header: ours on outbound requests (never toward an
    /// external upstream), nobody's on the way to the app.
    fn mark_caller(&self, plan: &Plan, present: Present, headers: &mut HeaderMap) {
        match &self.caller {
            Some(name) if self.direction == Direction::Outbound && !plan.external => {
                headers.insert(caller::HEADER.clone(), name.clone());
            }
            _ if present.caller => {
                headers.remove(&caller::HEADER);
            }
            _ => {}
        }
    }
}

/// A listener's policy as a reload replaces it: every request loads the current
/// one, so a new policy applies from the next request, on old connections too.
pub type PolicyHandle = Arc<ArcSwap<TracePolicy>>;

/// Adds [`Trace`] in front of a service.
#[derive(Clone, Debug)]
pub struct TraceLayer {
    policy: PolicyHandle,
    /// The connection's destination port, for per-upstream rules.
    port: Option<u16>,
    /// Whether requests carry [`SpanInfo`] (spans read it when on).
    attach: Attachments,
}

impl TraceLayer {
    /// Applies `policy` to requests of a connection to destination `port`.
    pub fn new(policy: PolicyHandle, port: Option<u16>, attach: Attachments) -> Self {
        Self {
            policy,
            port,
            attach,
        }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            layer: self.clone(),
        }
    }
}

/// Extracts, starts the span, injects; then calls the inner service.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    layer: TraceLayer,
}

impl<S, B> tower::Service<Request<B>> for Trace<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let policy = self.layer.policy.load();
        // Only for a reader: an extension costs two allocations per request.
        let keep_info = self.layer.attach.span_info_while(policy.spans.is_some());
        let traced = trace_request(
            &policy,
            &mut req,
            self.layer.port,
            Instant::now(),
            keep_info,
            self.layer.attach.rendered,
        );
        if keep_info {
            req.extensions_mut().insert(SpanInfo {
                trace_id: traced.context.trace_id,
                span_id: traced.context.parent_id,
                parent_id: traced.span_parent,
                sampling: traced.context.sampling,
                debug: traced.context.debug,
                formats: traced.incoming.formats,
                discarded: traced.incoming.discarded,
                sampling_reason: traced.decision.reason,
                tenant: traced.tenant,
            });
        }
        self.inner.call(req)
    }
}

/// What the trace layer did to one request: what it read, the context it
/// forwards, its sampling decision and the plan its headers were written by.
#[derive(Debug)]
pub struct Traced {
    /// The trace headers the request arrived with.
    pub present: Present,
    /// What was extracted (nothing on an untrusted listener); its `context`
    /// has moved into [`Self::context`] and is `None`.
    pub incoming: Incoming,
    /// The caller's decision given to the sampler (`None`: a root).
    pub parent: Option<bool>,
    /// The context forwarded: `parent_id` is the sidecar's new span.
    pub context: TraceContext,
    /// The parent of the sidecar's span (the caller's span id).
    pub span_parent: Option<SpanId>,
    /// The sampling decision.
    pub decision: Decision,
    /// The formats written toward the next hop.
    pub plan: Plan,
    /// The request's tenant, when asked for.
    pub tenant: Option<Box<str>>,
}

/// The trace layer's whole step on one request, as every listener runs it:
/// extract, observe, decide, inject — rewriting `req`'s trace headers in place,
/// or with `render` removing the ones it came with and attaching the ones
/// rendered for the next hop (a [`crate::propagation::Rendered`] extension) —
/// and counting in `policy`'s metrics. `port` is the connection's destination
/// port; `keep_tenant` asks for the tenant in the answer. `meshtrace-proxy
/// explain` calls it too, so what it predicts is what a listener does.
pub fn trace_request<B>(
    policy: &TracePolicy,
    req: &mut Request<B>,
    port: Option<u16>,
    now: Instant,
    keep_tenant: bool,
    render: bool,
) -> Traced {
    let mut seen = Seen::default();
    let scan = extract::scan_with(req.headers(), |name, value| {
        policy.sampling_headers.see(&mut seen, name, value)
    });
    let present = scan.present;
    let force_present = seen.force();
    let mut incoming = if policy.trusted {
        policy
            .extractor
            .extract_scanned(req.headers(), &scan, |f, o| policy.metrics.count(f, o))
    } else {
        Incoming::default()
    };
    if incoming.formats.is_empty() {
        policy.metrics.none();
    }
    policy.observe(present, req.headers(), now);
    let parent = parent_decision(&incoming);
    let facts = policy.sampling_headers.facts_seen(req, &seen);
    let (mut context, span_parent) = start_span(incoming.context.take(), incoming.decision);
    let decision = decide::decide(
        &policy.sampler,
        policy.trusted,
        &facts,
        req,
        parent,
        &context,
        now,
    );
    let tenant = facts.tenant().filter(|_| keep_tenant).map(Box::<str>::from);
    decide::apply(decision, &mut context);
    policy
        .sampling_metrics
        .count(decision.sampled, decision.reason);
    let plan = policy
        .injector
        .plan(authority_of(req), port, present.formats, || {
            policy.migration.app.get(now, policy.learn_for)
        });
    if !policy.trusted && force_present {
        policy.sampling_headers.remove_force(req.headers_mut());
    }
    inject::rewrite(
        req,
        render,
        &plan,
        &mut context,
        span_parent,
        incoming.formats,
        present.formats,
    );
    policy.mark_caller(&plan, present, req.headers_mut());
    policy.written.count(plan.target, plan.formats);
    Traced {
        present,
        incoming,
        parent,
        context,
        span_parent,
        decision,
        plan,
        tenant,
    }
}

/// The caller's decision, if it made one (a context's flag or a decision-only
/// header); `None` for a root or a deferred decision.
fn parent_decision(incoming: &Incoming) -> Option<bool> {
    let sampling = match (&incoming.context, incoming.decision) {
        (Some(context), _) => context.sampling,
        (None, Some((sampling, _))) => sampling,
        (None, None) => Sampling::Deferred,
    };
    match sampling {
        Sampling::Deferred => None,
        decided => Some(decided.is_sampled()),
    }
}

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;
