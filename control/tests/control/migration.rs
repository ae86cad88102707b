//! Migration: stage moves (one command per move, kept across restarts), sidecar
//! reports, and the fleet-wide view.

use http::{Method, StatusCode};
use meshtrace_config::report::{FormatCounts, Report};
use meshtrace_config::MigrationStage::{self, Dual, Legacy, W3c};
use meshtrace_config::PropagationFormat::{B3Multi, TraceContext};
use meshtrace_control::client::ClientError;
use meshtrace_control::migration::MigrationView;
use meshtrace_control::stages::{StageAction, StageMove, StageRequest};
use meshtrace_control::testing::{start, within, Running};
use serde_json::{json, Value};

const SOURCE: &str = r#"
defaults:
  sampling: {default_rate: 0.1}
workloads:
  - match: {service: cart}
    config: {propagation: {stage: w3c}}
"#;

fn request(service: &str, action: StageAction) -> StageRequest {
    StageRequest {
        service: service.into(),
        namespace: Some("shop".into()),
        action: Some(action),
        stage: None,
    }
}

async fn stage_move(cp: &Running, r: StageRequest) -> Result<StageMove, ClientError> {
    within("move", cp.client().move_stage(&r)).await
}

async fn resolved_stage(cp: &Running, query: &str) -> Value {
    let got: Value = within("get", cp.client().get(&format!("/v1/config?{query}")))
        .await
        .unwrap();
    got["config"]["propagation"]["stage"].clone()
}

fn status_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (StatusCode, String) {
    match r {
        Err(ClientError::Status { status, message }) => (status, message),
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[tokio::test]
async fn advance_moves_one_stage_and_pushes_it_to_the_workload() {
    let cp = start(SOURCE, Some("t")).await;
    let mut watch = cp.watch("checkout", "shop", "c1", &[]).await;
    let first = within("first", watch.next_config()).await.unwrap().unwrap();
    assert_eq!(first.config.propagation.stage, Legacy);

    let moved = stage_move(&cp, request("checkout", StageAction::Advance))
        .await
        .unwrap();
    assert_eq!((moved.from, moved.to), (Legacy, Dual));
    let pushed = within("pushed", watch.next_config())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed.config.propagation.stage, Dual);
    assert_eq!(pushed.version, moved.version);
    // Scoped to its namespace.
    assert_eq!(
        resolved_stage(&cp, "service=checkout&namespace=staging").await,
        "legacy"
    );
}

#[tokio::test]
async fn advancing_from_w3c_and_rolling_back_from_legacy_are_409() {
    let cp = start(SOURCE, Some("t")).await;
    let (status, message) = status_of(stage_move(&cp, request("cart", StageAction::Advance)).await);
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        message,
        "cart (shop) is at w3c, the last stage: there is nothing to advance to"
    );
    let r = stage_move(&cp, request("checkout", StageAction::Rollback)).await;
    assert_eq!(status_of(r).0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_move_needs_the_token() {
    let cp = start(SOURCE, Some("t")).await;
    let body = json!({"service": "checkout", "action": "advance"});
    let r = cp
        .client_with(None)
        .send_json::<StageMove>(Method::POST, "/v1/migration/stage", &body)
        .await;
    assert_eq!(status_of(r).0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rolling_back_to_what_the_document_says_removes_the_assignment() {
    let cp = start(SOURCE, Some("t")).await;
    let moved = stage_move(&cp, request("cart", StageAction::Rollback))
        .await
        .unwrap();
    assert_eq!((moved.from, moved.to), (W3c, Dual));
    assert_eq!(
        within("stages", cp.client().stages()).await.unwrap().len(),
        1
    );
    let back = StageRequest {
        action: None,
        stage: Some(W3c),
        ..request("cart", StageAction::Advance)
    };
    stage_move(&cp, back).await.unwrap();
    assert!(within("stages", cp.client().stages())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        resolved_stage(&cp, "service=cart&namespace=shop").await,
        "w3c"
    );
}

#[tokio::test]
async fn stage_moves_and_the_version_survive_a_restart() {
    let mut cp = start(SOURCE, Some("t")).await;
    let moved = stage_move(&cp, request("checkout", StageAction::Advance))
        .await
        .unwrap();
    cp.restart().await;
    assert_eq!(
        cp.store.snapshot().version,
        moved.version,
        "the same state, the same version"
    );
    assert_eq!(
        resolved_stage(&cp, "service=checkout&namespace=shop").await,
        "dual"
    );
    let again = stage_move(&cp, request("checkout", StageAction::Advance))
        .await
        .unwrap();
    assert_eq!((again.from, again.to), (Dual, W3c));
}

fn counts(tracecontext: u64, b3: u64) -> FormatCounts {
    FormatCounts {
        requests: tracecontext + b3,
        legacy: b3,
        none: 0,
        formats: [(TraceContext, tracecontext), (B3Multi, b3)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect(),
    }
}

fn report(pod: &str, stage: MigrationStage, tracecontext: u64, b3: u64) -> Report {
    Report {
        namespace: "shop".into(),
        pod: pod.into(),
        service: Some("checkout".into()),
        boot: 7,
        stage,
        inbound: counts(tracecontext, b3),
        callers: [("web.shop".to_string(), counts(0, b3))].into(),
        app_formats: Some([(B3Multi, 2)].into()),
        ..Report::default()
    }
}

#[tokio::test]
async fn reports_of_two_sidecars_add_up_in_the_workloads_row() {
    let cp = start(SOURCE, Some("t")).await;
    // Sidecars report without the token.
    let sidecar = cp.client_with(None);
    for r in [
        report("c1", Legacy, 100, 50),
        report("c2", Legacy, 10, 0),
        report("c1", Legacy, 150, 60),
        report("c2", Dual, 40, 5),
    ] {
        within("report", sidecar.report(&r)).await.unwrap();
    }
    let view: MigrationView = within("view", cp.client().migration()).await.unwrap();
    let [row] = &view.workloads[..] else {
        panic!("{view:?}");
    };
    assert_eq!(row.name(), "checkout.shop");
    assert_eq!((row.stage, row.sidecars), (Some(Legacy), 2));
    assert_eq!(row.reported_stages, [(Legacy, 1), (Dual, 1)].into());
    // c1: +50 W3C, +10 B3; c2: +30 W3C, +5 B3.
    assert_eq!(row.received.inbound, counts(80, 15));
    assert_eq!(row.callers["web.shop"], counts(0, 15));
    assert_eq!(row.app_formats, Some([(B3Multi, 2)].into()));
    let share = row.legacy_share.expect("a share");
    assert!((share - 15.0 / 95.0).abs() < 1e-9, "{share}");
    let status: Value = cp.client().get("/v1/status").await.unwrap();
    assert_eq!(status["reporting_sidecars"], 2);
}

#[tokio::test]
async fn a_bad_or_oversized_report_is_refused() {
    let cp = start(SOURCE, Some("t")).await;
    let c = cp.client_with(None);
    let unknown = json!({"namespace": "shop", "pod": "c1", "boot": 1, "extra": 1});
    let r = c
        .send_json::<Value>(Method::POST, "/v1/report", &unknown)
        .await;
    assert_eq!(status_of(r).0, StatusCode::BAD_REQUEST);
    let mut big = report("c1", Legacy, 1, 1);
    big.service = Some("x".repeat(70 * 1024));
    let r = within("report", c.report(&big)).await;
    assert_eq!(status_of(r).0, StatusCode::PAYLOAD_TOO_LARGE);
}
