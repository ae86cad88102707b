//! Where the control-plane tests (`control`, `overrides`) start: an app behind
//! an in-process sidecar of `checkout` that watches an in-process control plane.

use std::net::SocketAddr;

use meshtrace_control::testing::{self, Running};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::sidecar::{self, Proxy};

/// The workload the sidecar runs as, which overrides name.
pub const SERVICE: &str = "checkout";
/// The control plane's write token.
pub const TOKEN: &str = "t0ken";

/// Starts the app, a control plane serving `document` (writes need [`TOKEN`]),
/// and the sidecar watching it; each stops when dropped, so a test keeps all
/// three (`let (_app, cp, proxy) = …`).
pub async fn watched(document: &str) -> (HttpApp, Running, Proxy) {
    let app = HttpApp::start().await;
    let cp = testing::start(document, Some(TOKEN)).await;
    let proxy = watching(&cp.url(), app.addr()).await;
    (app, cp, proxy)
}

/// An in-process sidecar of [`SERVICE`] in front of `app`, watching `control`.
async fn watching(control: &str, app: SocketAddr) -> Proxy {
    sidecar::new()
        .inbound_to(app)
        .watching(control, SERVICE)
        .start()
        .await
}
