//! Retries of one export: exponential backoff with jitter, bounded by the
//! export timeout, only for the failures the OTLP specification calls
//! retryable, honouring the collector's `Retry-After` (OTLP/HTTP) and
//! `RetryInfo` (OTLP/gRPC) — what opentelemetry-otlp's exporter did.
//!
//! Retryable: gRPC `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
//! `UNAVAILABLE`, `DATA_LOSS`, and `RESOURCE_EXHAUSTED` only with `RetryInfo`;
//! HTTP 429, 502, 503, 504 and no response at all. Everything else fails the
//! batch at once.

use std::future::Future;
use std::time::Duration;

use meshtrace_config::Retry;
use tokio::time::Instant;
use tonic_types::StatusExt;

/// Longest delay a collector's `Retry-After` / `RetryInfo` can ask for.
const MAX_THROTTLE: Duration = Duration::from_secs(30);
/// Jitter added to each backoff, at most.
const MAX_JITTER: Duration = Duration::from_millis(100);

/// A failed attempt: whether to retry, and why it failed.
#[derive(Debug)]
pub(super) struct Attempt {
    class: Class,
    message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Fatal,
    Retryable,
    /// Retryable after at least this long (the collector said so).
    Throttled(Duration),
}

// === impl Attempt ===

impl Attempt {
    pub(super) fn retryable(message: String) -> Self {
        Self {
            class: Class::Retryable,
            message,
        }
    }

    pub(super) fn fatal(message: String) -> Self {
        Self {
            class: Class::Fatal,
            message,
        }
    }
}

/// A gRPC failure, by the OTLP specification.
pub(super) fn classify_grpc(status: &tonic::Status) -> Attempt {
    use tonic::Code;
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let class = match status.code() {
        Code::ResourceExhausted => delay.map_or(Class::Fatal, Class::Throttled),
        Code::Unavailable => delay
            .filter(|d| !d.is_zero())
            .map_or(Class::Retryable, Class::Throttled),
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Class::Retryable,
        _ => Class::Fatal,
    };
    Attempt {
        class,
        message: format!("{:?}: {}", status.code(), status.message()),
    }
}

/// An OTLP/HTTP failure status, by the OTLP specification.
pub(super) fn classify_http(status: u16, retry_after: Option<&str>) -> Attempt {
    let class = match status {
        429 | 503 => retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Class::Retryable, |s| {
                Class::Throttled(Duration::from_secs(s))
            }),
        502 | 504 => Class::Retryable,
        _ => Class::Fatal,
    };
    Attempt {
        class,
        message: format!("HTTP {status}"),
    }
}

/// Runs `attempt` until it succeeds, fails for good, runs out of retries or
/// the next backoff would end past `deadline` from now.
pub(super) async fn with_backoff<T, F, Fut>(
    policy: &Retry,
    deadline: Duration,
    mut attempt: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let start = Instant::now();
    let mut retries = 0;
    let mut delay = policy.initial_backoff.get();
    let mut cap = policy.max_backoff.get();
    loop {
        let failed = match attempt().await {
            Ok(value) => return Ok(value),
            Err(failed) => failed,
        };
        if failed.class == Class::Fatal || retries >= policy.max_retries {
            return Err(failed.message);
        }
        if let Class::Throttled(asked) = failed.class {
            let asked = asked.min(MAX_THROTTLE);
            if asked > cap {
                cap = MAX_THROTTLE;
            }
            delay = delay.max(asked);
        }
        retries += 1;
        let sleep = (delay + jitter()).min(cap);
        if start.elapsed() + sleep >= deadline {
            return Err(format!("{} (export timeout reached)", failed.message));
        }
        tokio::time::sleep(sleep).await;
        delay = delay.saturating_mul(2).min(cap);
    }
}

fn jitter() -> Duration {
    Duration::from_millis(fastrand::u64(0..=MAX_JITTER.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn policy() -> Retry {
        Retry {
            max_retries: 3,
            initial_backoff: meshtrace_config::Duration::from_millis(100),
            max_backoff: meshtrace_config::Duration::from_millis(400),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_are_retried_up_to_max_retries() {
        let calls = Cell::new(0);
        let result: Result<(), _> = with_backoff(&policy(), Duration::from_secs(10), || {
            calls.set(calls.get() + 1);
            async { Err(classify_http(503, None)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 4, "the first attempt and 3 retries");
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_failures_are_not_retried() {
        let calls = Cell::new(0);
        let result: Result<(), _> = with_backoff(&policy(), Duration::from_secs(10), || {
            calls.set(calls.get() + 1);
            async { Err(classify_grpc(&tonic::Status::invalid_argument("no"))) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_the_timeout_bounds_it() {
        let start = Instant::now();
        let calls = Cell::new(0);
        let result = with_backoff(&policy(), Duration::from_secs(10), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n == 1 {
                    Err(classify_http(429, Some("2")))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(2));
        assert!(start.elapsed() >= Duration::from_secs(2), "waited as asked");
        // Asked for longer than the export timeout: give up at once.
        let result: Result<(), _> = with_backoff(&policy(), Duration::from_secs(1), || async {
            Err(classify_http(503, Some("5")))
        })
        .await;
        assert!(result.unwrap_err().contains("timeout"));
    }

    #[test]
    fn classes_follow_the_otlp_specification() {
        for code in [429, 502, 503, 504] {
            assert_ne!(classify_http(code, None).class, Class::Fatal, "{code}");
        }
        for code in [400, 401, 404, 500] {
            assert_eq!(classify_http(code, None).class, Class::Fatal, "{code}");
        }
        let exhausted = tonic::Status::resource_exhausted("full");
        assert_eq!(
            classify_grpc(&exhausted).class,
            Class::Fatal,
            "no RetryInfo"
        );
        let unavailable = tonic::Status::unavailable("down");
        assert_eq!(classify_grpc(&unavailable).class, Class::Retryable);
    }
}
