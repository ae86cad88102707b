//! Builds an [`Explanation`] by running the request path's own trace step
//! ([`trace_request`]) on the request, with a trace policy built as a listener
//! builds its own ([`PolicyParts::policy`]), and reading what it did.

use std::sync::Arc;

use http::header::HeaderMap;
use meshtrace_config::{Config, ConflictPolicy};
use tokio::time::Instant;

use super::model::{
    ContextView, DecisionOnly, Explanation, FormatRead, HeaderView, NextHop, RequestLine,
};
use super::request::Query;
use super::sampling;
use crate::http::trace::{trace_request, TracePolicy, Traced};
use crate::metrics::Metrics;
use crate::migration::{caller, Migration};
use crate::propagation::extract::{self, Formats, Incoming};
use crate::propagation::{w3c, Extracted, Format, Sampling, TraceContext, TraceState};
use crate::sampling::Sampler;
use crate::stack::PolicyParts;
use crate::target::Direction;

/// What the sidecar would do with `query` under `config`. Only the request path's
/// live state differs from a running sidecar's: fresh budgets, nothing learned
/// about the app but `query.app_sends`, new random ids (all stated in
/// [`Explanation::assumptions`]).
pub fn explain(config: &Config, query: &Query) -> Result<Explanation, String> {
    let metrics = Metrics::new();
    let migration = Arc::new(Migration::new(&metrics));
    let now = Instant::now();
    if let Some(formats) = query.app_sends {
        migration.app.observe(formats, now);
    }
    let direction = query.direction;
    let parts = PolicyParts {
        direction,
        trace_context: &metrics.trace_context(direction),
        sampling: &metrics.sampling(direction),
        metrics: &metrics,
        migration: &migration,
    };
    let policy = parts.policy(config, Sampler::new(&config.sampling), None);
    let mut req = query.request()?;
    let before = req.headers().clone();
    let read = policy.extractor.extract(&before, |_, _| {});
    let traced = trace_request(&policy, &mut req, None, now, true, false);
    let sampling = sampling::view(config, &policy, &req, &traced, read.context.as_ref());
    let (write, remove) = diff(&before, req.headers(), traced.plan.formats);
    Ok(Explanation {
        direction: direction.as_str(),
        request: RequestLine {
            method: query.method.to_string(),
            authority: query.authority.clone(),
            path: query.path.clone(),
        },
        trusted: policy.trusted,
        on_conflict: match config.propagation.on_conflict {
            ConflictPolicy::First => "first",
            ConflictPolicy::Tracecontext => "tracecontext",
        },
        read: formats_read(config, &policy, &before, &read),
        incoming: read
            .context
            .as_ref()
            .filter(|_| policy.trusted)
            .map(|c| context_view(c, None, read.formats, &[])),
        incoming_decision: read
            .decision
            .filter(|_| policy.trusted && read.context.is_none())
            .map(|(s, debug)| DecisionOnly {
                sampling: sampling_str(s),
                debug,
            }),
        sampling,
        forwarded: forwarded(&traced),
        next_hop: next_hop(config, query, &traced),
        write,
        remove,
        assumptions: assumptions(config, query, &traced),
    })
}

fn forwarded(traced: &Traced) -> ContextView {
    let mut generated = vec!["span_id"];
    if traced.span_parent.is_none() {
        generated.push("trace_id");
    }
    context_view(
        &traced.context,
        traced.span_parent.map(|s| hex16(s.get())),
        traced.plan.formats,
        &generated,
    )
}

/// Each format the request carries headers of, as extraction saw it.
fn formats_read(
    config: &Config,
    policy: &TracePolicy,
    headers: &HeaderMap,
    read: &Incoming,
) -> Vec<FormatRead> {
    let order = &config.propagation.extract;
    let present = extract::present(headers).formats;
    let unconfigured = Format::ALL.into_iter().filter(|f| !order.contains(f));
    let primary = primary(config, read);
    order
        .iter()
        .copied()
        .chain(unconfigured)
        .filter(|f| present.contains(*f))
        .map(|format| {
            let (status, why) = if !order.contains(&format) {
                ("not_configured", Some("not in propagation.extract".into()))
            } else if !policy.trusted {
                (
                    "ignored",
                    Some("inbound.trusted is false: incoming context is ignored".into()),
                )
            } else {
                verdict(format, headers, read)
            };
            let in_use = policy.trusted && read.formats.contains(format);
            FormatRead {
                format: format.as_str(),
                headers: format_headers(format, headers),
                status,
                used: in_use,
                primary: in_use && primary == Some(format),
                why,
            }
        })
        .collect()
}

/// The codec's verdict on `format`, and why when there is something to say.
fn verdict(format: Format, headers: &HeaderMap, read: &Incoming) -> (&'static str, Option<String>) {
    match extract::read(format, headers) {
        Extracted::Absent => ("absent", None),
        Extracted::Invalid(invalid) => ("invalid", Some(invalid.reason().to_owned())),
        Extracted::DecisionOnly { .. } => ("decision_only", None),
        Extracted::Context(theirs) => {
            if let Some(lost) = read.discarded.iter().find(|d| d.format == format) {
                let winner = read.context.as_ref().map(|c| hex32(c.trace_id.get()));
                let why = format!(
                    "trace id {} differs from the context used ({})",
                    hex32(lost.trace_id.get()),
                    winner.unwrap_or_default()
                );
                return ("conflict", Some(why));
            }
            let dropped = (format == Format::TraceContext && theirs.tracestate.is_empty())
                .then(|| TraceState::parse(headers.get_all(&w3c::TRACESTATE)).err())
                .flatten()
                .map(|e| format!("tracestate dropped ({e:?}); the traceparent stands"));
            ("valid", dropped)
        }
    }
}

/// The format whose ids win: the first used one in reading order.
fn primary(config: &Config, read: &Incoming) -> Option<Format> {
    let w3c_first = config.propagation.on_conflict == ConflictPolicy::Tracecontext
        && read.formats.contains(Format::TraceContext);
    if w3c_first {
        return Some(Format::TraceContext);
    }
    config
        .propagation
        .extract
        .iter()
        .copied()
        .find(|f| read.formats.contains(*f))
}

/// The request's headers that belong to `format`.
fn format_headers(format: Format, headers: &HeaderMap) -> Vec<HeaderView> {
    headers
        .iter()
        .filter(|(name, _)| format_of(name.as_str()) == Some(format))
        .map(|(name, value)| header_view(name.as_str(), value))
        .collect()
}

/// The format a header name belongs to, as extraction's scan classifies it.
fn format_of(name: &str) -> Option<Format> {
    let mut one = HeaderMap::new();
    let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
    one.insert(name, http::HeaderValue::from_static(""));
    extract::present(&one).formats.iter().next()
}

/// What the trace step wrote and removed: every header whose values changed or
/// that belongs to a written format (rewritten even when equal), and every
/// header that is gone.
fn diff(before: &HeaderMap, after: &HeaderMap, written: Formats) -> (Vec<HeaderView>, Vec<String>) {
    let mut write = Vec::new();
    for name in after.keys() {
        let new: Vec<_> = after.get_all(name).iter().collect();
        let old: Vec<_> = before.get_all(name).iter().collect();
        let ours =
            format_of(name.as_str()).is_some_and(|f| written.contains(f)) || name == caller::HEADER;
        if new != old || ours {
            write.extend(new.iter().map(|v| header_view(name.as_str(), v)));
        }
    }
    let remove = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| name.as_str().to_string())
        .collect();
    (write, remove)
}

fn next_hop(config: &Config, query: &Query, traced: &Traced) -> NextHop {
    let propagation = &config.propagation;
    let plan = &traced.plan;
    let rule = plan.target.checked_sub(1);
    let target = match (query.direction, rule) {
        (Direction::Inbound, _) => "app".to_string(),
        (Direction::Outbound, None) => "default".to_string(),
        (Direction::Outbound, Some(i)) => propagation
            .upstreams
            .get(i)
            .map_or_else(String::new, |r| r.label(i)),
    };
    let by_stage = rule.is_none() && propagation.stage != meshtrace_config::MigrationStage::W3c;
    let app_formats = (query.direction == Direction::Inbound && by_stage).then(|| {
        match (&propagation.app_formats, query.app_sends) {
            (Some(list), _) => format!(
                "propagation.app_formats: {}",
                names_of(list.iter().copied().collect()).join(", ")
            ),
            (None, Some(f)) => format!(
                "learned (simulated with --app-sends): {}",
                names_of(f).join(", ")
            ),
            (None, None) => "not learned yet: every format is written toward the app".to_string(),
        }
    });
    NextHop {
        toward: match query.direction {
            Direction::Inbound => "app",
            Direction::Outbound => "upstream",
        },
        target,
        rule: rule.map(|i| format!("propagation.upstreams[{i}]")),
        external: plan.external,
        stage: propagation.stage.to_string(),
        formats: names_of(plan.formats),
        app_formats,
    }
}

fn assumptions(config: &Config, query: &Query, traced: &Traced) -> Vec<String> {
    let mut said = vec![
        "budgets and reservoirs: assumed available (explain starts them full; a busy sidecar may have spent them)".to_string(),
        format!(
            "ids: span id {} was drawn for this run; a real request draws its own",
            hex16(traced.context.parent_id.get())
        ),
    ];
    if traced.span_parent.is_none() {
        said.push(
            "trace id: new and random; a probability decision on it differs per request".into(),
        );
    }
    if query.direction == Direction::Inbound
        && config.propagation.app_formats.is_none()
        && query.app_sends.is_none()
    {
        said.push(
            "app formats: nothing learned (pass --app-sends to simulate what the app sends)".into(),
        );
    }
    if config.control.url.is_some() {
        said.push("control plane: explain reads the given config, not what the control plane pushed (overrides included)".into());
    }
    said
}

pub(super) fn context_view(
    c: &TraceContext,
    parent: Option<String>,
    formats: Formats,
    generated: &[&'static str],
) -> ContextView {
    ContextView {
        trace_id: hex32(c.trace_id.get()),
        span_id: hex16(c.parent_id.get()),
        parent_span_id: parent,
        sampling: sampling_str(c.sampling),
        debug: c.debug,
        tracestate: c
            .tracestate
            .header_value()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        datadog_priority: c.datadog.as_ref().and_then(|m| m.priority),
        formats: names_of(formats),
        generated: generated.to_vec(),
    }
}

fn sampling_str(s: Sampling) -> &'static str {
    match s {
        Sampling::Sampled => "sampled",
        Sampling::NotSampled => "not_sampled",
        Sampling::Deferred => "deferred",
    }
}

pub(super) fn names_of(formats: Formats) -> Vec<&'static str> {
    formats.iter().map(Format::as_str).collect()
}

fn header_view(name: &str, value: &http::HeaderValue) -> HeaderView {
    HeaderView {
        name: name.to_string(),
        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

fn hex32(v: u128) -> String {
    format!("{v:032x}")
}

pub(super) fn hex16(v: u64) -> String {
    format!("{v:016x}")
}
