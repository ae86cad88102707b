//! Graceful shutdown: stop accepting, let in-flight requests finish within the
//! drain timeout, then exit 0.

use std::time::Duration;

use http::StatusCode;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{self, H1Conn};
use meshtrace_tests::sidecar;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_http1_request_finishes_during_drain() {
    let app = HttpApp::start().await;
    let gate = app.gate();
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .drain_timeout(10_000)
        .start()
        .await;
    let addr = proxy.inbound_addr();
    let in_flight = tokio::spawn(async move { client::http1_get(addr, "/gate").await });
    within("the gated request reaching the app", gate.arrived()).await;

    proxy.shutdown();
    // Listeners close at once: a new connection is refused...
    within("the listener to close", async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // ...while the request already in flight completes.
    gate.release();
    let rsp = within("the in-flight response", in_flight)
        .await
        .expect("client task");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(proxy.wait().await, "drained cleanly");
}

#[tokio::test]
async fn idle_keep_alive_connection_does_not_hold_up_the_drain() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .drain_timeout(10_000)
        .start()
        .await;
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
    assert_eq!(conn.get("/").await.status(), StatusCode::OK);
    assert!(proxy.shutdown_and_wait().await);
    within("the idle connection to be closed", conn.closed()).await;
}

#[tokio::test]
async fn drain_gives_up_after_the_drain_timeout() {
    let app = HttpApp::start().await;
    let gate = app.gate();
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .drain_timeout(300)
        .start()
        .await;
    let addr = proxy.inbound_addr();
    let _stuck = tokio::spawn(async move { client::http1_get(addr, "/gate").await });
    within("the gated request reaching the app", gate.arrived()).await;
    assert!(
        !proxy.shutdown_and_wait().await,
        "a request that never ends cannot drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let app = HttpApp::start().await;
    let gate = app.gate();
    let mut proxy = sidecar::new()
        .inbound_to(app.addr())
        .drain_timeout(10_000)
        .spawn()
        .await;
    let addr = proxy.inbound_addr();
    let in_flight = tokio::spawn(async move { client::http1_get(addr, "/gate").await });
    within("the gated request reaching the app", gate.arrived()).await;

    proxy.signal_term();
    proxy.output().wait_for_line("draining").await;
    gate.release();
    let rsp = within("the in-flight response", in_flight)
        .await
        .expect("client task");
    assert_eq!(rsp.status(), StatusCode::OK);
    let status = proxy.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}");
}
