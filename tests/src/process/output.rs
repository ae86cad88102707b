//! What a proxy process writes: every stdout and stderr line, kept in arrival
//! order, which a test can wait on (a log line appearing) instead of sleeping.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Notify;

use crate::bound::within;

/// The captured output of a process. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct Output {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    lines: Vec<String>,
    /// Streams still being read; at zero, no line will ever arrive again.
    open: usize,
}

// === impl Output ===

impl Output {
    /// Every line so far, stdout and stderr interleaved as they were read.
    pub fn lines(&self) -> Vec<String> {
        self.state().lines.clone()
    }

    /// Every line so far, as one text (for a failure message).
    pub fn text(&self) -> String {
        self.state().lines.join("\n")
    }

    /// The first line (so far or to come) that contains `needle`: an access-log
    /// line, a warning. Panics if none appears within [`crate::bound::STEP`] or
    /// the process closes its output first.
    pub async fn wait_for_line(&self, needle: &str) -> String {
        self.wait_for(needle, |line| line.contains(needle)).await
    }

    /// The first line matching `matches`; `what` names it in a failure.
    pub async fn wait_for(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let outcome = within(
            format!("a line of proxy output with {what:?}"),
            self.first(&matches),
        )
        .await;
        outcome.unwrap_or_else(|| {
            panic!(
                "the proxy's output ended with no line with {what:?}; it was:\n{}",
                self.text()
            )
        })
    }

    /// The first matching line, or `None` once the output ended without one.
    pub(crate) async fn first(&self, matches: &impl Fn(&str) -> bool) -> Option<String> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a line pushed in between wakes us.
            changed.as_mut().enable();
            {
                let state = self.state();
                if let Some(line) = state.lines.iter().find(|l| matches(l)) {
                    return Some(line.clone());
                }
                if state.open == 0 {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// Reads `stream` line by line into the output, on a task of its own.
    pub(crate) fn capture(&self, stream: impl AsyncRead + Send + Unpin + 'static) {
        self.state().open += 1;
        let output = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output.state().lines.push(strip_ansi(&line));
                output.inner.changed.notify_waiters();
            }
            output.state().open -= 1;
            output.inner.changed.notify_waiters();
        });
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the lines inconsistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `line` without terminal colour codes (`ESC [ … letter`), in case the logger
/// colours its output even though it is not a terminal.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[3minbound\u{1b}[0m\u{1b}[2m=\u{1b}[0m1"),
            "2025  INFO inbound=1"
        );
    }
}
