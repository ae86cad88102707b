//! Incident boosts turned off fleet-wide with one command: the real
//! `meshtrace-control` binary serves, `meshtrace-control boost off` (its CLI,
//! with the write token) puts `sampling.adaptive.boosts: false` into a
//! connected sidecar's config at once, which its admin `GET /config` shows, and
//! `boost on` gives back what the document says.
//!
//! Nothing sleeps: the test waits for an applied config on the sidecar's
//! reloader, then reads `/config` over HTTP.

use meshtrace_config::Config;
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::process::ControlProcess;
use meshtrace_tests::sidecar::{self, Proxy};

use crate::watched::{SERVICE, TOKEN};

/// Boosts on in the document, with a marker to know the document arrived.
const DOCUMENT: &str = "defaults: {sampling: {default_rate: 0.25, adaptive: {boosts: true}}}\n";

/// `sampling.adaptive.boosts` as the sidecar's admin `GET /config` shows it.
async fn shown_boosts(proxy: &Proxy) -> bool {
    let rsp = proxy.admin_get("/config").await;
    assert!(rsp.status().is_success(), "{}", rsp.status());
    let yaml = String::from_utf8_lossy(rsp.body());
    let shown = Config::from_yaml_str(&yaml, "/config").expect("/config is a valid config");
    let raw: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("YAML");
    let boosts = &raw["sampling"]["adaptive"]["boosts"];
    assert_eq!(
        boosts.as_bool(),
        Some(shown.sampling.adaptive.boosts),
        "sampling.adaptive.boosts is shown: {yaml}"
    );
    shown.sampling.adaptive.boosts
}

#[tokio::test]
async fn boost_off_reaches_a_connected_sidecar_and_boost_on_restores_it() {
    let server = ControlProcess::serve("boosts-off", DOCUMENT, TOKEN).await;
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .watching(&server.url(), SERVICE)
        .start()
        .await;
    proxy
        .applied("the document", |c| c.sampling.default_rate == 0.25)
        .await;
    assert!(shown_boosts(&proxy).await, "the document turns them on");

    let (ok, _, stderr) = server.cli(None, "boost off").await;
    assert!(
        !ok && stderr.contains("401"),
        "a write needs the token: {stderr}"
    );
    let (ok, stdout, stderr) = server.cli(Some(TOKEN), "boost off").await;
    assert!(
        ok && stdout.starts_with("boosts OFF fleet-wide"),
        "{stdout}{stderr}"
    );
    proxy
        .applied("boosts off", |c| !c.sampling.adaptive.boosts)
        .await;
    assert!(!shown_boosts(&proxy).await);
    let (ok, status, stderr) = server.cli(None, "status").await;
    assert!(
        ok && status.contains("boosts      OFF fleet-wide"),
        "{status}{stderr}"
    );

    let (ok, stdout, stderr) = server.cli(Some(TOKEN), "boost on").await;
    assert!(ok && stdout.starts_with("boosts on"), "{stdout}{stderr}");
    proxy
        .applied("boosts back on", |c| c.sampling.adaptive.boosts)
        .await;
    assert!(shown_boosts(&proxy).await);
    let (ok, stdout, stderr) = server.cli(None, "boost status").await;
    assert!(ok && stdout.starts_with("boosts on"), "{stdout}{stderr}");
}
