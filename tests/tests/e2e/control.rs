//! The control plane end to end, beyond `control_push.rs`: an override felt on
//! the wire and undone exactly; a hundred pushes under load; a push that names
//! other listeners or another app port, which never moves the pod; a change made
//! after the control plane restarted; and the `meshtrace-control` binary's CLI
//! with its write token.
//!
//! Nothing sleeps: a test waits for an applied config on
//! [`Reloader::subscribe`](meshtrace_proxy::Reloader::subscribe), for an ACK on
//! `/v1/sidecars`, or for a process's log line.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, StatusCode};
use meshtrace_config::{Config, PropagationFormat as Format};
use meshtrace_control::client::ControlClient;
use meshtrace_control::overrides::{NewOverride, Override};
use meshtrace_control::sidecars::SidecarInfo;
use meshtrace_tests::apps::echoed;
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{http1_get_with, SteadyLoad};
use meshtrace_tests::process::ControlProcess;

use crate::watched::{watched, SERVICE, TOKEN};

const NAMESPACE: &str = "shop";
const POD: &str = "checkout-1";
const B3: &str = "propagation: {app_formats: [tracecontext, b3multi]}";
const NO_B3: &str = "propagation: {app_formats: [tracecontext]}";

/// A control-plane document whose `defaults` are `entries` (of a YAML flow map).
fn document(entries: &str) -> String {
    format!("defaults: {{{entries}}}\n")
}

fn injects_b3(config: &Config) -> bool {
    config
        .propagation
        .app_formats
        .as_ref()
        .is_some_and(|f| f.contains(&Format::B3Multi))
}

/// The sidecar as `/v1/sidecars` shows it once it has ACKed `version`. There
/// is no ACK event to await: it asks again once every other task has run.
async fn acked(control: &ControlClient, version: u64) -> SidecarInfo {
    let identity = format!("{NAMESPACE}/{POD}");
    within(format!("an ACK of version {version}"), async {
        loop {
            let all: Vec<SidecarInfo> = control.get("/v1/sidecars").await.expect("/v1/sidecars");
            let done = |s: &SidecarInfo| s.identity == identity && s.acked_version == Some(version);
            if let Some(info) = all.into_iter().find(done) {
                return info;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// Whether the app behind `addr` received B3 headers on a fresh request.
async fn app_gets_b3(addr: SocketAddr) -> bool {
    let rsp = http1_get_with(addr, "app", &[]).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    echoed(&rsp, "x-b3-traceid").is_some()
}

/// Whether the app behind `addr` received a traceparent with the sampled flag.
async fn app_gets_sampled(addr: SocketAddr) -> bool {
    let rsp = http1_get_with(addr, "app", &[]).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let traceparent = echoed(&rsp, "traceparent").expect("the app received a traceparent");
    let flags = traceparent
        .rsplit('-')
        .next()
        .map(|f| u8::from_str_radix(f, 16));
    flags.expect("traceparent flags").expect("hex flags") & 1 == 1
}

async fn put_base(control: &ControlClient, yaml: String) -> u64 {
    let body = Some(("application/yaml", Bytes::from(yaml)));
    let answer: serde_json::Value = control
        .call(Method::PUT, "/v1/config/base", body)
        .await
        .expect("PUT /v1/config/base");
    answer["version"].as_u64().expect("a version")
}

#[tokio::test]
async fn an_override_samples_every_request_and_its_removal_restores_the_exact_config() {
    let (_app, cp, proxy) = watched(&document("sampling: {default_rate: 0.0}")).await;
    let before = proxy
        .applied("rate 0", |c| c.sampling.default_rate == 0.0)
        .await;
    assert!(!app_gets_sampled(proxy.inbound_addr()).await);

    let incident = NewOverride {
        service: Some(SERVICE.into()),
        rate: 1.0,
        duration: Some("30m".into()),
        ..NewOverride::default()
    };
    let control = cp.client();
    let added: Override = control
        .send_json(Method::POST, "/v1/overrides", &incident)
        .await
        .expect("add the override");
    proxy
        .applied("the override", |c| c.sampling.forced_workload.is_some())
        .await;
    assert!(app_gets_sampled(proxy.inbound_addr()).await);

    let _: Override = control
        .call(Method::DELETE, &format!("/v1/overrides/{}", added.id), None)
        .await
        .expect("remove the override");
    let after = proxy
        .applied("no override again", |c| {
            c.sampling.forced_workload.is_none()
        })
        .await;
    assert_eq!(after, before, "exactly the config before the override");
    assert!(!app_gets_sampled(proxy.inbound_addr()).await);
    acked(&control, cp.store.snapshot().version).await;
}

#[tokio::test]
async fn a_hundred_pushes_under_load_fail_no_request_and_converge_on_the_last() {
    let (_app, cp, proxy) = watched(&document(NO_B3)).await;
    let control = cp.client();
    acked(&control, cp.store.snapshot().version).await;
    let mut load = SteadyLoad::start(proxy.inbound_addr(), 4);
    load.serves(4).await;
    let mut last = 0;
    for i in 0..100 {
        let propagation = if i % 2 == 0 { B3 } else { NO_B3 };
        let entries = format!("{propagation}, spans: {{max_tag_length: {}}}", 100 + i);
        last = put_base(&control, document(&entries)).await;
    }
    let converged = proxy
        .applied("the last push", |c| c.spans.max_tag_length == 199)
        .await;
    acked(&control, last).await;
    load.serves(4).await;
    let (served, failed) = load.finish().await;
    assert_eq!(failed, 0, "{served} requests succeeded");
    assert!(!injects_b3(&converged), "the last push (i = 99) had no B3");
    assert_eq!(*proxy.reloader().current(), *converged);
}

#[tokio::test]
async fn a_push_naming_other_listeners_or_app_port_never_moves_the_pod() {
    let (_app, cp, proxy) = watched(&document(NO_B3)).await;
    let control = cp.client();
    acked(&control, cp.store.snapshot().version).await;
    let (inbound, outbound) = (proxy.inbound_addr(), proxy.outbound_addr());
    // Addresses this pod could not bind, and an app port nothing listens on.
    let taken: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port"))
        .collect();
    let [a, b] = [0, 1].map(|i| taken[i].local_addr().expect("its address"));
    let elsewhere =
        format!("{B3}, inbound: {{listen: '{a}', app_port: 1}}, outbound: {{listen: '{b}'}}");

    let version = put_base(&control, document(&elsewhere)).await;
    let running = proxy.applied("the push", injects_b3).await;
    let info = acked(&control, version).await;
    assert_eq!(info.last_rejection, None);
    assert_eq!(
        (proxy.inbound_addr(), proxy.outbound_addr()),
        (inbound, outbound)
    );
    assert_eq!(
        running.inbound,
        proxy.config().inbound,
        "the pod's own inbound settings"
    );
    assert_eq!(running.workload.service.as_deref(), Some(SERVICE));
    assert!(
        app_gets_b3(inbound).await,
        "the app is reached where it was, with B3"
    );
}

#[tokio::test]
async fn a_change_made_after_a_control_plane_restart_reaches_the_sidecar_under_load() {
    let (_app, mut cp, proxy) = watched(&document(NO_B3)).await;
    acked(&cp.client(), cp.store.snapshot().version).await;
    let mut load = SteadyLoad::start(proxy.inbound_addr(), 4);

    cp.stop().await;
    load.serves(200).await;
    cp.restart().await;
    let version = put_base(&cp.client(), document(B3)).await;
    proxy
        .applied("the change made after the restart", injects_b3)
        .await;
    acked(&cp.client(), version).await;

    let (served, failed) = load.finish().await;
    assert_eq!(failed, 0, "{served} requests succeeded");
    assert!(app_gets_b3(proxy.inbound_addr()).await);
}

/// A `meshtrace-control serve` process with write token [`TOKEN`], its files in
/// a scratch directory named after `name`.
async fn serve(name: &str) -> ControlProcess {
    ControlProcess::serve(name, "defaults: {sampling: {default_rate: 0.1}}\n", TOKEN).await
}

const ADD: &str = "override add --service checkout --rate 1 --for 30m";

#[tokio::test]
async fn control_cli_writes_need_the_right_token() {
    let server = serve("control-cli-token").await;
    let (ok, _, stderr) = server.cli(None, ADD).await;
    assert!(!ok && stderr.contains("401"), "no token: {stderr}");
    let (ok, _, stderr) = server.cli(Some("wrong"), ADD).await;
    assert!(!ok && stderr.contains("403"), "wrong token: {stderr}");
    let (ok, stdout, stderr) = server.cli(Some(TOKEN), ADD).await;
    assert!(ok && stdout.starts_with("added ovr-"), "{stdout}{stderr}");
}

#[tokio::test]
async fn control_cli_lists_overrides_and_reports_status() {
    let server = serve("control-cli-status").await;
    let (ok, added, stderr) = server.cli(Some(TOKEN), ADD).await;
    assert!(ok, "{stderr}");
    let id = added.split_whitespace().nth(1).expect("the override's id");
    let (ok, list, stderr) = server.cli(None, "override list").await;
    assert!(ok, "{stderr}");
    let row = list.lines().find(|l| l.starts_with(id)).expect(&list);
    assert!(row.contains(&format!("service={SERVICE}")), "{list}");
    let (ok, status, stderr) = server.cli(None, "status").await;
    assert!(ok, "{stderr}");
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["overrides", "1"])),
        "{status}"
    );
}
