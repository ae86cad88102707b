//! The bounded span queue the request path pushes into without waiting, and the
//! batcher that drains it on the export thread.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

use super::partial::RejectCounter;
use crate::metrics::SpanMetrics;

/// The request path's end of the export queue.
#[derive(Clone, Debug)]
pub struct SpanQueue {
    pub(super) tx: mpsc::Sender<SpanData>,
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

/// The export thread's end of the queue: what the [`Batcher`] drains.
#[derive(Debug)]
pub(super) struct Intake {
    rx: mpsc::Receiver<SpanData>,
    batch_ready: Arc<Notify>,
    pending: Arc<AtomicUsize>,
    batch_size: usize,
}

// === impl SpanQueue ===

impl SpanQueue {
    /// A queue of `queue_size` spans (at least one) whose batches hold
    /// `batch_size` spans (at least one, at most the queue), and its other end.
    pub(super) fn bounded(
        queue_size: usize,
        batch_size: usize,
        metrics: SpanMetrics,
    ) -> (Self, Intake) {
        let queue_size = queue_size.max(1);
        let batch_size = batch_size.clamp(1, queue_size);
        let (tx, rx) = mpsc::channel(queue_size);
        let batch_ready = Arc::new(Notify::new());
        let pending = Arc::new(AtomicUsize::new(0));
        let intake = Intake {
            rx,
            batch_ready: batch_ready.clone(),
            pending: pending.clone(),
            batch_size,
        };
        let queue = Self {
            tx,
            metrics,
            batch_ready,
            pending,
            batch_size,
        };
        (queue, intake)
    }

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

/// Takes spans off the queue in batches and exports one batch at a time.
pub(super) struct Batcher {
    rx: mpsc::Receiver<SpanData>,
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

// === impl Batcher ===

impl Batcher {
    /// The batcher for `intake`, exporting through `exporter` at most `delay`
    /// after a batch's first span arrived.
    pub(super) fn new(
        intake: Intake,
        exporter: opentelemetry_otlp::SpanExporter,
        delay: Duration,
        metrics: SpanMetrics,
        endpoint: String,
    ) -> Self {
        Self {
            rx: intake.rx,
            exporter,
            batch_size: intake.batch_size,
            batch_ready: intake.batch_ready,
            pending: intake.pending,
            delay,
            metrics,
            rejects: RejectCounter::dispatch(),
            failing: false,
            endpoint,
        }
    }

    /// Exports batches until `stop`, then whatever is still queued.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            // Wait for the first span of a batch.
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                span = self.rx.recv() => match span {
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
                match self.rx.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            self.export(&mut batch).await;
        }
        // Shutdown: whatever is queued, in batches.
        self.rx.close();
        while let Some(span) = self.rx.recv().await {
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
