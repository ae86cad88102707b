//! Helpers shared by unit tests across modules.
//!
//! For the HTTP layers ([`crate::http`]) they build what a listener would hand
//! each layer — its trace policy, metrics, record context — plus a stand-in app,
//! so that a layer test reads as "request in, assertion out", the way
//! linkerd2-proxy tests its inbound and outbound stacks. Every layer API the
//! tests depend on is reached through a helper here ([`Layers`], [`Downstream`]), so
//! an API rename touches this file, not every test.

mod io;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use meshtrace_config::Config;
use opentelemetry_sdk::trace::SpanData;
use tower::{Service, ServiceExt};

use crate::http::record::{RecordContext, RecordLayer};
use crate::http::trace::{PolicyHandle, TraceLayer};
use crate::http::{Attachments, ProxyBody, Wire};
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::propagation::extract::Formats;
use crate::propagation::inject::{self, Plan};
use crate::propagation::{Format, Rendered, Sampling, SpanId, TraceContext, TraceId};
use crate::sampling::{Reason, Sampler};
use crate::stack::PolicyParts;
use crate::target::{Direction, Protocol};
use crate::telemetry::SpanInfo;
use crate::telemetry::{Recorder, SpanQueue};

pub use io::{h1_client, h2_client, AccessLog, Downstream, Gate};

/// A header map from `(name, value)` pairs, repeated names appended in order.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_bytes()).expect("test header name");
        map.append(name, HeaderValue::from_str(v).expect("test header value"));
    }
    map
}

/// A request for `uri` with `pairs` as its headers.
pub fn request(uri: &str, pairs: &[(&str, &str)]) -> Request<()> {
    let mut req = Request::new(());
    *req.uri_mut() = uri.parse().expect("test uri");
    *req.headers_mut() = headers(pairs);
    req
}

/// The sidecar's defaults, changed by `change`; the health and metrics ports
/// (fixed ports by default) are off, so tests that start sidecars side by side
/// do not clash.
pub fn config(change: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    config.admin.health_listen = None;
    config.admin.metrics_listen = None;
    change(&mut config);
    config
}

/// A response the sidecar's stack could return, with `body`.
pub fn response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *response.status_mut() = status;
    response
}

/// A body's bytes as text, whatever the body type (empty if it failed).
pub async fn body_text<B: http_body::Body>(body: B) -> String {
    let bytes = body.collect().await.map(|b| b.to_bytes()).ok();
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

/// A stand-in app, as the layer under test sees its inner service.
pub type App<B, R = ProxyBody> =
    tower::util::BoxCloneSyncService<Request<B>, Response<R>, Infallible>;

/// The stand-in app: answers every request with `respond()` and hands each
/// request head it saw to the test, as the app receives it (with the trace
/// headers rendered for it).
pub fn app<B: 'static, R: Send + 'static>(
    respond: impl Fn() -> Response<R> + Clone + Send + Sync + 'static,
) -> (App<B, R>, mpsc::Receiver<http::request::Parts>) {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let service = tower::service_fn(move |mut req: Request<B>| {
        crate::propagation::settle(&mut req);
        let (parts, _body) = req.into_parts();
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(parts);
        }
        std::future::ready(Ok::<_, Infallible>(respond()))
    });
    (App::new(service), rx)
}

/// Calls `service` once, as the layer above (or hyper) would.
pub async fn call<S, B>(service: &mut S, req: Request<B>) -> S::Response
where
    S: Service<Request<B>, Error = Infallible>,
{
    let ready = service.ready().await.unwrap_or_else(|e| match e {});
    ready.call(req).await.unwrap_or_else(|e| match e {})
}

/// The sidecar span ids a request carries once the trace layer ran.
pub fn span_info(trace: u128, span: u64, parent: Option<u64>, sampled: bool) -> SpanInfo {
    SpanInfo {
        trace_id: TraceId::new(trace).expect("test trace id"),
        span_id: SpanId::new(span).expect("test span id"),
        parent_id: parent.and_then(SpanId::new),
        sampling: Sampling::from_bool(sampled),
        debug: false,
        formats: Formats::default(),
        discarded: Vec::new(),
        sampling_reason: Reason::Parent,
        tenant: None,
    }
}

/// The span ids the trace layer left on a request head the app saw.
pub fn span_info_of(parts: &http::request::Parts) -> Option<&SpanInfo> {
    parts.extensions.get::<SpanInfo>()
}

/// One listener's shared state, as the stack builds it: metrics, the trace
/// policy (with a span recorder when built [`Layers::with_spans`]).
pub struct Layers {
    /// The listener's direction.
    pub direction: Direction,
    /// Every metric family, rendered by [`Layers::count`].
    pub metrics: Arc<Metrics>,
    /// The trace policy, swappable like a reload swaps it.
    pub policy: PolicyHandle,
    migration: Arc<Migration>,
    spans: Option<Arc<Recorder>>,
    exported: Option<tokio::sync::mpsc::Receiver<crate::telemetry::export::EncodedSpan>>,
}

// === impl Layers ===

impl Layers {
    /// A listener of `direction` with `config`, spans off.
    pub fn new(direction: Direction, config: &Config) -> Self {
        let metrics = Metrics::new();
        let migration = Arc::new(Migration::new(&metrics));
        let policy = Arc::new(ArcSwap::from_pointee(policy(
            direction, config, &metrics, &migration, None,
        )));
        Self {
            direction,
            metrics,
            policy,
            migration,
            spans: None,
            exported: None,
        }
    }

    /// A listener whose spans are recorded into a queue [`Layers::exported`]
    /// reads.
    pub fn with_spans(direction: Direction, config: &Config) -> Self {
        let mut layers = Self::new(direction, config);
        let (queue, rx) = SpanQueue::for_test(16, layers.metrics.spans.clone());
        let recorder = Arc::new(Recorder::new(config, queue, &|_| None));
        layers.spans = Some(recorder);
        layers.exported = Some(rx);
        layers.reload(config);
        layers
    }

    /// Swaps in the policy `config` asks for, as a reload does.
    pub fn reload(&self, config: &Config) {
        let next = policy(
            self.direction,
            config,
            &self.metrics,
            &self.migration,
            self.spans.clone(),
        );
        self.policy.store(Arc::new(next));
    }

    /// The trace layer of an HTTP/1 connection to port 80.
    pub fn trace(&self, access_log: bool) -> TraceLayer {
        TraceLayer::new(
            self.policy.clone(),
            Some(80),
            Attachments::for_access_log(access_log).sending_over(Wire::Http1),
        )
    }

    /// The record layer of a `protocol` connection from 10.0.0.7:40000.
    pub fn record(&self, protocol: Protocol, access_log: bool) -> RecordLayer {
        RecordLayer::new(RecordContext {
            direction: self.direction,
            peer: crate::telemetry::PeerAddress::new(SocketAddr::from(([10, 0, 0, 7], 40000))),
            http: self.metrics.http(self.direction, protocol),
            grpc: self.metrics.http(self.direction, Protocol::Grpc),
            protocol,
            access_log,
            policy: self.policy.clone(),
            sampling: self.metrics.sampling(self.direction),
        })
    }

    /// The value of one metric series (name and labels exactly as exposed);
    /// absent series count as zero, as Prometheus reads them.
    pub fn count(&self, series: &str) -> u64 {
        let text = self.metrics.render();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// The next span the recorder exported, if any.
    pub fn exported(&mut self) -> Option<SpanData> {
        let span = self.exported.as_mut()?.try_recv().ok()?;
        Some(span.decode())
    }
}

/// The trace policy the stack builds for `config`.
fn policy(
    direction: Direction,
    config: &Config,
    metrics: &Metrics,
    migration: &Arc<Migration>,
    spans: Option<Arc<Recorder>>,
) -> crate::http::trace::TracePolicy {
    let parts = PolicyParts {
        direction,
        trace_context: &metrics.trace_context(direction),
        sampling: &metrics.sampling(direction),
        metrics,
        migration,
    };
    parts.policy(config, Sampler::new(&config.sampling), spans)
}

/// Renders `formats` for the next hop of a request with `headers`, as the
/// trace layer does on an HTTP/1 connection, removing every trace header the
/// request came with: trace `4bf92f3577b34da6a3ce929d0e0e4736`, the sidecar's
/// span `0xabc`, sampled, no caller span.
pub fn render_for_hop(headers: &mut HeaderMap, formats: &[Format]) -> Rendered {
    let plan = Plan {
        formats: formats.iter().copied().collect(),
        id_width: meshtrace_config::IdWidth::Auto,
        target: 0,
        external: false,
    };
    let mut context = TraceContext::new(
        TraceId::new(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736).expect("a valid trace id"),
        SpanId::new(0xabc).expect("a valid span id"),
        Sampling::Sampled,
    );
    let present = crate::propagation::extract::scan(headers).present.formats;
    inject::render(&plan, &mut context, None, present, present, headers)
}
