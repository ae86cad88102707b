//! The pod-reachable ports: health for the kubelet's probes, metrics for
//! Prometheus.
//!
//! The admin server stays on loopback: it serves `/config` and an
//! unauthenticated `POST /shutdown`. The kubelet probes a pod from its node and
//! Prometheus scrapes it from its own pod, so each needs a port the pod exposes;
//! like Istio's 15021 and 15020, each of these answers a single question and
//! nothing else. A [`Port`] is that route set.
//!
//! | port | route | answer |
//! |---|---|---|
//! | health (`admin.health_listen`, 15021) | `GET /healthz/ready` | 200 `ready` once every listener is bound; 503 while starting or draining |
//! | metrics (`admin.metrics_listen`, 15020) | `GET /metrics` | the admin server's `/metrics`, byte for byte |
//!
//! Any other request gets 404 (405 for another method on the route), so
//! neither port can be used to read the configuration or change the sidecar.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};

/// The health port's one route.
pub const READY_PATH: &str = "/healthz/ready";
/// The metrics port's one route.
pub const METRICS_PATH: &str = "/metrics";

/// A pod-reachable port's route set: one `GET` path and its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// `GET /healthz/ready`, for the kubelet.
    Health,
    /// `GET /metrics`, for Prometheus.
    Metrics,
}

impl Port {
    /// The port's name in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Metrics => "metrics",
        }
    }

    /// The one path it serves.
    pub fn path(self) -> &'static str {
        match self {
            Self::Health => READY_PATH,
            Self::Metrics => METRICS_PATH,
        }
    }

    fn route<B>(self, state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
        const TEXT: &str = "text/plain; charset=utf-8";
        if req.uri().path() != self.path() {
            let body = format!(
                "not found; the {} port serves GET {} only\n",
                self.name(),
                self.path()
            );
            return admin::response(StatusCode::NOT_FOUND, TEXT, body);
        }
        if req.method() != Method::GET {
            let body = format!("method not allowed; GET {}\n", self.path());
            return admin::response(StatusCode::METHOD_NOT_ALLOWED, TEXT, body);
        }
        match self {
            Self::Health => {
                let (status, body) = admin::readiness(state);
                admin::response(status, TEXT, body)
            }
            // The admin server's own answer, so the two cannot drift apart.
            Self::Metrics => admin::route(state, req),
        }
    }
}

/// Serves `port`'s route until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    stop: CancellationToken,
    port: Port,
) {
    let route: admin::Route = match port {
        Port::Health => |state, req| Port::Health.route(state, req),
        Port::Metrics => |state, req| Port::Metrics.route(state, req),
    };
    admin::serve_routes(listener, state, stop, route).await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use http_body_util::BodyExt;
    use meshtrace_config::Config;

    use super::*;
    use crate::drain::Drain;
    use crate::metrics::Metrics;

    fn state() -> AdminState {
        AdminState {
            metrics: Metrics::new(),
            config: Arc::new(arc_swap::ArcSwap::from_pointee(Config::default())),
            drain: Drain::default(),
            ready: AtomicBool::new(false),
        }
    }

    fn get(port: Port, state: &AdminState, path: &str) -> StatusCode {
        port.route(state, &Request::get(path).body(()).unwrap())
            .status()
    }

    async fn text(response: Response<Full<Bytes>>) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[test]
    fn ready_only_after_the_listeners_are_bound_and_until_the_drain() {
        let state = state();
        let health = Port::Health;
        assert_eq!(
            get(health, &state, READY_PATH),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.ready.store(true, Ordering::Release);
        assert_eq!(get(health, &state, READY_PATH), StatusCode::OK);
        state.drain.start();
        assert_eq!(
            get(health, &state, READY_PATH),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn each_public_port_serves_its_one_route_and_nothing_of_the_admin_server() {
        let state = state();
        state.ready.store(true, Ordering::Release);
        for port in [Port::Health, Port::Metrics] {
            assert_eq!(get(port, &state, port.path()), StatusCode::OK, "{port:?}");
            let other = ["/config", "/ready", "/live", "/shutdown", "/", "/metrics/"];
            let wrong_port = [READY_PATH, METRICS_PATH].into_iter();
            for path in other
                .into_iter()
                .chain(wrong_port.filter(|p| *p != port.path()))
            {
                assert_eq!(
                    get(port, &state, path),
                    StatusCode::NOT_FOUND,
                    "{port:?} {path}"
                );
            }
            for method in [Method::POST, Method::PUT, Method::DELETE] {
                let req = Request::builder()
                    .method(method)
                    .uri(port.path())
                    .body(())
                    .unwrap();
                let status = port.route(&state, &req).status();
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{port:?}");
            }
        }
        let shutdown = Request::post("/shutdown").body(()).unwrap();
        Port::Metrics.route(&state, &shutdown);
        assert!(
            !state.drain.is_draining(),
            "the metrics port must not drain"
        );
    }

    #[tokio::test]
    async fn the_metrics_port_answers_exactly_what_the_admin_server_does() {
        let state = state();
        let req = Request::get(METRICS_PATH).body(()).unwrap();
        let public = Port::Metrics.route(&state, &req);
        let admin = admin::route(&state, &req);
        let content_type = |r: &Response<_>| r.headers().get(http::header::CONTENT_TYPE).cloned();
        assert_eq!(content_type(&public), content_type(&admin));
        assert!(content_type(&public).is_some());
        let (public, admin) = (text(public).await, text(admin).await);
        assert_eq!(public, admin);
        assert!(
            public.contains("meshtrace_spans_exported_total 0"),
            "{public}"
        );
    }
}
