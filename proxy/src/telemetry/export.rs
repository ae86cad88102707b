//! Span export: a bounded queue the request path pushes into without waiting, and
//! one task that batches the queue and exports each batch with
//! opentelemetry-otlp's exporter (OTLP/gRPC through tonic, or OTLP/HTTP protobuf
//! through hyper).
//!
//! - **Thread**: the export task runs on its own thread, on a single-threaded
//!   runtime of its own, never on the data path's workers. Encoding a full batch
//!   takes milliseconds of CPU; on the data path's runtime (one worker runs
//!   tokio's current-thread scheduler) every request on that worker would wait
//!   for it.
//! - **Queue**: `try_send` into a bounded channel; full → the span is dropped and
//!   counted (`meshtrace_spans_dropped_total{reason="queue_full"}`). A slow or
//!   dead collector fills the queue; it never slows a request.
//! - **Batches**: up to `batch_size` spans, sent when full or `delay` after the
//!   first span arrived. One export at a time.
//! - **Retries**: the exporter's [`RetryPolicy`]: exponential backoff with jitter,
//!   bounded by the export timeout, only for the failures the OTLP specification
//!   calls retryable (gRPC `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
//!   `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS`, `RESOURCE_EXHAUSTED` with retry
//!   info; HTTP 429, 502, 503, 504), honouring `Retry-After` and gRPC `RetryInfo`.
//!   A batch that still fails is dropped and counted (`export_failed`).
//! - **Partial success**: the collector accepted the request but rejected some
//!   spans; never retried. The exporter reports the count only as a diagnostic
//!   event (`…PartialSuccess`, field `rejected_spans`), so each export runs under
//!   a scoped `tracing` dispatcher that reads it ([`RejectCounter`]) and counts
//!   `rejected`.
//! - **Shutdown**: [`SpanExport::flush`] exports what is queued, bounded in time.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshtrace_config::{Compression, OtlpProtocol, ResolvedExport};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use rustls::pki_types::pem::PemObject;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

use crate::metrics::SpanMetrics;

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
    /// opentelemetry-otlp refused the settings.
    #[error("export: {0}")]
    Build(String),
}

/// The request path's end of the export queue.
#[derive(Clone, Debug)]
pub struct SpanQueue {
    tx: mpsc::Sender<SpanData>,
    metrics: SpanMetrics,
    /// Wakes the batcher once a batch is queued; until then it sleeps on its
    /// delay, so a span costs the data path no cross-thread wake-up.
    batch_ready: Arc<Notify>,
    /// Spans queued and not yet taken into an export, counting the one the
    /// batcher may already hold while it waits (the channel's length alone
    /// misses it, and a full batch then waited for the delay).
    pending: Arc<AtomicUsize>,
    /// Spans queued that make a batch (`batch_size`, at most the queue size).
    batch_size: usize,
}

impl SpanQueue {
    /// A queue of `capacity` spans and its receiving end, for tests.
    #[cfg(test)]
    pub fn for_test(capacity: usize, metrics: SpanMetrics) -> (Self, mpsc::Receiver<SpanData>) {
        let (tx, rx) = mpsc::channel(capacity);
        let queue = Self {
            tx,
            metrics,
            batch_ready: Arc::default(),
            pending: Arc::default(),
            batch_size: capacity,
        };
        (queue, rx)
    }

    /// Queues `span`, or drops and counts it when the queue is full. Never waits.
    pub fn push(&self, span: SpanData) {
        // Counted before it can be received, so the batcher never takes a span
        // that is not counted yet.
        let queued = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        if self.tx.try_send(span).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.metrics.queue_full.inc();
        } else if queued >= self.batch_size {
            self.batch_ready.notify_one();
        }
    }
}

/// The running export thread.
#[derive(Debug)]
pub struct SpanExport {
    stop: CancellationToken,
    /// Resolves (or is dropped) when the export thread has finished.
    done: oneshot::Receiver<()>,
    timeout: Duration,
}

impl SpanExport {
    /// Builds the exporter for `settings` (which must have an endpoint) on the
    /// export thread it starts, and returns once it is built (no connection is
    /// made yet).
    pub fn start(
        settings: &ResolvedExport,
        headers: &std::collections::BTreeMap<String, String>,
        retry: &meshtrace_config::Retry,
        resource: Resource,
        metrics: SpanMetrics,
    ) -> Result<(SpanQueue, SpanExport), ExportError> {
        let queue_size = settings.queue_size.max(1);
        let batch_size = settings.batch_size.clamp(1, queue_size);
        let (tx, rx) = mpsc::channel(queue_size);
        let batch_ready = Arc::new(Notify::new());
        let pending = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (done_tx, done) = oneshot::channel();
        let (built_tx, built) = std::sync::mpsc::sync_channel(1);
        let (settings, headers, retry) = (settings.clone(), headers.clone(), retry.clone());
        let batch_metrics = metrics.clone();
        let batch_stop = stop.clone();
        let ready = batch_ready.clone();
        let taken = pending.clone();
        let timeout = settings.timeout;
        let thread = move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = built_tx.send(Err(ExportError::Build(format!("runtime: {error}"))));
                    return;
                }
            };
            runtime.block_on(async move {
                // Built inside this runtime: tonic's channel spawns its connection
                // (and with it the request encoding) on the runtime it is built in.
                let exporter = match exporter(&settings, &headers, &retry, resource) {
                    Ok(exporter) => exporter,
                    Err(error) => {
                        let _ = built_tx.send(Err(error));
                        return;
                    }
                };
                let _ = built_tx.send(Ok(()));
                let batcher = Batcher {
                    exporter,
                    batch_size,
                    batch_ready: ready,
                    pending: taken,
                    delay: settings.delay,
                    metrics: batch_metrics,
                    rejects: RejectCounter::dispatch(),
                    failing: false,
                    endpoint: settings.endpoint.clone().unwrap_or_default(),
                };
                batcher.run(rx, batch_stop).await;
            });
            let _ = done_tx.send(());
        };
        std::thread::Builder::new()
            .name("meshtrace-export".into())
            .spawn(thread)
            .map_err(|e| ExportError::Build(format!("cannot start the export thread: {e}")))?;
        // Building takes no network round trip (the channel connects lazily);
        // reading TLS files is the slowest part.
        built
            .recv()
            .map_err(|_| ExportError::Build("the export thread stopped".into()))??;
        Ok((
            SpanQueue {
                tx,
                metrics,
                batch_ready,
                pending,
                batch_size,
            },
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

/// opentelemetry-otlp's exporter for `settings`. Must run inside the runtime
/// that will drive it.
fn exporter(
    settings: &ResolvedExport,
    headers: &std::collections::BTreeMap<String, String>,
    retry: &meshtrace_config::Retry,
    resource: Resource,
) -> Result<opentelemetry_otlp::SpanExporter, ExportError> {
    let endpoint = settings.endpoint.clone().unwrap_or_default();
    let policy = opentelemetry_otlp::RetryPolicy::recommended()
        .with_max_retries(retry.max_retries)
        .with_initial_delay(retry.initial_backoff.get())
        .with_max_delay(retry.max_backoff.get());
    let compression = match settings.compression {
        Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
        Compression::None => None,
    };
    let mut exporter = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::new();
            for (name, value) in headers {
                let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                    .map_err(|e| ExportError::Build(format!("header {name}: {e}")))?;
                let value = value
                    .parse()
                    .map_err(|e| ExportError::Build(format!("header {name}: {e}")))?;
                metadata.insert(name, value);
            }
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata)
                .with_retry_policy(policy);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            if let Some(tls) = tonic_tls(settings, &endpoint)? {
                builder = builder.with_tls_config(tls);
            }
            builder.build()
        }
        OtlpProtocol::HttpProtobuf => {
            let client = opentelemetry_http::hyper::HyperClient::new(
                https_connector(settings)?,
                settings.timeout,
                None,
            );
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(settings.timeout)
                .with_http_client(client)
                .with_headers(headers.clone().into_iter().collect())
                .with_retry_policy(policy);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            builder.build()
        }
    }
    .map_err(|e| ExportError::Build(e.to_string()))?;
    exporter.set_resource(&resource);
    Ok(exporter)
}

struct Batcher {
    exporter: opentelemetry_otlp::SpanExporter,
    batch_size: usize,
    batch_ready: Arc<Notify>,
    /// [`SpanQueue::pending`]: lowered by each export's size.
    pending: Arc<AtomicUsize>,
    delay: Duration,
    metrics: SpanMetrics,
    rejects: (tracing::Dispatch, Arc<AtomicI64>),
    /// Whether the last export failed (to log transitions, not every batch).
    failing: bool,
    endpoint: String,
}

impl Batcher {
    async fn run(mut self, mut rx: mpsc::Receiver<SpanData>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            // Wait for the first span of a batch.
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                span = rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
            }
            // Then sleep until a batch is queued or `delay` has passed, without
            // polling the queue: a receiver waiting on it would be woken (from
            // the data path's thread) for every span.
            if self.batch_size > 1 {
                let deadline = tokio::time::Instant::now() + self.delay;
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = self.batch_ready.notified() => {}
                }
            }
            while batch.len() < self.batch_size {
                match rx.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            self.export(&mut batch).await;
        }
        // Shutdown: whatever is queued, in batches.
        rx.close();
        while let Some(span) = rx.recv().await {
            batch.push(span);
            if batch.len() >= self.batch_size {
                self.export(&mut batch).await;
            }
        }
        if !batch.is_empty() {
            self.export(&mut batch).await;
        }
        let _ = self.exporter.shutdown();
    }

    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        let spans = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
        self.pending.fetch_sub(spans.len(), Ordering::Relaxed);
        let count = spans.len() as u64;
        let (dispatch, rejected) = &self.rejects;
        rejected.store(0, Ordering::Relaxed);
        let result = self
            .exporter
            .export(spans)
            .with_subscriber(dispatch.clone())
            .await;
        match result {
            Ok(()) => {
                let rejected = (rejected.load(Ordering::Relaxed).max(0) as u64).min(count);
                self.metrics.rejected.inc_by(rejected);
                self.metrics.exported.inc_by(count - rejected);
                if rejected > 0 {
                    tracing::debug!(rejected, "collector rejected spans (partial success)");
                }
                if self.failing {
                    self.failing = false;
                    tracing::info!(endpoint = %self.endpoint, "span export recovered");
                }
            }
            Err(error) => {
                self.metrics.export_failed.inc_by(count);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(endpoint = %self.endpoint, %error, "span export failing; spans are dropped until it recovers");
                } else {
                    tracing::debug!(%error, dropped = count, "span export failed");
                }
            }
        }
    }
}

/// A `tracing` subscriber, scoped to one export, that reads the exporter's
/// partial-success diagnostic (`TonicTracesClient.PartialSuccess` /
/// `HttpTraceClient.PartialSuccess`, field `rejected_spans`). It is interested
/// in nothing else, so it adds no cost to any other log call site.
#[derive(Debug)]
struct RejectCounter {
    rejected: Arc<AtomicI64>,
}

impl RejectCounter {
    fn dispatch() -> (tracing::Dispatch, Arc<AtomicI64>) {
        let rejected = Arc::new(AtomicI64::new(0));
        let subscriber = RejectCounter {
            rejected: rejected.clone(),
        };
        (tracing::Dispatch::new(subscriber), rejected)
    }

    fn wanted(meta: &tracing::Metadata<'_>) -> bool {
        meta.is_event()
            && meta.target() == "opentelemetry-otlp"
            && meta.name().ends_with(".PartialSuccess")
    }
}

impl tracing::Subscriber for RejectCounter {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        Self::wanted(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Visit<'a>(&'a AtomicI64);
        impl tracing::field::Visit for Visit<'_> {
            fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
                if field.name() == "rejected_spans" {
                    self.0.fetch_add(value, Ordering::Relaxed);
                }
            }
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                self.record_i64(field, i64::try_from(value).unwrap_or(i64::MAX));
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if Self::wanted(event.metadata()) {
            event.record(&mut Visit(&self.rejected));
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// TLS for OTLP/gRPC: on for `https://` endpoints or when files are given.
fn tonic_tls(
    settings: &ResolvedExport,
    endpoint: &str,
) -> Result<Option<tonic::transport::ClientTlsConfig>, ExportError> {
    let https = endpoint.starts_with("https://");
    if !https && settings.ca_file.is_none() && settings.cert_file.is_none() {
        return Ok(None);
    }
    let mut tls = tonic::transport::ClientTlsConfig::new();
    match &settings.ca_file {
        Some(ca) => {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        None => tls = tls.with_enabled_roots(),
    }
    if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        ));
    }
    Ok(Some(tls))
}

/// The OTLP/HTTP connector: plain HTTP, or rustls with the configured CA (else the
/// system's roots, else the web PKI roots) and an optional client certificate.
fn https_connector(
    settings: &ResolvedExport,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    ExportError,
> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExportError::Build(format!("tls: {e}")))?;
    let builder = match &settings.ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = read(ca)?;
            for cert in <rustls::pki_types::CertificateDer<'_> as PemObject>::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ExportError::Build(format!("tls ca_file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ExportError::Build(format!("tls ca_file: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use hyper_rustls::ConfigBuilderExt;
            match builder.clone().with_native_roots() {
                Ok(native) => native,
                Err(_) => builder.with_webpki_roots(),
            }
        }
    };
    let config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let certs =
                <rustls::pki_types::CertificateDer<'_> as PemObject>::pem_slice_iter(&read(cert)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ExportError::Build(format!("tls cert_file: {e}")))?;
            let key =
                <rustls::pki_types::PrivateKeyDer<'_> as PemObject>::from_pem_slice(&read(key)?)
                    .map_err(|e| ExportError::Build(format!("tls key_file: {e}")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ExportError::Build(format!("tls: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|error| ExportError::Tls {
        path: path.display().to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::{Duration, SystemTime};

    use meshtrace_config::{Compression, OtlpProtocol, ResolvedExport, Retry};
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use opentelemetry_sdk::Resource;

    use super::{SpanExport, SpanQueue};
    use crate::metrics::Metrics;

    fn span() -> SpanData {
        let context = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            TraceFlags::SAMPLED,
            false,
            Default::default(),
        );
        SpanData {
            span_context: context,
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "GET".into(),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    /// A collector on a plain thread (it runs whatever the test's runtime does):
    /// its endpoint, and the first request line it reads.
    fn collector() -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let (got_tx, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = got_tx.send(head.lines().next().unwrap_or_default().to_string());
        });
        (endpoint, got)
    }

    fn start(endpoint: String, batch_size: usize, delay: Duration) -> (SpanQueue, SpanExport) {
        let settings = ResolvedExport {
            endpoint: Some(endpoint),
            protocol: OtlpProtocol::HttpProtobuf,
            timeout: Duration::from_millis(500),
            compression: Compression::None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            queue_size: 8,
            batch_size,
            delay,
        };
        let metrics = Metrics::new();
        let spans = metrics.spans.clone();
        let resource = Resource::builder_empty().build();
        SpanExport::start(
            &settings,
            &Default::default(),
            &Retry::default(),
            resource,
            spans,
        )
        .unwrap()
    }

    /// The export must make progress while the runtime that pushed the span is
    /// busy: on a one-worker sidecar that runtime is the whole data path.
    #[tokio::test(flavor = "current_thread")]
    async fn export_runs_while_the_pushing_runtime_is_blocked() {
        let (endpoint, got) = collector();
        let (queue, export) = start(endpoint, 1, Duration::from_millis(1));
        queue.push(span());
        // Blocks this runtime's only thread until the collector has the request.
        let line = got.recv_timeout(Duration::from_secs(10));
        assert_eq!(line.as_deref(), Ok("POST /v1/traces HTTP/1.1"));
        drop(queue);
        export.flush().await;
    }

    /// Waits (10 s at most, off the runtime) for the collector's request, then
    /// flushes.
    async fn posted_then_flush(
        got: std::sync::mpsc::Receiver<String>,
        queue: SpanQueue,
        export: SpanExport,
    ) {
        let line = tokio::task::spawn_blocking(move || got.recv_timeout(Duration::from_secs(10)));
        let line = line.await.unwrap();
        assert_eq!(line.as_deref(), Ok("POST /v1/traces HTTP/1.1"));
        drop(queue);
        export.flush().await;
    }

    /// The batcher sleeps on its delay without watching the queue; a full batch
    /// must still wake it.
    #[tokio::test]
    async fn a_full_batch_is_sent_before_the_delay() {
        let (endpoint, got) = collector();
        let (queue, export) = start(endpoint, 3, Duration::from_secs(600));
        for _ in 0..3 {
            queue.push(span());
        }
        posted_then_flush(got, queue, export).await;
    }

    /// The span the batcher already holds while it waits counts toward the
    /// batch: once it has taken the first span, two more make a batch of three
    /// (counting only the channel's length, the batch waited out the delay —
    /// the flake this test pins down).
    #[tokio::test]
    async fn the_span_the_batcher_holds_counts_toward_a_full_batch() {
        let (endpoint, got) = collector();
        let (queue, export) = start(endpoint, 3, Duration::from_secs(600));
        queue.push(span());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while queue.tx.capacity() < queue.tx.max_capacity() {
            assert!(
                std::time::Instant::now() < deadline,
                "the batcher never took the first span"
            );
            tokio::task::yield_now().await;
        }
        queue.push(span());
        queue.push(span());
        posted_then_flush(got, queue, export).await;
    }
}
