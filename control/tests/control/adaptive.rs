//! Adaptive sampling in the control plane: each report is answered with the
//! sidecar's share of its workload's adaptive targets.

use meshtrace_config::report::{Report, RouteReport};
use meshtrace_control::testing::{start, within};

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
