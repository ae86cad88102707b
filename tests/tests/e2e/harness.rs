//! The sidecar harness itself: it starts a proxy (in process, or as the real
//! binary) that a test can reach, and stops it. The proxy's behaviour is tested
//! elsewhere; these only prove the harness a test builds on.

use std::time::Duration;

use http::StatusCode;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::{client, sidecar};

#[tokio::test]
async fn in_process_sidecar_forwards_inbound_requests_to_the_app() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    let rsp = client::http1_get(proxy.inbound_addr(), "/through").await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.headers()["x-echo-path"], "/through");
}

#[tokio::test]
async fn in_process_sidecar_drains_when_shut_down() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .drain_timeout(5_000)
        .start()
        .await;
    assert!(proxy.shutdown_and_wait().await);
}

#[tokio::test]
async fn proxy_process_reports_its_addresses_and_exits_on_sigterm() {
    let app = HttpApp::start().await;
    let mut proxy = sidecar::new().inbound_to(app.addr()).spawn().await;
    let rsp = client::http1_get(proxy.inbound_addr(), "/through").await;
    assert_eq!(rsp.headers()["x-echo-path"], "/through");
    assert!(proxy.peak_rss_kib() > 0);
    proxy.signal_term();
    assert!(proxy.wait_exit(Duration::from_secs(20)).await.success());
}
