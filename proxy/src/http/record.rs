//! The outermost layer: request metrics and the access log.
//!
//! A request is recorded when its response body ends (or is dropped, when the
//! client goes away), so the duration and byte count cover the whole exchange,
//! streaming included. Metrics are pre-resolved atomic counters; the access-log
//! line is one `tracing` event on the `access` target with the fields direction,
//! protocol, method, authority, path, status, duration_ms, bytes (response body),
//! upstream, and the sidecar span's trace_id, span_id, parent_id (the caller's
//! span, `-` for a new trace) and sampled; `error` when the sidecar, not the app,
//! ended the request.
//!
//! A client that goes away before the response head makes hyper drop the service
//! future, so the code after `.await` never runs: a drop guard records such a
//! request as nginx does, status 499 with `error=client_closed`, over the time it
//! waited.
//!
//! The sidecar's span ([`crate::telemetry`]) ends here too: its request facts are
//! captured on the way in (only when it may be exported), the response status and
//! `grpc-status` (headers or trailers) on the way out.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};

use super::decide;
use super::edge::Refusal;
use super::forward::Upstream;
use super::is_grpc;
use super::trace::TracePolicy;
use crate::metrics::{HttpMetrics, SamplingMetrics};
use crate::propagation::{SpanId, TraceId};
use crate::sampling::{RouteId, Routes};
use crate::target::{Direction, Protocol};
use crate::telemetry::{semconv, PeerAddress, Recorder, SpanEnd, SpanInfo, SpanStart, Tail};

/// What every request on one connection shares.
#[derive(Debug)]
pub struct RecordContext {
    /// The listener's direction.
    pub direction: Direction,
    /// The downstream peer.
    pub peer: PeerAddress,
    /// Metrics for non-gRPC requests on this connection's protocol.
    pub http: HttpMetrics,
    /// Metrics for gRPC requests.
    pub grpc: HttpMetrics,
    /// The connection's protocol (HTTP/1 or HTTP/2).
    pub protocol: Protocol,
    /// Whether to emit access-log lines.
    pub access_log: bool,
    /// The listener's current policy, whose span recorder (when spans are on)
    /// each request loads.
    pub policy: super::trace::PolicyHandle,
    /// Where tail keeps are counted.
    pub sampling: SamplingMetrics,
}

/// Adds [`Record`] in front of a service.
#[derive(Clone, Debug)]
pub struct RecordLayer(Arc<RecordContext>);

impl RecordLayer {
    /// Records requests with `context`.
    pub fn new(context: RecordContext) -> Self {
        Self(Arc::new(context))
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Record {
            inner,
            context: self.0.clone(),
        }
    }
}

/// Wraps the response body so the request is recorded when it ends.
#[derive(Clone, Debug)]
pub struct Record<S> {
    inner: S,
    context: Arc<RecordContext>,
}

/// The request facts the access log needs, captured before the request moves on.
#[derive(Debug)]
struct Line {
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    span: Option<LineSpan>,
}

/// The sidecar span's ids for the access-log line.
#[derive(Debug)]
struct LineSpan {
    trace_id: TraceId,
    span_id: SpanId,
    /// The caller's span (`-` for a new trace).
    parent_id: Option<SpanId>,
    sampled: bool,
}

impl<S, B, RB> tower::Service<Request<B>> for Record<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>, Error = Infallible>,
{
    type Response = Response<Recorded<RB>>;
    type Error = Infallible;
    type Future = Recording<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let grpc = is_grpc(&req);
        let line = self.context.access_log.then(|| {
            Box::new(Line {
                method: req.method().clone(),
                uri: req.uri().clone(),
                host: req.headers().get(http::header::HOST).cloned(),
                span: req.extensions().get::<SpanInfo>().map(|s| LineSpan {
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_id: s.parent_id,
                    sampled: s.sampled(),
                }),
            })
        });
        let policy = self.context.policy.load();
        let recorder = policy.spans.clone();
        let route = RouteOutcome::of(&policy, &req, recorder.is_some());
        let span = recorder.as_ref().and_then(|r| {
            let (server, peer) = (
                self.context.direction == Direction::Inbound,
                &self.context.peer,
            );
            match &route {
                Some(route) => r.start_with_tail(&req, server, peer, route.tail),
                // Every route keeps tails as `sampling.tail` says: the recorder's own.
                None => r.start(&req, server, peer),
            }
        });
        let span = span.map(|start| Box::new(SpanState { start }));
        // Until the response head arrives, the request is one the client abandoned.
        let abandoned = Abandoned(Some(Finish {
            recorder,
            context: self.context.clone(),
            grpc,
            start,
            status: client_closed_status(),
            line,
            upstream: None,
            bytes: 0,
            span,
            grpc_status: None,
            route,
            error: Some(SpanEnd::CLIENT_CLOSED),
        }));
        Recording {
            response: self.inner.call(req),
            abandoned,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request waiting for its response head, which its record then takes
    /// its facts from and goes with ([`Recorded`]). A future of its own, not
    /// a boxed `async` block: no allocation, and the inner future is held once
    /// (a block holds what it captures apart from what it awaits).
    pub struct Recording<F> {
        #[pin]
        response: F,
        abandoned: Abandoned,
    }
}

impl<F, RB> Future for Recording<F>
where
    F: Future<Output = Result<Response<RB>, Infallible>>,
{
    type Output = Result<Response<Recorded<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.response.poll(cx));
        let finish = this.abandoned.0.take().map(|mut finish| {
            finish.status = response.status();
            finish.upstream = response.extensions().get::<Upstream>().cloned();
            finish.error = response.extensions().get::<Refusal>().map(|r| r.cause());
            if finish.grpc {
                finish.grpc_status = grpc_status(response.headers());
            }
            finish
        });
        Poll::Ready(Ok(response.map(|inner| Recorded {
            inner,
            finish,
            ended: Cell::new(false),
        })))
    }
}

/// The status an abandoned request is logged and counted with: nginx's 499
/// ("client closed request"), a 4xx because the client ended it.
fn client_closed_status() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Records the request when the client goes away before the response head:
/// hyper then drops the service future, so nothing after `.await` runs.
#[derive(Debug)]
struct Abandoned(Option<Finish>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(finish) = self.0.take() {
            finish.record(false);
        }
    }
}

/// Records the request once, when the body ends or is dropped.
#[derive(Debug)]
struct Finish {
    recorder: Option<Arc<Recorder>>,
    context: Arc<RecordContext>,
    grpc: bool,
    start: Instant,
    status: StatusCode,
    /// Boxed, as `span`: off by default, and inline they made this struct,
    /// which moves with the request and then its body, 700 bytes long.
    line: Option<Box<Line>>,
    upstream: Option<Upstream>,
    bytes: u64,
    span: Option<Box<SpanState>>,
    /// `grpc-status` from the response headers or trailers (gRPC only).
    grpc_status: Option<u16>,
    /// The request's sampling route, when its outcome or tail keep matters.
    route: Option<RouteOutcome>,
    /// Why the sidecar, not the app, ended the request: its own refusal's
    /// cause, or `client_closed`.
    error: Option<&'static str>,
}

/// The span in flight.
#[derive(Debug)]
struct SpanState {
    start: SpanStart,
}

/// The request's sampling route: its tail keep, and where its outcome goes
/// when the route has boost triggers to feed.
#[derive(Debug)]
struct RouteOutcome {
    tail: Tail,
    /// The routes and the route's id, when its outcome is observed.
    observe: Option<(Arc<Routes>, RouteId)>,
}

impl RouteOutcome {
    /// The route of `req` when some route has boost triggers, or when spans
    /// are on and some route keeps tails other than `sampling.tail`; `None`
    /// otherwise, without matching any rule. Probes feed no trigger.
    fn of<B>(policy: &TracePolicy, req: &Request<B>, spans: bool) -> Option<Self> {
        if !(policy.observes_routes || (spans && policy.route_tails)) {
            return None;
        }
        let routes = policy.sampler.routes();
        let id = decide::route_of(&policy.sampler, req);
        let route = routes.policy(id)?;
        let observe = (route.boost.is_some() && !policy.sampling_headers.is_probe(req))
            .then(|| (routes.clone(), id));
        Some(Self {
            tail: Tail::from(&route.tail),
            observe,
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u16> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Finish {
    /// Whether the response is a server-side failure: HTTP 5xx, or a gRPC
    /// status a server fails with (boost triggers count these).
    fn failed(&self) -> bool {
        match self.grpc_status {
            Some(code) => semconv::grpc_is_error(code, true),
            None => semconv::http_is_error(self.status, true),
        }
    }

    fn record(self, complete: bool) {
        let elapsed = self.start.elapsed();
        let c = &self.context;
        let metrics = if self.grpc { &c.grpc } else { &c.http };
        metrics.record(self.status, elapsed);
        if let Some((routes, id)) = self.route.as_ref().and_then(|r| r.observe.as_ref()) {
            // A client that went away is no error of the route's.
            if self.error != Some(SpanEnd::CLIENT_CLOSED) {
                routes.observe(*id, self.failed(), elapsed);
            }
        }
        if let (Some(span), Some(recorder)) = (self.span, &self.recorder) {
            let end = SpanEnd {
                status: self.status,
                grpc_status: self.grpc_status,
                proxy_error: self.error,
                elapsed,
                complete,
            };
            recorder.finish(span.start, end, &c.sampling);
        }
        let Some(line) = self.line else { return };
        let authority = line
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| line.host.as_ref().and_then(|h| h.to_str().ok()))
            .unwrap_or("-");
        let upstream = self.upstream.as_ref().map(|u| u.0.to_string());
        let dash = || String::from("-");
        let (trace_id, span_id, parent_id, sampled) = match line.span {
            Some(s) => (
                format!("{:032x}", s.trace_id.get()),
                format!("{:016x}", s.span_id.get()),
                s.parent_id
                    .map_or_else(dash, |p| format!("{:016x}", p.get())),
                s.sampled,
            ),
            None => (dash(), dash(), dash(), false),
        };
        tracing::info!(
            target: "access",
            direction = %c.direction,
            protocol = if self.grpc { "grpc" } else { c.protocol.as_str() },
            client = %c.peer.addr(),
            method = %line.method,
            authority,
            path = line.uri.path(),
            status = self.status.as_u16(),
            duration_ms = millis(elapsed),
            bytes = self.bytes,
            upstream = upstream.as_deref().unwrap_or("-"),
            complete,
            error = self.error,
            trace_id,
            span_id,
            parent_id,
            sampled,
        );
    }
}

/// A duration in milliseconds for the access log, to the nanosecond: whole
/// nanoseconds divided by 10⁶ print as the decimal they are (`0.106138`), where
/// seconds times 10³ print the multiplication's rounding (`0.10613800000000001`).
fn millis(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / 1e6
}

pin_project_lite::pin_project! {
    /// A response body that records its request when it ends.
    #[derive(Debug)]
    pub struct Recorded<B> {
        #[pin]
        inner: B,
        finish: Option<Finish>,
        // Set when the body reported its end (hyper may never poll an empty body).
        ended: Cell<bool>,
    }

    impl<B> PinnedDrop for Recorded<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.finish.take() {
                finish.record(this.ended.get());
            }
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Recorded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(finish) = this.finish.as_mut() {
                    if let Some(data) = f.data_ref() {
                        finish.bytes += data.len() as u64;
                    } else if let Some(trailers) = f.trailers_ref().filter(|_| finish.grpc) {
                        finish.grpc_status = grpc_status(trailers).or(finish.grpc_status);
                    }
                }
            }
            None => {
                this.ended.set(true);
                if let Some(finish) = this.finish.take() {
                    finish.record(true);
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.is_end_stream();
        if ended {
            self.ended.set(true);
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
