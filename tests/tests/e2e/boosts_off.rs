//! Incident boosts turned off fleet-wide with one command: the real
//! `meshtrace-control` binary serves, `meshtrace-control boost off` (its CLI,
//! with the write token) puts `sampling.adaptive.boosts: false` into a
//! connected sidecar's config at once, which its admin `GET /config` shows, and
//! `boost on` gives back what the document says. With two replicas sharing a
//! ConfigMap (in [`FakeKubeApi`]), the switch set on one is pushed by the other
//! under the same version.
//!
//! Nothing sleeps: the test waits for an applied config on the sidecar's
//! reloader, then reads `/config` over HTTP.

use meshtrace_config::Config;
use meshtrace_control::client::{ControlClient, WatchStream};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::bound::within;
use meshtrace_tests::kube_api::FakeKubeApi;
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

/// The next config push on `watch` for which `done` holds: (version, config).
async fn pushed(watch: &mut WatchStream, done: impl Fn(&Config) -> bool) -> (u64, Config) {
    within("a config push", async {
        loop {
            let push = watch
                .next_config()
                .await
                .expect("a push")
                .expect("a stream");
            if done(&push.config) {
                return (push.version, push.config);
            }
        }
    })
    .await
}

#[tokio::test]
async fn boosts_off_on_one_replica_is_pushed_by_the_other_under_the_same_version() {
    let api = FakeKubeApi::start().await;
    let kubeconfig = std::env::temp_dir().join(format!(
        "meshtrace-boosts-replicas-{}.yaml",
        std::process::id()
    ));
    api.write_kubeconfig(&kubeconfig, "default");
    let a =
        ControlProcess::serve_kubernetes("boosts-replica-a", DOCUMENT, TOKEN, &kubeconfig).await;
    let b =
        ControlProcess::serve_kubernetes("boosts-replica-b", DOCUMENT, TOKEN, &kubeconfig).await;
    let _ = std::fs::remove_file(&kubeconfig);
    let on_b = ControlClient::new(&b.url(), None).expect("a client");
    let query = "namespace=shop&pod=checkout-1&service=checkout";
    let mut watch = within("watch on B", on_b.watch(query))
        .await
        .expect("watch");
    pushed(&mut watch, |c| c.sampling.adaptive.boosts).await;

    let (ok, stdout, stderr) = a.cli(Some(TOKEN), "boost off").await;
    assert!(ok, "{stdout}{stderr}");
    let (version, _) = pushed(&mut watch, |c| !c.sampling.adaptive.boosts).await;
    let on_a = ControlClient::new(&a.url(), None).expect("a client");
    let state = on_a.boosts().await.expect("GET /v1/boosts on A");
    assert_eq!((state.enabled, state.version), (false, version));
    let (ok, stdout, _) = b.cli(None, "boost status").await;
    assert!(ok && stdout.starts_with("boosts OFF"), "{stdout}");

    // And back on from the other replica: A follows (its watch is pushed).
    let mut watch_a = within("watch on A", on_a.watch(query))
        .await
        .expect("watch");
    let (ok, _, stderr) = b.cli(Some(TOKEN), "boost on").await;
    assert!(ok, "{stderr}");
    let (on, _) = pushed(&mut watch, |c| c.sampling.adaptive.boosts).await;
    assert_eq!(
        pushed(&mut watch_a, |c| c.sampling.adaptive.boosts).await.0,
        on
    );
}
