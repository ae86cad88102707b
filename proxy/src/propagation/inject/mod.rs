//! Header ownership: the one place that decides which trace headers leave the
//! sidecar, and writes them.
//!
//! **The invariant.** A request the sidecar forwards carries, for each format,
//! either headers the sidecar wrote for this hop — the same trace id, the
//! sidecar's own span id as the parent, its sampling decision and flags — or
//! none at all. [`write`] walks every format once: a format in the [`Plan`] is
//! injected (replacing whatever arrived), every other format that arrived is
//! removed. There is no third path, so a stale `x-b3-spanid` or `traceparent`
//! can never reach the next hop beside the sidecar's own. `baggage` (and
//! Jaeger's `uberctx-*`) is not trace context and passes untouched.
//!
//! The proxy's path takes [`render`], the same walk by another road: it removes
//! every format that arrived and renders the plan's headers once, as HTTP/1.1
//! field lines the request carries to where its head is encoded
//! ([`Rendered`], which says why). A test holds the two to the same result.
//!
//! **Which formats** ([`Injector::plan`]):
//!
//! | toward | `legacy` (default) | `dual` | `w3c` |
//! |---|---|---|---|
//! | the app | W3C + what arrived + the app's formats | as `legacy` | W3C |
//! | upstreams | W3C + what the app sent + the app's formats | W3C | W3C |
//!
//! "The app's formats" are `propagation.app_formats` when the operator set them,
//! else what the app was seen sending on its own outbound requests
//! ([`super::learn`]); before it has sent any, every format is written toward
//! it, so a cold pod's first traces do not break. Toward upstreams, the first
//! `propagation.upstreams` rule that matches (authority, host and/or port)
//! replaces the stage's choice with exactly its `inject` list, or — with
//! `external: true`, a trust boundary — with nothing.
//!
//! When W3C is written, its `tracestate` keeps every member, with the `dd=`
//! member brought up to date when the context came through Datadog, so a
//! Datadog app two hops away round-trips losslessly.

use http::{HeaderMap, Request};
use meshtrace_config::{IdWidth, MigrationStage, Propagation};

use super::context::{SpanId, TraceContext};
use super::extract::Formats;
use super::value::Sink;
use super::{b3, datadog, jaeger, w3c, Format, Outgoing, Rendered};

/// Which neighbour an injector writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Toward {
    /// The local app (inbound requests).
    App,
    /// Upstreams (outbound requests).
    Upstreams,
}

/// The injection policy of one direction, compiled from `propagation`.
#[derive(Clone, Debug)]
pub struct Injector {
    toward: Toward,
    stage: MigrationStage,
    /// `propagation.app_formats`, when set.
    app_formats: Option<Formats>,
    id_width: IdWidth,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    authority: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    plan: Plan,
}

/// What to write toward one neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Formats written; every other format's headers are removed.
    pub formats: Formats,
    /// Trace-id width for B3 and Jaeger.
    pub id_width: IdWidth,
    /// Which target this is, for the `target` metric label: 0 is the direction's
    /// default (the app, or upstreams no rule matched), `i + 1` is rule `i`.
    pub target: usize,
    /// A trust boundary: nothing written, not even the mesh caller header.
    pub external: bool,
}

// === impl Injector ===

impl Injector {
    /// The policy for requests toward the local app.
    pub fn inbound(config: &Propagation) -> Self {
        Self::new(Toward::App, config)
    }

    /// The policy for requests toward upstreams.
    pub fn outbound(config: &Propagation) -> Self {
        Self::new(Toward::Upstreams, config)
    }

    fn new(toward: Toward, config: &Propagation) -> Self {
        let rules = match toward {
            Toward::App => Vec::new(),
            Toward::Upstreams => config
                .upstreams
                .iter()
                .enumerate()
                .map(|(i, r)| Rule {
                    authority: r.matches.authority.as_deref().map(str::to_ascii_lowercase),
                    host: r.matches.host.as_deref().map(str::to_ascii_lowercase),
                    port: r.matches.port,
                    plan: Plan {
                        formats: if r.external {
                            Formats::default()
                        } else {
                            r.inject.iter().copied().collect()
                        },
                        id_width: r.id_width.unwrap_or(config.id_width),
                        target: i + 1,
                        external: r.external,
                    },
                })
                .collect(),
        };
        Self {
            toward,
            stage: config.stage,
            app_formats: config
                .app_formats
                .as_ref()
                .map(|list| list.iter().copied().collect()),
            id_width: config.id_width,
            rules,
        }
    }

    /// The plan for a request to `authority` (`host[:port]`) on destination
    /// `port` that arrived with `arrived` formats. `learned` gives the formats the
    /// app was seen sending (`None`: nothing known yet); it is called only when
    /// the answer matters.
    pub fn plan(
        &self,
        authority: Option<&str>,
        port: Option<u16>,
        arrived: Formats,
        learned: impl FnOnce() -> Option<Formats>,
    ) -> Plan {
        if !self.rules.is_empty() {
            if let Some(rule) = self.rule(authority, port) {
                return rule.plan;
            }
        }
        let w3c = Formats::only(Format::TraceContext);
        let formats = match (self.toward, self.stage) {
            (_, MigrationStage::W3c) | (Toward::Upstreams, MigrationStage::Dual) => w3c,
            (Toward::App, _) => {
                let app = self
                    .app_formats
                    .or_else(learned)
                    .unwrap_or_else(Formats::all);
                w3c.union(arrived).union(app)
            }
            (Toward::Upstreams, MigrationStage::Legacy) => w3c
                .union(arrived)
                .union(self.app_formats.unwrap_or_default()),
        };
        Plan {
            formats,
            id_width: self.id_width,
            target: 0,
            external: false,
        }
    }

    fn rule(&self, authority: Option<&str>, port: Option<u16>) -> Option<&Rule> {
        let authority = authority.unwrap_or("");
        let (host, authority_port) = split(authority);
        let port = authority_port.or(port);
        self.rules.iter().find(|r| {
            r.authority
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case(authority))
                && r.host
                    .as_deref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(host))
                && r.port.is_none_or(|p| Some(p) == port)
        })
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

/// Enforces the invariant on `headers`: writes `context` (whose `parent_id` is
/// the sidecar's span) in every format of `plan`, and removes every other format
/// in `present` (the formats the request arrived with; nothing else can be
/// there to remove). `sources` are the formats the context was read from. The
/// context's tracestate may be updated in place (the `dd=` member).
pub fn write(
    plan: &Plan,
    context: &mut TraceContext,
    span_parent: Option<SpanId>,
    sources: Formats,
    present: Formats,
    headers: &mut HeaderMap,
) {
    let out = outgoing(plan, context, span_parent, sources);
    // Room for every header of the formats that did not arrive, so the map
    // grows at most once rather than once per doubling. (A map too full to
    // grow is left as it is: each insert below meets the limit on its own.)
    let new = plan.formats.minus(present).iter().map(most_headers).sum();
    headers.try_reserve(new).unwrap_or_default();
    for format in plan.formats.iter() {
        inject(format, &out, headers, present.contains(format));
    }
    for format in present.minus(plan.formats).iter() {
        strip(format, headers);
    }
}

/// [`write()`], with the plan's headers rendered for the next hop instead of
/// written into `headers` ([`Rendered`], which says why): every format the
/// request arrived with is removed from `headers`, and what the next hop gets
/// is in the answer. The invariant is the same; the request carries the
/// answer to where its head is encoded.
pub fn render(
    plan: &Plan,
    context: &mut TraceContext,
    span_parent: Option<SpanId>,
    sources: Formats,
    present: Formats,
    headers: &mut HeaderMap,
) -> Rendered {
    let out = outgoing(plan, context, span_parent, sources);
    for format in present.iter() {
        strip(format, headers);
    }
    let mut rendered = Rendered::new();
    for format in plan.formats.iter() {
        inject(format, &out, &mut rendered, false);
    }
    rendered
}

/// [`write()`] into `req`'s headers, or with `render` [`render`] them and
/// attach the answer to `req` (when not empty).
pub fn rewrite<B>(
    req: &mut Request<B>,
    render: bool,
    plan: &Plan,
    context: &mut TraceContext,
    span_parent: Option<SpanId>,
    sources: Formats,
    present: Formats,
) {
    let headers = req.headers_mut();
    if !render {
        return write(plan, context, span_parent, sources, present, headers);
    }
    let rendered = self::render(plan, context, span_parent, sources, present, headers);
    if !rendered.is_empty() {
        req.extensions_mut().insert(rendered);
    }
}

/// What [`write()`] and [`render`] send: `context` with its `dd=` member brought
/// up to date, and the ids' width.
fn outgoing<'a>(
    plan: &Plan,
    context: &'a mut TraceContext,
    span_parent: Option<SpanId>,
    sources: Formats,
) -> Outgoing<'a> {
    if plan.formats.contains(Format::TraceContext) {
        update_dd_member(context, span_parent, sources);
    }
    let narrow_ids = match plan.id_width {
        IdWidth::Auto => context.narrow && context.trace_id.is_64_bit(),
        IdWidth::Bits64 => true,
        IdWidth::Bits128 => false,
    };
    Outgoing {
        context,
        span_parent,
        narrow_ids,
    }
}

/// The most headers `format` writes.
fn most_headers(format: Format) -> usize {
    match format {
        Format::TraceContext => 2,
        Format::B3Multi => 4,
        Format::B3Single | Format::Jaeger => 1,
        Format::Datadog => 5,
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
    let mut member = datadog::Member::new();
    datadog::write_member(meta, context.sampling, &mut member);
    if let Some(member) = datadog::member_str(&member) {
        context.tracestate.set_front("dd", member);
    }
}

/// Writes `format`; `arrived`: the request may carry its headers already.
fn inject<S: Sink>(format: Format, out: &Outgoing<'_>, headers: &mut S, arrived: bool) {
    match format {
        Format::TraceContext => w3c::write(out, headers, arrived),
        Format::B3Multi => b3::write_multi(out, headers, arrived),
        Format::B3Single => b3::write_single(out, headers),
        Format::Datadog => datadog::write(out, headers, arrived),
        Format::Jaeger => jaeger::write(out, headers),
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
