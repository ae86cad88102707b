//! Time bounds for every await a test makes.
//!
//! A proxy bug usually shows up as a hang, not an error. Helpers wrap their awaits
//! in [`within`], so a hang becomes a test failure that says what was awaited,
//! after [`STEP`] rather than after the CI job's timeout.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How long one step (a connect, a response, one body frame, a log line) may take
/// before the test fails. Generous, because the suite shares a small machine with
/// builds, yet short enough that a hang fails in seconds rather than minutes.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `fut` for at most [`STEP`], panicking with `what` if it takes longer.
pub async fn within<F: Future>(what: impl Display, fut: F) -> F::Output {
    within_for(STEP, what, fut).await
}

/// Awaits `fut` for at most `limit`, panicking with `what` if it takes longer.
pub async fn within_for<F: Future>(limit: Duration, what: impl Display, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}
