//! The span queue the request path pushes into without waiting, bounded in
//! spans and in bytes, and the batcher that drains it on the export thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::encode::Envelope;
use super::wire::EncodedSpan;
use crate::metrics::SpanMetrics;

/// Exports at most this many requests at once: a collector slower than the
/// arrival rate gets more than one batch in flight instead of a full queue.
pub(super) const MAX_IN_FLIGHT: usize = 4;

/// The request path's end of the export queue.
#[derive(Clone, Debug)]
pub struct SpanQueue {
    pub(super) tx: mpsc::Sender<EncodedSpan>,
    metrics: SpanMetrics,
    /// Wakes the batcher once a batch is queued; until then it sleeps on its
    /// delay, so a span costs the data path no cross-thread wake-up.
    batch_ready: Arc<Notify>,
    /// Spans queued and not yet taken into an export, counting the one the
    /// batcher may already hold while it waits (the channel's length alone
    /// misses it, and a full batch then waited for the delay).
    pending: Arc<AtomicUsize>,
    /// Bytes held by the queued spans ([`EncodedSpan::size`]), and their budget.
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    /// Spans queued that make a batch (`batch_size`, at most the queue size).
    batch_size: usize,
}

/// The export thread's end of the queue: what the [`Batcher`] drains.
#[derive(Debug)]
pub(super) struct Intake {
    rx: mpsc::Receiver<EncodedSpan>,
    batch_ready: Arc<Notify>,
    pending: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    batch_size: usize,
}

// === impl SpanQueue ===

impl SpanQueue {
    /// A queue of at most `queue_size` spans (at least one) and `max_bytes`
    /// bytes of span memory, whose batches hold `batch_size` spans (at least one, at
    /// most the queue), and its other end. The channel allocates its slots as
    /// they fill, so a large `queue_size` costs nothing idle.
    pub(super) fn bounded(
        queue_size: usize,
        max_bytes: usize,
        batch_size: usize,
        metrics: SpanMetrics,
    ) -> (Self, Intake) {
        let queue_size = queue_size.max(1);
        let batch_size = batch_size.clamp(1, queue_size);
        let (tx, rx) = mpsc::channel(queue_size);
        let batch_ready = Arc::new(Notify::new());
        let pending = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let intake = Intake {
            rx,
            batch_ready: batch_ready.clone(),
            pending: pending.clone(),
            bytes: bytes.clone(),
            batch_size,
        };
        let queue = Self {
            tx,
            metrics,
            batch_ready,
            pending,
            bytes,
            max_bytes: max_bytes.max(1),
            batch_size,
        };
        (queue, intake)
    }

    /// A queue of `capacity` spans and its receiving end, for tests.
    #[cfg(test)]
    pub fn for_test(capacity: usize, metrics: SpanMetrics) -> (Self, mpsc::Receiver<EncodedSpan>) {
        let (tx, rx) = mpsc::channel(capacity);
        let queue = Self {
            tx,
            metrics,
            batch_ready: Arc::default(),
            pending: Arc::default(),
            bytes: Arc::default(),
            max_bytes: usize::MAX,
            batch_size: capacity,
        };
        (queue, rx)
    }

    /// Queues `span`, or drops and counts it when the queue is full (in spans
    /// or in bytes). Never waits.
    pub fn push(&self, span: EncodedSpan) {
        let size = span.size();
        // Counted before it can be received, so the batcher never takes a span
        // that is not counted yet.
        let bytes = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        let queued = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        if bytes > self.max_bytes || self.tx.try_send(span).is_err() {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.metrics.queue_full.inc();
        } else if queued >= self.batch_size {
            self.batch_ready.notify_one();
        }
    }
}

/// Takes spans off the queue in batches, encodes each batch once and exports
/// up to [`MAX_IN_FLIGHT`] of them at a time.
pub(super) struct Batcher {
    intake: Intake,
    client: Client,
    envelope: Envelope,
    delay: Duration,
    metrics: SpanMetrics,
    in_flight: Arc<Semaphore>,
    /// Whether the last export failed (to log transitions, not every batch).
    failing: Arc<std::sync::atomic::AtomicBool>,
    endpoint: Arc<str>,
}

// === impl Batcher ===

impl Batcher {
    /// The batcher for `intake`, exporting through `client` at most `delay`
    /// after a batch's first span arrived.
    pub(super) fn new(
        intake: Intake,
        client: Client,
        envelope: Envelope,
        delay: Duration,
        metrics: SpanMetrics,
        endpoint: String,
    ) -> Self {
        Self {
            intake,
            client,
            envelope,
            delay,
            metrics,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            failing: Arc::default(),
            endpoint: endpoint.into(),
        }
    }

    /// Exports batches until `stop`, then whatever is still queued, and waits
    /// for the exports in flight.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        let batch_size = self.intake.batch_size;
        let mut batch = Vec::with_capacity(batch_size);
        loop {
            // Wait for the first span of a batch.
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                span = self.intake.rx.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
            }
            // Then sleep until a batch is queued or `delay` has passed, without
            // polling the queue: a receiver waiting on it would be woken (from
            // the data path's thread) for every span.
            if batch_size > 1 && self.intake.pending.load(Ordering::Relaxed) < batch_size {
                let deadline = tokio::time::Instant::now() + self.delay;
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = self.intake.batch_ready.notified() => {}
                }
            }
            self.export(&mut batch).await;
        }
        // Shutdown: whatever is queued, in batches.
        self.intake.rx.close();
        while let Some(span) = self.intake.rx.recv().await {
            batch.push(span);
            self.export(&mut batch).await;
        }
        // Every export in flight has returned its permit.
        let all = u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX);
        let _ = self.in_flight.acquire_many(all).await;
    }

    /// Tops `batch` up from the queue to a batch's size.
    fn fill(&mut self, batch: &mut Vec<EncodedSpan>) {
        while batch.len() < self.intake.batch_size {
            match self.intake.rx.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
    }

    /// Once fewer than [`MAX_IN_FLIGHT`] exports are running, tops `batch` up
    /// from the queue (so a batch that waited for a slow collector leaves
    /// full), encodes it (emptying it) and exports it on a task of its own.
    async fn export(&mut self, batch: &mut Vec<EncodedSpan>) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return;
        };
        self.fill(batch);
        let spans = std::mem::replace(batch, Vec::with_capacity(self.intake.batch_size));
        let size: usize = spans.iter().map(EncodedSpan::size).sum();
        let count = spans.len();
        // Out of the queue's budget once taken: in flight, they are bounded by
        // MAX_IN_FLIGHT batches instead.
        self.intake.pending.fetch_sub(count, Ordering::Relaxed);
        self.intake.bytes.fetch_sub(size, Ordering::Relaxed);
        let body = self.envelope.encode(&spans);
        drop(spans);
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let failing = self.failing.clone();
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            let result = client.export(body).await;
            report(result, count as u64, &metrics, &failing, &endpoint);
            drop(permit);
        });
    }
}

/// Counts an export's spans by outcome and logs the transitions between
/// failing and working.
fn report(
    result: Result<u64, String>,
    count: u64,
    metrics: &SpanMetrics,
    failing: &std::sync::atomic::AtomicBool,
    endpoint: &str,
) {
    match result {
        Ok(rejected) => {
            let rejected = rejected.min(count);
            metrics.rejected.inc_by(rejected);
            metrics.exported.inc_by(count - rejected);
            if rejected > 0 {
                tracing::debug!(rejected, "collector rejected spans (partial success)");
            }
            if failing.swap(false, Ordering::Relaxed) {
                tracing::info!(%endpoint, "span export recovered");
            }
        }
        Err(error) => {
            metrics.export_failed.inc_by(count);
            if failing.swap(true, Ordering::Relaxed) {
                tracing::debug!(%error, dropped = count, "span export failed");
            } else {
                tracing::warn!(%endpoint, %error, "span export failing; spans are dropped until it recovers");
            }
        }
    }
}
