//! The HTTP API: auth, base document validation, ACK/NACK bookkeeping, resolution.

use http::{Method, StatusCode};
use meshtrace_control::client::ClientError;
use meshtrace_control::testing::{start, within};
use serde_json::{json, Value};

const SOURCE: &str = r#"
defaults:
  sampling: {default_rate: 0.1}
  export: {endpoint: "http://otel-collector:4317"}
workloads:
  - match: {service: checkout, namespace: shop}
    config: {sampling: {default_rate: 0.5}}
  - match: {service: checkout, labels: {tier: web}}
    config: {sampling: {default_rate: 0.7}}
"#;

fn status_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> StatusCode {
    match r {
        Err(ClientError::Status { status, .. }) => status,
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_without_a_token_are_401_with_www_authenticate() {
    let cp = start(SOURCE, Some("s3cret")).await;
    let body = Some(("application/json", r#"{"defaults":{}}"#.into()));
    let (status, _) = within(
        "put",
        cp.client_with(None)
            .send(Method::PUT, "/v1/config/base", body),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn writes_with_a_wrong_token_are_403_and_the_right_one_200() {
    let cp = start(SOURCE, Some("s3cret")).await;
    let wrong = cp.client_with(Some("nope".into()));
    let r = within(
        "put",
        wrong.send_json::<Value>(Method::PUT, "/v1/config/base", &json!({})),
    )
    .await;
    assert_eq!(status_of(r), StatusCode::FORBIDDEN);
    let v: Value = within(
        "put",
        cp.client()
            .send_json(Method::PUT, "/v1/config/base", &json!({})),
    )
    .await
    .unwrap();
    assert!(v["version"].as_u64().is_some());
}

#[tokio::test]
async fn without_a_configured_token_writes_are_403() {
    let cp = start(SOURCE, None).await;
    let any = cp.client_with(Some("anything".into()));
    let r = within(
        "post",
        any.send_json::<Value>(Method::POST, "/v1/overrides", &json!({})),
    )
    .await;
    assert_eq!(status_of(r), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn reads_are_open() {
    let cp = start(SOURCE, Some("s3cret")).await;
    let status: Value = within("status", cp.client_with(None).get("/v1/status"))
        .await
        .unwrap();
    assert_eq!(status["override_count"], 0);
    assert_eq!(status["last_load_error"], Value::Null);
}

#[tokio::test]
async fn config_get_resolves_sections_in_order_with_labels() {
    let cp = start(SOURCE, None).await;
    let c = cp.client();
    let rate = |v: Value| v["config"]["sampling"]["default_rate"].as_f64();
    let web: Value = within(
        "get",
        c.get("/v1/config?service=checkout&namespace=shop&label=tier%3Dweb"),
    )
    .await
    .unwrap();
    assert_eq!(rate(web), Some(0.7));
    let db: Value = within(
        "get",
        c.get("/v1/config?service=checkout&namespace=shop&label=tier=db"),
    )
    .await
    .unwrap();
    assert_eq!(rate(db), Some(0.5));
    let other: Value = within("get", c.get("/v1/config?service=cart"))
        .await
        .unwrap();
    assert_eq!(rate(other), Some(0.1));
}

#[tokio::test]
async fn invalid_put_is_400_and_changes_nothing() {
    let cp = start(SOURCE, Some("t")).await;
    let c = cp.client();
    let before: Value = within("get", c.get("/v1/config/base")).await.unwrap();
    let bad = "defaults:\n  sampling: {default_rate: 3}\n";
    let r = within(
        "put",
        c.call::<Value>(
            Method::PUT,
            "/v1/config/base",
            Some(("application/yaml", bad.into())),
        ),
    )
    .await;
    match r {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains("sampling.default_rate"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Every problem in one answer: a misspelt key no longer hides the rest.
    let unknown = "defaults:\n  samplin: {}\n  limits: {backlog: 0}\n";
    let r = within(
        "put",
        c.call::<Value>(
            Method::PUT,
            "/v1/config/base",
            Some(("application/yaml", unknown.into())),
        ),
    )
    .await;
    match r {
        Err(ClientError::Status { status, message }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                message.contains("request body:2:3: defaults.samplin: unknown key `samplin`; did you mean `sampling`?"),
                "{message}"
            );
            assert!(
                message.contains("request body:3:12: defaults.limits.backlog: must be at least 1"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let after: Value = within("get", c.get("/v1/config/base")).await.unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn valid_put_replaces_the_base_and_bumps_the_version() {
    let cp = start(SOURCE, Some("t")).await;
    let c = cp.client();
    let v0 = cp.store.snapshot().version;
    let doc = "defaults: {sampling: {default_rate: 0.25}}\n";
    let v: Value = within(
        "put",
        c.call(
            Method::PUT,
            "/v1/config/base",
            Some(("application/yaml", doc.into())),
        ),
    )
    .await
    .unwrap();
    let v1 = v["version"].as_u64().unwrap();
    assert_ne!(v1, v0, "a new state, a new version");
    assert_eq!(v1, cp.store.snapshot().version);
    let got: Value = within("get", c.get("/v1/config?service=checkout&namespace=shop"))
        .await
        .unwrap();
    assert_eq!(got["config"]["sampling"]["default_rate"], 0.25);
    let status: Value = within("status", c.get("/v1/status")).await.unwrap();
    assert_eq!(status["document_origin"], "api");
}

#[tokio::test]
async fn patch_merges_and_is_validated() {
    let cp = start(SOURCE, Some("t")).await;
    let c = cp.client();
    let patch = json!({"defaults": {"sampling": {"default_rate": 0.3}, "export": null}});
    let _: Value = within(
        "patch",
        c.send_json(Method::PATCH, "/v1/config/base", &patch),
    )
    .await
    .unwrap();
    let base: Value = within("get", c.get("/v1/config/base")).await.unwrap();
    assert_eq!(base["defaults"], json!({"sampling": {"default_rate": 0.3}}));
    assert_eq!(base["workloads"].as_array().map(Vec::len), Some(2));

    let bad = json!({"workloads": [{"config": {"limits": {"max_connections": "many"}}}]});
    let r = within(
        "patch",
        c.send_json::<Value>(Method::PATCH, "/v1/config/base", &bad),
    )
    .await;
    assert_eq!(status_of(r), StatusCode::BAD_REQUEST);
    let again: Value = within("get", c.get("/v1/config/base")).await.unwrap();
    assert_eq!(base, again);
}

#[tokio::test]
async fn stale_if_match_is_409() {
    let cp = start(SOURCE, Some("t")).await;
    let current = cp.store.snapshot().version;
    let (status, body) = within("put", raw_put_if_match(&cp.url(), "t", current + 7)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = within("put", raw_put_if_match(&cp.url(), "t", current)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn raw_put_if_match(url: &str, token: &str, version: u64) -> (StatusCode, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::put(format!("{url}/v1/config/base"))
        .header("authorization", format!("Bearer {token}"))
        .header("if-match", version.to_string())
        .body(Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn ack_and_nack_show_in_sidecars() {
    let cp = start(SOURCE, None).await;
    let c = cp.client();
    let mut watch = cp
        .watch("checkout", "shop", "checkout-1", &[("tier", "web")])
        .await;
    let first = within("first event", watch.next_config())
        .await
        .unwrap()
        .unwrap();

    let ack = json!({"namespace": "shop", "pod": "checkout-1", "version": first.version, "status": "ack"});
    let _: Value = within("ack", c.send_json(Method::POST, "/v1/ack", &ack))
        .await
        .unwrap();
    let nack = json!({"namespace": "shop", "pod": "checkout-1", "version": first.version + 1,
                      "status": "nack", "error": "bad listener"});
    let _: Value = within("nack", c.send_json(Method::POST, "/v1/ack", &nack))
        .await
        .unwrap();

    let list: Value = within("sidecars", c.get("/v1/sidecars")).await.unwrap();
    let s = &list[0];
    assert_eq!(s["identity"], "shop/checkout-1");
    assert_eq!(s["service"], "checkout");
    assert_eq!(s["labels"], json!({"tier": "web"}));
    assert_eq!(s["sent_version"].as_u64(), Some(first.version));
    assert_eq!(s["acked_version"].as_u64(), Some(first.version));
    assert_eq!(
        s["last_rejection"],
        json!({"version": first.version + 1, "error": "bad listener"})
    );

    let stranger = json!({"namespace": "shop", "pod": "nobody", "version": 1, "status": "ack"});
    let r = within(
        "ack",
        c.send_json::<Value>(Method::POST, "/v1/ack", &stranger),
    )
    .await;
    assert_eq!(status_of(r), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_sidecar_is_unregistered_when_its_stream_ends() {
    let cp = start(SOURCE, None).await;
    let mut watch = cp.watch("checkout", "shop", "p", &[]).await;
    within("first", watch.next_config()).await.unwrap();
    assert_eq!(cp.sidecars.count(), 1);
    drop(watch);
    within("unregistered", async {
        while cp.sidecars.count() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let cp = start(SOURCE, None).await;
    let r = within("get", cp.client().get::<Value>("/v1/nope")).await;
    assert_eq!(status_of(r), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn known_routes_with_the_wrong_method_are_405() {
    let cp = start(SOURCE, None).await;
    for path in [
        "/v1/ack",
        "/v1/report",
        "/v1/migration/stage",
        "/v1/overrides/some-id",
    ] {
        let r = within("get", cp.client().get::<Value>(path)).await;
        assert_eq!(status_of(r), StatusCode::METHOD_NOT_ALLOWED, "GET {path}");
    }
}
