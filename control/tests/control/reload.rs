//! The source file: changes are picked up without a restart; invalid ones are
//! rejected with their error while the last good document keeps serving.

use http::Method;
use meshtrace_control::testing::{start, within};
use serde_json::Value;

const V1: &str = "defaults: {sampling: {default_rate: 0.1}}\n";
const V2: &str = "defaults: {sampling: {default_rate: 0.2}}\n";

#[tokio::test]
async fn a_changed_file_is_pushed_to_watchers_without_restart() {
    let cp = start(V1, None).await;
    let mut watch = cp.watch("checkout", "shop", "p1", &[]).await;
    let first = within("first", watch.next_config()).await.unwrap().unwrap();
    assert_eq!(first.config.sampling.default_rate, 0.1);

    cp.write_source(V2);
    let next = within("reloaded", watch.next_config())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.config.sampling.default_rate, 0.2);
    assert_ne!(next.version, first.version);
}

#[tokio::test]
async fn an_invalid_file_keeps_the_old_document_and_reports_line_and_column() {
    let cp = start(V1, None).await;
    let c = cp.client();
    let v0 = cp.store.snapshot().version;
    cp.write_source("defaults:\n  sampling: {default_rate: 0.1}\n  bogus: 1\n");
    let status: Value = within("error reported", async {
        loop {
            let s: Value = c.get("/v1/status").await.unwrap();
            if !s["last_load_error"].is_null() {
                return s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let error = status["last_load_error"].as_str().unwrap();
    assert!(error.contains("source.yaml:3:"), "{error}");
    assert!(error.contains("bogus"), "{error}");
    assert_eq!(status["version"].as_u64(), Some(v0));
    let got: Value = c.get("/v1/config?service=x").await.unwrap();
    assert_eq!(got["config"]["sampling"]["default_rate"], 0.1);

    // Fixing the file clears the error.
    cp.write_source(V2);
    within("recovered", async {
        while cp.store.status().await.last_load_error.is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_ne!(cp.store.snapshot().version, v0, "V2 is a new state");
}

#[tokio::test]
async fn an_invalid_section_is_reported_with_its_index() {
    let cp = start(V1, None).await;
    cp.write_source(
        "workloads:\n  - match: {service: a}\n    config: {limits: {max_header_bytes: 1}}\n",
    );
    let error = within("error reported", async {
        loop {
            if let Some(e) = cp.store.status().await.last_load_error {
                return e;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(error.contains("workloads[0]"), "{error}");
    assert!(error.contains("limits.max_header_bytes"), "{error}");
}

#[tokio::test]
async fn an_api_put_wins_until_the_file_changes_again() {
    let cp = start(V1, Some("t")).await;
    let c = cp.client();
    let doc = "defaults: {sampling: {default_rate: 0.9}}\n";
    let _: Value = within(
        "put",
        c.call(
            Method::PUT,
            "/v1/config/base",
            Some(("application/yaml", doc.into())),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        cp.store.snapshot().document.defaults["sampling"]["default_rate"],
        0.9
    );

    cp.write_source(V2);
    within("file wins", async {
        while cp.store.snapshot().document.defaults["sampling"]["default_rate"] != 0.2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}
