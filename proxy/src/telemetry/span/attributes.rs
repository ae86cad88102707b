//! The attributes of the sidecar's span, step by step: by protocol (HTTP or
//! RPC, which also name the span), of the connection, of the error, and
//! meshtrace's own; plus the links to contexts that lost a format conflict.

use std::borrow::Cow;
use std::net::IpAddr;

use http::Version;
use meshtrace_config::RouteTemplate;

use super::{cut, semconv, Recorder, SpanEnd, SpanInfo, SpanStart, REDACTED};
use crate::propagation::Format;
use crate::telemetry::export::{LinkTo, SpanWriter};

// === impl Recorder ===

impl Recorder {
    /// `server.*`, `client.address`, the protocol version and the user agent.
    pub(super) fn connection_attributes(&self, span: &mut SpanWriter, start: &SpanStart) {
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
            let (host, port) = host_port(a);
            span.str("server.address", host);
            if let Some(port) = port {
                span.int("server.port", i64::from(port));
            }
        }
        if start.server {
            span.str("client.address", start.peer.as_str());
        }
        span.str(
            "network.protocol.version",
            match start.version {
                Version::HTTP_2 => "2",
                Version::HTTP_10 => "1.0",
                Version::HTTP_09 => "0.9",
                Version::HTTP_3 => "3",
                _ => "1.1",
            },
        );
        if let Some(ua) = &start.user_agent {
            let ua = String::from_utf8_lossy(ua.as_bytes());
            span.str("user_agent.original", cut(&ua, self.max_tag));
        }
    }

    /// `meshtrace.tenant`, `meshtrace.sampling.reason` and
    /// `meshtrace.propagation.formats`.
    pub(super) fn meshtrace_attributes(
        &self,
        span: &mut SpanWriter,
        info: &SpanInfo,
        reason: &'static str,
    ) {
        if let Some(tenant) = &info.tenant {
            span.str("meshtrace.tenant", cut(tenant, self.max_tag));
        }
        span.str("meshtrace.sampling.reason", reason);
        if !info.formats.is_empty() {
            let mut names = [""; Format::ALL.len()];
            let mut count = 0;
            for (name, format) in names.iter_mut().zip(info.formats.iter()) {
                *name = format.as_str();
                count += 1;
            }
            span.strs("meshtrace.propagation.formats", &names[..count]);
        }
    }

    /// HTTP attributes; `method` is the request's when it is a known one,
    /// `route` the configured route its path matches.
    pub(super) fn http_attributes(
        &self,
        span: &mut SpanWriter,
        start: &SpanStart,
        end: &SpanEnd,
        method: Option<&'static str>,
        route: Option<&RouteTemplate>,
    ) {
        let method = match method {
            Some(m) => m,
            None => {
                span.str(
                    "http.request.method_original",
                    cut(start.method.as_str(), self.max_tag),
                );
                "_OTHER"
            }
        };
        span.str("http.request.method", method);
        let path = start.uri.path();
        span.str("url.path", cut(path, self.max_path));
        let scheme = match start.uri.scheme_str() {
            None => "http",
            Some(scheme) => scheme,
        };
        span.str("url.scheme", scheme);
        let query = start
            .uri
            .query()
            .filter(|_| !self.drop_query)
            .map(|q| self.redact_query(q));
        let query = query.as_deref().map(|q| cut(q, self.max_path));
        if !start.server {
            // CLIENT spans carry the whole URL (`url.full` is required there).
            let authority = start
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| start.host.as_ref().and_then(|h| h.to_str().ok()))
                .unwrap_or_default();
            let full = match query {
                Some(q) => format!("http://{authority}{path}?{q}"),
                None => format!("http://{authority}{path}"),
            };
            span.str("url.full", cut(&full, self.max_path));
        }
        if let Some(query) = query {
            span.str("url.query", query);
        }
        if !end.abandoned() {
            span.int("http.response.status_code", i64::from(end.status.as_u16()));
        }
        if let (true, Some(route)) = (start.server, route) {
            span.str("http.route", route.as_str());
        }
    }

    /// RPC attributes (and, with `rpc_dup`, the deprecated set).
    pub(super) fn rpc_attributes(
        &self,
        span: &mut SpanWriter,
        service: &str,
        method: &str,
        code: u16,
    ) {
        span.str("rpc.system.name", "grpc");
        span.parts("rpc.method", &[service, "/", method]);
        span.str("rpc.response.status_code", semconv::grpc_code_name(code));
        if self.rpc_dup {
            // The deprecated set (semconv ≤ 1.37). Its `rpc.method` (method name only)
            // clashes with the current one, which wins.
            span.str("rpc.system", "grpc");
            span.str("rpc.service", service);
            span.int("rpc.grpc.status_code", i64::from(code));
        }
    }

    /// `query` with the values of redacted parameters replaced.
    fn redact_query<'a>(&self, query: &'a str) -> Cow<'a, str> {
        if self.redact_params.is_empty() {
            return query.into();
        }
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
        out.into()
    }
}

/// An authority's host and port, as `Authority::host` and `port_u16` read
/// them, with two byte searches instead of their character iterators (which
/// cost a traced request ~700 instructions).
pub(super) fn host_port(authority: &http::uri::Authority) -> (&str, Option<u16>) {
    let all = authority.as_str();
    let host_port = all.rsplit_once('@').map_or(all, |(_, hp)| hp);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(rest) => match rest.find(']') {
            Some(end) => host_port.split_at(end + 2),
            None => (host_port, ""),
        },
        None => host_port.split_at(host_port.find(':').unwrap_or(host_port.len())),
    };
    (host, port.strip_prefix(':').and_then(|p| p.parse().ok()))
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
pub(super) fn error_type(end: &SpanEnd, grpc: Option<u16>) -> &str {
    match (end.proxy_error, grpc) {
        (Some(cause), _) => cause,
        (None, Some(code)) => semconv::grpc_code_name(code),
        (None, None) => end.status.as_str(),
    }
}

/// A link to every context that lost a format conflict, so the trace it
/// started is one click away.
pub(super) fn conflict_links(span: &mut SpanWriter, info: &SpanInfo) {
    for discarded in &info.discarded {
        span.link(&LinkTo {
            trace_id: discarded.trace_id.get(),
            span_id: discarded.span_id.get(),
            trace_flags: 0,
            remote: true,
            attributes: &[
                ("meshtrace.link.reason", "propagation_conflict"),
                ("meshtrace.propagation.format", discarded.format.as_str()),
            ],
        });
    }
}
