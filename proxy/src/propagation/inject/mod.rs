//! The injection policy: which formats the sidecar writes toward a neighbour, and
//! writing them.
//!
//! Inbound requests get `propagation.inbound` (the local app is the neighbour).
//! Outbound requests get the first `propagation.upstreams` rule whose `match`
//! holds (authority, host and/or port, all given criteria), else
//! `propagation.outbound`. An `external: true` rule is a trust boundary: every
//! trace header is removed and none written.
//!
//! What is written carries the sidecar's own span id as the parent, the same trace
//! id, the decision (sampled / not / debug) in every format, the tracestate (with
//! an updated `dd=` member when the context came through Datadog headers), and
//! leaves `baggage` untouched. Formats not written are left as they came, or
//! removed with `strip_legacy: true`.

use http::HeaderMap;
use meshtrace_config::{IdWidth, Injection, Propagation};

use super::context::{SpanId, TraceContext};
use super::extract::Formats;
use super::{b3, datadog, jaeger, w3c, Format, Outgoing};

/// The injection rules of one direction.
#[derive(Clone, Debug)]
pub struct Injector {
    default: Plan,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    authority: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    plan: Plan,
}

/// What to do toward one neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// A trust boundary: remove every trace header.
    External,
    /// Write these formats.
    Write(Injection),
}

impl Injector {
    /// Rules for requests toward the local app.
    pub fn inbound(config: &Propagation) -> Self {
        Self {
            default: Plan::Write(config.inbound.clone()),
            rules: Vec::new(),
        }
    }

    /// Rules for requests toward upstreams.
    pub fn outbound(config: &Propagation) -> Self {
        let rules = config
            .upstreams
            .iter()
            .map(|r| Rule {
                authority: r.matches.authority.as_deref().map(str::to_ascii_lowercase),
                host: r.matches.host.as_deref().map(str::to_ascii_lowercase),
                port: r.matches.port,
                plan: if r.external {
                    Plan::External
                } else {
                    Plan::Write(r.injection.clone())
                },
            })
            .collect();
        Self {
            default: Plan::Write(config.outbound.clone()),
            rules,
        }
    }

    /// The plan for a request to `authority` (`host[:port]`) on destination `port`.
    pub fn plan(&self, authority: Option<&str>, port: Option<u16>) -> &Plan {
        let authority = authority.unwrap_or("");
        let (host, authority_port) = split(authority);
        let port = authority_port.or(port);
        self.rules
            .iter()
            .find(|r| {
                r.authority
                    .as_deref()
                    .is_none_or(|a| a.eq_ignore_ascii_case(authority))
                    && r.host
                        .as_deref()
                        .is_none_or(|h| h.eq_ignore_ascii_case(host))
                    && r.port.is_none_or(|p| Some(p) == port)
            })
            .map_or(&self.default, |r| &r.plan)
    }
}

/// Host and port of `host[:port]` / `[v6]:port`.
fn split(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (authority, None),
    }
}

/// Writes `context` (whose `parent_id` is the sidecar's span) per `plan`.
/// `sources` are the formats the context was read from. The context's
/// tracestate may be updated in place (the `dd=` member).
pub fn write(
    plan: &Plan,
    context: &mut TraceContext,
    span_parent: Option<SpanId>,
    sources: Formats,
    headers: &mut HeaderMap,
) {
    let injection = match plan {
        Plan::External => {
            for format in Format::ALL {
                strip(format, headers);
            }
            return;
        }
        Plan::Write(injection) => injection,
    };
    if injection.inject.contains(&Format::TraceContext) {
        update_dd_member(context, span_parent, sources);
    }
    let narrow_ids = match injection.id_width {
        IdWidth::Auto => context.narrow && context.trace_id.is_64_bit(),
        IdWidth::Bits64 => true,
        IdWidth::Bits128 => false,
    };
    let out = Outgoing {
        context,
        span_parent,
        narrow_ids,
    };
    for format in Format::ALL {
        if injection.inject.contains(&format) {
            inject(format, &out, headers);
        } else if injection.strip_legacy && format != Format::TraceContext {
            strip(format, headers);
        }
    }
}

/// Keeps the `dd=` member true to the context the sidecar forwards: written when
/// the context came through Datadog headers, and given `p:` (the last span
/// Datadog knows) when a Datadog tracer sent W3C without one — its span is the
/// caller, and the sidecar's own span never reaches Datadog.
fn update_dd_member(context: &mut TraceContext, span_parent: Option<SpanId>, sources: Formats) {
    let Some(meta) = context.datadog.as_mut() else {
        return;
    };
    let filled_parent = meta.last_parent.is_none() && span_parent.is_some();
    if filled_parent {
        meta.last_parent = span_parent;
    }
    if !(filled_parent || sources.contains(Format::Datadog)) {
        return;
    }
    if let Some(member) = datadog::tracestate_member(meta, context.sampling) {
        context.tracestate.set_front("dd", &member);
    }
}

fn inject(format: Format, out: &Outgoing<'_>, headers: &mut HeaderMap) {
    match format {
        Format::TraceContext => w3c::inject(out, headers),
        Format::B3Multi => b3::inject_multi(out, headers),
        Format::B3Single => b3::inject_single(out, headers),
        Format::Datadog => datadog::inject(out, headers),
        Format::Jaeger => jaeger::inject(out, headers),
    }
}

fn strip(format: Format, headers: &mut HeaderMap) {
    match format {
        Format::TraceContext => w3c::strip(headers),
        Format::B3Multi => b3::strip_multi(headers),
        Format::B3Single => b3::strip_single(headers),
        Format::Datadog => datadog::strip(headers),
        Format::Jaeger => jaeger::strip(headers),
    }
}

#[cfg(test)]
mod tests;
