//! The admin server: health, readiness, metrics, effective config, shutdown;
//! and the pod-reachable metrics port, which serves only the metrics.

use http::{Method, Request, StatusCode};
use meshtrace_config::Config;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::client::{self, empty};
use meshtrace_tests::sidecar;

#[tokio::test]
async fn live_and_ready_once_listeners_are_bound() {
    let proxy = sidecar::new().start().await;
    assert_eq!(proxy.admin_get("/live").await.status(), StatusCode::OK);
    assert_eq!(proxy.admin_get("/ready").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_by_direction_protocol_and_status_class() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    client::http1_get(proxy.inbound_addr(), "/").await;
    client::http1_get(proxy.inbound_addr(), "/status/503").await;
    let metrics = proxy.metrics().await;
    for series in [
        r#"meshtrace_requests_total{direction="inbound",protocol="http1",status_class="2xx"} 1"#,
        r#"meshtrace_requests_total{direction="inbound",protocol="http1",status_class="5xx"} 1"#,
        r#"meshtrace_request_duration_seconds_count{direction="inbound",protocol="http1"} 2"#,
        r#"meshtrace_connections_total{direction="inbound",protocol="http1"} 2"#,
        "# TYPE meshtrace_open_connections gauge",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
}

#[tokio::test]
async fn config_endpoint_shows_the_effective_config() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .request_timeout(1234)
        .start()
        .await;
    let rsp = proxy.admin_get("/config").await;
    let yaml = String::from_utf8_lossy(rsp.body());
    let shown = Config::from_yaml_str(&yaml, "/config").expect("/config is a valid config");
    assert_eq!(&shown, proxy.config());
}

#[tokio::test]
async fn post_shutdown_drains_and_readiness_turns_503() {
    let proxy = sidecar::new().drain_timeout(5_000).start().await;
    let admin = proxy.admin_addr();
    let shutdown = Request::builder()
        .method(Method::POST)
        .uri("/shutdown")
        .body(empty())
        .expect("request");
    let rsp = client::http1_request(admin, shutdown).await;
    assert_eq!(rsp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        proxy.admin_get("/ready").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(proxy.wait().await, "drain with nothing in flight completes");
}

#[tokio::test]
async fn shutdown_needs_post_and_unknown_paths_are_404() {
    let proxy = sidecar::new().start().await;
    assert_eq!(
        proxy.admin_get("/shutdown").await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        proxy.admin_get("/nope").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(proxy.admin_get("/ready").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_metrics_port_serves_the_admin_metrics_and_nothing_else() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).start().await;
    client::http1_get(proxy.inbound_addr(), "/").await;
    let port = proxy.metrics_addr().expect("the metrics port is on");
    let scrape = client::http1_get(port, "/metrics").await;
    assert_eq!(scrape.status(), StatusCode::OK);
    let admin = proxy.admin_get("/metrics").await;
    let content_type = |rsp: &http::Response<_>| rsp.headers()[http::header::CONTENT_TYPE].clone();
    assert_eq!(content_type(&scrape), content_type(&admin));
    let text = String::from_utf8_lossy(scrape.body());
    let series =
        r#"meshtrace_requests_total{direction="inbound",protocol="http1",status_class="2xx"} 1"#;
    assert!(text.contains(series), "missing {series} in\n{text}");
    for path in [
        "/config",
        "/shutdown",
        "/ready",
        "/live",
        "/healthz/ready",
        "/",
    ] {
        let status = client::http1_get(port, path).await.status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/shutdown", "/metrics"] {
        let post = Request::post(path).body(empty()).expect("request");
        let status = client::http1_request(port, post).await.status();
        assert_ne!(status, StatusCode::ACCEPTED, "POST {path}");
    }
    assert_eq!(proxy.admin_get("/ready").await.status(), StatusCode::OK);
}
