//! The control plane as a source of configurations: one long-lived watch stream.
//!
//! The sidecar opens `GET {control.url}/v1/watch?service=…&namespace=…&pod=…
//! &label=k=v…` over HTTP/2 (h2c) and reads the Server-Sent Events of
//! [`meshtrace_config::wire`]: a `config` event carries the workload's fully
//! resolved configuration, sent on connect and on every change. Each is completed
//! with the pod's local settings ([`local_view`]), validated and applied
//! ([`Reloader::apply`]), cached on disk ([`super::cache`]), then answered with
//! `POST /v1/ack` (a [`wire::Ack`]). A rejected config leaves the running one in
//! force. Each push is counted in `meshtrace_config_reloads_total{source="control"}`
//! (a NACK is `result="rejected"`); an applied one sets `meshtrace_config_version`,
//! and `meshtrace_control_plane_connected` is 1 while the watch stream is up.
//!
//! The stream failing, going silent (no byte, keep-alives included, for
//! [`wire::SILENCE`]) or breaking the protocol's bounds (an oversized line or
//! event) means reconnecting after a backoff that doubles from
//! `control.reconnect_min` to `control.reconnect_max` with jitter; meanwhile the
//! last good config keeps serving.
//!
//! # Reports
//!
//! While watching, the sidecar also `POST`s `{control.url}/v1/report` every
//! `control.report_interval` (15 s): a [`meshtrace_config::report::Report`] of the
//! trace formats it has seen per direction and calling workload and the formats
//! its app sends ([`crate::migration`]), for the control plane's fleet-wide
//! migration view, and its sampling routes' root-request counts and active
//! boosts. The answer carries this sidecar's share of each adaptive route's
//! fleet target ([`meshtrace_config::report::ReportReply`]), which
//! [`crate::adaptive`] adapts to until three report intervals pass without
//! one. A report that fails is dropped; the next one carries the cumulative
//! counts anyway.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use meshtrace_config::redact::redact_urls;
use meshtrace_config::report::ReportReply;
use meshtrace_config::wire::{self, Ack, AckStatus, ConfigPush, SseEvent, SseParser};
use meshtrace_config::Config;

use super::apply::Reloader;
use super::cache;
use super::local::local_view;
use crate::adaptive::SHARES_FOR_REPORTS;
use crate::metrics::ReloadSource;

/// Starts watching (and reporting to) the control plane named in
/// `local.control.url`, until the sidecar drains.
pub fn spawn(reloader: Reloader, local: &Config) {
    let Some(url) = local.control.url.clone() else {
        return;
    };
    let local = local.clone();
    let metrics = reloader.metrics();
    metrics.reload_source_started(ReloadSource::Control);
    metrics.control_plane();
    tokio::spawn(async move {
        let client = new_client();
        let watcher = Watcher {
            client: &client,
            url: &url,
            local: &local,
            reloader: &reloader,
        };
        // A draining sidecar stops watching, so it stops acknowledging too.
        tokio::select! {
            () = reloader.draining() => tracing::debug!("control-plane watch stopped: draining"),
            () = watcher.watch_forever() => {}
            () = report_loop(&client, &url, &local, &reloader) => {}
        }
    });
}

/// What one watch needs.
struct Watcher<'a> {
    client: &'a HttpClient,
    url: &'a str,
    local: &'a Config,
    reloader: &'a Reloader,
}

// === impl Watcher ===

impl Watcher<'_> {
    /// Watches, reconnecting after every end or failure.
    async fn watch_forever(&self) {
        let mut backoff = Backoff::new(self.local);
        loop {
            // The URL may carry a password (`http://user:pass@…`): logs show it redacted.
            let url = redact_urls(self.url);
            let watched = self.watch_once(&mut backoff).await;
            self.reloader.metrics().control_plane().set(0);
            match watched {
                Ok(()) => tracing::info!(%url, "control-plane watch ended; reconnecting"),
                Err(error) => {
                    tracing::warn!(%url, %error, "control-plane watch failed; keeping the last good config")
                }
            }
            let delay = backoff.next();
            tracing::debug!(?delay, "reconnecting to the control plane");
            tokio::time::sleep(delay).await;
        }
    }

    /// One watch stream, from connect to its end.
    async fn watch_once(&self, backoff: &mut Backoff) -> Result<(), String> {
        let req = Request::get(watch_uri(self.url, self.local))
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let rsp = tokio::time::timeout(wire::SILENCE, self.client.request(req))
            .await
            .map_err(|_| "no answer".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        if rsp.status() != StatusCode::OK {
            return Err(format!("watch answered {}", rsp.status()));
        }
        tracing::info!(url = %redact_urls(self.url), "watching the control plane");
        self.reloader.metrics().control_plane().set(1);
        backoff.reset();
        let mut body = rsp.into_body();
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        loop {
            let frame = match tokio::time::timeout(wire::SILENCE, body.frame()).await {
                Err(_) => return Err("the stream went silent".into()),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(format!("stream: {e}")),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            // Events completed before a broken bound are still applied.
            let fed = parser.feed(&data, &mut events);
            for event in events.drain(..) {
                self.event(event).await;
            }
            fed.map_err(|e| e.to_string())?;
        }
    }

    async fn event(&self, event: SseEvent) {
        match event.event.as_str() {
            wire::CONFIG_EVENT => self.apply(&event.data).await,
            wire::ERROR_EVENT => {
                tracing::warn!(error = %event.data, "the control plane cannot resolve this workload's config; keeping the running one")
            }
            _ => {}
        }
    }

    /// Applies one pushed config, caches it, and acknowledges it.
    async fn apply(&self, data: &str) {
        let push: ConfigPush<serde_json::Value> = match serde_json::from_str(data) {
            Ok(push) => push,
            Err(error) => {
                tracing::warn!(%error, "unreadable config push ignored");
                return;
            }
        };
        let version = push.version;
        let outcome = match local_view(push.config, self.local) {
            Ok(config) => {
                let cached = config.clone();
                let applied = self.reloader.apply_version(config, version).await;
                applied
                    .map(|()| cache::store(self.local, &cached))
                    .map_err(|e| e.to_string())
            }
            Err(error) => Err(error),
        };
        let metrics = self.reloader.metrics();
        metrics.config_reload(ReloadSource::Control, outcome.is_ok());
        let ack = ack(self.local, version, outcome);
        match &ack.error {
            None => tracing::info!(version, "config applied"),
            Some(error) => {
                tracing::warn!(version, %error, "config rejected; the running one stays")
            }
        }
        let uri = format!("{}/v1/ack", self.url.trim_end_matches('/'));
        post_json(self.client, &uri, &ack, "ack").await;
    }
}

/// The answer to config `version`. A NACK's message is logged and shown by the
/// control plane to whoever reads it, so a URL quoted in it loses its userinfo.
fn ack(local: &Config, version: u64, outcome: Result<(), String>) -> Ack {
    let (namespace, pod) = identity(local);
    Ack {
        namespace,
        pod,
        version,
        status: if outcome.is_ok() {
            AckStatus::Ack
        } else {
            AckStatus::Nack
        },
        error: outcome.err().map(|e| redact_urls(&e)),
    }
}

/// Sends a report every `control.report_interval`, forever.
async fn report_loop(client: &HttpClient, url: &str, local: &Config, reloader: &Reloader) {
    let (namespace, pod) = identity(local);
    let uri = format!("{}/v1/report", url.trim_end_matches('/'));
    let mut ticks = tokio::time::interval(local.control.report_interval.get());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let config = reloader.current();
        let now = tokio::time::Instant::now();
        let mut report = reloader.migration().report(&config, &namespace, &pod, now);
        let adaptive = reloader.adaptive();
        report.routes = adaptive.current().report(now);
        let Some(answer) = post_json(client, &uri, &report, "report").await else {
            continue;
        };
        match serde_json::from_slice::<ReportReply>(&answer) {
            Ok(reply) => {
                let valid_for = config.control.report_interval.get() * SHARES_FOR_REPORTS;
                adaptive.set_shares(reply.budgets, valid_for, tokio::time::Instant::now());
            }
            Err(error) => tracing::debug!(%error, "report answer unreadable"),
        }
    }
}

/// The most of an answer the sidecar reads (a report's answer is a few
/// hundred bytes per adaptive route).
const MAX_ANSWER: usize = 256 * 1024;

/// The client of the control plane: h2c, with keep-alive pings.
type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long an ACK or a report may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for one control plane: every request shares one h2c connection.
fn new_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        // hyper needs a timer for keep-alive pings (it panics without one).
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Some(Duration::from_secs(20)))
        .build_http()
}

/// `POST`s `body` as JSON to `uri` and returns the answer's body (at most
/// [`MAX_ANSWER`] bytes); `what` names it in the debug log of a failure, which
/// is dropped (the next ACK or report follows anyway).
async fn post_json(
    client: &HttpClient,
    uri: &str,
    body: &impl serde::Serialize,
    what: &str,
) -> Option<Bytes> {
    let body = serde_json::to_vec(body).ok()?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)));
    let req = req.ok()?;
    let exchange = async {
        let rsp = client.request(req).await.map_err(|e| e.to_string())?;
        if !rsp.status().is_success() {
            return Err(format!("refused with {}", rsp.status()));
        }
        let body = http_body_util::Limited::new(rsp.into_body(), MAX_ANSWER);
        let body = body.collect().await.map_err(|e| e.to_string())?;
        Ok(body.to_bytes())
    };
    match tokio::time::timeout(POST_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(error)) => {
            tracing::debug!(%error, "{what} failed");
            None
        }
        Err(_) => {
            tracing::debug!("{what} timed out");
            None
        }
    }
}

/// The sidecar's identity at the control plane: its namespace (`default` when
/// unknown) and pod name (the host name, else `sidecar-<pid>`, outside Kubernetes).
fn identity(local: &Config) -> (String, String) {
    let w = &local.workload;
    let namespace = w.namespace.clone().unwrap_or_else(|| "default".into());
    let pod = w
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("sidecar-{}", std::process::id()));
    (namespace, pod)
}

fn watch_uri(url: &str, local: &Config) -> String {
    let (namespace, pod) = identity(local);
    let mut query = Vec::new();
    if let Some(service) = &local.workload.service {
        query.push(format!("service={}", wire::encode(service)));
    }
    query.push(format!("namespace={}", wire::encode(&namespace)));
    query.push(format!("pod={}", wire::encode(&pod)));
    for (k, v) in &local.control.labels {
        query.push(format!("label={}", wire::encode(&format!("{k}={v}"))));
    }
    format!("{}/v1/watch?{}", url.trim_end_matches('/'), query.join("&"))
}

/// Reconnect delays: doubling from the minimum to the maximum, each with ±50%
/// jitter so that a fleet does not reconnect in step.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

// === impl Backoff ===

impl Backoff {
    fn new(config: &Config) -> Self {
        let min = config.control.reconnect_min.get();
        Self {
            min,
            max: config.control.reconnect_max.get(),
            next: min,
        }
    }

    fn reset(&mut self) {
        self.next = self.min;
    }

    fn next(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(0.5 + fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_uri_names_the_workload() {
        let mut local = Config::default();
        local.workload.service = Some("checkout".into());
        local.workload.namespace = Some("shop".into());
        local.workload.pod_name = Some("checkout-1".into());
        local.control.labels.insert("tier".into(), "web app".into());
        assert_eq!(
            watch_uri("http://cp:15010/", &local),
            "http://cp:15010/v1/watch?service=checkout&namespace=shop&pod=checkout-1&label=tier%3Dweb%20app"
        );
    }

    #[test]
    fn backoff_doubles_to_the_maximum_with_jitter() {
        let mut b = Backoff::new(&Config::default());
        let delays: Vec<Duration> = (0..10).map(|_| b.next()).collect();
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(300));
        assert!(delays[9] <= Duration::from_secs(15) && delays[9] >= Duration::from_secs(5));
        b.reset();
        assert!(b.next() <= Duration::from_millis(300));
    }

    /// Every push counts under `source="control"`: an applied one sets the
    /// config version and the stage, a NACK counts as rejected and changes
    /// neither.
    #[tokio::test]
    async fn pushes_are_counted_and_an_applied_one_sets_the_version() {
        let local = crate::test_support::config(|c| {
            c.inbound.listen = "127.0.0.1:0".parse().unwrap();
            c.outbound.listen = "127.0.0.1:0".parse().unwrap();
            c.admin.listen = "127.0.0.1:0".parse().unwrap();
        });
        let sidecar = crate::sidecar::Sidecar::start(local.clone()).await.unwrap();
        let reloader = sidecar.reloader();
        let client = new_client();
        // Nothing listens there: the ACKs fail at once and are dropped.
        let watcher = Watcher {
            client: &client,
            url: "http://127.0.0.1:9",
            local: &local,
            reloader: &reloader,
        };
        let push = |version: u64, config: serde_json::Value| {
            serde_json::json!({ "version": version, "config": config }).to_string()
        };
        watcher
            .apply(&push(
                77,
                serde_json::json!({"propagation": {"stage": "w3c"}}),
            ))
            .await;
        watcher
            .apply(&push(
                78,
                serde_json::json!({"sampling": {"default_rate": 7}}),
            ))
            .await;
        let text = reloader.metrics().render();
        for line in [
            r#"meshtrace_config_reloads_total{source="control",result="applied"} 1"#,
            r#"meshtrace_config_reloads_total{source="control",result="rejected"} 1"#,
            "meshtrace_config_version 77",
            r#"meshtrace_migration_stage{stage="w3c"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn a_nack_does_not_carry_a_url_password() {
        let push = serde_json::json!({"export": {"endpoint": "grpc://otel:hunter2@collector"}});
        let rejected = local_view(push, &Config::default()).map(drop);
        let ack = ack(&Config::default(), 7, rejected);
        assert_eq!(ack.status, AckStatus::Nack);
        let error = ack.error.unwrap();
        assert!(error.contains("grpc://REDACTED@collector"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
