//! What a test tells the collector to answer: a queue of planned answers, taken
//! one per export request in arrival order, and a delay applied to every one.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::Mode;

/// A failure a test scripts with [`OtlpReceiver::fail_next`](super::OtlpReceiver::fail_next).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A gRPC receiver answers this status (`Unavailable` and
    /// `ResourceExhausted` are the ones OTLP exporters retry).
    Grpc(tonic::Code),
    /// An HTTP receiver answers this status (`429`, `502`, `503` and `504` are the
    /// ones OTLP exporters retry), with `Retry-After: seconds` if given.
    Http {
        /// The response status, e.g. `503`.
        status: u16,
        /// The `Retry-After` header's value in seconds, if any.
        retry_after: Option<u64>,
    },
}

/// One planned answer.
#[derive(Clone, Debug)]
pub(super) enum Plan {
    /// Success: store the spans.
    Accept,
    /// Success with a `partial_success`: store the spans anyway.
    Reject {
        rejected_spans: i64,
        message: String,
    },
    /// The scripted failure: store nothing.
    Fail(Failure),
}

/// The scripted behaviour of one receiver.
#[derive(Debug, Default)]
pub(super) struct Script {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    planned: VecDeque<Plan>,
    delay: Duration,
}

// === impl Failure ===

impl Failure {
    /// Panics unless a receiver of `mode` can answer this failure: a test that
    /// scripts an HTTP status on a gRPC collector has a bug worth stating.
    pub(super) fn check_for(&self, mode: Mode) {
        match (self, mode) {
            (Self::Grpc(_), Mode::Grpc | Mode::GrpcTls) => {}
            (Self::Http { status, .. }, Mode::Http) => assert!(
                http::StatusCode::from_u16(*status).is_ok(),
                "{status} is not an HTTP status"
            ),
            (failure, mode) => panic!("a {mode:?} OTLP receiver cannot answer {failure:?}"),
        }
    }
}

// === impl Script ===

impl Script {
    pub(super) fn fail_next(&self, n: usize, failure: Failure) {
        self.plan(n, Plan::Fail(failure));
    }

    pub(super) fn reject_next(&self, n: usize, rejected_spans: i64, message: String) {
        self.plan(
            n,
            Plan::Reject {
                rejected_spans,
                message,
            },
        );
    }

    pub(super) fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The answer planned for the request that just arrived (success when
    /// nothing is scripted), and how long to wait before giving it.
    pub(super) fn next(&self) -> (Plan, Duration) {
        let mut inner = self.lock();
        let plan = inner.planned.pop_front().unwrap_or(Plan::Accept);
        (plan, inner.delay)
    }

    fn plan(&self, n: usize, plan: Plan) {
        self.lock().planned.extend(std::iter::repeat_n(plan, n));
    }

    /// A panicking test thread cannot leave the queue half-updated (every
    /// critical section is one push or pop), so a poisoned lock is still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
