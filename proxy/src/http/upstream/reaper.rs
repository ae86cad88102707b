//! Closing upstream connections that sat idle past `timeouts.idle`.
//!
//! One task per [`super::Upstreams`] wakes every half idle timeout and sweeps
//! every pool's idle HTTP/1 list and its HTTP/2 connections (one with no stream
//! open, and none started, for three sweeps in a row closes). It holds the pools weakly, so it ends with the
//! last clone of the `Upstreams`.

use std::sync::Weak;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Idle, Pool, Pools};

/// Closes connections idle longer than `idle_timeout`, until the pools are gone.
pub(super) async fn reap(pools: Weak<ArcSwap<Pools>>, idle_timeout: Duration) {
    let period = (idle_timeout / 2).max(Duration::from_millis(100));
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
    /// Drops the idle connections that expired or closed.
    fn reap(&self, idle_timeout: Duration) {
        let expired: Vec<Idle> = {
            let mut state = self.lock();
            let (keep, expired) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|idle| idle.since.elapsed() < idle_timeout && !idle.conn.is_closed());
            state.idle = keep;
            expired
        };
        let mut quiet = Vec::new();
        self.lock().h2.retain_mut(|listed| {
            let keep = !listed.sweep();
            if !keep {
                quiet.push(listed.shared.clone());
            }
            keep
        });
        // Dropping the senders closes the connections, outside the lock.
        drop((expired, quiet));
    }
}
