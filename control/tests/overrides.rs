//! Incident overrides: pushed to watchers, expired by a timer, kept across restarts.

use std::time::Duration;

use http::{Method, StatusCode};
use meshtrace_control::client::ClientError;
use meshtrace_control::overrides::{NewOverride, Override};
use meshtrace_control::resolve::Workload;
use meshtrace_control::state::StateFile;
use meshtrace_control::store::Store;
use meshtrace_control::testing::{start, within};
use meshtrace_control::watch::{ConfigFeed, FeedItem};
use serde_json::{json, Value};

const SOURCE: &str = r#"
defaults:
  sampling:
    default_rate: 0.1
    rules: [{match: {path_prefix: /api/}, rate: 0.2, reservoir_per_second: 5}]
"#;

#[tokio::test]
async fn a_service_override_is_pushed_to_its_watchers() {
    let cp = start(SOURCE, Some("t")).await;
    let mut checkout = cp.watch("checkout", "shop", "c1", &[]).await;
    let first = within("first", checkout.next_config())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.config.sampling.default_rate, 0.1);

    let body = json!({"service": "checkout", "rate": 1.0, "for": "30m", "reason": "INC-42"});
    let (status, bytes) = within(
        "post",
        cp.client().send(
            Method::POST,
            "/v1/overrides",
            Some(("application/json", body.to_string().into())),
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let created: Override = serde_json::from_slice(&bytes).unwrap();
    assert!(created.id.starts_with("ovr-"));

    let pushed = within("pushed", checkout.next_config())
        .await
        .unwrap()
        .unwrap();
    assert!(pushed.version > first.version);
    let s = &pushed.config.sampling;
    assert_eq!(s.default_rate, 1.0);
    assert_eq!(s.rules[0].rate, 1.0);
    assert_eq!(s.rules[0].reservoir_per_second, None);

    // Another service's config did not change.
    let cart: Value = cp.client().get("/v1/config?service=cart").await.unwrap();
    assert_eq!(cart["config"]["sampling"]["default_rate"], 0.1);
}

#[tokio::test]
async fn a_tenant_override_reaches_every_workload_and_duplicates_conflict() {
    let cp = start(SOURCE, Some("t")).await;
    let c = cp.client();
    let body = json!({"tenant": "acme", "rate": 1.0, "for": "1h"});
    let _: Override = within("add", c.send_json(Method::POST, "/v1/overrides", &body))
        .await
        .unwrap();
    let got: Value = c.get("/v1/config?service=anything").await.unwrap();
    assert_eq!(
        got["config"]["sampling"]["forced_tenants"],
        json!([{"tenant": "acme", "rate": 1.0, "override_parent": true, "traces_per_second": 100.0}])
    );
    match within(
        "dup",
        c.send_json::<Override>(Method::POST, "/v1/overrides", &body),
    )
    .await
    {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, StatusCode::CONFLICT),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn delete_removes_an_override_and_unknown_ids_are_404() {
    let cp = start(SOURCE, Some("t")).await;
    let c = cp.client();
    let body = json!({"service": "checkout", "rate": 0.0, "for": "5m"});
    let o: Override = within("add", c.send_json(Method::POST, "/v1/overrides", &body))
        .await
        .unwrap();
    let _: Override = within(
        "rm",
        c.call(Method::DELETE, &format!("/v1/overrides/{}", o.id), None),
    )
    .await
    .unwrap();
    let list: Vec<Override> = c.get("/v1/overrides").await.unwrap();
    assert!(list.is_empty());
    match within(
        "rm again",
        c.call::<Override>(Method::DELETE, &format!("/v1/overrides/{}", o.id), None),
    )
    .await
    {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, StatusCode::NOT_FOUND),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn overrides_and_version_survive_a_restart() {
    let mut cp = start(SOURCE, Some("t")).await;
    let body = json!({"service": "checkout", "rate": 1.0, "for": "30m"});
    let o: Override = within(
        "add",
        cp.client().send_json(Method::POST, "/v1/overrides", &body),
    )
    .await
    .unwrap();
    let before = cp.store.snapshot().version;

    cp.restart().await;
    let list: Vec<Override> = within("list", cp.client().get("/v1/overrides"))
        .await
        .unwrap();
    assert_eq!(list, vec![o]);
    assert!(
        cp.store.snapshot().version > before,
        "versions never go backwards"
    );
    let mut watch = cp.watch("checkout", "shop", "c1", &[]).await;
    let first = within("first", watch.next_config()).await.unwrap().unwrap();
    assert_eq!(first.config.sampling.default_rate, 1.0);
}

#[tokio::test(start_paused = true)]
async fn an_override_expires_on_time_and_the_change_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.yaml");
    std::fs::write(&source, SOURCE).unwrap();
    let store = Store::open(&source, StateFile::new(dir.path().join("state.json"))).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    store.spawn_background(Duration::from_secs(3600), cancel.clone());

    let workload = Workload {
        service: Some("checkout".into()),
        ..Workload::default()
    };
    let mut feed = ConfigFeed::new(store.subscribe(), workload);
    within("first", feed.next()).await.unwrap();
    let new = NewOverride {
        service: Some("checkout".into()),
        rate: 1.0,
        duration: Some("30m".into()),
        ..NewOverride::default()
    };
    store.add_override(new).await.unwrap();
    let Some(FeedItem::Config { resolved, .. }) = within("override pushed", feed.next()).await
    else {
        panic!("no config");
    };
    assert_eq!(resolved.config.sampling.default_rate, 1.0);

    let started = tokio::time::Instant::now();
    // Paused clock: the runtime jumps to the expiry timer when idle.
    let item = tokio::time::timeout(Duration::from_secs(3600), feed.next())
        .await
        .unwrap();
    let Some(FeedItem::Config { resolved, version }) = item else {
        panic!("no config");
    };
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30 * 60),
        "expired early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(31 * 60),
        "expired late: {waited:?}"
    );
    assert_eq!(resolved.config.sampling.default_rate, 0.1);
    assert!(store.overrides().await.is_empty());
    assert_eq!(version, store.snapshot().version);
    cancel.cancel();
}
