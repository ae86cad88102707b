//! Pushing config to sidecars: one Server-Sent Events stream per sidecar.
//!
//! Why SSE rather than gRPC streaming: it is plain HTTP (one long-lived `GET`, over
//! HTTP/1.1 or HTTP/2 alike), it can be debugged with `curl -N`, it needs no
//! protobuf schema or code generation on either side, and proxies and load
//! balancers already know how to carry it. The stream only goes one way; a sidecar
//! reports what it did with a version as a separate `POST /v1/ack`.
//!
//! The wire format (events, keep-alives, the ACK body) is defined once, for both
//! ends, in [`meshtrace_config::wire`].
//!
//! A `config` event is sent at once on connect and then whenever *this workload's*
//! resolved config changes (versions that do not change it are not sent; the `id`
//! is the global version at the time). If the document's matching sections cannot
//! be resolved into a valid config for the workload, an `event: error` with
//! `data: {"version":N,"error":"…"}` is sent instead and the sidecar keeps its
//! config. A `: keepalive` comment every 15 s keeps idle connections open through
//! NATs and proxies.
//!
//! `namespace` and `pod` are required (they identify the sidecar in
//! `/v1/sidecars` and in ACKs); `service` and `label`s select the workload sections.
//! The pushed config is the full resolved document, including its `workload` and
//! `control` sections (normally left at their defaults): a sidecar keeps its own
//! identity and control-plane settings from its environment.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use http_body::Frame;
use meshtrace_config::wire::{self, ErrorPush, SseEvent, KEEPALIVE, KEEPALIVE_COMMENT};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::resolve::Workload;
use crate::sidecars::Registration;
use crate::store::{Resolved, Snapshot};

/// One workload's view of the snapshots: yields only when its resolved config
/// changes. A slow consumer skips intermediate snapshots (it sees the newest).
#[derive(Debug)]
pub struct ConfigFeed {
    rx: watch::Receiver<Arc<Snapshot>>,
    workload: Workload,
    started: bool,
    last: Option<Result<Arc<Resolved>, String>>,
}

/// What a feed yields.
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// The workload's config changed.
    Config {
        /// The global version.
        version: u64,
        /// The new config.
        resolved: Arc<Resolved>,
    },
    /// The workload's config cannot be resolved; the sidecar keeps its own.
    Error {
        /// The global version.
        version: u64,
        /// Why.
        error: String,
    },
}

// === impl ConfigFeed ===

impl ConfigFeed {
    /// A feed of `workload`'s config from `rx`.
    pub fn new(rx: watch::Receiver<Arc<Snapshot>>, workload: Workload) -> Self {
        Self {
            rx,
            workload,
            started: false,
            last: None,
        }
    }

    /// The next change (the current config first); `None` when the store is gone.
    pub async fn next(&mut self) -> Option<FeedItem> {
        loop {
            if self.started {
                self.rx.changed().await.ok()?;
            }
            self.started = true;
            let snapshot = self.rx.borrow_and_update().clone();
            if let Some(item) = self.check(&snapshot) {
                return Some(item);
            }
        }
    }

    fn check(&mut self, snapshot: &Snapshot) -> Option<FeedItem> {
        let now = snapshot.resolve(&self.workload);
        let same = match (&self.last, &now) {
            (Some(Ok(a)), Ok(b)) => a.json == b.json,
            (Some(Err(a)), Err(b)) => a == b,
            _ => false,
        };
        self.last = Some(now.clone());
        if same {
            return None;
        }
        let version = snapshot.version;
        Some(match now {
            Ok(resolved) => FeedItem::Config { version, resolved },
            Err(error) => FeedItem::Error { version, error },
        })
    }
}

// === impl FeedItem ===

impl FeedItem {
    /// The item as an SSE event.
    pub fn to_sse(&self) -> String {
        match self {
            Self::Config { version, resolved } => wire::config_event(*version, &resolved.json),
            Self::Error { version, error } => {
                let push = ErrorPush {
                    version: *version,
                    error: error.clone(),
                };
                let event = SseEvent {
                    event: wire::ERROR_EVENT.into(),
                    id: Some(version.to_string()),
                    data: serde_json::to_string(&push).unwrap_or_default(),
                };
                event.to_string()
            }
        }
    }
}

/// The SSE body of one watch: the feed's events and keepalives until the client
/// goes away or `shutdown` fires. The registration lives as long as the body.
pub fn sse_stream(
    feed: ConfigFeed,
    registration: Registration,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    let start = tokio::time::Instant::now() + KEEPALIVE;
    let mut keepalive = tokio::time::interval_at(start, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (feed, registration, keepalive, shutdown);
    stream::unfold(
        state,
        |(mut feed, reg, mut keepalive, shutdown)| async move {
            let text = tokio::select! {
                _ = shutdown.cancelled() => return None,
                item = feed.next() => {
                    let item = item?;
                    if let FeedItem::Config { version, .. } = &item {
                        reg.sent(*version);
                    }
                    keepalive.reset();
                    item.to_sse()
                }
                _ = keepalive.tick() => KEEPALIVE_COMMENT.to_string(),
            };
            Some((
                Ok(Frame::data(Bytes::from(text))),
                (feed, reg, keepalive, shutdown),
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::sidecars::Sidecars;
    use crate::state::StateFile;
    use crate::store::Store;

    fn text(frame: Option<Result<Frame<Bytes>, Infallible>>) -> String {
        let data = frame.and_then(|f| f.ok()).and_then(|f| f.into_data().ok());
        String::from_utf8_lossy(&data.unwrap_or_default()).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn config_first_then_a_keepalive_every_15s() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.yaml");
        std::fs::write(&source, "defaults: {}\n").unwrap();
        let store = Store::open(&source, StateFile::new(dir.path().join("state.json"))).unwrap();
        let reg = Sidecars::default().register(
            "ns",
            "pod",
            &Workload::default(),
            crate::overrides::Timestamp(store.now()),
        );
        let feed = ConfigFeed::new(store.subscribe(), Workload::default());
        let mut sse = Box::pin(sse_stream(feed, reg, CancellationToken::new()));

        let first = text(sse.next().await);
        let version = store.snapshot().version;
        let head =
            format!("event: config\nid: {version}\ndata: {{\"version\":{version},\"config\":{{");
        assert!(first.starts_with(&head), "{first}");
        assert!(first.ends_with("}}\n\n"), "{first}");
        let started = tokio::time::Instant::now();
        assert_eq!(text(sse.next().await), ": keepalive\n\n");
        assert_eq!(started.elapsed(), KEEPALIVE);
    }
}
