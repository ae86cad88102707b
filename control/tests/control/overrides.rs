//! Incident overrides: pushed to watchers, expired by a timer, kept across
//! restarts; all of them apply, scoped by namespace, with warnings for targets
//! nobody has heard of. Changes in place are in `override_changes.rs`.

use std::time::Duration;

use http::{Method, StatusCode};
use meshtrace_config::report::Report;
use meshtrace_config::ForcedWorkload;
use meshtrace_control::client::ClientError;
use meshtrace_control::overrides::{Created, NewOverride, Override};
use meshtrace_control::resolve::Workload;
use meshtrace_control::store::Store;
use meshtrace_control::testing::{self, start, within, Running};
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
    assert_ne!(pushed.version, first.version);
    let s = &pushed.config.sampling;
    assert_eq!(
        s.forced_workload,
        Some(ForcedWorkload {
            rate: 1.0,
            traces_per_second: 100.0
        })
    );
    // Root decisions are untouched: the override forces, it does not re-rate.
    assert_eq!((s.default_rate, s.rules[0].rate), (0.1, Some(0.2)));
    assert_eq!(s.rules[0].reservoir_per_second, Some(5));

    // Another service's config did not change.
    let cart: Value = cp.client().get("/v1/config?service=cart").await.unwrap();
    assert_eq!(cart["config"]["sampling"]["forced_workload"], Value::Null);
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
    assert_eq!(
        cp.store.snapshot().version,
        before,
        "the same state, the same version after a restart"
    );
    let mut watch = cp.watch("checkout", "shop", "c1", &[]).await;
    let first = within("first", watch.next_config()).await.unwrap().unwrap();
    assert!(first.config.sampling.forced_workload.is_some());
}

#[tokio::test(start_paused = true)]
async fn an_override_expires_on_time_and_the_change_is_pushed() {
    let fixture = testing::store(SOURCE);
    let store = &fixture.store;

    let (mut feed, _) = checkout_forced_for_30m(store).await;
    let resolved = store.snapshot().resolve(&checkout()).unwrap();
    assert!(resolved.config.sampling.forced_workload.is_some());

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
    assert_eq!(resolved.config.sampling.forced_workload, None);
    assert!(store.overrides().await.is_empty());
    assert_eq!(version, store.snapshot().version);
}

fn checkout() -> Workload {
    Workload {
        service: Some("checkout".into()),
        ..Workload::default()
    }
}

/// Watches `checkout`'s config on `store` (its first config read), then adds a
/// 30-minute override of `checkout` and reads its push.
pub(crate) async fn checkout_forced_for_30m(store: &Store) -> (ConfigFeed, Override) {
    let mut feed = ConfigFeed::new(store.subscribe(), checkout());
    within("first", feed.next()).await.unwrap();
    let new = NewOverride {
        service: Some("checkout".into()),
        rate: 1.0,
        duration: Some("30m".into()),
        ..NewOverride::default()
    };
    let added = store.add_override(new).await.unwrap();
    let Some(FeedItem::Config { .. }) = within("override pushed", feed.next()).await else {
        panic!("no config pushed for the override");
    };
    (feed, added)
}

/// Adds an override through the API; returns the answer (override + warnings).
async fn add(cp: &Running, body: Value) -> Created {
    within(
        "add",
        cp.client().send_json(Method::POST, "/v1/overrides", &body),
    )
    .await
    .unwrap_or_else(|e| panic!("add {body}: {e}"))
}

async fn config_of(cp: &Running, query: &str) -> Value {
    let got: Value = within("get", cp.client().get(&format!("/v1/config?{query}")))
        .await
        .unwrap();
    got["config"]["sampling"].clone()
}

#[tokio::test]
async fn a_service_override_and_two_tenant_overrides_are_all_in_force() {
    let cp = start(SOURCE, Some("t")).await;
    add(
        &cp,
        json!({"service": "checkout", "rate": 1.0, "for": "30m"}),
    )
    .await;
    add(&cp, json!({"tenant": "acme", "rate": 1.0, "for": "30m"})).await;
    let s = config_of(&cp, "service=checkout&namespace=shop").await;
    assert_eq!(s["forced_workload"]["rate"], 1.0);
    assert_eq!(s["forced_tenants"].as_array().map(Vec::len), Some(1));

    add(&cp, json!({"tenant": "globex", "rate": 0.5, "for": "30m"})).await;
    let s = config_of(&cp, "service=checkout&namespace=shop").await;
    assert_eq!(s["forced_workload"]["rate"], 1.0);
    let tenants: Vec<&str> = s["forced_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
}

#[tokio::test]
async fn a_namespaced_service_override_applies_in_its_namespace_only() {
    let cp = start(SOURCE, Some("t")).await;
    add(
        &cp,
        json!({"service": "checkout", "namespace": "shop", "rate": 1.0, "for": "30m"}),
    )
    .await;
    let shop = config_of(&cp, "service=checkout&namespace=shop").await;
    assert_eq!(shop["forced_workload"]["rate"], 1.0);
    let staging = config_of(&cp, "service=checkout&namespace=staging").await;
    assert_eq!(staging["forced_workload"], Value::Null);
}

#[tokio::test]
async fn the_same_service_in_another_namespace_is_not_a_conflict_but_the_same_one_is() {
    let cp = start(SOURCE, Some("t")).await;
    let everywhere = json!({"service": "checkout", "rate": 0.5, "for": "30m"});
    add(&cp, everywhere.clone()).await;
    add(
        &cp,
        json!({"service": "checkout", "namespace": "shop", "rate": 1.0, "for": "30m"}),
    )
    .await;
    // The namespaced one applies last, whatever the creation order.
    let shop = config_of(&cp, "service=checkout&namespace=shop").await;
    assert_eq!(shop["forced_workload"]["rate"], 1.0);
    let elsewhere = config_of(&cp, "service=checkout&namespace=staging").await;
    assert_eq!(elsewhere["forced_workload"]["rate"], 0.5);

    let again = cp
        .client()
        .send_json::<Created>(Method::POST, "/v1/overrides", &everywhere)
        .await;
    match again {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, StatusCode::CONFLICT);
            assert!(message.contains("PATCH /v1/overrides/"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_override_for_an_unknown_service_is_created_with_a_warning() {
    let cp = start(SOURCE, Some("t")).await;
    let created = add(
        &cp,
        json!({"service": "chekout", "namespace": "shop", "rate": 1.0, "for": "30m"}),
    )
    .await;
    assert_eq!(
        created.warnings,
        [
            r#"no known workload or connected sidecar has service "chekout" (namespace "shop"); the override will apply when one connects"#
        ]
    );
    let list: Vec<Override> = cp.client().get("/v1/overrides").await.unwrap();
    assert_eq!(list, [created.created]);
}

#[tokio::test]
async fn a_service_known_from_the_document_or_a_sidecar_gets_no_warning() {
    let doc = format!("{SOURCE}workloads:\n  - match: {{service: cart}}\n    config: {{}}\n");
    let cp = start(&doc, Some("t")).await;
    let cart = add(&cp, json!({"service": "cart", "rate": 1.0, "for": "30m"})).await;
    assert!(cart.warnings.is_empty(), "{:?}", cart.warnings);

    let mut watch = cp.watch("checkout", "shop", "c1", &[]).await;
    within("first", watch.next_config()).await.unwrap();
    let connected = json!({"service": "checkout", "namespace": "shop", "rate": 1.0, "for": "30m"});
    assert!(add(&cp, connected).await.warnings.is_empty());

    let report = Report {
        namespace: "pay".into(),
        pod: "ledger-1".into(),
        service: Some("ledger".into()),
        boot: 1,
        ..Report::default()
    };
    within("report", cp.client().report(&report)).await.unwrap();
    let reported = json!({"service": "ledger", "rate": 1.0, "for": "30m"});
    assert!(add(&cp, reported).await.warnings.is_empty());
    // Known in another namespace only is still unknown here.
    let elsewhere = json!({"service": "ledger", "namespace": "shop", "rate": 1.0, "for": "30m"});
    assert_eq!(add(&cp, elsewhere).await.warnings.len(), 1);
}
