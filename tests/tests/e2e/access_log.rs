//! One access-log line per request, in text or JSON, with the fields an operator
//! greps for: direction, protocol, method, authority, path, status, duration,
//! bytes and upstream.

use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::{client, sidecar};

#[tokio::test]
async fn text_access_line_names_the_request_and_its_upstream() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new().inbound_to(app.addr()).spawn().await;
    client::http1_get(proxy.inbound_addr(), "/sized/1000?q=1").await;
    let line = proxy.output().wait_for_line("access:").await;
    for field in [
        "direction=inbound",
        r#"protocol="http1""#,
        "method=GET",
        r#"path="/sized/1000""#,
        "status=200",
        "bytes=1000",
        &format!(r#"upstream="{}""#, app.addr()),
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[tokio::test]
async fn json_logs_give_one_parsable_object_per_request() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .process()
        .arg("--json-logs")
        .spawn()
        .await;
    client::http1_get(proxy.inbound_addr(), "/status/404").await;
    let line = proxy.output().wait_for_line(r#""target":"access""#).await;
    let json: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(json["direction"], "inbound");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/status/404");
    assert_eq!(json["status"], 404);
    assert_eq!(json["upstream"], app.addr().to_string());
    assert!(json["duration_ms"].as_f64().is_some(), "{line}");
    assert_eq!(json["trace_id"].as_str().map(str::len), Some(32), "{line}");
    assert_eq!(json["span_id"].as_str().map(str::len), Some(16), "{line}");
    assert_eq!(json["sampled"], true, "{line}");
}

#[tokio::test]
async fn access_log_can_be_turned_off() {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| c.log.access_log = false)
        .spawn()
        .await;
    client::http1_get(proxy.inbound_addr(), "/quiet").await;
    // Log lines leave through one FIFO queue: once a line logged after the request
    // is out, an access line for the request would be out too.
    let shutdown = http::Request::post("/shutdown")
        .body(client::empty())
        .expect("request");
    client::http1_request(proxy.admin_addr(), shutdown).await;
    proxy.output().wait_for_line("shutdown requested").await;
    assert!(
        !proxy.output().text().contains("access:"),
        "{}",
        proxy.output().text()
    );
}
