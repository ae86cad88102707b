//! Memory after a load: each worker empties its allocator cache once its
//! traffic stops (`meshtrace_proxy::trim`), so the RSS comes back down instead
//! of keeping what the load left cached on an idle thread. Only the real
//! binary shows it: the hook is installed on the runtime `main` builds, and the
//! cache is the sidecar's allocator's (jemalloc).

use std::time::Duration;

use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::H1Conn;
use meshtrace_tests::sidecar;

const TRIMS: &str = "meshtrace_memory_trims_total";

#[tokio::test]
async fn a_worker_gives_its_cache_back_once_its_traffic_stops() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.runtime.workers = Some(1))
        .spawn()
        .await;
    // ~1 MiB of response bodies through the worker: well past the traffic
    // that calls for a flush, as any load is.
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
    for _ in 0..64 {
        let rsp = conn.get("/sized/16384").await;
        assert_eq!(rsp.body().len(), 16384);
    }
    drop(conn);
    // The traffic has stopped: the worker's next tick (every 2 s) flushes it.
    within("the idle worker to empty its allocator cache", async {
        let mut scrapes = tokio::time::interval(Duration::from_millis(100));
        loop {
            scrapes.tick().await;
            let metrics = proxy.metrics().await;
            let trims = sidecar::metric_value(&metrics, TRIMS)
                .unwrap_or_else(|| panic!("no {TRIMS} in the metrics:\n{metrics}"));
            if trims >= 1.0 {
                break;
            }
        }
    })
    .await;
}
