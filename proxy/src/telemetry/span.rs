//! Building the sidecar's span for one request.
//!
//! [`Recorder::start`] captures what the span needs from the request before the
//! request moves on (only when the span may be exported: the trace is sampled, or
//! tail keep could still keep it); [`Recorder::finish`] adds the response facts,
//! decides tail keep, builds the [`SpanData`] and hands it to the export queue,
//! which never blocks.
//!
//! Naming: `{METHOD} {route}` when a configured route template matches, else
//! `{METHOD}` (never the raw path, which would make span names unbounded); gRPC:
//! `{package.Service}/{Method}`. Attributes follow the stable HTTP and the current
//! RPC semantic conventions ([`super::semconv`]), plus `meshtrace.*` attributes:
//! `meshtrace.tenant`, `meshtrace.sampling.reason`, `meshtrace.propagation.formats`,
//! and a link to every context that lost a format conflict.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use meshtrace_config::{Config, RouteTemplate, RpcSemconv};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::export::SpanQueue;
use super::semconv;
use super::SpanInfo;
use crate::metrics::SamplingMetrics;
use crate::sampling::Reason;

/// Replaces redacted values.
const REDACTED: &str = "REDACTED";

/// How spans are built: the `spans` config compiled once, plus the export queue.
#[derive(Debug)]
pub struct Recorder {
    routes: Vec<RouteTemplate>,
    max_path: usize,
    max_tag: usize,
    static_tags: Vec<KeyValue>,
    header_tags: Vec<HeaderTag>,
    redact_params: Vec<String>,
    drop_query: bool,
    rpc_dup: bool,
    tail_errors: bool,
    tail_slow: Option<Duration>,
    scope: InstrumentationScope,
    queue: SpanQueue,
}

#[derive(Debug)]
struct HeaderTag {
    header: HeaderName,
    key: Key,
    redacted: bool,
}

/// What a span needs from its request, captured when the request arrives.
#[derive(Debug)]
pub struct SpanStart {
    info: SpanInfo,
    server: bool,
    start: SystemTime,
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    version: Version,
    peer: IpAddr,
    tags: Vec<KeyValue>,
    grpc: bool,
}

/// What a span needs from its response.
#[derive(Debug)]
pub struct SpanEnd {
    /// The response status.
    pub status: StatusCode,
    /// `grpc-status` from the response headers or trailers.
    pub grpc_status: Option<u16>,
    /// The sidecar's own error class when it answered itself (never read from
    /// a header, which an upstream could set).
    pub proxy_error: Option<&'static str>,
    /// Request start to response end.
    pub elapsed: Duration,
    /// Whether the response body reached its end (else the client went away).
    pub complete: bool,
}

// === impl Recorder ===

impl Recorder {
    /// Compiles the `spans` and `sampling.tail` sections (already validated);
    /// `var` reads the environment for `env` tags and
    /// `OTEL_SEMCONV_STABILITY_OPT_IN`.
    pub fn new(config: &Config, queue: SpanQueue, var: &dyn Fn(&str) -> Option<String>) -> Self {
        let spans = &config.spans;
        let truncate = |v: String| truncated(v, spans.max_tag_length);
        let static_tags = spans
            .tags
            .iter()
            .filter_map(|t| {
                let value = t.value.clone().or_else(|| t.env.as_deref().and_then(var))?;
                Some(KeyValue::new(t.name.clone(), truncate(value)))
            })
            .collect();
        let header_tags = spans
            .tags
            .iter()
            .filter_map(|t| {
                let header = HeaderName::from_bytes(t.header.as_deref()?.as_bytes()).ok()?;
                let redacted = spans.redact.headers.iter().any(|r| header == r.as_str());
                Some(HeaderTag {
                    header,
                    key: Key::new(t.name.clone()),
                    redacted,
                })
            })
            .collect();
        let opt_in = var("OTEL_SEMCONV_STABILITY_OPT_IN").unwrap_or_default();
        let rpc_dup = spans.rpc_semconv == RpcSemconv::Dup
            || opt_in.split(',').any(|v| v.trim() == "rpc/dup");
        Self {
            routes: spans
                .routes
                .iter()
                .filter_map(|r| RouteTemplate::parse(r).ok())
                .collect(),
            max_path: spans.max_path_length,
            max_tag: spans.max_tag_length,
            static_tags,
            header_tags,
            redact_params: spans
                .redact
                .query_params
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            drop_query: spans.redact.drop_query,
            rpc_dup,
            tail_errors: config.sampling.tail.errors,
            tail_slow: config.sampling.tail.slow.map(|d| d.get()),
            scope: InstrumentationScope::builder("meshtrace-proxy")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            queue,
        }
    }

    /// The export queue's counters.
    pub fn queue(&self) -> &SpanQueue {
        &self.queue
    }

    /// Captures `req` when its span may be exported: the trace is sampled, or (for
    /// a SERVER span) tail keep is on.
    pub fn start<B>(&self, req: &Request<B>, server: bool, peer: IpAddr) -> Option<SpanStart> {
        let info = req.extensions().get::<SpanInfo>()?;
        let sampled = info.sampled();
        let tail = server && (self.tail_errors || self.tail_slow.is_some());
        if !(sampled || tail) {
            return None;
        }
        let headers = req.headers();
        let tags = self
            .header_tags
            .iter()
            .filter_map(|t| {
                let value = headers.get(&t.header)?;
                let value = if t.redacted {
                    REDACTED.to_string()
                } else {
                    truncated(
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        self.max_tag,
                    )
                };
                Some(KeyValue::new(t.key.clone(), value))
            })
            .collect();
        Some(SpanStart {
            info: info.clone(),
            server,
            start: SystemTime::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: headers.get(http::header::HOST).cloned(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            version: req.version(),
            peer,
            tags,
            grpc: semconv::is_grpc(req),
        })
    }

    /// Ends the span: exported if sampled or kept by tail keep (counted in
    /// `tail_metrics` as `tail_error` / `tail_slow`).
    pub fn finish(&self, start: SpanStart, end: SpanEnd, tail_metrics: &SamplingMetrics) {
        let info = &start.info;
        let sampled = info.sampled();
        let grpc = start.grpc.then(|| {
            end.grpc_status
                .unwrap_or_else(|| match (end.status, end.complete) {
                    (StatusCode::OK, false) => 1, // CANCELLED: the client went away
                    (status, _) => semconv::grpc_code_from_http(status),
                })
        });
        let error = match grpc {
            Some(code) => semconv::grpc_is_error(code, start.server),
            None => semconv::http_is_error(end.status, start.server),
        };
        let reason = if sampled {
            info.sampling_reason.as_str()
        } else if self.tail_errors && error {
            tail_metrics.count(true, Reason::TailError);
            Reason::TailError.as_str()
        } else if self.tail_slow.is_some_and(|slow| end.elapsed > slow) {
            tail_metrics.count(true, Reason::TailSlow);
            Reason::TailSlow.as_str()
        } else {
            return;
        };
        let span = self.build(start, &end, grpc, error, reason);
        self.queue.push(span);
    }

    fn build(
        &self,
        start: SpanStart,
        end: &SpanEnd,
        grpc: Option<u16>,
        error: bool,
        reason: &'static str,
    ) -> SpanData {
        let info = &start.info;
        let mut attrs: Vec<KeyValue> = Vec::with_capacity(20 + start.tags.len());
        let path = start.uri.path();
        let grpc_method = grpc.and_then(|_| semconv::grpc_method(path));
        let name: Cow<'static, str> = match (grpc, grpc_method) {
            (Some(code), Some((service, method))) => {
                self.rpc_attributes(&mut attrs, service, method, code);
                format!("{service}/{method}").into()
            }
            _ => self.http_attributes(&mut attrs, &start, end),
        };
        let authority = start
            .uri
            .authority()
            .map(|a| (a.host().to_string(), a.port_u16()))
            .or_else(|| {
                let host = start.host.as_ref()?.to_str().ok()?;
                let a: http::uri::Authority = host.parse().ok()?;
                Some((a.host().to_string(), a.port_u16()))
            });
        if let Some((host, port)) = authority {
            attrs.push(KeyValue::new("server.address", host));
            if let Some(port) = port {
                attrs.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if start.server {
            attrs.push(KeyValue::new("client.address", start.peer.to_string()));
        }
        attrs.push(KeyValue::new(
            "network.protocol.version",
            match start.version {
                Version::HTTP_2 => "2",
                Version::HTTP_10 => "1.0",
                Version::HTTP_09 => "0.9",
                Version::HTTP_3 => "3",
                _ => "1.1",
            },
        ));
        if let Some(ua) = &start.user_agent {
            attrs.push(KeyValue::new(
                "user_agent.original",
                truncated(
                    String::from_utf8_lossy(ua.as_bytes()).into_owned(),
                    self.max_tag,
                ),
            ));
        }
        if error {
            let error_type = match (&end.proxy_error, grpc) {
                (Some(cause), _) => cause.to_string(),
                (None, Some(code)) => semconv::grpc_code_name(code).to_string(),
                (None, None) => end.status.as_str().to_string(),
            };
            attrs.push(KeyValue::new("error.type", error_type));
        }
        if let Some(tenant) = &info.tenant {
            attrs.push(KeyValue::new(
                "meshtrace.tenant",
                truncated(tenant.to_string(), self.max_tag),
            ));
        }
        attrs.push(KeyValue::new("meshtrace.sampling.reason", reason));
        if !info.formats.is_empty() {
            let formats: Vec<StringValue> =
                info.formats.iter().map(|f| f.as_str().into()).collect();
            attrs.push(KeyValue::new(
                "meshtrace.propagation.formats",
                Value::Array(Array::String(formats)),
            ));
        }
        attrs.extend(self.static_tags.iter().cloned());
        attrs.extend(start.tags);
        let links = info
            .discarded
            .iter()
            .map(|d| {
                let context = SpanContext::new(
                    TraceId::from(d.trace_id.get()),
                    SpanId::from(d.span_id.get()),
                    TraceFlags::default(),
                    true,
                    TraceState::NONE,
                );
                opentelemetry::trace::Link::new(
                    context,
                    vec![
                        KeyValue::new("meshtrace.link.reason", "propagation_conflict"),
                        KeyValue::new("meshtrace.propagation.format", d.format.as_str()),
                    ],
                    0,
                )
            })
            .collect();
        let flags = if info.sampled() {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(info.trace_id.get()),
                SpanId::from(info.span_id.get()),
                flags,
                false,
                TraceState::NONE,
            ),
            parent_span_id: info
                .parent_id
                .map_or(SpanId::INVALID, |p| SpanId::from(p.get())),
            parent_span_is_remote: info.parent_id.is_some(),
            span_kind: if start.server {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            name,
            start_time: start.start,
            end_time: start.start + end.elapsed,
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: span_links(links),
            status: if error {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// HTTP attributes; returns the span name.
    fn http_attributes(
        &self,
        attrs: &mut Vec<KeyValue>,
        start: &SpanStart,
        end: &SpanEnd,
    ) -> Cow<'static, str> {
        let method: Cow<'static, str> = match semconv::known_method(&start.method) {
            Some(m) => m.into(),
            None => {
                attrs.push(KeyValue::new(
                    "http.request.method_original",
                    truncated(start.method.as_str().to_string(), self.max_tag),
                ));
                "_OTHER".into()
            }
        };
        attrs.push(KeyValue::new("http.request.method", method.clone()));
        let path = start.uri.path();
        attrs.push(KeyValue::new(
            "url.path",
            truncated(path.to_string(), self.max_path),
        ));
        attrs.push(KeyValue::new(
            "url.scheme",
            start.uri.scheme_str().unwrap_or("http").to_string(),
        ));
        let query = start
            .uri
            .query()
            .filter(|_| !self.drop_query)
            .map(|q| truncated(self.redact_query(q), self.max_path));
        if !start.server {
            // CLIENT spans carry the whole URL (`url.full` is required there).
            let authority = start
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| {
                    start
                        .host
                        .as_ref()
                        .and_then(|h| h.to_str().ok())
                        .map(String::from)
                })
                .unwrap_or_default();
            let full = match &query {
                Some(q) => format!("http://{authority}{path}?{q}"),
                None => format!("http://{authority}{path}"),
            };
            attrs.push(KeyValue::new("url.full", truncated(full, self.max_path)));
        }
        if let Some(query) = query {
            attrs.push(KeyValue::new("url.query", query));
        }
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(end.status.as_u16()),
        ));
        match self.routes.iter().find(|r| r.matches(path)) {
            Some(route) => {
                if start.server {
                    attrs.push(KeyValue::new("http.route", route.as_str().to_string()));
                }
                format!("{method} {}", route.as_str()).into()
            }
            None => method,
        }
    }

    fn rpc_attributes(&self, attrs: &mut Vec<KeyValue>, service: &str, method: &str, code: u16) {
        attrs.push(KeyValue::new("rpc.system.name", "grpc"));
        attrs.push(KeyValue::new("rpc.method", format!("{service}/{method}")));
        attrs.push(KeyValue::new(
            "rpc.response.status_code",
            semconv::grpc_code_name(code),
        ));
        if self.rpc_dup {
            // The deprecated set (semconv ≤ 1.37). Its `rpc.method` (method name only)
            // clashes with the current one, which wins.
            attrs.push(KeyValue::new("rpc.system", "grpc"));
            attrs.push(KeyValue::new("rpc.service", service.to_string()));
            attrs.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
        }
    }

    /// `query` with the values of redacted parameters replaced.
    fn redact_query(&self, query: &str) -> String {
        let mut out = String::with_capacity(query.len());
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _))
                    if self
                        .redact_params
                        .iter()
                        .any(|p| p.eq_ignore_ascii_case(name)) =>
                {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
        out
    }
}

fn span_links(links: Vec<opentelemetry::trace::Link>) -> SpanLinks {
    let mut span_links = SpanLinks::default();
    span_links.links = links;
    span_links
}

/// `value` cut to at most `max` bytes, on a character boundary.
fn truncated(mut value: String, max: usize) -> String {
    if value.len() > max {
        let mut at = max;
        while !value.is_char_boundary(at) {
            at -= 1;
        }
        value.truncate(at);
    }
    value
}

#[cfg(test)]
mod tests;
