//! The admin server, on loopback by default.
//!
//! | route | answer |
//! |---|---|
//! | `GET /live` | 200 while the process runs |
//! | `GET /ready` | 200 once config is loaded and every listener is bound; 503 while draining |
//! | `GET /metrics` | OpenMetrics text when asked for (`Accept: application/openmetrics-text`, as Prometheus does), else the Prometheus text format 0.0.4 |
//! | `GET /config` | the effective configuration as YAML, secrets redacted ([`meshtrace_config::redact`]), after two comment lines: its control-plane version and when it was applied |
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
use crate::metrics::{Metrics, OPENMETRICS, PROMETHEUS_TEXT};

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
        (&Method::GET, "/metrics") => metrics_page(state, req),
        (&Method::GET, "/config") => (StatusCode::OK, "application/yaml", config_page(state)),
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

/// The metrics in OpenMetrics when the scraper asks for it (Prometheus does),
/// else in the Prometheus text format (`curl`, `promtool check metrics`).
fn metrics_page<B>(state: &AdminState, req: &Request<B>) -> (StatusCode, &'static str, String) {
    let openmetrics = req.headers().get_all(http::header::ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(23)
            .any(|w| w == b"application/openmetrics")
    });
    if openmetrics {
        (StatusCode::OK, OPENMETRICS, state.metrics.render())
    } else {
        let text = state.metrics.render_prometheus_text();
        (StatusCode::OK, PROMETHEUS_TEXT, text)
    }
}

/// The effective config, headed by YAML comments that say which version it is
/// and since when it runs (the same values as `meshtrace_config_version` and
/// `meshtrace_config_last_reload_timestamp_seconds`).
fn config_page(state: &AdminState) -> String {
    let version = state.metrics.config_version();
    let applied = state.metrics.last_reload_unix();
    let origin = if version == 0 {
        " (not from the control plane)"
    } else {
        ""
    };
    format!(
        "# version: {version}{origin}\n# applied: {} (unix {applied:.3})\n{}",
        utc(applied),
        state.config.load().to_redacted_yaml()
    )
}

/// `secs` since the Unix epoch as an RFC 3339 UTC time, to the second
/// (Howard Hinnant's days-to-civil algorithm).
fn utc(secs: f64) -> String {
    let secs = secs.max(0.0) as i64;
    let (days, time) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (time / 3600, time % 3600 / 60, time % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
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

    #[test]
    fn utc_times_are_rfc3339() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_825_600.5), "2000-02-29T12:00:00Z");
        assert_eq!(utc(1_796_000_000.0), "2026-11-30T00:53:20Z");
    }

    #[tokio::test]
    async fn config_is_headed_by_its_version_and_reload_time() {
        let state = state_with("{}");
        state
            .metrics
            .config_in_force(meshtrace_config::MigrationStage::Legacy, 42, true);
        let body = get_body(&state, "/config").await;
        let mut lines = body.lines();
        assert_eq!(lines.next(), Some("# version: 42"), "{body}");
        let applied = lines.next().unwrap_or_default();
        assert!(applied.starts_with("# applied: 20"), "{body}");
        assert!(applied.contains("(unix "), "{body}");
    }

    #[tokio::test]
    async fn config_does_not_show_export_header_values() {
        let state = state_with("export: {headers: {x-api-key: s3cret-key}}");
        let body = get_body(&state, "/config").await;
        assert!(body.contains("x-api-key: REDACTED"), "{body}");
        assert!(!body.contains("s3cret-key"), "{body}");
    }
}
