//! Span export: a queue the request path pushes into without waiting, and one
//! task that batches the queue, encodes each batch once into an OTLP
//! `ExportTraceServiceRequest` (opentelemetry-proto's types, prost) and sends
//! it over OTLP/gRPC (tonic) or OTLP/HTTP protobuf (hyper).
//!
//! - **Thread**: the export task runs on its own thread, on a single-threaded
//!   runtime of its own, never on the data path's workers. Encoding a full batch
//!   takes milliseconds of CPU; on the data path's runtime (one worker runs
//!   tokio's current-thread scheduler) every request on that worker would wait
//!   for it.
//! - **Queue**: bounded twice: `queue.max_size` spans (default 65 536) and
//!   `queue.max_bytes` of span memory (default 16 MiB; a typical span holds
//!   ~0.5 KiB). A push is an atomic
//!   add and a `try_send`; over either bound the span is dropped and counted
//!   (`meshtrace_spans_dropped_total{reason="queue_full"}`). A slow or dead
//!   collector fills the queue; it never slows a request.
//! - **Batches**: up to `batch_size` spans, sent as soon as a batch is queued or
//!   `delay` after the first span arrived. Up to four exports in flight at once
//!   (each holds one batch, so memory stays bounded: the queue's budget plus
//!   four batches), so a collector slower than the arrival rate does not back
//!   the queue up while it answers.
//! - **Encoding** ([`wire`], [`encode`]): a span is written once, by the
//!   thread that ends it, straight into the protobuf bytes of
//!   opentelemetry-proto's `Span` (no span record, no message tree); that one
//!   buffer is what the queue holds. A batch copies its spans' bytes between
//!   the resource and scope, encoded when the exporter starts. Every retry
//!   sends the same bytes.
//! - **Retries** ([`retry`]): exponential backoff with jitter, bounded by the
//!   export timeout, only for the failures the OTLP specification calls
//!   retryable (gRPC `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
//!   `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS`, `RESOURCE_EXHAUSTED` with retry
//!   info; HTTP 429, 502, 503, 504), honouring `Retry-After` and gRPC `RetryInfo`.
//!   A batch that still fails is dropped and counted (`export_failed`).
//! - **Partial success**: the collector accepted the request but rejected some
//!   spans (the response's `partial_success.rejected_spans`); never retried,
//!   counted as `rejected`.
//! - **Shutdown**: [`SpanExport::flush`] exports what is queued, bounded in time.

mod client;
mod encode;
mod queue;
mod retry;
mod tls;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use meshtrace_config::redact::redact_urls;
use meshtrace_config::{ResolvedExport, Retry};
use opentelemetry_sdk::Resource;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::metrics::SpanMetrics;
use client::Client;
use encode::Envelope;
pub use queue::SpanQueue;
use queue::{Batcher, Intake};
pub use wire::{EncodedSpan, LinkTo, SpanHead, SpanTail, SpanWriter};

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A TLS file could not be read.
    #[error("export.tls: cannot read {path}: {error}")]
    Tls {
        /// The file.
        path: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The settings cannot make a client (endpoint, headers, TLS).
    #[error("export: {0}")]
    Build(String),
}

/// The running export thread.
#[derive(Debug)]
pub struct SpanExport {
    stop: CancellationToken,
    /// Resolves (or is dropped) when the export thread has finished.
    done: oneshot::Receiver<()>,
    timeout: Duration,
}

/// What the export thread needs to build its exporter and run the batcher.
struct ThreadStart {
    settings: ResolvedExport,
    headers: BTreeMap<String, String>,
    retry: Retry,
    resource: Resource,
    metrics: SpanMetrics,
    intake: Intake,
    stop: CancellationToken,
}

/// The headers of every export request: `export.headers`, then those of
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (else `OTEL_EXPORTER_OTLP_HEADERS`),
/// which win, as opentelemetry-otlp's exporter read them: `key=value` pairs
/// separated by commas, values percent-decoded, empty ones skipped.
pub fn headers(
    configured: &BTreeMap<String, String>,
    var: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut headers = configured.clone();
    let env =
        var("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"));
    for pair in env.as_deref().unwrap_or_default().split_terminator(',') {
        let Some((key, value)) = pair.trim().split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let value = super::resource::percent_decode(value).unwrap_or_else(|| value.to_string());
        if !key.is_empty() && !value.is_empty() {
            headers.insert(key.to_string(), value);
        }
    }
    headers
}

// === impl SpanExport ===

impl SpanExport {
    /// Builds the exporter for `settings` (which must have an endpoint) on the
    /// export thread it starts, and returns once it is built (no connection is
    /// made yet).
    pub fn start(
        settings: &ResolvedExport,
        headers: &BTreeMap<String, String>,
        retry: &Retry,
        resource: Resource,
        metrics: SpanMetrics,
    ) -> Result<(SpanQueue, SpanExport), ExportError> {
        let (queue, intake) = SpanQueue::bounded(
            settings.queue_size,
            settings.queue_bytes,
            settings.batch_size,
            metrics.clone(),
        );
        let stop = CancellationToken::new();
        let (done_tx, done) = oneshot::channel();
        let (built_tx, built) = std::sync::mpsc::sync_channel(1);
        let start = ThreadStart {
            settings: settings.clone(),
            headers: headers.clone(),
            retry: retry.clone(),
            resource,
            metrics,
            intake,
            stop: stop.clone(),
        };
        std::thread::Builder::new()
            .name("meshtrace-export".into())
            .spawn(move || {
                start.run(built_tx);
                let _ = done_tx.send(());
            })
            .map_err(|e| ExportError::Build(format!("cannot start the export thread: {e}")))?;
        // Building takes no network round trip (the channel connects lazily);
        // reading TLS files is the slowest part.
        built
            .recv()
            .map_err(|_| ExportError::Build("the export thread stopped".into()))??;
        let timeout = settings.timeout;
        Ok((
            queue,
            SpanExport {
                stop,
                done,
                timeout,
            },
        ))
    }

    /// Exports what is still queued (one export timeout at most, plus a little)
    /// and lets the export thread end.
    pub async fn flush(self) {
        self.stop.cancel();
        let limit = self.timeout + Duration::from_millis(500);
        if tokio::time::timeout(limit, self.done).await.is_err() {
            tracing::warn!("span export did not finish flushing in time; queued spans lost");
        }
    }
}

// === impl ThreadStart ===

impl ThreadStart {
    /// The export thread: its own single-threaded runtime, the exporter built
    /// in it (reported on `built`), then the batcher until stopped.
    fn run(self, built: std::sync::mpsc::SyncSender<Result<(), ExportError>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = built.send(Err(ExportError::Build(format!("runtime: {error}"))));
                return;
            }
        };
        runtime.block_on(async move {
            // Built inside this runtime: tonic's channel spawns its connection
            // (and with it the request encoding) on the runtime it is built in.
            let settings = &self.settings;
            let client = match Client::new(settings, &self.headers, &self.retry) {
                Ok(client) => client,
                Err(error) => {
                    let _ = built.send(Err(error));
                    return;
                }
            };
            let _ = built.send(Ok(()));
            // For log lines only: without a password in its userinfo.
            let endpoint = redact_urls(settings.endpoint.as_deref().unwrap_or_default());
            let batcher = Batcher::new(
                self.intake,
                client,
                Envelope::new(&self.resource),
                settings.delay,
                self.metrics,
                endpoint,
            );
            batcher.run(self.stop).await;
        });
    }
}
