//! The ConfigMap backend against scripted API exchanges: kube's `Client` over a
//! `tower_test` mock service that answers each request in turn.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower_test::mock;

use super::*;
use crate::overrides::NewOverride;
use crate::store::{Store, StoreError, StoreOptions};

type Handle = mock::Handle<Request<Body>, Response<Full<Bytes>>>;

/// What the client sent.
#[derive(Debug)]
struct Sent {
    method: Method,
    uri: String,
    body: Value,
}

/// A scripted answer.
struct Answer(StatusCode, Value);

fn client() -> (Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Full<Bytes>>>();
    (Client::new(service, "default"), handle)
}

fn state(client: Client) -> ConfigMapState {
    ConfigMapState::new(client, "mesh", "meshtrace-control-state")
}

fn configmap(revision: &str, state: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "meshtrace-control-state", "namespace": "mesh",
                     "resourceVersion": revision},
        "data": {"state.json": state.to_string()},
    })
}

fn status(code: u16, reason: &str) -> Answer {
    let status = StatusCode::from_u16(code).unwrap();
    Answer(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("scripted {reason}"), "reason": reason, "code": code}),
    )
}

fn ok(body: Value) -> Answer {
    Answer(StatusCode::OK, body)
}

/// Answers the next request; returns what was sent.
async fn answer(handle: &mut Handle, answer: Answer) -> Sent {
    let next = tokio::time::timeout(Duration::from_secs(10), handle.next_request());
    let (request, respond) = next.await.expect("a request in time").expect("a request");
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = match &answer.1 {
        Value::String(lines) => lines.clone(),
        other => other.to_string(),
    };
    let response = Response::builder()
        .status(answer.0)
        .body(Full::new(Bytes::from(text)))
        .unwrap();
    respond.send_response(response);
    Sent {
        method: parts.method,
        uri: parts.uri.to_string(),
        body,
    }
}

fn stored_state(sent: &Sent) -> Value {
    let text = sent.body["data"]["state.json"].as_str().unwrap_or("null");
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn a_missing_configmap_is_created() {
    let (client, mut handle) = client();
    let api = tokio::spawn(async move { state(client).load().await });
    let get = answer(&mut handle, status(404, "NotFound")).await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(
        get.uri,
        "/api/v1/namespaces/mesh/configmaps/meshtrace-control-state"
    );
    let created = configmap("7", &json!({"version": 0, "overrides": []}));
    let post = answer(&mut handle, Answer(StatusCode::CREATED, created)).await;
    assert_eq!(post.method, Method::POST);
    assert!(
        post.uri.starts_with("/api/v1/namespaces/mesh/configmaps?"),
        "{}",
        post.uri
    );
    assert_eq!(post.body["metadata"]["name"], "meshtrace-control-state");
    assert_eq!(stored_state(&post)["overrides"], json!([]));
    let stored = api.await.unwrap().unwrap();
    assert_eq!(stored.revision, "7");
    assert_eq!(stored.state, PersistedState::default());
}

#[tokio::test]
async fn an_update_carries_the_resource_version_read() {
    let (client, mut handle) = client();
    let saved = PersistedState {
        version: 9,
        ..PersistedState::default()
    };
    let put = tokio::spawn(async move { state(client).save(&saved, Some("41")).await });
    let sent = answer(&mut handle, ok(configmap("42", &json!({"version": 9})))).await;
    assert_eq!(sent.method, Method::PUT);
    assert!(
        sent.uri
            .starts_with("/api/v1/namespaces/mesh/configmaps/meshtrace-control-state"),
        "{}",
        sent.uri
    );
    assert_eq!(sent.body["metadata"]["resourceVersion"], "41");
    assert_eq!(stored_state(&sent)["version"], 9);
    assert_eq!(put.await.unwrap().unwrap(), "42");
}

#[tokio::test]
async fn an_unreachable_api_at_start_is_a_clear_error() {
    let (client, mut handle) = client();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("mesh.yaml");
    std::fs::write(&source, "defaults: {}\n").unwrap();
    let open = tokio::spawn(async move {
        Store::open_kubernetes(&source, state(client), StoreOptions::default()).await
    });
    answer(&mut handle, status(503, "ServiceUnavailable")).await;
    let error = open.await.unwrap().err().map(|e| e.to_string()).unwrap();
    assert!(
        error.contains("ConfigMap mesh/meshtrace-control-state")
            && error.contains("Kubernetes API unavailable"),
        "{error}"
    );
}

/// A store opened on ConfigMap revision "1" holding `initial`.
async fn opened(initial: Value) -> (Store, Handle, tempfile::TempDir) {
    let (client, mut handle) = client();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("mesh.yaml");
    std::fs::write(&source, "defaults: {sampling: {default_rate: 0.1}}\n").unwrap();
    let open = tokio::spawn(async move {
        Store::open_kubernetes(&source, state(client), StoreOptions::default()).await
    });
    answer(&mut handle, ok(configmap("1", &initial))).await;
    (open.await.unwrap().unwrap(), handle, dir)
}

fn new_override(service: &str) -> NewOverride {
    serde_json::from_value(json!({"service": service, "rate": 1.0, "for": "1h"})).unwrap()
}

#[tokio::test]
async fn a_conflicting_write_is_reapplied_to_the_fresh_state() {
    let (store, mut handle, _dir) = opened(json!({"version": 0})).await;
    let add = tokio::spawn({
        let store = store.clone();
        async move { store.add_override(new_override("checkout")).await }
    });
    // The first PUT loses to another replica's write.
    let first = answer(&mut handle, status(409, "Conflict")).await;
    assert_eq!(first.method, Method::PUT);
    assert_eq!(first.body["metadata"]["resourceVersion"], "1");
    // The store reads the fresh state: the other replica added an override.
    let theirs = store_with_override("cart");
    let reread = answer(&mut handle, ok(configmap("2", &theirs))).await;
    assert_eq!(reread.method, Method::GET);
    // ... and writes both, on top of revision 2.
    let second = answer(&mut handle, ok(configmap("3", &json!({})))).await;
    assert_eq!(second.method, Method::PUT);
    assert_eq!(second.body["metadata"]["resourceVersion"], "2");
    let services: Vec<Value> = stored_state(&second)["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["service"].clone())
        .collect();
    assert_eq!(services, [json!("cart"), json!("checkout")]);
    add.await.unwrap().unwrap();
    let snapshot = store.snapshot();
    assert_eq!(snapshot.overrides.len(), 2);
    assert_eq!(
        stored_state(&second)["version"],
        snapshot.version,
        "the stored version is the published one"
    );
}

#[tokio::test]
async fn conflicts_that_never_end_are_a_409_and_change_nothing() {
    let (store, mut handle, _dir) = opened(json!({"version": 0})).await;
    let before = store.snapshot().version;
    let add = tokio::spawn({
        let store = store.clone();
        async move { store.add_override(new_override("checkout")).await }
    });
    for revision in 2..(2 + crate::store::CONFLICT_RETRIES) {
        answer(&mut handle, status(409, "Conflict")).await;
        let fresh = configmap(&revision.to_string(), &json!({"version": 0}));
        answer(&mut handle, ok(fresh)).await;
    }
    answer(&mut handle, status(409, "Conflict")).await;
    let error = add.await.unwrap().unwrap_err();
    assert!(
        matches!(error, StoreError::Persist(StateError::Conflict { .. })),
        "{error:?}"
    );
    let api = crate::reply::ApiError::from(error);
    assert_eq!(api.status, StatusCode::CONFLICT);
    assert_eq!(store.snapshot().version, before);
    assert!(store.overrides().await.is_empty());
}

fn store_with_override(service: &str) -> Value {
    let ovr = new_override(service)
        .build(std::time::SystemTime::now(), Duration::from_secs(86_400))
        .unwrap();
    json!({"version": 0, "overrides": [ovr]})
}

#[tokio::test]
async fn a_write_while_the_api_is_down_is_a_503_and_the_last_state_keeps_serving() {
    let (store, mut handle, _dir) = opened(store_with_override("cart")).await;
    let before = store.snapshot();
    let add = tokio::spawn({
        let store = store.clone();
        async move { store.add_override(new_override("checkout")).await }
    });
    answer(&mut handle, status(503, "ServiceUnavailable")).await;
    let error = add.await.unwrap().unwrap_err();
    let api = crate::reply::ApiError::from(error);
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    let after = store.snapshot();
    assert_eq!(after.version, before.version);
    assert_eq!(
        after.overrides.len(),
        1,
        "the last state read keeps serving"
    );
}

#[tokio::test(start_paused = true)]
async fn another_replicas_write_becomes_a_snapshot_and_an_outage_is_retried() {
    let (store, mut handle, _dir) = opened(json!({"version": 0})).await;
    let first = store.snapshot().version;
    let cancel = CancellationToken::new();
    store.spawn_background(Duration::from_secs(3600), cancel.clone());
    let mut rx = store.subscribe();

    // The follower reads, then watches from the revision it read.
    let read = answer(&mut handle, ok(configmap("1", &json!({"version": 0})))).await;
    assert_eq!(read.method, Method::GET);
    let theirs = configmap("5", &store_with_override("cart"));
    let event = json!({"type": "MODIFIED", "object": theirs}).to_string() + "\n";
    let watch = answer(&mut handle, ok(Value::String(event))).await;
    assert!(
        watch.uri.contains("watch=true") && watch.uri.contains("resourceVersion=1"),
        "{}",
        watch.uri
    );
    assert!(
        watch.uri.contains("fieldSelector=metadata.name"),
        "{}",
        watch.uri
    );
    rx.changed().await.unwrap();
    let snapshot = rx.borrow_and_update().clone();
    assert_eq!(snapshot.overrides.len(), 1);
    assert_ne!(snapshot.version, first);

    // The watch ended; the API is down for a while: the replica keeps serving
    // what it has and reads again after a backoff.
    let down = answer(&mut handle, status(503, "ServiceUnavailable")).await;
    assert_eq!(down.method, Method::GET);
    let back = answer(&mut handle, ok(configmap("6", &json!({"version": 0})))).await;
    assert_eq!(back.method, Method::GET);
    rx.changed().await.unwrap();
    assert!(
        rx.borrow_and_update().overrides.is_empty(),
        "the override was removed"
    );
    assert_eq!(store.snapshot().version, first, "same state, same version");
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn two_replicas_expiring_the_same_override_end_at_the_same_state() {
    let (store, mut handle, _dir) = opened(store_with_override("cart")).await;
    let (empty, _other, _other_dir) = opened(json!({"version": 0})).await;
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    let expire = tokio::spawn({
        let store = store.clone();
        async move { store.expire().await }
    });
    // The other replica expired it first: this one's write loses, and the
    // state it reads again has nothing left to expire, so it writes nothing.
    let lost = answer(&mut handle, status(409, "Conflict")).await;
    assert_eq!(lost.method, Method::PUT);
    assert_eq!(stored_state(&lost)["overrides"], json!([]));
    let fresh = answer(&mut handle, ok(configmap("2", &json!({"version": 0})))).await;
    assert_eq!(fresh.method, Method::GET);
    assert_eq!(expire.await.unwrap(), 0, "nothing left to expire");
    assert!(store.snapshot().overrides.is_empty());
    assert_eq!(store.snapshot().version, empty.snapshot().version);
}

#[tokio::test]
async fn boosts_off_is_stored_in_the_configmap_and_served_by_another_replica() {
    let (store, mut handle, _dir) = opened(json!({"version": 0})).await;
    let off = tokio::spawn({
        let store = store.clone();
        async move { store.set_boosts(false).await }
    });
    let put = answer(&mut handle, ok(configmap("2", &json!({})))).await;
    assert_eq!(put.method, Method::PUT);
    let stored = stored_state(&put);
    assert!(
        stored["switches"]["boosts_off_since"].is_string(),
        "{stored}"
    );
    let state = off.await.unwrap().unwrap();
    assert!(!state.enabled);
    // Another replica reading that state serves the same, under the same version.
    let (replica, _handle, _dir) = opened(stored).await;
    let snapshot = replica.snapshot();
    assert!(!snapshot.switches.boosts_enabled());
    assert_eq!(snapshot.version, state.version);
    assert_eq!(snapshot.version, store.snapshot().version);
}
