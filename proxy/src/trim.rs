//! Giving a worker's cached memory back once its traffic stops.
//!
//! jemalloc (the sidecar's allocator) keeps each thread's recently freed
//! small blocks in that thread's cache, and trims a cache only on its own
//! thread's allocations. A worker that goes idle after a load therefore keeps
//! what the load left in its cache (~0.8 MB after the load harness's windows:
//! `benches/RESULTS.md`, "memory after a load"), and jemalloc's background
//! thread, which returns free pages to the kernel, cannot see it.
//!
//! So every [`PERIOD`] a tick starts a new epoch, and each runtime worker,
//! when it next parks ([`on_park`], tokio's `on_thread_park` hook), flushes
//! its cache if it has allocated or freed more than [`TRAFFIC`] bytes since
//! its last flush. A worker that went idle parks right after running the
//! tick, so its cache is flushed within one period of its last request and
//! the background thread purges the pages a second later. A worker under load
//! flushes once a period, which costs a few microseconds of refills; a parked
//! check is one atomic load. The flush is jemalloc's own: turning the thread's
//! cache off (which empties it into the arenas) and on again.
//!
//! With one worker (`runtime.workers: 1`, a current-thread runtime) the tick
//! always wakes the worker that served. A multi-thread runtime wakes one
//! worker for the tick; another worker flushes the next time it parks after
//! waking for anything else, so an idle one may keep its cache until then.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tikv_jemalloc_ctl::{thread, Access, AsName};

/// How often a new epoch starts.
pub const PERIOD: Duration = Duration::from_secs(2);

/// Bytes a worker must have allocated plus freed since its last flush for the
/// next epoch to flush it: a cache holds at most what was freed into it, so
/// an idle worker's occasional probe or sweep does not flush it every period.
pub const TRAFFIC: u64 = 256 * 1024;

/// The current epoch; a worker that has not seen it yet checks its traffic.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Flushes done, for `meshtrace_memory_trims_total`.
static TRIMS: LazyLock<Counter> = LazyLock::new(Counter::default);

thread_local! {
    /// This worker's view: the last epoch it checked, and its traffic
    /// (allocated + freed bytes) right after its last flush.
    static WORKER: Worker = const { Worker { seen: Cell::new(0), flushed_at: Cell::new(0) } };
}

struct Worker {
    seen: Cell<u64>,
    flushed_at: Cell<u64>,
}

/// The flush counter, shared with the metrics registry.
pub fn trims() -> Counter {
    TRIMS.clone()
}

/// Starts a new epoch every [`PERIOD`], for as long as the runtime runs.
pub async fn tick() {
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        EPOCH.fetch_add(1, Ordering::Relaxed);
    }
}

/// tokio's `on_thread_park` hook: in a new epoch, flushes this worker's cache
/// when its traffic since the last flush calls for it.
pub fn on_park() {
    let epoch = EPOCH.load(Ordering::Relaxed);
    WORKER.with(|worker| {
        if worker.seen.replace(epoch) == epoch {
            return;
        }
        let Some(traffic) = traffic() else {
            return;
        };
        if !due(traffic, worker.flushed_at.get()) {
            return;
        }
        if flush() {
            TRIMS.inc();
        }
        // Re-read: turning the cache back on allocates it anew.
        worker.flushed_at.set(self::traffic().unwrap_or(traffic));
    });
}

/// Whether a worker whose traffic is `traffic` now and was `flushed_at` after
/// its last flush has enough cached to flush.
fn due(traffic: u64, flushed_at: u64) -> bool {
    traffic.wrapping_sub(flushed_at) > TRAFFIC
}

/// This thread's allocated plus freed bytes, as jemalloc counts them; `None`
/// when jemalloc cannot say (it is not the allocator being asked).
fn traffic() -> Option<u64> {
    let allocated = thread::allocatedp::read().ok()?.get();
    let freed = thread::deallocatedp::read().ok()?.get();
    Some(allocated.wrapping_add(freed))
}

/// Empties this thread's cache into the arenas; false when jemalloc refused.
fn flush() -> bool {
    let enabled = b"thread.tcache.enabled\0".name();
    match enabled.read() {
        Ok(true) => enabled.write(false).is_ok() && enabled.write(true).is_ok(),
        // Off (`MALLOC_CONF=tcache:false`): there is nothing to flush.
        Ok(false) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_flushes_only_past_the_traffic_threshold() {
        assert!(!due(0, 0));
        assert!(!due(TRAFFIC, 0));
        assert!(due(TRAFFIC + 1, 0));
        assert!(!due(5_000_000 + TRAFFIC, 5_000_000));
        assert!(due(5_000_001 + TRAFFIC, 5_000_000));
        // The counters are jemalloc's u64 byte counts: wrapping is arithmetic.
        assert!(due(TRAFFIC, u64::MAX));
    }
}
