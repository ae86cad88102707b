//! Building the sidecar's span for one request.
//!
//! [`Recorder::start`] captures what the span needs from the request before the
//! request moves on (only when the span may be exported: the trace is sampled, or
//! tail keep could still keep it); [`Recorder::finish`] adds the response facts,
//! decides tail keep, writes the span straight into its OTLP protobuf bytes
//! ([`SpanWriter`]) and hands them to the export queue, which never blocks.
//!
//! Naming: `{METHOD} {route}` when a configured route template matches, else
//! `{METHOD}` (never the raw path, which would make span names unbounded); gRPC:
//! `{package.Service}/{Method}`. Attributes follow the stable HTTP and the current
//! RPC semantic conventions ([`super::semconv`]), plus `meshtrace.*` attributes:
//! `meshtrace.tenant`, `meshtrace.sampling.reason`, `meshtrace.propagation.formats`,
//! and a link to every context that lost a format conflict.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use meshtrace_config::{Config, RouteTemplate, RpcSemconv};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Key, KeyValue, StringValue};

use self::attributes::{conflict_links, error_type};
use super::export::{EncodedSpan, SpanHead, SpanQueue, SpanTail, SpanWriter};
use super::semconv;
use super::SpanInfo;
use crate::metrics::SamplingMetrics;
use crate::sampling::Reason;

/// Replaces redacted values.
const REDACTED: &str = "REDACTED";

/// The status of a span that is an error (no description).
const ERROR: Status = Status::Error {
    description: Cow::Borrowed(""),
};

/// The buffer a span is written into, before its path and user agent. A
/// server span of a `GET /` with the default config is ~420 bytes written;
/// this and the request's own lengths let most spans fit without the buffer
/// growing (a copy, and a free of the old one).
const SPAN_CAPACITY: usize = 512;

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
    /// `sampling.tail`: the tail keep of requests whose route is not known.
    tail: Tail,
    queue: SpanQueue,
}

#[derive(Debug)]
struct HeaderTag {
    header: HeaderName,
    key: Key,
    redacted: bool,
}

/// Which unsampled requests keep their span (a route's `tail`, see
/// [`meshtrace_config::RoutePolicy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    /// Keep errors (HTTP 5xx, gRPC server errors).
    pub errors: bool,
    /// Keep requests slower than this.
    pub slow: Option<Duration>,
}

impl From<&meshtrace_config::TailKeep> for Tail {
    fn from(tail: &meshtrace_config::TailKeep) -> Self {
        Self {
            errors: tail.errors,
            slow: tail.slow.map(|d| d.get()),
        }
    }
}

impl Tail {
    fn on(self) -> bool {
        self.errors || self.slow.is_some()
    }
}

/// What a span needs from its request, captured when the request arrives.
#[derive(Debug)]
pub struct SpanStart {
    info: SpanInfo,
    tail: Tail,
    server: bool,
    start: SystemTime,
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    version: Version,
    /// `client.address`.
    peer: StringValue,
    tags: Vec<KeyValue>,
    grpc: bool,
}

/// A downstream connection's peer, and its address as the connection's spans
/// carry it (`client.address`). The text is made once, by the connection's
/// first span, and every span after shares it (an `Arc<str>`): no formatting
/// and no allocation per span.
#[derive(Debug)]
pub struct PeerAddress {
    addr: SocketAddr,
    text: OnceLock<StringValue>,
}

// === impl PeerAddress ===

impl PeerAddress {
    /// The peer at `addr`; nothing is formatted until a span needs it.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            text: OnceLock::new(),
        }
    }

    /// The peer's address and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as `Display` writes it, shared.
    fn value(&self) -> StringValue {
        self.text
            .get_or_init(|| Arc::<str>::from(attributes::ip_string(self.addr.ip())).into())
            .clone()
    }
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

// === impl SpanEnd ===

impl SpanEnd {
    /// The `proxy_error` of a request the client abandoned before the response
    /// head: no status was sent, so `http.response.status_code` is left out, and
    /// the span is an error (`error.type` names this) whatever its kind.
    pub const CLIENT_CLOSED: &'static str = "client_closed";

    /// Whether the client went away before the response head.
    fn abandoned(&self) -> bool {
        self.proxy_error == Some(Self::CLIENT_CLOSED)
    }
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
            tail: Tail::from(&config.sampling.tail),
            queue,
        }
    }

    /// The export queue's counters.
    pub fn queue(&self) -> &SpanQueue {
        &self.queue
    }

    /// Captures `req` when its span may be exported: the trace is sampled, or (for
    /// a SERVER span) `sampling.tail` keep is on.
    pub fn start<B>(
        &self,
        req: &Request<B>,
        server: bool,
        peer: &PeerAddress,
    ) -> Option<SpanStart> {
        self.start_with_tail(req, server, peer, self.tail)
    }

    /// [`Self::start`] with the tail keep of the request's route. A probe
    /// (`sampling.probes`) is never kept.
    pub fn start_with_tail<B>(
        &self,
        req: &Request<B>,
        server: bool,
        peer: &PeerAddress,
        tail: Tail,
    ) -> Option<SpanStart> {
        let info = req.extensions().get::<SpanInfo>()?;
        let sampled = info.sampled();
        let tail = if server && info.sampling_reason != Reason::Probe {
            tail
        } else {
            Tail::default()
        };
        if !(sampled || tail.on()) {
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
            tail,
            server,
            start: SystemTime::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: headers.get(http::header::HOST).cloned(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            version: req.version(),
            peer: peer.value(),
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
                    // CANCELLED: the client went away
                    (StatusCode::OK, false) => 1,
                    _ if end.abandoned() => 1,
                    (status, _) => semconv::grpc_code_from_http(status),
                })
        });
        let error = end.abandoned()
            || match grpc {
                Some(code) => semconv::grpc_is_error(code, start.server),
                None => semconv::http_is_error(end.status, start.server),
            };
        let reason = if sampled {
            info.sampling_reason.as_str()
        } else if start.tail.errors && error {
            tail_metrics.count(true, Reason::TailError);
            Reason::TailError.as_str()
        } else if start.tail.slow.is_some_and(|slow| end.elapsed > slow) {
            tail_metrics.count(true, Reason::TailSlow);
            Reason::TailSlow.as_str()
        } else {
            return;
        };
        let span = self.build(start, &end, grpc, error, reason);
        self.queue.push(span);
    }

    /// The exported span, written: its name and attributes by protocol, the
    /// connection, the error, meshtrace's own facts and tags, and links to the
    /// contexts that lost a format conflict.
    fn build(
        &self,
        start: SpanStart,
        end: &SpanEnd,
        grpc: Option<u16>,
        error: bool,
        reason: &'static str,
    ) -> EncodedSpan {
        let info = &start.info;
        let path = start.uri.path();
        let rpc = grpc.and_then(|code| Some((code, semconv::grpc_method(path)?)));
        let method = semconv::known_method(&start.method);
        let route = match rpc {
            Some(_) => None,
            None => self.routes.iter().find(|r| r.matches(path)),
        };
        let name = match (rpc, route) {
            (Some((_, (service, rpc_method))), _) => [service, "/", rpc_method],
            (None, Some(route)) => [method.unwrap_or("_OTHER"), " ", route.as_str()],
            (None, None) => [method.unwrap_or("_OTHER"), "", ""],
        };
        let head = SpanHead {
            trace_id: info.trace_id.get(),
            span_id: info.span_id.get(),
            parent_id: info.parent_id.map(|p| p.get()),
            name: &name,
            kind: if start.server {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            start: start.start,
            end: start.start + end.elapsed,
        };
        let user_agent = start.user_agent.as_ref().map_or(0, |ua| ua.len());
        let uri = start.uri.path_and_query().map_or(0, |p| p.as_str().len());
        let mut span = SpanWriter::new(&head, SPAN_CAPACITY + 2 * uri + user_agent);
        match rpc {
            Some((code, (service, rpc_method))) => {
                self.rpc_attributes(&mut span, service, rpc_method, code);
            }
            None => self.http_attributes(&mut span, &start, end, method, route),
        }
        self.connection_attributes(&mut span, &start);
        if error {
            span.str("error.type", error_type(end, grpc));
        }
        self.meshtrace_attributes(&mut span, info, reason);
        for kv in self.static_tags.iter().chain(&start.tags) {
            span.kv(kv.key.as_str(), &kv.value);
        }
        conflict_links(&mut span, info);
        span.finish(&SpanTail {
            status: if error { &ERROR } else { &Status::Unset },
            trace_flags: u8::from(info.sampled()),
            parent_remote: info.parent_id.is_some(),
        })
    }
}

/// `value` cut to at most `max` bytes, on a character boundary.
fn cut(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut at = max;
    while !value.is_char_boundary(at) {
        at -= 1;
    }
    &value[..at]
}

/// `value` cut to at most `max` bytes, on a character boundary.
fn truncated(mut value: String, max: usize) -> String {
    let at = cut(&value, max).len();
    value.truncate(at);
    value
}

mod attributes;
#[cfg(test)]
mod tests;
