//! Large bodies through the real `meshtrace-proxy` process: a gigabyte each way
//! over HTTP/1.1 (a quarter of one over HTTP/2) arrives whole and in order while
//! the proxy's peak resident memory stays under [`RSS_LIMIT_KIB`]. Bodies stream
//! through the proxy; neither the test nor the app ever holds one.
//!
//! Each test runs its own proxy process, so each peak measures one transfer.
//! Every body frame must arrive within the harness's step bound, and each
//! transfer as a whole within [`TRANSFER_LIMIT`].

use std::time::Duration;

use http::{Request, StatusCode};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::bound::within_for;
use meshtrace_tests::client::{self, H1Conn, H2Conn};
use meshtrace_tests::process::ProxyProcess;
use meshtrace_tests::sidecar;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The proxy's peak RSS must stay under 64 MiB, whatever the body size.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// A whole transfer, on a small shared machine running a debug build.
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_upload_of_1_gib_passes_through_in_bounded_memory() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).spawn().await;
    let req = Request::post("/count")
        .body(client::generated_body(GIB, true))
        .unwrap();
    let counted = within_for(TRANSFER_LIMIT, "a 1 GiB HTTP/1.1 upload", async {
        let rsp = H1Conn::connect(proxy.inbound_addr()).await.send(req).await;
        assert_eq!(rsp.status(), StatusCode::OK);
        client::read_body(rsp.into_body()).await
    })
    .await;
    assert_eq!(counted, GIB.to_string(), "bytes the app received");
    let peak = report_peak_rss(&proxy, "a 1 GiB HTTP/1.1 upload");
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB, over {RSS_LIMIT_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_download_of_1_gib_passes_through_in_bounded_memory() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).spawn().await;
    let received = within_for(TRANSFER_LIMIT, "a 1 GiB HTTP/1.1 download", async {
        let path = format!("/bytes/{GIB}");
        let req = Request::get(path).body(client::empty()).unwrap();
        let rsp = H1Conn::connect(proxy.inbound_addr()).await.send(req).await;
        assert_eq!(rsp.status(), StatusCode::OK);
        client::read_generated(rsp.into_body()).await
    })
    .await;
    assert_eq!(received, GIB, "bytes the client received");
    let peak = report_peak_rss(&proxy, "a 1 GiB HTTP/1.1 download");
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB, over {RSS_LIMIT_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upload_of_256_mib_passes_through_in_bounded_memory() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).spawn().await;
    let len = 256 * MIB;
    let req = Request::post("/count")
        .body(client::generated_body(len, true))
        .unwrap();
    let counted = within_for(TRANSFER_LIMIT, "a 256 MiB HTTP/2 upload", async {
        let rsp = H2Conn::connect(proxy.inbound_addr()).await.send(req).await;
        assert_eq!(rsp.status(), StatusCode::OK);
        client::read_body(rsp.into_body()).await
    })
    .await;
    assert_eq!(counted, len.to_string(), "bytes the app received");
    let peak = report_peak_rss(&proxy, "a 256 MiB HTTP/2 upload");
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB, over {RSS_LIMIT_KIB} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_download_of_256_mib_passes_through_in_bounded_memory() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).spawn().await;
    let len = 256 * MIB;
    let received = within_for(TRANSFER_LIMIT, "a 256 MiB HTTP/2 download", async {
        let path = format!("/sized/{len}");
        let req = Request::get(path).body(client::empty()).unwrap();
        let rsp = H2Conn::connect(proxy.inbound_addr()).await.send(req).await;
        assert_eq!(rsp.status(), StatusCode::OK);
        client::read_generated(rsp.into_body()).await
    })
    .await;
    assert_eq!(received, len, "bytes the client received");
    let peak = report_peak_rss(&proxy, "a 256 MiB HTTP/2 download");
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB, over {RSS_LIMIT_KIB} KiB"
    );
}

/// The proxy's peak RSS in KiB, printed (visible with `--nocapture`) so a run
/// shows how far under the limit it stayed.
fn report_peak_rss(proxy: &ProxyProcess, after: &str) -> u64 {
    let peak = proxy.peak_rss_kib();
    let mib = peak as f64 / 1024.0;
    eprintln!("proxy peak RSS after {after}: {peak} KiB ({mib:.1} MiB)");
    peak
}
