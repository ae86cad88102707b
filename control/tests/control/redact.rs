//! Reads are open to whoever reaches the port, so they never show a secret;
//! only the watch stream carries it, to the sidecar that uses it.

use http::Method;
use meshtrace_control::testing::{start, within, Running};
use serde_json::{json, Value};

const API_KEY: &str = "s3cret-key";

const SOURCE: &str = r#"
defaults:
  export:
    endpoint: "https://otel:hunter2@otel-collector:4318"
    headers: {x-api-key: s3cret-key}
workloads:
  - match: {service: checkout}
    config: {export: {headers: {authorization: "Bearer s3cret-token"}}}
"#;

/// `GET path` as JSON.
async fn read(cp: &Running, path: &str) -> Value {
    within(path, cp.client().get(path)).await.unwrap()
}

fn assert_no_secret(what: &str, v: &Value) {
    let text = v.to_string();
    for secret in [API_KEY, "s3cret-token", "hunter2"] {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

#[tokio::test]
async fn get_config_redacts_export_headers_and_url_userinfo() {
    let cp = start(SOURCE, None).await;
    let v = read(&cp, "/v1/config?service=checkout").await;
    assert_no_secret("/v1/config?service=checkout", &v);
    let export = &v["config"]["export"];
    assert_eq!(export["headers"]["x-api-key"], "REDACTED");
    assert_eq!(export["headers"]["authorization"], "REDACTED");
    assert_eq!(export["endpoint"], "https://REDACTED@otel-collector:4318");
}

#[tokio::test]
async fn get_config_base_redacts_defaults_and_sections() {
    let cp = start(SOURCE, None).await;
    let v = read(&cp, "/v1/config/base").await;
    assert_no_secret("/v1/config/base", &v);
    assert_eq!(v["defaults"]["export"]["headers"]["x-api-key"], "REDACTED");
    let section = &v["workloads"][0]["config"]["export"]["headers"];
    assert_eq!(section["authorization"], "REDACTED");
}

#[tokio::test]
async fn the_watch_push_carries_the_real_values() {
    let cp = start(SOURCE, None).await;
    let mut watch = cp.watch("checkout", "shop", "pod-0", &[]).await;
    let push = within("push", watch.next_config()).await.unwrap().unwrap();
    assert_eq!(push.config.export.headers["x-api-key"], API_KEY);
    assert_eq!(
        push.config.export.endpoint.as_deref(),
        Some("https://otel:hunter2@otel-collector:4318")
    );
}

#[tokio::test]
async fn a_nack_message_is_shown_without_url_passwords() {
    let cp = start(SOURCE, None).await;
    let mut watch = cp.watch("checkout", "shop", "pod-0", &[]).await;
    let push = within("push", watch.next_config()).await.unwrap().unwrap();
    let nack = json!({
        "namespace": "shop", "pod": "pod-0", "version": push.version, "status": "nack",
        "error": "control.url: \"http://u:hunter2@cp\" is not an http:// URL",
    });
    let _: Value = within("ack", cp.client().send_json(Method::POST, "/v1/ack", &nack))
        .await
        .unwrap();
    let sidecars = read(&cp, "/v1/sidecars").await;
    assert_no_secret("/v1/sidecars", &sidecars);
    let error = &sidecars[0]["last_rejection"]["error"];
    assert_eq!(
        error,
        "control.url: \"http://REDACTED@cp\" is not an http:// URL"
    );
}

#[tokio::test]
async fn putting_back_a_redacted_read_is_refused_and_keeps_the_secret() {
    let cp = start(SOURCE, Some("tok")).await;
    let base: Value = within("get", cp.client().get("/v1/config/base"))
        .await
        .unwrap();
    let body = Some(("application/json", base.to_string().into()));
    let (status, answer) = within(
        "put",
        cp.client().send(Method::PUT, "/v1/config/base", body),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, http::StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.contains("defaults.export.headers"), "{answer}");
    let defaults = &cp.store.snapshot().document.defaults;
    assert_eq!(defaults["export"]["headers"]["x-api-key"], API_KEY);
}
