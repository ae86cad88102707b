//! The two legacy apps: tasks of the demo process that each read one legacy
//! trace-context format only (B3 or Datadog) and report their own span to the
//! collector, as an instrumented app would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshtrace_tests::process::probe;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use crate::{hex, now_nanos, Result};

/// Which app: each speaks one legacy trace-context format and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Reads B3 multi-header context, calls the backend through its sidecar with B3.
    Frontend,
    /// Reads Datadog context.
    Backend,
}

// === impl Role ===

impl Role {
    /// The app's service name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Frontend => "frontend",
            Role::Backend => "backend",
        }
    }

    /// The format the app reads, as the tree shows it.
    fn format(self) -> &'static str {
        match self {
            Role::Frontend => "b3multi",
            Role::Backend => "datadog",
        }
    }

    /// Whether `name` is a header of the app's format (what it shows it read).
    fn reads(self, name: &str) -> bool {
        match self {
            Role::Frontend => name.starts_with("x-b3-"),
            Role::Backend => name.starts_with("x-datadog-"),
        }
    }
}

/// A running app; stops serving when dropped.
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<AppState>,
    accept: tokio::task::AbortHandle,
}

/// What an app's requests share.
pub(crate) struct AppState {
    pub(crate) role: Role,
    /// Its own OTLP exporter: the app reports its span like any instrumented app.
    exporter: TraceServiceClient<Channel>,
    /// The frontend's way to the backend: sidecar A's outbound listener.
    outbound: Option<SocketAddr>,
    /// The trace headers of the last request, and the trace it joined.
    last: Mutex<(String, Option<[u8; 16]>)>,
}

/// The trace context an app read, and its own span in it.
struct AppContext {
    trace_id: [u8; 16],
    parent: Option<[u8; 8]>,
    span_id: [u8; 8],
    sampled: bool,
}

// === impl App ===

impl App {
    /// Starts `role` on 127.0.0.1 with an ephemeral port, exporting to `collector`.
    pub(crate) async fn start(
        role: Role,
        collector: &str,
        outbound: Option<SocketAddr>,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the {} app: {e}", role.name()))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let channel = Endpoint::from_shared(collector.to_string())
            .map_err(|e| format!("collector endpoint {collector}: {e}"))?
            .connect_lazy();
        let state = Arc::new(AppState {
            role,
            exporter: TraceServiceClient::new(channel),
            outbound,
            last: Mutex::new((String::new(), None)),
        });
        let serving = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                let service = service_fn(move |req| handle(state.clone(), req));
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(error) = conn.await {
                        eprintln!("{} app: connection error: {error}", role.name());
                    }
                });
            }
        });
        Ok(Self {
            addr,
            state,
            accept: accept.abort_handle(),
        })
    }

    /// The trace the last request joined.
    pub(crate) fn last_trace(&self) -> Option<[u8; 16]> {
        self.state.lock().1
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

// === impl AppState ===

impl AppState {
    fn lock(&self) -> std::sync::MutexGuard<'_, (String, Option<[u8; 16]>)> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trace headers of the last request, `name=value` in name order.
    pub(crate) fn seen(&self) -> String {
        self.lock().0.clone()
    }

    fn remember(&self, headers: &HeaderMap, context: &AppContext) {
        let mut seen: Vec<String> = headers
            .iter()
            .filter(|(name, _)| self.role.reads(name.as_str()))
            .map(|(name, value)| format!("{name}={}", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        seen.sort();
        let seen = if seen.is_empty() {
            "(no trace headers)".to_string()
        } else {
            seen.join("  ")
        };
        *self.lock() = (seen, Some(context.trace_id));
    }

    /// Reports the app's span, as its own tracer would; a failure is only printed.
    async fn export(&self, context: &AppContext, method: &str, path: &str, start: u64) {
        let attrs = [
            ("http.request.method", method),
            ("url.path", path),
            ("demo.propagation.format", self.role.format()),
        ];
        let span = Span {
            trace_id: context.trace_id.to_vec(),
            span_id: context.span_id.to_vec(),
            parent_span_id: context.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("{method} {path}"),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: now_nanos(),
            attributes: attrs.iter().map(|(k, v)| string_kv(k, v)).collect(),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", self.role.name())],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("demo-{}-tracer", self.role.format()),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let mut exporter = self.exporter.clone();
        match tokio::time::timeout(Duration::from_secs(5), exporter.export(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => eprintln!("{} app: span export failed: {status}", self.role.name()),
            Err(_) => eprintln!("{} app: span export timed out", self.role.name()),
        }
    }
}

/// One request to an app: read the context, do the work (the frontend calls the
/// backend through its sidecar), report the span if sampled, answer.
async fn handle(
    app: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = now_nanos();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let context = match app.role {
        Role::Frontend => read_b3(req.headers()),
        Role::Backend => read_datadog(req.headers()),
    };
    app.remember(req.headers(), &context);
    let answer = match (app.role, app.outbound) {
        (Role::Frontend, Some(outbound)) => call_backend(outbound, &context).await,
        (Role::Frontend, None) => Err("no route to the backend".to_string()),
        (Role::Backend, _) => Ok("backend: inventory ok".to_string()),
    };
    if context.sampled {
        app.export(&context, &method, &path, start).await;
    }
    let (status, body) = match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (StatusCode::BAD_GATEWAY, error),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

/// The frontend's call: `GET http://backend/inventory` through sidecar A, with
/// B3 headers naming the frontend's span as the parent.
async fn call_backend(outbound: SocketAddr, context: &AppContext) -> Result<String> {
    let mut headers = vec![
        ("x-b3-traceid", hex(&context.trace_id)),
        ("x-b3-spanid", hex(&context.span_id)),
        (
            "x-b3-sampled",
            if context.sampled { "1" } else { "0" }.to_string(),
        ),
    ];
    if let Some(parent) = context.parent {
        headers.push(("x-b3-parentspanid", hex(&parent)));
    }
    let (status, body) = probe::get_with(outbound, "backend", "/inventory", &headers).await?;
    if status.is_success() {
        Ok(format!("frontend: checkout ok ({body})"))
    } else {
        Err(format!("backend answered {status}: {body}"))
    }
}

/// B3 multi-header: `x-b3-traceid` (16 or 32 hex), `x-b3-spanid` (16 hex),
/// `x-b3-sampled` (`1`/`0`). Without a valid context the app starts an
/// unsampled trace of its own.
fn read_b3(headers: &HeaderMap) -> AppContext {
    let trace = header(headers, "x-b3-traceid").and_then(|v| {
        let ok = (v.len() == 16 || v.len() == 32) && v.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u128::from_str_radix(v, 16).ok()).flatten()
    });
    let parent = header(headers, "x-b3-spanid").and_then(|v| {
        let ok = v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u64::from_str_radix(v, 16).ok()).flatten()
    });
    let sampled = matches!(header(headers, "x-b3-sampled"), Some("1" | "true"))
        || header(headers, "x-b3-flags") == Some("1");
    context(trace, parent, sampled)
}

/// Datadog: `x-datadog-trace-id` (the low 64 bits, decimal), `_dd.p.tid` in
/// `x-datadog-tags` (the high 64 bits, hex), `x-datadog-parent-id` (decimal),
/// `x-datadog-sampling-priority` (above 0 keeps).
fn read_datadog(headers: &HeaderMap) -> AppContext {
    let decimal = |name| {
        header(headers, name)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let high = header(headers, "x-datadog-tags")
        .and_then(|tags| {
            tags.split(',')
                .find_map(|t| t.trim().strip_prefix("_dd.p.tid="))
        })
        .filter(|v| v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    let trace = decimal("x-datadog-trace-id").map(|low| u128::from(high) << 64 | u128::from(low));
    let sampled = header(headers, "x-datadog-sampling-priority")
        .and_then(|v| v.parse::<i8>().ok())
        .is_some_and(|p| p > 0);
    context(trace, decimal("x-datadog-parent-id"), sampled)
}

/// The app's span in the trace it read, or in a new unsampled one.
fn context(trace: Option<u128>, parent: Option<u64>, sampled: bool) -> AppContext {
    let span_id = fastrand::u64(1..).to_be_bytes();
    match trace.filter(|&t| t != 0) {
        Some(trace) => AppContext {
            trace_id: trace.to_be_bytes(),
            parent: parent.filter(|&p| p != 0).map(u64::to_be_bytes),
            span_id,
            sampled,
        },
        None => AppContext {
            trace_id: fastrand::u128(1..).to_be_bytes(),
            parent: None,
            span_id,
            sampled: false,
        },
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}
