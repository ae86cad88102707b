//! The control plane's page in a real headless Chromium ([`Browser`]): it shows
//! the connected sidecars with the version each acknowledged and the one a
//! sidecar rejected, the overrides counting down, and the migration rows; it
//! follows changes without being reloaded; it shows what sidecars send as text;
//! it lists the incident boosts sidecars report and says when boosts are off
//! fleet-wide; and it says so when the control plane stops answering.
//!
//! The sidecars are real (in-process) sidecars watching a real control plane;
//! one of them NACKs a config it cannot apply (a CA file it does not have), as in
//! `control_push`. The migration rows come from reports posted the way sidecars
//! post them. Screenshots land in `target/test-artifacts/` (or
//! `$MESHTRACE_ARTIFACTS_DIR`); their paths are printed.

use http::Method;
use meshtrace_config::report::{BoostReport, FormatCounts, Report, RouteReport};
use meshtrace_config::PropagationFormat::{B3Multi, Datadog, TraceContext};
use meshtrace_control::overrides::NewOverride;
use meshtrace_control::sidecars::SidecarInfo;
use meshtrace_control::testing::{self, within, Running};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::browser::{artifact, Browser};
use meshtrace_tests::sidecar::{self, Proxy};
use serde_json::{json, Value};

use crate::watched::TOKEN;

const DOCUMENT: &str = "defaults:\n  sampling: {default_rate: 0.5}\n";

/// `billing`'s config now needs a CA file that its pod does not have: the
/// control plane accepts it (it cannot know), `billing` NACKs it, and
/// `checkout`, whose config did not change, is not sent anything.
const BILLING_CANNOT_APPLY: &str = "defaults:\n  sampling: {default_rate: 0.5}\nworkloads:\n  - match: {service: billing}\n    config: {export: {endpoint: 'https://127.0.0.1:1', tls: {ca_file: /nonexistent/meshtrace-ca.pem}}}\n";

/// A sidecar of `service` (pod `<service>-1` in `shop`) watching `cp`.
async fn attach(cp: &Running, app: &HttpApp, service: &str) -> Proxy {
    sidecar::new()
        .inbound_to(app.addr())
        .watching(&cp.url(), service)
        .start()
        .await
}

/// `/v1/sidecars` once `done` holds for it.
async fn sidecars_once(
    cp: &Running,
    what: &str,
    done: impl Fn(&[SidecarInfo]) -> bool,
) -> Vec<SidecarInfo> {
    let client = cp.client();
    within(what, async {
        loop {
            let list: Vec<SidecarInfo> =
                client.get("/v1/sidecars").await.expect("GET /v1/sidecars");
            if done(&list) {
                return list;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

fn find<'a>(list: &'a [SidecarInfo], identity: &str) -> Option<&'a SidecarInfo> {
    list.iter().find(|s| s.identity == identity)
}

fn counts(requests: u64, formats: &[(meshtrace_config::PropagationFormat, u64)]) -> FormatCounts {
    let legacy = formats
        .iter()
        .filter(|(f, _)| *f != TraceContext)
        .map(|(_, n)| n)
        .sum();
    FormatCounts {
        requests,
        legacy,
        none: 0,
        formats: formats.iter().copied().collect(),
    }
}

/// What one more pod of `service` saw, as its sidecar reports it.
fn report(service: &str, pod: &str, inbound: FormatCounts, outbound: FormatCounts) -> Report {
    Report {
        namespace: "shop".into(),
        pod: pod.into(),
        service: Some(service.into()),
        boot: 7,
        uptime_seconds: Some(60),
        inbound,
        outbound,
        ..Report::default()
    }
}

/// A string for a JavaScript expression.
fn js(s: &str) -> String {
    json!(s).to_string()
}

/// The text of the `cell` (a class) of the row `key` of table `table`, once
/// `pattern` (a JavaScript regular expression) matches it.
async fn cell_matching(
    browser: &mut Browser,
    table: &str,
    key: &str,
    cell: &str,
    pattern: &str,
) -> String {
    let condition = format!(
        "(() => {{ const row = [...document.querySelectorAll('#{table} tbody tr')].find((r) => r.dataset.key === {key}); \
         const c = row && row.querySelector('.{cell}'); \
         return c && /{pattern}/.test(c.textContent) ? c.textContent : null; }})()",
        key = js(key),
    );
    let what = format!("{table} row {key}: {cell} matching /{pattern}/");
    let value = browser.wait_for(&what, &condition).await;
    value.as_str().unwrap_or_default().to_string()
}

/// Two sidecars attached (`billing` rejecting its latest version), an override
/// and two workloads' reports: the state the page is first loaded on.
struct Fleet {
    cp: Running,
    app: HttpApp,
    _sidecars: Vec<Proxy>,
    /// What `billing` runs (and acknowledged) before it rejected `rejected`.
    first: u64,
    rejected: u64,
    /// What `checkout` runs: the version with its override.
    with_override: u64,
    override_id: String,
}

async fn fleet() -> Fleet {
    let cp = testing::start(DOCUMENT, Some(TOKEN)).await;
    let app = HttpApp::start().await;
    let sidecars = vec![
        attach(&cp, &app, "checkout").await,
        attach(&cp, &app, "billing").await,
    ];
    let list = sidecars_once(&cp, "both sidecars to acknowledge", |l| {
        l.len() == 2 && l.iter().all(|s| s.acked_version.is_some())
    })
    .await;
    let first = list[0].acked_version.expect("acknowledged");
    cp.write_source(BILLING_CANNOT_APPLY);
    let list = sidecars_once(&cp, "billing to reject its new config", |l| {
        find(l, "shop/billing-1").is_some_and(|s| s.last_rejection.is_some())
    })
    .await;
    let billing = find(&list, "shop/billing-1").expect("billing");
    let rejected = billing
        .last_rejection
        .as_ref()
        .expect("a rejection")
        .version;
    assert_ne!(rejected, first);
    assert_eq!(
        billing.acked_version,
        Some(first),
        "billing still runs the first"
    );

    let control = cp.client();
    let created = control
        .add_override(&NewOverride {
            service: Some("checkout".into()),
            rate: 1.0,
            duration: Some("30m".into()),
            reason: Some("INC-4711 checkout latency".into()),
            ..NewOverride::default()
        })
        .await
        .expect("add the override");
    let list = sidecars_once(&cp, "checkout to acknowledge its override", |l| {
        find(l, "shop/checkout-1").is_some_and(|s| s.acked_version.is_some_and(|v| v != first))
    })
    .await;
    let with_override = find(&list, "shop/checkout-1").and_then(|s| s.acked_version);
    for r in [
        report(
            "checkout",
            "checkout-7d9f",
            counts(100, &[(TraceContext, 75), (B3Multi, 25)]),
            counts(50, &[(TraceContext, 50)]),
        ),
        report(
            "billing",
            "billing-5c2a",
            counts(40, &[(Datadog, 40)]),
            counts(0, &[]),
        ),
    ] {
        control.report(&r).await.expect("POST /v1/report");
    }
    Fleet {
        cp,
        app,
        _sidecars: sidecars,
        first,
        rejected,
        with_override: with_override.expect("acknowledged"),
        override_id: created.created.id,
    }
}

/// The page opened on `cp`, once it has rendered its first answer.
async fn open(cp: &Running) -> Browser {
    let mut browser = Browser::launch().await;
    browser.navigate(&format!("{}/", cp.url())).await;
    browser
        .wait_for(
            "the first answer",
            "document.getElementById('updated').textContent.startsWith('updated')",
        )
        .await;
    browser
}

async fn screenshot(browser: &mut Browser, name: &str) {
    let path = artifact(name);
    browser.screenshot(&path).await;
    println!("screenshot: {}", path.display());
}

#[tokio::test]
async fn the_page_shows_sidecars_overrides_and_migration_and_follows_changes_live() {
    let f = fleet().await;
    let mut b = open(&f.cp).await;
    shows_sidecars(&f, &mut b).await;
    shows_override(&f, &mut b).await;
    shows_migration(&f, &mut b).await;
    screenshot(&mut b, "control-page.png").await;
    live_changes(&f, &mut b).await;
}

/// `checkout` up to date on its override's version; `billing` behind, having
/// rejected the latest version sent to it, with its error.
async fn shows_sidecars(f: &Fleet, b: &mut Browser) {
    let (first, rejected) = (f.first.to_string(), f.rejected.to_string());
    let with_override = f.with_override.to_string();
    let checkout = "shop/checkout-1";
    let acked = cell_matching(b, "sidecars", checkout, "c-acked", &with_override).await;
    assert!(acked.contains("current"), "checkout is up to date: {acked}");
    let none = cell_matching(b, "sidecars", checkout, "c-rejection", ".").await;
    assert_eq!(none, "none");
    let billing = "shop/billing-1";
    let acked = cell_matching(b, "sidecars", billing, "c-acked", &first).await;
    assert!(
        acked.contains("behind"),
        "billing runs an older one: {acked}"
    );
    let sent = cell_matching(b, "sidecars", billing, "c-sent", &rejected).await;
    assert!(sent.contains("rejected"), "{sent}");
    let why = cell_matching(b, "sidecars", billing, "c-rejection", "cannot read").await;
    assert!(why.contains(&rejected), "{why}");
    assert!(why.contains("/nonexistent/meshtrace-ca.pem"), "{why}");
}

/// The override, counting down from 30 minutes by the second.
async fn shows_override(f: &Fleet, b: &mut Browser) {
    let id = &f.override_id;
    let start = r"^(29m [0-5]\d|30m 00)s$";
    let left = cell_matching(b, "overrides", id, "c-remaining", start).await;
    let later = format!("^(?!{left}$)29m [0-5]\\ds$");
    cell_matching(b, "overrides", id, "c-remaining", &later).await;
    cell_matching(b, "overrides", id, "c-target", "^service checkout").await;
    let reason = "^INC-4711 checkout latency$";
    cell_matching(b, "overrides", id, "c-reason", reason).await;
}

/// Each workload with the stage the control plane resolves for it (as
/// `/v1/migration` says), what it received and its legacy share.
async fn shows_migration(f: &Fleet, b: &mut Browser) {
    let view = f.cp.client().migration().await.expect("GET /v1/migration");
    assert_eq!(view.workloads.len(), 2, "{view:?}");
    for row in &view.workloads {
        let stage = serde_json::to_value(row.stage).expect("a stage");
        let stage = format!("^{}", stage.as_str().expect("a named stage"));
        cell_matching(b, "migration", &row.name(), "c-stage", &stage).await;
    }
    for (workload, cell, pattern) in [
        ("checkout.shop", "c-legacy", r"^16\.7 %$"),
        (
            "checkout.shop",
            "c-in",
            "tracecontext 75b3multi 25100 requests, 25 legacy",
        ),
        (
            "checkout.shop",
            "c-out",
            "tracecontext 5050 requests, 0 legacy",
        ),
        ("billing.shop", "c-legacy", r"^100\.0 %$"),
        ("billing.shop", "c-in", "datadog 40"),
        ("billing.shop", "c-out", "no requests"),
    ] {
        cell_matching(b, "migration", workload, cell, pattern).await;
    }
}

/// A new override and a new sidecar appear on the open page, which is not
/// reloaded: a value set in it survives, and it navigated once.
async fn live_changes(f: &Fleet, b: &mut Browser) {
    b.evaluate("window.__notReloaded = 42").await;
    let created =
        f.cp.client()
            .add_override(&NewOverride {
                tenant: Some("acme".into()),
                namespace: Some("shop".into()),
                rate: 0.5,
                duration: Some("2h".into()),
                ..NewOverride::default()
            })
            .await
            .expect("add a second override");
    let _cart = attach(&f.cp, &f.app, "cart").await;
    let id = &created.created.id;
    cell_matching(
        b,
        "overrides",
        id,
        "c-target",
        "^tenant acmenamespace shop$",
    )
    .await;
    cell_matching(b, "overrides", id, "c-remaining", r"^1h 59m$|^2h 00m$").await;
    cell_matching(b, "sidecars", "shop/cart-1", "c-acked", "current").await;
    let cards = b
        .evaluate("[...document.querySelectorAll('.card .value')].map((v) => v.textContent)")
        .await;
    assert_eq!(cards[1], "3", "sidecars connected: {cards}");
    assert_eq!(cards[4], "2", "active overrides: {cards}");
    let same = b
        .evaluate("window.__notReloaded === 42 && performance.getEntriesByType('navigation').length === 1")
        .await;
    assert_eq!(same, json!(true), "the page was reloaded");
    screenshot(b, "control-page-live.png").await;
}

#[tokio::test]
async fn what_sidecars_send_is_shown_as_text_and_never_run() {
    let cp = testing::start(DOCUMENT, Some(TOKEN)).await;
    let pod = "<img src=x onerror=\"window.__ran=1\">";
    let error = "<script>window.__ran=2</script><b>bold</b>";
    let mut watch = cp.watch("<i>svc</i>", "shop", pod, &[]).await;
    let push = within("the first push", watch.next_config())
        .await
        .expect("a push")
        .expect("a config");
    let ack = json!({"namespace": "shop", "pod": pod, "version": push.version, "status": "nack", "error": error});
    let (status, _) = cp
        .client()
        .send(
            Method::POST,
            "/v1/ack",
            Some(("application/json", ack.to_string().into())),
        )
        .await
        .expect("POST /v1/ack");
    assert!(status.is_success(), "{status}");

    let mut b = open(&cp).await;
    let identity = format!("shop/{pod}");
    let shown = cell_matching(&mut b, "sidecars", &identity, "c-identity", "svc").await;
    assert_eq!(shown, format!("{identity}<i>svc</i>"));
    let why = cell_matching(&mut b, "sidecars", &identity, "c-rejection", "script").await;
    assert!(why.ends_with(error), "{why}");
    let ran = b
        .evaluate("[window.__ran === undefined, document.querySelectorAll('tbody img, tbody script, tbody b, tbody i').length]")
        .await;
    assert_eq!(ran, json!([true, 0]), "markup from a sidecar was parsed");
    drop(watch);
}

#[tokio::test]
async fn reported_boosts_are_listed_as_text_and_boosts_off_is_noted() {
    let cp = testing::start(DOCUMENT, Some(TOKEN)).await;
    let trigger = "error ratio 0.21 > 0.05 <img src=x onerror=\"window.__ran=3\">";
    let route = RouteReport {
        roots: 100,
        rate: 0.1,
        boost: Some(BoostReport {
            trigger: trigger.into(),
            started_seconds_ago: 5,
            ends_in_seconds: 600,
            rate: 0.5,
        }),
        ..RouteReport::default()
    };
    let mut r = report("checkout", "checkout-7", counts(0, &[]), counts(0, &[]));
    r.routes.insert("pay".into(), route);
    cp.client_with(None)
        .report(&r)
        .await
        .expect("POST /v1/report");

    let mut b = open(&cp).await;
    let key = "shop/checkout-7/pay";
    let shown = cell_matching(&mut b, "boosts", key, "c-trigger", "onerror").await;
    assert_eq!(shown, trigger, "the trigger, as text");
    cell_matching(&mut b, "boosts", key, "c-route", "^pay$").await;
    cell_matching(
        &mut b,
        "boosts",
        key,
        "c-pod",
        r"^shop\/checkout-7checkout$",
    )
    .await;
    cell_matching(&mut b, "boosts", key, "c-rate", r"^50 %$").await;
    cell_matching(&mut b, "boosts", key, "c-ends", r"^(9m [0-5]\d|10m 00)s$").await;
    let ran = b
        .evaluate("[window.__ran === undefined, document.querySelectorAll('tbody img').length, document.getElementById('boosts-off').hidden]")
        .await;
    assert_eq!(
        ran,
        json!([true, 0, true]),
        "markup from a sidecar was parsed"
    );

    cp.client().set_boosts(false).await.expect("PUT /v1/boosts");
    let note = b
        .wait_for(
            "the boosts-off note",
            "!document.getElementById('boosts-off').hidden && document.getElementById('boosts-off').textContent",
        )
        .await;
    let note = note.as_str().unwrap_or_default();
    assert!(
        note.starts_with("Boosts are off fleet-wide since "),
        "{note}"
    );
    screenshot(&mut b, "control-page-boosts.png").await;
}

#[tokio::test]
async fn a_control_plane_that_stops_answering_is_shown_with_its_last_state() {
    let mut cp = testing::start(DOCUMENT, Some(TOKEN)).await;
    let app = HttpApp::start().await;
    let _checkout = attach(&cp, &app, "checkout").await;
    sidecars_once(&cp, "checkout to acknowledge", |l| {
        l.iter().any(|s| s.acked_version.is_some())
    })
    .await;
    let mut b = open(&cp).await;
    cell_matching(&mut b, "sidecars", "shop/checkout-1", "c-acked", "current").await;
    let banner = b.evaluate("document.getElementById('banner').hidden").await;
    assert_eq!(banner, json!(true), "no banner while it answers");

    cp.stop().await;
    let text = b
        .wait_for(
            "the banner",
            "!document.getElementById('banner').hidden && document.getElementById('banner').textContent",
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("not answering"), "{text}");
    let kept: Value = b
        .evaluate("[document.body.classList.contains('stale'), document.querySelectorAll('#sidecars tr[data-key]').length]")
        .await;
    assert_eq!(kept, json!([true, 1]), "the last state stays, marked stale");
    screenshot(&mut b, "control-page-unreachable.png").await;
}
