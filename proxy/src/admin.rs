//! The admin server, on loopback by default.
//!
//! | route | answer |
//! |---|---|
//! | `GET /live` | 200 while the process runs |
//! | `GET /ready` | 200 once config is loaded and every listener is bound; 503 while draining |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /config` | the effective configuration as YAML, secrets redacted ([`meshtrace_config::redact`]) |
//! | `POST /shutdown` | starts a graceful drain, like SIGTERM |

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use meshtrace_config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::drain::Drain;
use crate::metrics::Metrics;

/// What the admin routes read.
pub struct AdminState {
    /// Every metric.
    pub metrics: Arc<Metrics>,
    /// The effective configuration (replaced on every reload).
    pub config: Arc<arc_swap::ArcSwap<Config>>,
    /// Draining state, and the trigger for `/shutdown`.
    pub drain: Drain,
    /// Set once every listener is bound.
    pub ready: AtomicBool,
}

/// Serves admin requests until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    serve_routes(listener, state, stop, route::<hyper::body::Incoming>).await;
}

/// Answers one request from the state.
pub(crate) type Route = fn(&AdminState, &Request<hyper::body::Incoming>) -> Response<Full<Bytes>>;

/// Serves HTTP/1 requests with `route` until `stop` is cancelled (the admin and
/// the health servers).
pub(crate) async fn serve_routes(
    listener: TcpListener,
    state: Arc<AdminState>,
    stop: CancellationToken,
    route: Route,
) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

pub(crate) fn route<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| (status, "text/plain; charset=utf-8", body);
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n".into()),
        (&Method::GET, "/ready") => {
            let (status, body) = readiness(state);
            text(status, body.into())
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        (&Method::GET, "/config") => (
            StatusCode::OK,
            "application/yaml",
            state.config.load().to_redacted_yaml(),
        ),
        (&Method::POST, "/shutdown") => {
            tracing::info!("shutdown requested through the admin server");
            state.drain.start();
            text(StatusCode::ACCEPTED, "draining\n".into())
        }
        (_, "/live" | "/ready" | "/metrics" | "/config" | "/shutdown") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /live /ready /metrics /config or POST /shutdown\n".into(),
        ),
    };
    response(status, content_type, body)
}

/// Ready once every listener is bound, until the drain starts (so the kubelet
/// takes the pod out of its Service's endpoints while in-flight requests finish).
pub(crate) fn readiness(state: &AdminState) -> (StatusCode, &'static str) {
    if state.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// A response with a body and its content type.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(yaml: &str) -> AdminState {
        let config = Config::from_yaml_str(yaml, "test").unwrap();
        AdminState {
            metrics: Metrics::new(),
            config: Arc::new(arc_swap::ArcSwap::from_pointee(config)),
            drain: Drain::default(),
            ready: AtomicBool::new(true),
        }
    }

    async fn get_body(state: &AdminState, path: &str) -> String {
        use http_body_util::BodyExt as _;
        let req = Request::get(path).body(()).unwrap();
        let body = route(state, &req).into_body().collect().await.unwrap();
        String::from_utf8(body.to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn config_does_not_show_export_header_values() {
        let state = state_with("export: {headers: {x-api-key: s3cret-key}}");
        let body = get_body(&state, "/config").await;
        assert!(body.contains("x-api-key: REDACTED"), "{body}");
        assert!(!body.contains("s3cret-key"), "{body}");
    }
}
