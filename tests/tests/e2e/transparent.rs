//! Transparent outbound mode with real iptables `REDIRECT`, inside a network
//! namespace this test creates: the app dials its destination, the kernel
//! redirects the connection to the sidecar, and the sidecar forwards it to the
//! original destination read back with `SO_ORIGINAL_DST` (IPv4 and IPv6).
//!
//! As in a pod, the sidecar runs as uid 1337 and the rules exempt that uid, so its
//! own upstream connections are not redirected back to itself.
//!
//! Needs root and iptables: see [`meshtrace_tests::netns`] for what happens
//! without them (it never passes silently). The last test needs neither: it is
//! the transparent listener reached without any redirect.

use http::StatusCode;
use meshtrace_config::OutboundMode;
use meshtrace_tests::client;
use meshtrace_tests::netns::{self, Netns, SIDECAR_UID};
use meshtrace_tests::sidecar;

const APP_PORT: &str = "8080";
const CAPTURE_PORT: u16 = 15001;

/// Starts the echo server inside the namespace and waits until it listens.
async fn serve(ns: &Netns, addr: &str) -> tokio::process::Child {
    ns.listen(&[env!("CARGO_BIN_EXE_netns-tool"), "serve", addr])
        .await
}

/// REDIRECTs the app's TCP connections to `APP_PORT` into the sidecar, except the
/// sidecar's own (by uid), for both IP families.
async fn redirect_to_sidecar(ns: &Netns) {
    let port = CAPTURE_PORT.to_string();
    for iptables in ["iptables", "ip6tables"] {
        ns.must(&[
            iptables,
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "--dport",
            APP_PORT,
            "-m",
            "owner",
            "!",
            "--uid-owner",
            SIDECAR_UID,
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ])
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_connections_reach_their_original_destination_ipv4_and_ipv6() {
    let name = format!("meshtrace-t{}", std::process::id());
    let Some(ns) = netns::or_skip(&name, "the transparent-mode test") else {
        return;
    };
    let _v4_app = serve(&ns, "127.0.0.1:8080").await;
    let _v6_app = serve(&ns, "[::1]:8080").await;
    redirect_to_sidecar(&ns).await;

    let proxy = sidecar::new()
        .configure(|c| {
            c.outbound.mode = OutboundMode::Transparent;
            c.outbound.listen = (std::net::Ipv6Addr::UNSPECIFIED, CAPTURE_PORT).into();
        })
        .process()
        .wrapper(
            ["ip", "netns", "exec", &name]
                .into_iter()
                .chain(netns::as_user(SIDECAR_UID, &[])),
        )
        .spawn()
        .await;

    let tool = env!("CARGO_BIN_EXE_netns-tool");
    let v4 = ns
        .must(&[tool, "get", "http://127.0.0.1:8080/over-v4"])
        .await;
    assert!(
        v4.contains("200 OK") && v4.contains("served-by 127.0.0.1:8080 path=/over-v4"),
        "{v4}"
    );
    proxy
        .output()
        .wait_for_line(r#"upstream="127.0.0.1:8080""#)
        .await;

    let v6 = ns.must(&[tool, "get", "http://[::1]:8080/over-v6"]).await;
    assert!(
        v6.contains("200 OK") && v6.contains("served-by [::1]:8080 path=/over-v6"),
        "{v6}"
    );
    proxy
        .output()
        .wait_for_line(r#"upstream="[::1]:8080""#)
        .await;

    // A connection addressed to the capture port itself must not loop: it gets
    // the 502 that says it was not redirected.
    let direct = ns
        .must(&[
            tool,
            "get",
            &format!("http://127.0.0.1:{CAPTURE_PORT}/loop"),
        ])
        .await;
    assert!(
        direct.contains("502") && direct.contains("no original destination found"),
        "{direct}"
    );
    proxy
        .output()
        .wait_for_line("is the sidecar's own listener")
        .await;
}

/// The transparent listener reached without redirect rules (as `curl
/// 127.0.0.1:15001/` on a laptop): no network namespace or iptables, just the
/// real binary on loopback. An HTTP/1 and an HTTP/2 client each get a 502 whose
/// one-line body says that no original destination was found and what to do,
/// and each connection is counted as `no_original_dst`.
#[tokio::test]
async fn without_redirect_rules_http_clients_get_a_502_that_says_what_to_do() {
    let proxy = sidecar::new()
        .configure(|c| c.outbound.mode = OutboundMode::Transparent)
        .spawn()
        .await;
    let h1 = client::http1_get(proxy.outbound_addr(), "/").await;
    let h2 = client::http2_get(proxy.outbound_addr(), "/").await;
    for (wire, rsp) in [("HTTP/1", h1), ("HTTP/2", h2)] {
        assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY, "{wire}");
        let body = String::from_utf8_lossy(rsp.body());
        assert_eq!(body.lines().count(), 1, "{wire}: one line: {body}");
        for says in [
            "no original destination found",
            "meshtrace-proxy init",
            "outbound.mode: explicit",
        ] {
            assert!(body.contains(says), "{wire}: {says:?} not in {body}");
        }
    }
    let metrics = client::http1_get(proxy.admin_addr(), "/metrics").await;
    let metrics = String::from_utf8_lossy(metrics.body());
    let counted =
        r#"meshtrace_upstream_errors_total{direction="outbound",kind="no_original_dst"} 2"#;
    assert!(metrics.contains(counted), "{counted} not in\n{metrics}");
    proxy
        .output()
        .wait_for_line("no original destination found for this connection")
        .await;
}
