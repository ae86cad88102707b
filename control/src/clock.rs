//! The store's notion of "now" for override expiry.

use std::time::{Duration, SystemTime};

/// Wall-clock time that advances with tokio's clock, so that expiry follows
/// `tokio::time` (and a paused test clock). Wall-clock steps during the process's
/// life are ignored; a restart re-reads the wall clock.
#[derive(Debug)]
pub struct Clock {
    wall: SystemTime,
    mono: tokio::time::Instant,
}

// === impl Clock ===

impl Clock {
    /// Starts the clock at the current wall-clock time.
    pub fn new() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: tokio::time::Instant::now(),
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }

    /// The tokio instant at which wall-clock time `at` is reached.
    pub fn instant_of(&self, at: SystemTime) -> tokio::time::Instant {
        self.mono + at.duration_since(self.wall).unwrap_or(Duration::ZERO)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
