//! Hot reload: a new config applies atomically from the next request, under load,
//! with no failed request; an invalid one is rejected and the old one stays; a
//! listener moves without cutting in-flight requests; the binary reloads its
//! config file in local file mode.

use http::StatusCode;
use meshtrace_config::{Config, PropagationFormat as Format};
use meshtrace_tests::apps::{echoed, HttpApp};
use meshtrace_tests::bound::within;
use meshtrace_tests::client::{http1_get, http1_get_with, H1Conn, SteadyLoad};
use meshtrace_tests::sidecar;

/// `config` with the app declared to speak B3 (`on`) or W3C only: whether the
/// app receives `x-b3-*` shows which config is in force.
fn with_b3(config: &Config, on: bool) -> Config {
    let mut next = config.clone();
    next.propagation.app_formats = Some(if on {
        vec![Format::TraceContext, Format::B3Multi]
    } else {
        vec![Format::TraceContext]
    });
    next
}

/// A sidecar in front of `app`, which speaks W3C only.
fn w3c_app(app: std::net::SocketAddr) -> sidecar::Builder {
    sidecar::new()
        .inbound_to(app)
        .configure(|c| c.propagation.app_formats = Some(vec![Format::TraceContext]))
}

#[tokio::test]
async fn a_new_config_applies_from_the_next_request_on_open_connections() {
    let app = HttpApp::start().await;
    let proxy = w3c_app(app.addr()).start().await;
    let mut conn = H1Conn::connect(proxy.inbound_addr()).await;
    let rsp = conn.get("/").await;
    assert!(echoed(&rsp, "x-b3-traceid").is_none());
    let reloader = proxy.reloader();
    reloader
        .apply(with_b3(&reloader.current(), true))
        .await
        .expect("valid config applies");
    let rsp = conn.get("/").await;
    assert!(
        echoed(&rsp, "x-b3-traceid").is_some(),
        "the same keep-alive connection sees the new policy"
    );
    let shown = String::from_utf8_lossy(proxy.admin_get("/config").await.body()).into_owned();
    assert!(
        shown.contains("b3multi"),
        "/config shows the new config:\n{shown}"
    );
}

#[tokio::test]
async fn an_invalid_config_is_rejected_and_the_old_one_stays() {
    let app = HttpApp::start().await;
    let proxy = w3c_app(app.addr()).start().await;
    let reloader = proxy.reloader();
    let mut bad = with_b3(&reloader.current(), true);
    bad.sampling.default_rate = 2.0;
    let error = reloader.apply(bad).await.expect_err("rate 2.0 is invalid");
    assert!(
        error.to_string().contains("sampling.default_rate"),
        "{error}"
    );
    let rsp = http1_get(proxy.inbound_addr(), "/").await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(
        echoed(&rsp, "x-b3-traceid").is_none(),
        "the old config is in force"
    );
}

#[tokio::test]
async fn a_hundred_reloads_under_load_fail_no_request() {
    let app = HttpApp::start().await;
    let proxy = w3c_app(app.addr()).start().await;
    let addr = proxy.inbound_addr();
    let mut load = SteadyLoad::start(addr, 4);
    let reloader = proxy.reloader();
    for i in 0..100 {
        let mut next = with_b3(&reloader.current(), i % 2 == 0);
        next.sampling.default_rate = if i % 3 == 0 { 0.5 } else { 1.0 };
        next.spans.max_tag_length = 100 + i;
        reloader.apply(next).await.expect("valid reload");
        // Let requests through between reloads (without sleeping).
        tokio::task::yield_now().await;
    }
    load.serves(1).await;
    let (served, failed) = load.finish().await;
    assert_eq!(failed, 0, "{served} requests succeeded");
}

#[tokio::test]
async fn a_moved_listener_keeps_its_in_flight_requests() {
    let app = HttpApp::start().await;
    let proxy = w3c_app(app.addr()).start().await;
    let old = proxy.inbound_addr();
    let gate = app.gate();
    let held = tokio::spawn(async move { http1_get(old, "/gate").await.status() });
    within("the held request at the app", gate.arrived()).await;
    let reloader = proxy.reloader();
    let mut next = reloader.current().as_ref().clone();
    next.inbound.listen = "127.0.0.1:0".parse().unwrap();
    // Port 0 again would not be a change: use the loopback alias 127.0.0.2.
    next.inbound.listen = "127.0.0.2:0".parse().unwrap();
    reloader.apply(next).await.expect("rebind");
    let new = proxy.inbound_addr();
    assert_ne!(new, old);
    assert_eq!(http1_get(new, "/").await.status(), StatusCode::OK);
    gate.release();
    assert_eq!(
        within("the held request", held)
            .await
            .expect("held request"),
        StatusCode::OK
    );
    assert!(
        tokio::net::TcpStream::connect(old).await.is_err(),
        "the old address no longer accepts"
    );
}

#[tokio::test]
async fn settings_fixed_at_start_keep_their_running_values() {
    let app = HttpApp::start().await;
    let proxy = w3c_app(app.addr()).start().await;
    let reloader = proxy.reloader();
    let before = reloader.current();
    let mut next = with_b3(&before, true);
    next.admin.listen = "127.0.0.1:1".parse().unwrap();
    next.runtime.workers = Some(7);
    reloader.apply(next).await.expect("applies the rest");
    let after = reloader.current();
    assert_eq!(after.admin, before.admin);
    assert_eq!(after.runtime, before.runtime);
    assert_eq!(
        after.propagation.app_formats.as_ref().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn the_binary_reloads_its_config_file() {
    let app = HttpApp::start().await;
    let builder = w3c_app(app.addr()).configure(|c| {
        c.control.file_poll = meshtrace_config::Duration::from_millis(50);
    });
    let mut config = builder.config().clone();
    let proxy = builder.process().spawn().await;
    let file = proxy.config_file().to_path_buf();
    let rsp = http1_get_with(proxy.inbound_addr(), "app", &[]).await;
    assert!(echoed(&rsp, "x-b3-traceid").is_none());
    // The same file with one change (listen addresses stay port 0: unchanged).
    config = with_b3(&config, true);
    replace_file(&file, &config.to_yaml());
    proxy.output().wait_for_line("config file reloaded").await;
    let rsp = http1_get_with(proxy.inbound_addr(), "app", &[]).await;
    assert!(
        echoed(&rsp, "x-b3-traceid").is_some(),
        "the file's new policy applies"
    );
    replace_file(&file, "sampling: {default_rate: 7}\n");
    proxy
        .output()
        .wait_for_line("config file does not load")
        .await;
    let rsp = http1_get_with(proxy.inbound_addr(), "app", &[]).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(
        echoed(&rsp, "x-b3-traceid").is_some(),
        "the last good config stays"
    );
}

/// Replaces `file`'s content atomically (a new file renamed over it), as the
/// sidecar requires and as Kubernetes updates a ConfigMap volume: a plain write
/// truncates first, and a poll in between would load half a file.
fn replace_file(file: &std::path::Path, content: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, content).expect("write the new content");
    std::fs::rename(&next, file).expect("rename it over the config file");
}
