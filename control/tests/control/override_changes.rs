//! Changing an override in place: rate and budget changes are pushed, extensions
//! move the expiry, and the maximum duration holds on creation and on change.

use std::time::Duration;

use http::{Method, StatusCode};
use meshtrace_control::client::ClientError;
use meshtrace_control::overrides::{Created, Override, OverrideChange};
use meshtrace_control::testing::{self, start, within, Running};
use meshtrace_control::watch::FeedItem;
use serde_json::{json, Value};

const SOURCE: &str = "defaults: {sampling: {default_rate: 0.1}}\n";

fn error_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (StatusCode, String) {
    match r {
        Err(ClientError::Status { status, message }) => (status, message),
        other => panic!("expected an error status, got {other:?}"),
    }
}

async fn add(cp: &Running, body: Value) -> Override {
    let created: Created = within(
        "add",
        cp.client().send_json(Method::POST, "/v1/overrides", &body),
    )
    .await
    .unwrap();
    created.created
}

async fn patch(cp: &Running, id: &str, body: Value) -> Result<Override, ClientError> {
    let path = format!("/v1/overrides/{id}");
    within("patch", cp.client().send_json(Method::PATCH, &path, &body)).await
}

#[tokio::test]
async fn a_rate_change_in_place_pushes_a_new_version_to_watchers() {
    let cp = start(SOURCE, Some("t")).await;
    let mut watch = cp.watch("checkout", "shop", "c1", &[]).await;
    within("first", watch.next_config()).await.unwrap();
    let o = add(
        &cp,
        json!({"service": "checkout", "rate": 1.0, "for": "30m"}),
    )
    .await;
    let forced = within("forced", watch.next_config())
        .await
        .unwrap()
        .unwrap();

    let changed = patch(&cp, &o.id, json!({"rate": 0.25, "traces_per_second": 5}))
        .await
        .unwrap();
    assert_eq!((changed.id.as_str(), changed.rate), (o.id.as_str(), 0.25));
    assert_eq!(changed.expires_at, o.expires_at);
    let pushed = within("pushed", watch.next_config())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(pushed.version, forced.version);
    let f = pushed.config.sampling.forced_workload.unwrap();
    assert_eq!((f.rate, f.traces_per_second), (0.25, 5.0));
    let list: Vec<Override> = cp.client().get("/v1/overrides").await.unwrap();
    assert_eq!(list, [changed]);
}

#[tokio::test]
async fn extend_moves_the_expiry_back_by_the_given_duration() {
    let cp = start(SOURCE, Some("t")).await;
    let o = add(&cp, json!({"tenant": "acme", "rate": 1.0, "for": "30m"})).await;
    let extended = patch(&cp, &o.id, json!({"extend": "1h", "reason": "INC-7"}))
        .await
        .unwrap();
    assert_eq!(
        extended.expires_at.0,
        o.expires_at.0 + Duration::from_secs(3600)
    );
    assert_eq!(extended.reason.as_deref(), Some("INC-7"));
}

#[tokio::test]
async fn an_override_longer_than_the_maximum_is_400_naming_the_limit() {
    let cp = start(SOURCE, Some("t")).await;
    let body = json!({"service": "checkout", "rate": 1.0, "for": "25h"});
    let r = within(
        "add",
        cp.client()
            .send_json::<Created>(Method::POST, "/v1/overrides", &body),
    )
    .await;
    let (status, message) = error_of(r);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.contains("at most 24h (serve --max-override-duration)"),
        "{message}"
    );
    let list: Vec<Override> = cp.client().get("/v1/overrides").await.unwrap();
    assert!(list.is_empty());
}

#[tokio::test]
async fn an_extension_beyond_the_maximum_is_400_and_changes_nothing() {
    let cp = start(SOURCE, Some("t")).await;
    let o = add(
        &cp,
        json!({"service": "checkout", "rate": 1.0, "for": "23h"}),
    )
    .await;
    let version = cp.store.snapshot().version;
    let (status, message) = error_of(patch(&cp, &o.id, json!({"extend": "2h"})).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("at most 24h"), "{message}");
    let list: Vec<Override> = cp.client().get("/v1/overrides").await.unwrap();
    assert_eq!(list, [o]);
    assert_eq!(cp.store.snapshot().version, version);
}

#[tokio::test]
async fn patch_needs_the_token_a_known_id_and_a_valid_change() {
    let cp = start(SOURCE, Some("t")).await;
    let o = add(
        &cp,
        json!({"service": "checkout", "rate": 1.0, "for": "30m"}),
    )
    .await;
    let path = format!("/v1/overrides/{}", o.id);
    let anonymous = cp.client_with(None);
    let r = anonymous
        .send_json::<Override>(Method::PATCH, &path, &json!({"rate": 0.5}))
        .await;
    assert_eq!(error_of(r).0, StatusCode::UNAUTHORIZED);
    let r = patch(&cp, "ovr-nope", json!({"rate": 0.5})).await;
    assert_eq!(error_of(r).0, StatusCode::NOT_FOUND);
    for bad in [
        json!({}),
        json!({"rate": 2}),
        json!({"for": "1h", "extend": "1h"}),
        json!({"ttl": "1h"}),
    ] {
        let r = patch(&cp, &o.id, bad.clone()).await;
        assert_eq!(error_of(r).0, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// On a paused clock: adds a 30-minute override of `checkout`, applies `change`
/// to it a minute later, and returns how long after the change the override's removal was
/// pushed.
async fn expiry_after(change: OverrideChange) -> Duration {
    let fixture = testing::store(SOURCE);
    let store = &fixture.store;
    let (mut feed, o) = super::overrides::checkout_forced_for_30m(store).await;

    // A minute into the incident (simulated time): the expiry timer is armed
    // for the original expiry by now.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let started = tokio::time::Instant::now();
    store.update_override(&o.id, &change).await.unwrap();
    // Paused clock: the runtime jumps to the expiry timer when idle.
    let item = tokio::time::timeout(Duration::from_secs(3 * 3600), feed.next())
        .await
        .unwrap();
    let Some(FeedItem::Config { resolved, .. }) = item else {
        panic!("no config");
    };
    assert_eq!(resolved.config.sampling.forced_workload, None);
    assert!(store.overrides().await.is_empty());
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn an_extended_override_outlives_its_old_expiry_and_expires_at_the_new_one() {
    let waited = expiry_after(OverrideChange {
        extend: Some("30m".into()),
        ..OverrideChange::default()
    })
    .await;
    // Created at 0, extended at 1 min from 30 to 60 min: 59 min after the change.
    assert!(
        waited >= Duration::from_secs(59 * 60),
        "expired at the old time: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(60 * 60),
        "expired late: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shortened_override_expires_at_its_new_time() {
    let waited = expiry_after(OverrideChange {
        duration: Some("5m".into()),
        ..OverrideChange::default()
    })
    .await;
    assert!(waited >= Duration::from_secs(5 * 60), "early: {waited:?}");
    assert!(
        waited < Duration::from_secs(6 * 60),
        "expired late: {waited:?}"
    );
}
