//! The attributes of the sidecar's span, step by step: by protocol (HTTP or
//! RPC, which also name the span), of the connection, of the error, and
//! meshtrace's own; plus the links to contexts that lost a format conflict.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use http::Version;
use opentelemetry::trace::{Link, SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanLinks;

use super::{semconv, truncated, Recorder, SpanEnd, SpanInfo, SpanStart, REDACTED};

// === impl Recorder ===

impl Recorder {
    /// `server.*`, `client.address`, the protocol version and the user agent.
    pub(super) fn connection_attributes(&self, attrs: &mut Vec<KeyValue>, start: &SpanStart) {
        let from_host: Option<http::uri::Authority>;
        let authority = match start.uri.authority() {
            Some(a) => Some(a),
            None => {
                from_host = start
                    .host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse().ok());
                from_host.as_ref()
            }
        };
        if let Some(a) = authority {
            attrs.push(KeyValue::new("server.address", host_value(a.host())));
            if let Some(port) = a.port_u16() {
                attrs.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if start.server {
            attrs.push(KeyValue::new("client.address", start.peer.clone()));
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
    }

    /// `meshtrace.tenant`, `meshtrace.sampling.reason` and
    /// `meshtrace.propagation.formats`.
    pub(super) fn meshtrace_attributes(
        &self,
        attrs: &mut Vec<KeyValue>,
        info: &SpanInfo,
        reason: &'static str,
    ) {
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
    }

    /// HTTP attributes; returns the span name.
    pub(super) fn http_attributes(
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
        let scheme: Value = match start.uri.scheme_str() {
            None | Some("http") => "http".into(),
            Some("https") => "https".into(),
            Some(other) => other.to_string().into(),
        };
        attrs.push(KeyValue::new("url.scheme", scheme));
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
        if !end.abandoned() {
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(end.status.as_u16()),
            ));
        }
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

    /// RPC attributes (and, with `rpc_dup`, the deprecated set).
    pub(super) fn rpc_attributes(
        &self,
        attrs: &mut Vec<KeyValue>,
        service: &str,
        method: &str,
        code: u16,
    ) {
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

thread_local! {
    /// The last `server.address` this thread wrote into a span.
    ///
    /// A span is built on the data path and freed on the export thread, and a free
    /// on another thread is the allocator's slow path: a traced request spent
    /// ~3 000 more instructions in jemalloc than an untraced one, most of them on
    /// that (benches/RESULTS.md, "the traced request: frees on another thread").
    /// A sidecar's requests mostly name one host (inbound, the app's own name), so
    /// a span that repeats the last one shares its string (an `Arc<str>`: a
    /// reference count, no allocation). [`super::PeerAddress`] does the same for
    /// `client.address`, per connection.
    static LAST_HOST: RefCell<Option<StringValue>> = const { RefCell::new(None) };
}

/// `server.address`: `host`, shared while it repeats.
fn host_value(host: &str) -> StringValue {
    LAST_HOST.with_borrow_mut(|last| match last {
        Some(value) if value.as_str() == host => value.clone(),
        _ => {
            let value = StringValue::from(Arc::<str>::from(host));
            *last = Some(value.clone());
            value
        }
    })
}

/// `ip` as `Display` writes it; IPv4 (every loopback and pod address) without
/// the formatting machinery, which cost a sampled request ~1 300 instructions.
pub(super) fn ip_string(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

/// `error.type`: the sidecar's own error class when it answered itself, else the
/// gRPC status name or the HTTP status code.
pub(super) fn error_type(end: &SpanEnd, grpc: Option<u16>) -> String {
    match (end.proxy_error, grpc) {
        (Some(cause), _) => cause.to_string(),
        (None, Some(code)) => semconv::grpc_code_name(code).to_string(),
        (None, None) => end.status.as_str().to_string(),
    }
}

/// A link to every context that lost a format conflict, so the trace it
/// started is one click away.
pub(super) fn conflict_links(info: &SpanInfo) -> SpanLinks {
    let mut links = SpanLinks::default();
    links.links = info
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
            Link::new(
                context,
                vec![
                    KeyValue::new("meshtrace.link.reason", "propagation_conflict"),
                    KeyValue::new("meshtrace.propagation.format", d.format.as_str()),
                ],
                0,
            )
        })
        .collect();
    links
}
