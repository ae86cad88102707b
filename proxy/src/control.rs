//! Where live configuration comes from: the control plane's watch stream, or (with
//! no control plane) the config file, polled for changes.
//!
//! # Control-plane watch
//!
//! The sidecar opens one long-lived `GET {control.url}/v1/watch?service=…&namespace=…
//! &pod=…&label=k=v…` over HTTP/2 (h2c) and reads Server-Sent Events:
//! `event: config` with `data: {"version": N, "config": {…}}`, the workload's fully
//! resolved configuration, sent on connect and on every change. Each is completed
//! with the pod's local settings (see [`local_view`]) and its environment, validated
//! and applied ([`Reloader::apply`]), then answered with `POST /v1/ack`
//! `{"namespace", "pod", "version", "status": "ack" | "nack", "error"}`. A rejected
//! config leaves the running one in force.
//!
//! The stream failing or going silent (no byte, keep-alives included, for 45 s)
//! means reconnecting after a backoff that doubles from `control.reconnect_min` to
//! `control.reconnect_max` with jitter; meanwhile the last good config keeps
//! serving. Every applied config is written to `control.cache_file` (atomically),
//! and a restarting sidecar starts from that file ([`startup_config`]) so it comes
//! up with the last good config while the control plane is down.
//!
//! # Reports
//!
//! While watching, the sidecar also `POST`s `{control.url}/v1/report` every
//! `control.report_interval` (15 s): a [`meshtrace_config::report::Report`] of the
//! trace formats it has seen per direction and calling workload and the formats
//! its app sends ([`crate::migration`]), for the control plane's fleet-wide
//! migration view. A report that fails is dropped; the next one carries the
//! cumulative counts anyway.
//!
//! # Local file mode
//!
//! Without `control.url`, [`watch_file`] checks the `--config` file every
//! `control.file_poll` (polling, because Kubernetes updates mounted ConfigMaps by
//! swapping symlinks) and applies it when its content changes; a file that does not
//! load is reported and ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use meshtrace_config::Config;
use serde::Deserialize;

use crate::sidecar::Reloader;

/// A stream with nothing on it for this long is dead (the control plane sends a
/// keep-alive every 15 s).
const SILENCE: Duration = Duration::from_secs(45);

/// One `config` event.
#[derive(Debug, Deserialize)]
struct Push {
    version: u64,
    config: serde_json::Value,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Starts watching the control plane named in `local.control.url`.
pub fn spawn(reloader: Reloader, local: &Config) {
    let Some(url) = local.control.url.clone() else {
        return;
    };
    let local = local.clone();
    tokio::spawn(async move {
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .http2_only(true)
            // hyper needs a timer for keep-alive pings (it panics without one).
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(Some(Duration::from_secs(20)))
            .build_http();
        let mut backoff = Backoff::new(&local);
        let reports = report_loop(&client, &url, &local, &reloader);
        let watch = async {
            loop {
                match watch_once(&client, &url, &local, &reloader, &mut backoff).await {
                    Ok(()) => tracing::info!(%url, "control-plane watch ended; reconnecting"),
                    Err(error) => {
                        tracing::warn!(%url, %error, "control-plane watch failed; keeping the last good config")
                    }
                }
                let delay = backoff.next();
                tracing::debug!(?delay, "reconnecting to the control plane");
                tokio::time::sleep(delay).await;
            }
        };
        // A draining sidecar stops watching, so it stops acknowledging too.
        tokio::select! {
            () = reloader.draining() => tracing::debug!("control-plane watch stopped: draining"),
            () = watch => {}
            () = reports => {}
        }
    });
}

/// One watch stream, from connect to its end.
async fn watch_once(
    client: &HttpClient,
    url: &str,
    local: &Config,
    reloader: &Reloader,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let req = Request::get(watch_uri(url, local))
        .header(http::header::ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let rsp = tokio::time::timeout(SILENCE, client.request(req))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    if rsp.status() != StatusCode::OK {
        return Err(format!("watch answered {}", rsp.status()));
    }
    tracing::info!(%url, "watching the control plane");
    backoff.reset();
    let mut body = rsp.into_body();
    let mut events = SseParser::default();
    loop {
        let frame = match tokio::time::timeout(SILENCE, body.frame()).await {
            Err(_) => return Err("the stream went silent".into()),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(format!("stream: {e}")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for event in events.feed(&data) {
            match event.name.as_str() {
                "config" => handle(client, url, local, reloader, &event.data).await,
                "error" => {
                    tracing::warn!(error = %event.data, "the control plane cannot resolve this workload's config; keeping the running one")
                }
                _ => {}
            }
        }
    }
}

/// Applies one pushed config and acknowledges it.
async fn handle(client: &HttpClient, url: &str, local: &Config, reloader: &Reloader, data: &str) {
    let push: Push = match serde_json::from_str(data) {
        Ok(push) => push,
        Err(error) => {
            tracing::warn!(%error, "unreadable config push ignored");
            return;
        }
    };
    let version = push.version;
    let outcome = match local_view(push.config, local) {
        Ok(config) => {
            let cached = config.clone();
            match reloader.apply(config).await {
                Ok(()) => {
                    if let Some(path) = &local.control.cache_file {
                        if let Err(error) = write_atomically(path, cached.to_yaml().as_bytes()) {
                            tracing::warn!(path = %path.display(), %error, "cannot cache the config");
                        }
                    }
                    Ok(())
                }
                Err(error) => Err(error.to_string()),
            }
        }
        Err(error) => Err(error),
    };
    match &outcome {
        Ok(()) => tracing::info!(version, "config applied"),
        Err(error) => tracing::warn!(version, %error, "config rejected; the running one stays"),
    }
    let (namespace, pod) = identity(local);
    let ack = serde_json::json!({
        "namespace": namespace,
        "pod": pod,
        "version": version,
        "status": if outcome.is_ok() { "ack" } else { "nack" },
        "error": outcome.err(),
    });
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/v1/ack", url.trim_end_matches('/')))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(ack.to_string())));
    if let Ok(req) = req {
        match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
            Ok(Ok(rsp)) if rsp.status().is_success() => {}
            Ok(Ok(rsp)) => tracing::debug!(status = %rsp.status(), "ack refused"),
            Ok(Err(error)) => tracing::debug!(%error, "ack failed"),
            Err(_) => tracing::debug!("ack timed out"),
        }
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
        let report =
            reloader
                .migration()
                .report(&config, &namespace, &pod, tokio::time::Instant::now());
        let Ok(body) = serde_json::to_vec(&report) else {
            continue;
        };
        let req = Request::builder()
            .method(Method::POST)
            .uri(&uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
            Ok(Ok(rsp)) if rsp.status().is_success() => {}
            Ok(Ok(rsp)) => tracing::debug!(status = %rsp.status(), "report refused"),
            Ok(Err(error)) => tracing::debug!(%error, "report failed"),
            Err(_) => tracing::debug!("report timed out"),
        }
    }
}

/// A pushed (or cached) config as this pod runs it, then validated. The control
/// plane sets mesh policy (propagation, sampling, spans, export, outbound routes,
/// timeouts, limits); the pod's own plumbing stays the local file's and the
/// environment's: `workload` (identity), `control`, `admin`, `runtime`, `log`, and
/// the listeners and app address (`inbound.listen`, `inbound.app_host`,
/// `inbound.app_port`, `outbound.listen`), which the injector sets per pod. A pushed
/// config therefore never moves a listener; a local file reload may.
pub fn local_view(pushed: serde_json::Value, local: &Config) -> Result<Config, String> {
    let mut config: Config =
        serde_json::from_value(pushed).map_err(|e| format!("not a sidecar config: {e}"))?;
    config.workload = local.workload.clone();
    config.inbound.listen = local.inbound.listen;
    config.inbound.app_host = local.inbound.app_host;
    config.inbound.app_port = local.inbound.app_port;
    config.outbound.listen = local.outbound.listen;
    config.control = local.control.clone();
    config.admin = local.admin.clone();
    config.runtime = local.runtime.clone();
    config.log = local.log.clone();
    config
        .finish("control plane", &|name| std::env::var(name).ok())
        .map_err(|e| e.to_string())
}

/// The config to start with: with a control plane and a cached last good config,
/// the cache (in [`local_view`]); otherwise `local`.
pub fn startup_config(local: Config) -> Config {
    let (Some(_), Some(path)) = (&local.control.url, &local.control.cache_file) else {
        return local;
    };
    let cached = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return local,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the cached config; starting from the local one");
            return local;
        }
    };
    let parsed = serde_yaml::from_str::<serde_json::Value>(&cached)
        .map_err(|e| e.to_string())
        .and_then(|value| local_view(value, &local));
    match parsed {
        Ok(config) => {
            tracing::info!(path = %path.display(), "starting from the cached control-plane config");
            config
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cached config unusable; starting from the local one");
            local
        }
    }
}

/// Local file mode: applies `path` whenever its content changes.
pub fn watch_file(reloader: Reloader, path: PathBuf, poll: Duration) {
    tokio::spawn(async move {
        let mut last = std::fs::read(&path).ok();
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Ok(now) = std::fs::read(&path) else {
                continue;
            };
            if last.as_deref() == Some(now.as_slice()) {
                continue;
            }
            last = Some(now);
            match Config::from_file(&path) {
                Ok(config) => match reloader.apply(config).await {
                    Ok(()) => tracing::info!(path = %path.display(), "config file reloaded"),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "config file rejected; the running config stays")
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "config file does not load; the running config stays")
                }
            }
        }
    });
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
        query.push(format!("service={}", encode(service)));
    }
    query.push(format!("namespace={}", encode(&namespace)));
    query.push(format!("pod={}", encode(&pod)));
    for (k, v) in &local.control.labels {
        query.push(format!("label={}", encode(&format!("{k}={v}"))));
    }
    format!("{}/v1/watch?{}", url.trim_end_matches('/'), query.join("&"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes `path` so that readers see the old or the new content, never a mix.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config")
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reconnect delays: doubling from the minimum to the maximum, each with ±50%
/// jitter so that a fleet does not reconnect in step.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

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

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq, Eq)]
struct Event {
    name: String,
    data: String,
}

/// Splits a byte stream into events (the WHATWG `text/event-stream` format:
/// `field: value` lines, events ended by a blank line, `:` comments).
#[derive(Debug, Default)]
struct SseParser {
    buffer: BytesMut,
    current: Event,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line = self.buffer.split_to(end + 1);
            let line = String::from_utf8_lossy(&line[..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if !event.data.is_empty() || !event.name.is_empty() {
                    events.push(Event {
                        name: if event.name.is_empty() {
                            "message".into()
                        } else {
                            event.name
                        },
                        data: event.data,
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.current.name = value.to_string(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        // A line longer than any config would be is a broken stream.
        if self.buffer.len() > 16 * 1024 * 1024 {
            self.buffer.advance(self.buffer.len());
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks_with_comments_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keepalive\n\nevent: con").is_empty());
        let events = p.feed(b"fig\r\nid: 3\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: x\n\n");
        assert_eq!(
            events,
            [
                Event {
                    name: "config".into(),
                    data: "{\"a\":\n1}".into()
                },
                Event {
                    name: "message".into(),
                    data: "x".into()
                }
            ]
        );
    }

    #[test]
    fn pushed_configs_keep_local_sections() {
        let mut local = Config::default();
        local.admin.listen = "127.0.0.1:19999".parse().unwrap();
        local.control.url = Some("http://cp:15010".into());
        let mut pushed = Config::default();
        pushed.sampling.default_rate = 0.25;
        let view = local_view(serde_json::to_value(&pushed).unwrap(), &local).unwrap();
        assert_eq!(view.sampling.default_rate, 0.25);
        assert_eq!(view.admin.listen, local.admin.listen);
        assert_eq!(view.control, local.control);
        let mut elsewhere = pushed.clone();
        elsewhere.inbound.listen = "0.0.0.0:1".parse().unwrap();
        elsewhere.inbound.app_port = meshtrace_config::AppPort::Fixed(1);
        let view = local_view(serde_json::to_value(&elsewhere).unwrap(), &local).unwrap();
        assert_eq!(
            view.inbound, local.inbound,
            "a push never moves the pod's plumbing"
        );
        let mut named = local.clone();
        named.workload.service = Some("checkout".into());
        let view = local_view(serde_json::to_value(&pushed).unwrap(), &named).unwrap();
        assert_eq!(
            view.workload.service.as_deref(),
            Some("checkout"),
            "identity is local"
        );
        let mut bad = serde_json::to_value(&pushed).unwrap();
        bad["sampling"]["default_rate"] = serde_json::json!(3.0);
        let error = local_view(bad, &local).unwrap_err();
        assert!(error.contains("sampling.default_rate"), "{error}");
    }

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
