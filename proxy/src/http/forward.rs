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

use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshtrace_config::HostPort;

use super::edge::{self, Refusal};
use super::upstream::{self, HttpClient, SendError, Upstreams};
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
    async fn forward(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let grpc = is_grpc(&req);
        if req.method() == Method::CONNECT {
            // A tunnel would be opaque TCP the sidecar cannot trace or route;
            // refusing beats an empty close the access log calls a success.
            let message =
                "CONNECT is not supported: the sidecar forwards HTTP requests, not tunnels";
            return edge::respond(Refusal::MethodNotAllowed, grpc, message);
        }
        if let Some((refusal, message)) = host::conflict(&req) {
            return edge::respond(refusal, grpc, message);
        }
        let (target, client) = match &self.route {
            Route::Fixed(target, client) => (target.clone(), client.clone()),
            Route::Table(table) => match authority_of(&req).and_then(|a| table.lookup(a)) {
                Some(target) => (target.clone(), self.upstreams.client(target, self.wire)),
                None => {
                    self.metrics.error(ErrorKind::NoRoute);
                    let authority = authority_of(&req).unwrap_or("(none)");
                    let message = format!("no route for authority {authority}");
                    return edge::respond(Refusal::Upstream(ErrorKind::NoRoute), grpc, &message);
                }
            },
        };
        let addressed = match self.wire {
            Wire::Http2 => absolute_uri(&mut req, &target),
            Wire::Http1 => origin_form(&mut req, &target),
        };
        if let Err(message) = addressed {
            return edge::respond(Refusal::BadAuthority, grpc, &message);
        }
        let upgrade = self.wire == Wire::Http1 && headers::wants_upgrade(req.headers());
        headers::strip_hop_by_hop(req.headers_mut(), upgrade);
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let sent = client.send(req);
        let result = match self.request_timeout {
            Some(limit) => match tokio::time::timeout(limit, sent).await {
                Ok(result) => result,
                Err(_) => {
                    self.metrics.error(ErrorKind::RequestTimeout);
                    let message = format!("upstream {target} sent no response within {limit:?}");
                    return edge::respond(
                        Refusal::Upstream(ErrorKind::RequestTimeout),
                        grpc,
                        &message,
                    );
                }
            },
            None => sent.await,
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => return self.refuse(&error, &target, grpc),
        };
        let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (true, Some(downstream)) = (upgraded, downstream_upgrade) {
            tunnel(downstream, hyper::upgrade::on(&mut response), &self.drain);
        }
        headers::strip_hop_by_hop(response.headers_mut(), upgraded);
        edge::strip_impersonation(response.headers_mut());
        if self.attach.upstream {
            response.extensions_mut().insert(Upstream(target));
        }
        response.map(Either::Left)
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

impl tower::Service<Request<Incoming>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { Ok(inner.forward(req).await) })
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
