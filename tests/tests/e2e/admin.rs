//! The admin server: health, readiness, metrics, effective config, shutdown;
//! and the pod-reachable metrics port, which serves only the metrics.

use http::{Method, Request, StatusCode};
use meshtrace_config::Config;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{self, empty};
use meshtrace_tests::netns::command_exists;
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

/// A real scrape of a running sidecar, after HTTP/1 and HTTP/2 traffic both
/// ways and a request that matches no route, passes `promtool check metrics`
/// (Prometheus's own linter, Debian package `prometheus`), lists its series in
/// the same order twice, and shows none of the impossible combinations.
#[tokio::test]
async fn a_scrape_passes_promtool_and_lists_series_in_a_stable_order() {
    assert!(
        command_exists("promtool"),
        "`promtool` is not installed (bash scripts/test-all.sh installs the Debian package `prometheus`)"
    );
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .host_route("app.local", app.addr())
        .spawn()
        .await;
    for addr in [proxy.inbound_addr(), proxy.outbound_addr()] {
        let get = |path: &str| {
            Request::get(format!("http://app.local{path}"))
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(empty())
                .expect("request")
        };
        client::http1_request(addr, get("/")).await;
        client::http1_request(addr, get("/status/503")).await;
        client::http2_request(addr, get("/")).await;
    }
    let unrouted = Request::get("http://nowhere.local/")
        .body(empty())
        .expect("request");
    client::http1_request(proxy.outbound_addr(), unrouted).await;

    let scrape = || async {
        let rsp = client::http1_get(proxy.admin_addr(), "/metrics").await;
        String::from_utf8_lossy(rsp.body()).into_owned()
    };
    let first = scrape().await;
    let (ok, report) = promtool_check_metrics(&first).await;
    assert!(ok, "promtool check metrics: {report}\n{first}");
    let second = scrape().await;
    assert_eq!(
        series(&first),
        series(&second),
        "the series moved between scrapes"
    );
    for present in [
        r#"meshtrace_requests_total{direction="inbound",protocol="http1",status_class="5xx"} 1"#,
        r#"meshtrace_upstream_errors_total{direction="outbound",kind="no_route"} 1"#,
        r#"meshtrace_spans_dropped_total{reason="queue_full"} 0"#,
        "meshtrace_config_version 0",
    ] {
        assert!(first.contains(present), "{present} not in\n{first}");
    }
    for absent in [
        r#"status_class="1xx""#,
        r#"decision="not_sampled",reason="tail_error""#,
        r#"direction="outbound",decision="sampled",reason="tail_"#,
        r#"direction="inbound",kind="no_route""#,
    ] {
        assert!(!first.contains(absent), "{absent} in\n{first}");
    }
}

/// The names and labels of a scrape's samples, in order.
fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series))
        .collect()
}

/// Runs `promtool check metrics` on `text`: whether it passed, and what it said.
async fn promtool_check_metrics(text: &str) -> (bool, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("write to promtool");
    drop(stdin);
    let output = within("promtool check metrics", child.wait_with_output())
        .await
        .expect("promtool runs");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
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
