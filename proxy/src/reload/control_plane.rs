//! The control plane as a source of configurations: one long-lived watch stream.
//!
//! The sidecar opens `GET {control.url}/v1/watch?service=…&namespace=…&pod=…
//! &label=k=v…` over HTTP/2 (h2c) and reads the Server-Sent Events of
//! [`meshtrace_config::wire`]: a `config` event carries the workload's fully
//! resolved configuration, sent on connect and on every change. Each is completed
//! with the pod's local settings ([`local_view`]), validated and applied
//! ([`Reloader::apply`]), cached on disk ([`super::cache`]), then answered with
//! `POST /v1/ack` (a [`wire::Ack`]). A rejected config leaves the running one in
//! force.
//!
//! The stream failing, going silent (no byte, keep-alives included, for
//! [`wire::SILENCE`]) or breaking the protocol's bounds (an oversized line or
//! event) means reconnecting after a backoff that doubles from
//! `control.reconnect_min` to `control.reconnect_max` with jitter; meanwhile the
//! last good config keeps serving.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use meshtrace_config::wire::{self, Ack, AckStatus, ConfigPush, SseEvent, SseParser};
use meshtrace_config::Config;

use super::apply::Reloader;
use super::client::{self, identity, post_json, HttpClient};
use super::local::local_view;
use super::{cache, report};

/// Starts watching (and reporting to) the control plane named in
/// `local.control.url`, until the sidecar drains.
pub fn spawn(reloader: Reloader, local: &Config) {
    let Some(url) = local.control.url.clone() else {
        return;
    };
    let local = local.clone();
    tokio::spawn(async move {
        let client = client::new();
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
            () = report::report_loop(&client, &url, &local, &reloader) => {}
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
            let url = self.url;
            match self.watch_once(&mut backoff).await {
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
        tracing::info!(url = %self.url, "watching the control plane");
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
                let applied = self.reloader.apply(config).await;
                applied
                    .map(|()| cache::store(self.local, &cached))
                    .map_err(|e| e.to_string())
            }
            Err(error) => Err(error),
        };
        match &outcome {
            Ok(()) => tracing::info!(version, "config applied"),
            Err(error) => tracing::warn!(version, %error, "config rejected; the running one stays"),
        }
        let (namespace, pod) = identity(self.local);
        let ack = Ack {
            namespace,
            pod,
            version,
            status: if outcome.is_ok() {
                AckStatus::Ack
            } else {
                AckStatus::Nack
            },
            error: outcome.err(),
        };
        let uri = format!("{}/v1/ack", self.url.trim_end_matches('/'));
        post_json(self.client, &uri, &ack, "ack").await;
    }
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
}
