//! The health port, for the kubelet's probes.
//!
//! The admin server stays on loopback: it serves `/config` and an
//! unauthenticated `POST /shutdown`. The kubelet probes a pod from its node, so
//! readiness needs a port the pod exposes; like Istio's 15021, this one answers
//! a single question and nothing else.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz/ready` | 200 `ready` once every listener is bound; 503 while starting or draining |
//!
//! Any other request gets 404 (405 for another method on the route), so the
//! port cannot be used to read or change the sidecar.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};

/// The one route.
pub const READY_PATH: &str = "/healthz/ready";

/// Serves health probes until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    admin::serve_routes(listener, state, stop, route::<hyper::body::Incoming>).await;
}

fn route<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET, READY_PATH) => {
            let (status, body) = admin::readiness(state);
            admin::response(status, TEXT, body)
        }
        (_, READY_PATH) => admin::response(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed; GET /healthz/ready\n",
        ),
        _ => admin::response(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; the health port serves GET /healthz/ready only\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

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

    fn get(state: &AdminState, path: &str) -> StatusCode {
        route(state, &Request::get(path).body(()).unwrap()).status()
    }

    #[test]
    fn ready_only_after_the_listeners_are_bound_and_until_the_drain() {
        let state = state();
        assert_eq!(get(&state, READY_PATH), StatusCode::SERVICE_UNAVAILABLE);
        state.ready.store(true, Ordering::Release);
        assert_eq!(get(&state, READY_PATH), StatusCode::OK);
        state.drain.start();
        assert_eq!(get(&state, READY_PATH), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn the_health_port_serves_nothing_of_the_admin_server() {
        let state = state();
        state.ready.store(true, Ordering::Release);
        for path in ["/config", "/metrics", "/ready", "/shutdown", "/"] {
            assert_eq!(get(&state, path), StatusCode::NOT_FOUND, "{path}");
        }
        let post = Request::post(READY_PATH).body(()).unwrap();
        assert_eq!(
            route(&state, &post).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
