//! What a connection may cost the server: deadlines, an idle timeout and a bound on
//! how many are open, with counters of what they closed.
//!
//! # The model
//!
//! * **First byte** ([`ConnectionLimits::first_byte_timeout`], 5 s): a connection
//!   that sends nothing is closed. A peer that connects and stays silent costs a file
//!   descriptor and a task; without this, a few hundred of them exhausted the
//!   process's descriptors and `/healthz` stopped answering.
//! * **Request head** ([`ConnectionLimits::header_timeout`], 10 s): the first request
//!   head (after protocol detection, the HTTP/2 preface included) must be complete
//!   this long after the connection was accepted, or the connection is dropped. For
//!   every later HTTP/1 request, hyper's header read timer gives the same time; it
//!   starts when the connection starts waiting for the next head, so an idle
//!   HTTP/1 keep-alive connection is closed after `min(header, idle)` timeout.
//! * **Idle** ([`ConnectionLimits::idle_timeout`], 60 s): a connection with no
//!   request in flight for this long is closed gracefully (HTTP/2: `GOAWAY`). A
//!   watch is a request in flight until its stream ends, so a sidecar's watch
//!   connection is never idle however quiet the stream is between keepalives.
//! * **Open connections** ([`ConnectionLimits::max_connections`], 16 384): at the
//!   bound the server stops accepting until one closes; new connections wait in the
//!   kernel's listen backlog ([`LISTEN_BACKLOG`](super::LISTEN_BACKLOG), capped by
//!   `net.core.somaxconn`; beyond it clients retry their SYN), where the first-byte and head deadlines bound
//!   the wait behind silent peers. A sidecar holds one connection (its watch, ACKs
//!   and reports share one HTTP/2 connection), so size the bound above the number of
//!   sidecars one replica serves, plus probes and operators.
//! * **Room for the process's own files**: the effective bound is at most the
//!   soft `RLIMIT_NOFILE` minus [`FD_RESERVE`], so that connections can never take
//!   the descriptors the state file, the source file and the logs need (a full
//!   table would make `accept` spin on `EMFILE` and persisting an override fail).
//!   A clamped bound is logged at start.
//! * HTTP/2: at most [`H2_MAX_STREAMS`] concurrent streams per connection, and a
//!   keepalive `PING` every [`H2_PING_INTERVAL`] that closes the connection when
//!   unanswered for [`H2_PING_TIMEOUT`] (a vanished sidecar's watch is dropped).
//!
//! The counters ([`ConnectionStats`]) are shown in `GET /v1/status` under
//! `connections`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Descriptors kept out of the connection bound for the process's own files.
pub const FD_RESERVE: usize = 64;
/// Concurrent HTTP/2 streams per connection (a sidecar uses one watch and a few
/// short posts).
pub const H2_MAX_STREAMS: u32 = 100;
/// How often an HTTP/2 connection is pinged.
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Deadlines and bounds for the server's connections (`serve --max-connections
/// --first-byte-timeout --header-timeout --idle-timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a new connection may stay silent.
    pub first_byte_timeout: Duration,
    /// How long a request head may take (the first from accept; later HTTP/1
    /// heads from the end of the previous response).
    pub header_timeout: Duration,
    /// How long a connection may have no request in flight.
    pub idle_timeout: Duration,
    /// How many connections may be open at once (before the descriptor clamp).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            first_byte_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 16_384,
        }
    }
}

// === impl ConnectionLimits ===

impl ConnectionLimits {
    /// Refuses limits that cannot work: zero durations or bound, or a first-byte
    /// deadline after the head deadline (which counts from the same accept).
    pub fn validate(&self) -> Result<(), String> {
        let durations = [
            ("first-byte timeout", self.first_byte_timeout),
            ("header timeout", self.header_timeout),
            ("idle timeout", self.idle_timeout),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("the {name} must be longer than 0s"));
        }
        if self.max_connections == 0 {
            return Err("the connection bound must be at least 1".into());
        }
        if self.first_byte_timeout > self.header_timeout {
            return Err(format!(
                "the first-byte timeout ({:?}) must not exceed the header timeout ({:?}), which counts from the same accept",
                self.first_byte_timeout, self.header_timeout
            ));
        }
        Ok(())
    }

    /// The bound actually enforced: `max_connections`, lowered so that
    /// [`FD_RESERVE`] descriptors stay free under the soft `RLIMIT_NOFILE`.
    pub fn effective_max_connections(&self) -> usize {
        let Some(nofile) = open_files_limit() else {
            return self.max_connections;
        };
        let room = nofile.saturating_sub(FD_RESERVE).max(1);
        if room < self.max_connections {
            tracing::warn!(
                configured = self.max_connections,
                effective = room,
                open_files_limit = nofile,
                "the connection bound is lowered to leave {FD_RESERVE} descriptors for the process's files; raise the open-files limit (ulimit -n) to allow more"
            );
            return room;
        }
        self.max_connections
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` when
/// unknown or unlimited.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the server did with its connections; cheap to update, read by
/// `GET /v1/status`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    accepted: AtomicU64,
    first_byte_timeouts: AtomicU64,
    header_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    limit_reached: AtomicU64,
}

/// A [`ConnectionStats`] reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionCounts {
    /// Connections open now.
    pub open: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Closed because they sent nothing before the first-byte deadline.
    pub first_byte_timeouts: u64,
    /// Closed because a request head was not complete in time (HTTP/1: also a
    /// keep-alive connection idle for the header timeout, when it is the shorter).
    pub header_timeouts: u64,
    /// Closed after the idle timeout.
    pub idle_closed: u64,
    /// Times the server stopped accepting because the bound was reached.
    pub limit_reached: u64,
}

// === impl ConnectionStats ===

impl ConnectionStats {
    /// The current counts.
    pub fn counts(&self) -> ConnectionCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnectionCounts {
            open: get(&self.open),
            accepted: get(&self.accepted),
            first_byte_timeouts: get(&self.first_byte_timeouts),
            header_timeouts: get(&self.header_timeouts),
            idle_closed: get(&self.idle_closed),
            limit_reached: get(&self.limit_reached),
        }
    }

    pub(crate) fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn first_byte_timeout(&self) {
        self.first_byte_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn idle(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn at_limit(&self) {
        self.limit_reached.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files(unlimited), None);
    }

    #[test]
    fn the_first_byte_deadline_may_not_outlast_the_head_deadline() {
        assert_eq!(ConnectionLimits::default().validate(), Ok(()));
        let late = ConnectionLimits {
            first_byte_timeout: Duration::from_secs(20),
            ..ConnectionLimits::default()
        };
        assert!(late.validate().is_err());
        let unbounded = ConnectionLimits {
            max_connections: 0,
            ..ConnectionLimits::default()
        };
        assert!(unbounded.validate().is_err());
    }
}
