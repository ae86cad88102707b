//! Closing upstream connections that sat idle past `timeouts.idle`, and the
//! connections a burst left beyond what the traffic now needs.
//!
//! One task per [`super::Upstreams`] wakes every [`SURPLUS_AFTER`] / 2 (or half
//! the idle timeout, if shorter) and sweeps every pool, HTTP/1 and HTTP/2
//! connections alike:
//!
//! - an idle HTTP/1 connection closes once idle for `timeouts.idle`, or once the
//!   upstream closed it;
//! - **surplus**: one unused for [`SURPLUS_AFTER`] closes too, except the
//!   [`KEEP_WARM`] most recently used, which wait out the idle timeout. The idle
//!   list is LIFO (a request takes the most recently used connection), so a
//!   connection goes unused that long only when fewer requests than its place
//!   in the list were in flight at once all that time: it is beyond the peak in
//!   use of the last [`SURPLUS_AFTER`]. Steady traffic keeps reusing the same
//!   connections, whose idle time never reaches it, so it causes no churn; after
//!   a burst the pool shrinks back within `SURPLUS_AFTER` + one period, and the
//!   allocator returns the connections' buffers (benches/RESULTS.md,
//!   "Performance (issue 18): memory");
//! - an HTTP/2 connection with no stream open, and none started, for
//!   `timeouts.idle` closes;
//! - **surplus** HTTP/2 connections: a request opens another connection only
//!   when every listed one carries its 100 streams, and takes a stream on the
//!   first listed with room. So every connection after the first was opened
//!   by a burst, and one left quiet for [`SURPLUS_AFTER`] is beyond what the
//!   traffic of that time needed: it closes. Its stream store grew for the
//!   burst's 100 streams and never shrinks, so closing it is what gives that
//!   memory back. The first connection waits out the idle timeout.
//!
//! It holds the pools weakly, so it ends with the last clone of the `Upstreams`.

use std::sync::Weak;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Idle, Pool, Pools};

/// An idle HTTP/1 connection unused this long is surplus (unless among the
/// [`KEEP_WARM`] most recently used), and so is an HTTP/2 connection after a
/// pool's first left quiet this long.
const SURPLUS_AFTER: Duration = Duration::from_secs(10);

/// Idle HTTP/1 connections per pool kept for the whole idle timeout, however
/// long unused, so occasional traffic finds a warm connection.
const KEEP_WARM: usize = 4;

/// Shortest sweep period.
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// Closes expired and surplus connections, until the pools are gone.
pub(super) async fn reap(pools: Weak<ArcSwap<Pools>>, idle_timeout: Duration) {
    let period = (idle_timeout / 2).max(MIN_PERIOD).min(SURPLUS_AFTER / 2);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pools) = pools.upgrade() else { return };
        for pool in pools.load().values() {
            pool.reap(idle_timeout);
        }
    }
}

// === impl Pool ===

impl Pool {
    /// Drops the idle connections that expired, closed or are surplus.
    fn reap(&self, idle_timeout: Duration) {
        let expired: Vec<Idle> = {
            let mut state = self.lock();
            let (mut keep, mut expired) = (Vec::new(), Vec::new());
            for mut idle in std::mem::take(&mut state.idle) {
                if idle.since.elapsed() < idle_timeout && !idle.conn.is_closed() {
                    keep.push(idle);
                } else {
                    expired.push(idle);
                }
            }
            // Oldest first: the surplus is a prefix of the list.
            let spare = keep.len().saturating_sub(KEEP_WARM);
            let surplus = keep[..spare]
                .iter()
                .take_while(|idle| idle.since.elapsed() >= SURPLUS_AFTER)
                .count();
            expired.extend(keep.drain(..surplus));
            state.idle = keep;
            expired
        };
        let mut quiet = Vec::new();
        let now = tokio::time::Instant::now();
        let mut limit = idle_timeout;
        self.lock().h2.retain_mut(|listed| {
            let keep = !listed.sweep(now, limit);
            if keep {
                // Every connection after the first kept one is surplus.
                limit = SURPLUS_AFTER.min(idle_timeout);
            } else {
                quiet.push(listed.shared.clone());
            }
            keep
        });
        // Dropping the senders closes the connections, outside the lock.
        drop((expired, quiet));
    }
}

#[cfg(test)]
mod tests;
