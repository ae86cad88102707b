//! Sidecars under a real control plane: a push is applied and acknowledged, an
//! override reaches the sidecar and its removal restores the config, a config the
//! sidecar cannot apply is NACKed while the old one keeps serving, a control
//! plane that goes away and comes back costs no request, and the sidecar's
//! reports feed the fleet-wide migration view while a stage move reaches it.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, StatusCode};
use meshtrace_config::{Config, PropagationFormat as Format};
use meshtrace_control::sidecars::SidecarInfo;
use meshtrace_control::testing::{self, Running};
use meshtrace_tests::apps::{echoed, HttpApp};
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{http1_get, SteadyLoad};
use meshtrace_tests::sidecar::{self, Proxy};

const TOKEN: &str = "s3cret";

async fn control(yaml: &str) -> Running {
    testing::start(yaml, Some(TOKEN)).await
}

/// An in-process sidecar for checkout in front of `app`, watching `cp`.
async fn meshed(cp: &Running, app: &HttpApp) -> Proxy {
    sidecar::new()
        .inbound_to(app.addr())
        .watching(&cp.url(), "checkout")
        .start()
        .await
}

/// `/v1/sidecars` once `done` holds for checkout-1 (each poll is a real request).
async fn sidecar_info(cp: &Running, done: impl Fn(&SidecarInfo) -> bool) -> SidecarInfo {
    let client = cp.client();
    within("the control plane to see the sidecar's answer", async {
        loop {
            let list: Vec<SidecarInfo> =
                client.get("/v1/sidecars").await.expect("GET /v1/sidecars");
            if let Some(info) = list.into_iter().find(|s| s.identity == "shop/checkout-1") {
                if done(&info) {
                    return info;
                }
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

fn b3(c: &Config) -> bool {
    c.propagation
        .app_formats
        .as_ref()
        .is_some_and(|f| f.contains(&Format::B3Multi))
}

#[tokio::test]
async fn a_push_is_applied_acknowledged_and_felt_by_traffic() {
    let cp = control("defaults:\n  propagation: {app_formats: [tracecontext, b3multi]}\n").await;
    let app = HttpApp::start().await;
    let proxy = meshed(&cp, &app).await;
    proxy.applied("the pushed propagation", b3).await;
    let rsp = http1_get(proxy.inbound_addr(), "/").await;
    assert!(
        echoed(&rsp, "x-b3-traceid").is_some(),
        "the pushed inject list is in force"
    );
    let info = sidecar_info(&cp, |s| s.acked_version.is_some()).await;
    assert_eq!(info.acked_version, info.sent_version);
    assert_eq!(info.service.as_deref(), Some("checkout"));
    assert_eq!(
        proxy.config().workload.pod_name.as_deref(),
        Some("checkout-1"),
        "the pod's identity stays its own"
    );
}

#[tokio::test]
async fn an_override_reaches_the_sidecar_and_its_removal_restores_the_config() {
    let cp = control("defaults:\n  sampling: {default_rate: 0.5}\n").await;
    let app = HttpApp::start().await;
    let proxy = meshed(&cp, &app).await;
    proxy
        .applied("the base config", |c| c.sampling.default_rate == 0.5)
        .await;
    let body =
        serde_json::json!({"service": "checkout", "rate": 1.0, "for": "30m", "reason": "incident"});
    let (status, created) = cp
        .client()
        .send(
            Method::POST,
            "/v1/overrides",
            Some(("application/json", body.to_string().into())),
        )
        .await
        .expect("POST /v1/overrides");
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&created)
    );
    proxy
        .applied("the override", |c| c.sampling.forced_workload.is_some())
        .await;
    let id = serde_json::from_slice::<serde_json::Value>(&created).expect("JSON")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let (status, _) = cp
        .client()
        .send(Method::DELETE, &format!("/v1/overrides/{id}"), None)
        .await
        .expect("DELETE");
    assert!(status.is_success(), "{status}");
    proxy
        .applied("the base config again", |c| {
            c.sampling.forced_workload.is_none() && c.sampling.default_rate == 0.5
        })
        .await;
}

#[tokio::test]
async fn a_config_the_sidecar_cannot_apply_is_nacked_and_the_old_one_serves() {
    let cp = control("defaults:\n  propagation: {app_formats: [tracecontext, b3multi]}\n").await;
    let app = HttpApp::start().await;
    let proxy = meshed(&cp, &app).await;
    proxy.applied("the first push", b3).await;
    let first = sidecar_info(&cp, |s| s.acked_version.is_some()).await;
    // A valid config that this pod cannot apply: its collector CA file is missing
    // here (the control plane cannot know).
    cp.write_source(
        "defaults:\n  propagation: {app_formats: [tracecontext]}\n  export: {endpoint: 'https://127.0.0.1:1', tls: {ca_file: /nonexistent/meshtrace-ca.pem}}\n",
    );
    let info = sidecar_info(&cp, |s| s.last_rejection.is_some()).await;
    let rejection = info.last_rejection.expect("a rejection");
    assert_ne!(Some(rejection.version), first.acked_version);
    assert!(
        rejection.error.contains("cannot read"),
        "{}",
        rejection.error
    );
    assert_eq!(
        info.acked_version, first.acked_version,
        "still on the old version"
    );
    let rsp = http1_get(proxy.inbound_addr(), "/").await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(
        echoed(&rsp, "x-b3-traceid").is_some(),
        "the old config is in force"
    );
}

#[tokio::test]
async fn the_control_plane_restarting_under_load_costs_no_request() {
    let mut cp = control("defaults:\n  sampling: {default_rate: 0.5}\n").await;
    let app = HttpApp::start().await;
    let proxy = meshed(&cp, &app).await;
    proxy
        .applied("the first push", |c| c.sampling.default_rate == 0.5)
        .await;
    let addr = proxy.inbound_addr();
    let mut load = SteadyLoad::start(addr, 4);
    cp.stop().await;
    // While it is gone, requests keep flowing on the last good config.
    load.serves(200).await;
    cp.write_source("defaults:\n  sampling: {default_rate: 0.25}\n");
    cp.restart().await;
    proxy
        .applied("the change made while it was down", |c| {
            c.sampling.default_rate == 0.25
        })
        .await;
    let (served, failed) = load.finish().await;
    assert_eq!(failed, 0, "{served} requests succeeded");
}

#[tokio::test]
async fn a_restarted_sidecar_starts_from_its_cache_while_the_control_plane_is_down() {
    let dir = tempfile_dir();
    let cache = dir.join("last-good.yaml");
    // A first life: the control plane pushes b3 injection; the sidecar caches it.
    let cp = control("defaults:\n  propagation: {app_formats: [tracecontext, b3multi]}\n").await;
    let app = HttpApp::start().await;
    let url = cp.url();
    let cache_file = cache.clone();
    let first = sidecar::new()
        .inbound_to(app.addr())
        .configure(move |c| {
            c.control.url = Some(url);
            c.control.cache_file = Some(cache_file);
            c.workload.namespace = Some("shop".into());
            c.workload.pod_name = Some("checkout-1".into());
        })
        .start()
        .await;
    first.applied("the push", b3).await;
    sidecar_info(&cp, |s| s.acked_version.is_some()).await;
    assert!(cache.exists(), "the applied config was cached");
    drop(first);
    let dead = cp.url();
    drop(cp);
    // Second life: the real binary, the control plane gone.
    let cache_file = cache.clone();
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(move |c| {
            c.control.url = Some(dead);
            c.control.cache_file = Some(cache_file);
        })
        .process()
        .spawn()
        .await;
    proxy
        .output()
        .wait_for_line("starting from the cached control-plane config")
        .await;
    let rsp = http1_get(proxy.inbound_addr(), "/").await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(
        echoed(&rsp, "x-b3-traceid").is_some(),
        "the cached config is in force"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "meshtrace-control-push-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The fleet view from real reports: a sidecar counts what its callers and its
/// app send and reports it every second; `GET /v1/migration` shows the
/// workload's formats, who sends it B3 and what its app speaks; a
/// `migration advance` reaches the sidecar as stage `dual` and takes legacy
/// formats off its outbound requests.
#[tokio::test]
async fn reports_feed_the_migration_view_and_a_stage_move_reaches_the_sidecar() {
    use meshtrace_config::{Duration, MigrationStage};
    use meshtrace_control::migration::WorkloadMigration;
    use meshtrace_control::stages::{StageAction, StageRequest};
    use meshtrace_tests::client::http1_get_with;

    let app = HttpApp::start().await;
    // Outbound routes are mesh policy: the control plane pushes them.
    let cp = control(&format!(
        "defaults: {{outbound: {{mode: explicit, routes: [{{host: upstream, target: '{}'}}]}}}}\n",
        app.addr()
    ))
    .await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .watching(&cp.url(), "checkout")
        .configure(|c| c.control.report_interval = Duration::from_secs(1))
        .start()
        .await;
    proxy
        .applied("the pushed route", |c| !c.outbound.routes.is_empty())
        .await;
    // A meshed caller still sending B3, and the app calling out with Datadog.
    let b3 = [
        ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-sampled", "1"),
        ("x-meshtrace-caller", "web.shop"),
    ];
    http1_get_with(proxy.inbound_addr(), "app", &b3).await;
    let datadog = [
        ("x-datadog-trace-id", "1"),
        ("x-datadog-parent-id", "2"),
        ("x-datadog-sampling-priority", "1"),
    ];
    http1_get_with(proxy.outbound_addr(), "upstream:80", &datadog).await;

    let client = cp.client();
    let reported = |w: &WorkloadMigration| {
        w.service.as_deref() == Some("checkout")
            && w.received.inbound.requests >= 1
            && w.received.outbound.requests >= 1
    };
    let row = within("a report of both requests in the view", async {
        loop {
            let view = client.migration().await.expect("GET /v1/migration");
            if let Some(row) = view.workloads.into_iter().find(reported) {
                return row;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(row.namespace, "shop");
    assert_eq!(row.stage, Some(MigrationStage::Legacy));
    assert_eq!(row.received.inbound.formats.get(&Format::B3Multi), Some(&1));
    assert_eq!(row.callers.get("web.shop").map(|c| c.legacy), Some(1));
    let app_sends = row.app_formats.expect("the app has sent requests");
    assert!(app_sends.contains_key(&Format::Datadog), "{app_sends:?}");
    assert_eq!(row.legacy_share, Some(1.0), "both requests carried legacy");

    let moved = client
        .move_stage(&StageRequest {
            service: "checkout".into(),
            namespace: Some("shop".into()),
            action: Some(StageAction::Advance),
            stage: None,
        })
        .await
        .expect("advance");
    assert_eq!(moved.to, MigrationStage::Dual);
    proxy
        .applied("stage dual", |c| {
            c.propagation.stage == MigrationStage::Dual
        })
        .await;
    let rsp = http1_get_with(proxy.outbound_addr(), "upstream:80", &datadog).await;
    assert_eq!(
        echoed(&rsp, "x-datadog-trace-id"),
        None,
        "dual: W3C only on the wire"
    );
    assert!(echoed(&rsp, "traceparent").is_some());
}
