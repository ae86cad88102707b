//! Adaptive sampling in the control plane: each report is answered with the
//! sidecar's share of its workload's adaptive targets; boosts are turned off
//! fleet-wide with one command and shown in the status.

use http::{Method, StatusCode};
use meshtrace_config::report::{BoostReport, Report, RouteReport};
use meshtrace_control::client::ClientError;
use meshtrace_control::testing::{start, within, Running};
use serde_json::{json, Value};

const SOURCE: &str = "defaults: {sampling: {default_rate: 0.1}}\n";

/// Pod `pod` of checkout, 10 s old, whose adaptive route (8 traces a second
/// for the fleet) decided `roots` root requests, and whose fixed route did too.
fn report(pod: &str, roots: u64) -> Report {
    let adaptive = RouteReport {
        roots,
        target_traces_per_second: Some(8.0),
        rate: 0.05,
        ..RouteReport::default()
    };
    let fixed = RouteReport {
        roots,
        rate: 0.1,
        ..RouteReport::default()
    };
    Report {
        namespace: "shop".into(),
        pod: pod.into(),
        service: Some("checkout".into()),
        boot: 1,
        uptime_seconds: Some(10),
        routes: [
            ("pay".to_string(), adaptive),
            ("default".to_string(), fixed),
        ]
        .into(),
        ..Report::default()
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.05
}

#[tokio::test]
async fn two_pods_of_a_workload_split_its_target_by_their_root_rates() {
    let cp = start(SOURCE, Some("t")).await;
    let sidecar = cp.client_with(None);
    // c1 alone so far: the whole target.
    let first = within("report", sidecar.report(&report("c1", 300)))
        .await
        .unwrap();
    assert!(first.recorded);
    assert_eq!(
        first.budgets.keys().collect::<Vec<_>>(),
        ["pay"],
        "{first:?}"
    );
    assert!(near(first.budgets["pay"], 8.0), "{first:?}");
    // c2 decided a third as many roots in its 10 s: a quarter of the target.
    let c2 = within("report", sidecar.report(&report("c2", 100)))
        .await
        .unwrap();
    assert!(near(c2.budgets["pay"], 2.0), "{c2:?}");
    let c1 = within("report", sidecar.report(&report("c1", 300)))
        .await
        .unwrap();
    assert!(near(c1.budgets["pay"], 6.0), "{c1:?}");
    // The wire form keeps `recorded` for older sidecars.
    let raw: serde_json::Value = sidecar
        .send_json(http::Method::POST, "/v1/report", &report("c2", 100))
        .await
        .unwrap();
    assert_eq!(raw["recorded"], true, "{raw}");
    assert!(raw["budgets"]["pay"].as_f64().is_some(), "{raw}");
}

/// Runs a client command line in-process against `cp`; its stdout.
async fn cli(cp: &Running, args: &[&str]) -> String {
    crate::cli::cli(cp, args).await.stdout
}

async fn resolved_boosts(cp: &Running, service: &str) -> bool {
    let v: Value = cp
        .client()
        .get(&format!("/v1/config?service={service}&namespace=shop"))
        .await
        .unwrap();
    v["config"]["sampling"]["adaptive"]["boosts"]
        .as_bool()
        .unwrap_or_else(|| panic!("{v}"))
}

const BOOSTING: &str = "defaults: {sampling: {adaptive: {boosts: true}}}\nworkloads:\n  - match: {service: cart}\n    config: {sampling: {adaptive: {boosts: false}}}\n";

#[tokio::test]
async fn boost_off_reaches_every_sidecar_survives_a_restart_and_on_restores() {
    let mut cp = start(BOOSTING, Some("t")).await;
    let mut checkout = cp.watch("checkout", "shop", "c1", &[]).await;
    let first = within("first", checkout.next_config())
        .await
        .unwrap()
        .unwrap();
    assert!(first.config.sampling.adaptive.boosts);

    // A write: refused without the token.
    let anonymous = cp.client_with(None).set_boosts(false).await;
    match anonymous {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, StatusCode::UNAUTHORIZED),
        other => panic!("{other:?}"),
    }
    let r = cp
        .client()
        .send_json::<Value>(Method::PUT, "/v1/boosts", &json!({"enabled": "no"}))
        .await;
    assert!(
        matches!(
            r,
            Err(ClientError::Status {
                status: StatusCode::BAD_REQUEST,
                ..
            })
        ),
        "{r:?}"
    );

    let out = cli(&cp, &["boost", "off"]).await;
    assert!(out.starts_with("boosts OFF fleet-wide since "), "{out}");
    let pushed = within("pushed", checkout.next_config())
        .await
        .unwrap()
        .unwrap();
    assert!(!pushed.config.sampling.adaptive.boosts);
    assert_ne!(pushed.version, first.version, "a new version");
    assert!(!resolved_boosts(&cp, "checkout").await);
    let status: Value = cp.client().get("/v1/status").await.unwrap();
    assert_eq!(status["boosts_enabled"], false, "{status}");
    assert_eq!(cp.client().boosts().await.unwrap().version, pushed.version);

    // Kept in the state: a restarted control plane still has them off.
    cp.restart().await;
    assert!(!cp.client().boosts().await.unwrap().enabled);
    assert!(!resolved_boosts(&cp, "checkout").await);

    let out = cli(&cp, &["boost", "on"]).await;
    assert!(out.starts_with("boosts on"), "{out}");
    assert!(
        resolved_boosts(&cp, "checkout").await,
        "back to the document"
    );
    assert!(
        !resolved_boosts(&cp, "cart").await,
        "the document's own off stays"
    );
    let state = cp.client().boosts().await.unwrap();
    assert_eq!((state.enabled, state.off_since), (true, None));
    assert_eq!(
        state.version, first.version,
        "the state before: its version"
    );
}

#[tokio::test]
async fn active_boosts_show_in_the_status_and_the_cli() {
    let cp = start(SOURCE, Some("t")).await;
    let mut r = report("c1", 10);
    r.routes.get_mut("pay").unwrap().boost = Some(BoostReport {
        trigger: "error ratio 0.21 > 0.05 over 30s (120 requests)".into(),
        started_seconds_ago: 4,
        ends_in_seconds: 56,
        rate: 0.5,
    });
    within("report", cp.client_with(None).report(&r))
        .await
        .unwrap();
    within("report", cp.client_with(None).report(&report("c2", 10)))
        .await
        .unwrap();
    let status: Value = cp.client().get("/v1/status").await.unwrap();
    assert_eq!(status["boosts_enabled"], true);
    let boosts = status["boosts"].as_array().expect("boosts");
    assert_eq!(boosts.len(), 1, "{status}");
    let b = &boosts[0];
    assert_eq!(
        (b["pod"].as_str(), b["route"].as_str()),
        (Some("c1"), Some("pay"))
    );
    assert_eq!(b["service"], "checkout");
    assert_eq!(
        b["trigger"],
        "error ratio 0.21 > 0.05 over 30s (120 requests)"
    );
    assert!(
        b["ends_in_seconds"].as_u64().is_some_and(|s| s <= 56),
        "{b}"
    );

    let out = cli(&cp, &["status"]).await;
    assert!(out.contains("boosts      on"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("pay "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("shop/c1") && line.contains("error ratio 0.21"),
        "{out}"
    );
    cli(&cp, &["boost", "off"]).await;
    let out = cli(&cp, &["boost", "status"]).await;
    assert!(out.starts_with("boosts OFF"), "{out}");
    assert!(out.contains("shop/c1"), "{out}");
}
