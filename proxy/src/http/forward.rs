//! The innermost service: sends a request to its upstream and streams the response
//! back.
//!
//! Per request it: refuses `CONNECT` (405: no tunnels); refuses a request
//! whose `Host` is ambiguous (400, see [`host`]); picks the upstream (the
//! connection's fixed destination, or the route table by authority); strips hop-by-hop headers; keeps the authority the
//! client wrote; sends through the target's pooled client with the request
//! timeout; tunnels protocol upgrades (WebSocket); and turns every failure into an
//! [`edge`] response. Bodies stream both ways; nothing is buffered whole.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{future, FutureExt};
use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use meshtrace_config::HostPort;
use tokio::time::error::Elapsed;

use super::edge::{self, Refusal};
use super::upstream::{self, HttpClient, SendError, UpstreamBody, Upstreams};
use super::{authority_of, headers, is_grpc, Attachments, ProxyBody, Wire};
use crate::drain::Drain;
use crate::metrics::{ConnMetrics, ErrorKind};
use crate::target::Destination;

/// The upstream a response came from, for the access log (attached only when
/// the log is on: an extension costs two allocations per response).
#[derive(Clone, Debug)]
pub struct Upstream(pub Arc<HostPort>);

/// Forwards requests of one downstream connection; clones share one state.
#[derive(Clone)]
pub struct Forward(Arc<Inner>);

struct Inner {
    route: Route,
    upstreams: Upstreams,
    wire: Wire,
    request_timeout: Option<Duration>,
    metrics: ConnMetrics,
    /// Whether responses carry their [`Upstream`].
    attach: Attachments,
    /// Tracks upgraded connections, which outlive their HTTP connection.
    drain: Drain,
}

/// The connection's destination, with the client already chosen when it is fixed.
#[derive(Clone)]
enum Route {
    Fixed(Arc<HostPort>, HttpClient),
    Table(Arc<crate::target::RouteTable>),
}

// === impl Forward ===

impl Forward {
    /// A forwarder for a connection speaking `wire`, which its requests are
    /// forwarded in too; the tunnels of upgraded requests join `drain`.
    pub fn new(
        destination: Destination,
        upstreams: Upstreams,
        wire: Wire,
        request_timeout: Option<Duration>,
        metrics: ConnMetrics,
        attach: Attachments,
        drain: Drain,
    ) -> Self {
        let route = match destination {
            Destination::Fixed(target) => {
                let client = upstreams.client(&target, wire);
                Route::Fixed(target, client)
            }
            Destination::Routes(table) => Route::Table(table),
        };
        Self(Arc::new(Inner {
            route,
            upstreams,
            wire,
            request_timeout,
            metrics,
            attach,
            drain,
        }))
    }
}

impl Inner {
    /// Forwards `req` to its upstream. Not an `async fn`: the routing and
    /// rewriting before the send are synchronous, and an `async fn` (or block)
    /// would hold the request, and the send, twice — as its argument or
    /// capture and again as what it awaits: those are never overlapped — in a
    /// future that every move copies whole.
    fn forward(
        self: Arc<Self>,
        mut req: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        let grpc = is_grpc(&req);
        let (target, client, downstream_upgrade) = match self.prepare(&mut req, grpc) {
            Ok(prepared) => prepared,
            Err(refused) => return future::Either::Left(future::ready(*refused)),
        };
        let sent = client.send(req);
        let sent = match self.request_timeout {
            Some(limit) => future::Either::Left(tokio::time::timeout(limit, sent)),
            None => future::Either::Right(sent.map(Ok)),
        };
        future::Either::Right(Sending {
            sent,
            then: Some(Respond {
                inner: self,
                target,
                grpc,
                downstream_upgrade,
            }),
        })
    }

    /// Routes `req` and readies it for its upstream (target form, `Host`,
    /// hop-by-hop headers): its target, the target's client and, for an
    /// upgrade, the client's side of it; or the response refusing it.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        req: &mut Request<Incoming>,
        grpc: bool,
    ) -> Result<(Arc<HostPort>, HttpClient, Option<OnUpgrade>), Box<Response<ProxyBody>>> {
        let refuse = |refusal, message: &str| Box::new(edge::respond(refusal, grpc, message));
        if req.method() == Method::CONNECT {
            // A tunnel would be opaque TCP the sidecar cannot trace or route;
            // refusing beats an empty close the access log calls a success.
            let message =
                "CONNECT is not supported: the sidecar forwards HTTP requests, not tunnels";
            return Err(refuse(Refusal::MethodNotAllowed, message));
        }
        if let Some((refusal, message)) = host::conflict(req) {
            return Err(refuse(refusal, message));
        }
        let (target, client) = match &self.route {
            Route::Fixed(target, client) => (target.clone(), client.clone()),
            Route::Table(table) => match authority_of(req).and_then(|a| table.lookup(a)) {
                Some(target) => (target.clone(), self.upstreams.client(target, self.wire)),
                None => {
                    self.metrics.error(ErrorKind::NoRoute);
                    let authority = authority_of(req).unwrap_or("(none)");
                    let message = format!("no route for authority {authority}");
                    let refusal = Refusal::Upstream(ErrorKind::NoRoute);
                    return Err(refuse(refusal, &message));
                }
            },
        };
        let addressed = match self.wire {
            Wire::Http2 => absolute_uri(req, &target),
            Wire::Http1 => origin_form(req, &target),
        };
        if let Err(message) = addressed {
            return Err(refuse(Refusal::BadAuthority, &message));
        }
        let upgrade = self.wire == Wire::Http1 && headers::wants_upgrade(req.headers());
        headers::strip_hop_by_hop(req.headers_mut(), upgrade);
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(req));
        Ok((target, client, downstream_upgrade))
    }

    /// The edge response to a failed send. A request body the client broke is
    /// the client's error (400, not an upstream error); anything else is the
    /// upstream's, counted by kind.
    fn refuse(&self, error: &SendError, target: &HostPort, grpc: bool) -> Response<ProxyBody> {
        if let Some(cause) = upstream::downstream_body_error(error) {
            tracing::debug!(%target, ?error, "request body could not be read");
            let message = format!("the request body could not be read: {}", causes(cause));
            return edge::respond(Refusal::BadRequestBody, grpc, &message);
        }
        let kind = upstream::classify(error);
        self.metrics.error(kind);
        tracing::debug!(%target, ?error, "upstream request failed");
        edge::respond(Refusal::Upstream(kind), grpc, &describe(kind, target))
    }
}

/// What makes the response of a send ([`Sending`]).
struct Respond {
    inner: Arc<Inner>,
    target: Arc<HostPort>,
    grpc: bool,
    /// The client's side of an upgrade the request asked for.
    downstream_upgrade: Option<OnUpgrade>,
}

pin_project_lite::pin_project! {
    /// A request on its way upstream: the send (under the request timeout),
    /// then the response made of its outcome.
    struct Sending<F> {
        #[pin]
        sent: F,
        // `None` once the response is made.
        then: Option<Respond>,
    }
}

impl<F> Future for Sending<F>
where
    F: Future<Output = Result<Result<Response<UpstreamBody>, SendError>, Elapsed>>,
{
    type Output = Response<ProxyBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = std::task::ready!(this.sent.poll(cx));
        match this.then.take() {
            Some(respond) => Poll::Ready(respond.response(outcome)),
            // Polled again after its response: nothing more will come.
            None => Poll::Pending,
        }
    }
}

impl Respond {
    /// The response to the client: the upstream's, or the edge's refusal.
    fn response(
        self,
        outcome: Result<Result<Response<UpstreamBody>, SendError>, Elapsed>,
    ) -> Response<ProxyBody> {
        let Self {
            inner,
            target,
            grpc,
            downstream_upgrade,
        } = self;
        let mut response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return inner.refuse(&error, &target, grpc),
            Err(_) => {
                inner.metrics.error(ErrorKind::RequestTimeout);
                let limit = inner.request_timeout.unwrap_or_default();
                let message = format!("upstream {target} sent no response within {limit:?}");
                let refusal = Refusal::Upstream(ErrorKind::RequestTimeout);
                return edge::respond(refusal, grpc, &message);
            }
        };
        let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (true, Some(downstream)) = (upgraded, downstream_upgrade) {
            tunnel(downstream, hyper::upgrade::on(&mut response), &inner.drain);
        }
        headers::strip_hop_by_hop(response.headers_mut(), upgraded);
        edge::strip_impersonation(response.headers_mut());
        if inner.attach.upstream {
            response.extensions_mut().insert(Upstream(target));
        }
        response.map(Either::Left)
    }
}

impl tower::Service<Request<Incoming>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        Box::pin(self.0.clone().forward(req).map(Ok))
    }
}

/// Gives an HTTP/2 request an absolute URI (`:scheme` and `:authority`) whose
/// authority is the one the client addressed, falling back to the target.
fn absolute_uri<B>(req: &mut Request<B>, target: &HostPort) -> Result<(), String> {
    // An HTTP/2 client's request already is one (`:scheme http`, `:authority`).
    let uri = req.uri();
    if uri.scheme() == Some(&Scheme::HTTP) && uri.authority().is_some() {
        return Ok(());
    }
    let authority = match authority_of(req) {
        Some(a) => a.parse().map_err(|_| format!("invalid authority {a:?}"))?,
        None => target
            .to_string()
            .parse()
            .map_err(|_| format!("invalid target {target}"))?,
    };
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|e| format!("invalid request target: {e}"))?;
    Ok(())
}

/// Gives an HTTP/1 request the origin-form target (`/path?query`; `CONNECT`
/// never gets here) and a `Host` header: the authority of an absolute-form
/// target, replacing the client's (RFC 9112 §3.2.2: the route was chosen by
/// that authority, so the upstream must see the same name), else the client's,
/// else the upstream target.
fn origin_form<B>(req: &mut Request<B>, target: &HostPort) -> Result<(), String> {
    if let Some(authority) = req.uri().authority() {
        let host = host::from_authority(authority)
            .ok_or_else(|| format!("invalid authority {:?}", authority.as_str()))?;
        req.headers_mut().insert(HOST, host);
    } else if !req.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(&target.to_string())
            .map_err(|_| format!("invalid target {target}"))?;
        req.headers_mut().insert(HOST, host);
    }
    if req.uri().scheme().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    Ok(())
}

/// One sentence naming the failure and the upstream.
fn describe(kind: ErrorKind, target: &HostPort) -> String {
    match kind {
        ErrorKind::ConnectRefused => format!("upstream {target} refused the connection"),
        ErrorKind::ConnectTimeout => format!("connecting to upstream {target} timed out"),
        ErrorKind::Unreachable => format!("upstream {target} is unreachable"),
        _ => format!("upstream {target} closed the connection before responding"),
    }
}

/// An error and its causes on one line (`a: b: c`), for a response body.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text.replace(['\r', '\n'], " ")
}

/// Joins the two halves of an upgraded (e.g. WebSocket) connection, in a task
/// the drain waits for (up to its timeout) like any connection.
fn tunnel(
    downstream: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    drain: &Drain,
) {
    drain.spawn(async move {
        let (down, up) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(error) => return tracing::debug!(%error, "upgrade did not complete"),
        };
        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
        if let Err(error) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
        }
    });
}

mod host;
#[cfg(test)]
mod tests;
