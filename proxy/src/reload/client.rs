//! The sidecar's HTTP side of the control plane, shared by the watch
//! ([`super::control_plane`]) and the reports ([`super::report`]): the h2c client,
//! the identity the sidecar gives, and fire-and-forget JSON `POST`s.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use meshtrace_config::Config;

/// The client of the control plane: h2c, with keep-alive pings.
pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long an ACK or a report may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for one control plane: every request shares one h2c connection.
pub(super) fn new() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        // hyper needs a timer for keep-alive pings (it panics without one).
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Some(Duration::from_secs(20)))
        .build_http()
}

/// `POST`s `body` as JSON to `uri`; `what` names it in the debug log of a
/// failure, which is dropped (the next ACK or report follows anyway).
pub(super) async fn post_json(
    client: &HttpClient,
    uri: &str,
    body: &impl serde::Serialize,
    what: &str,
) {
    let Ok(body) = serde_json::to_vec(body) else {
        return;
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)));
    let Ok(req) = req else {
        return;
    };
    match tokio::time::timeout(POST_TIMEOUT, client.request(req)).await {
        Ok(Ok(rsp)) if rsp.status().is_success() => {}
        Ok(Ok(rsp)) => tracing::debug!(status = %rsp.status(), "{what} refused"),
        Ok(Err(error)) => tracing::debug!(%error, "{what} failed"),
        Err(_) => tracing::debug!("{what} timed out"),
    }
}

/// The sidecar's identity at the control plane: its namespace (`default` when
/// unknown) and pod name (the host name, else `sidecar-<pid>`, outside Kubernetes).
pub(super) fn identity(local: &Config) -> (String, String) {
    let w = &local.workload;
    let namespace = w.namespace.clone().unwrap_or_else(|| "default".into());
    let pod = w
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("sidecar-{}", std::process::id()));
    (namespace, pod)
}
