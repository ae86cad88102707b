//! The proxy's container image, run the way a container runtime runs it: the OCI
//! layout that `scripts/images.sh` built (target/images/meshtrace-proxy) unpacked
//! with umoci into a bundle and started by runc, as the image's user, in a network
//! namespace this test creates. It proves what a manifest check cannot: the static
//! binary starts on an empty base, resolves names through the image's
//! `/etc/nsswitch.conf`, serves a request, and the image's iptables (for the init
//! step) program the namespace's netfilter.
//!
//! Needs root, `ip`, `umoci`, `runc` and the built image (the README's test command
//! installs the tools and runs `scripts/images.sh` before `cargo test`). Without
//! them this test FAILS, saying why, unless `MESHTRACE_ALLOW_SKIP_NETNS=1` is set;
//! then it prints, uncaptured, that it did not run. It never passes silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

mod runtime;

use meshtrace_tests::netns::Netns;
use runtime::Bundle;

const APP: &str = "127.0.0.1:8080";

/// The image's OCI layout and reference (`oci:DIR:REF`).
fn image_ref() -> String {
    let dir = std::env::var_os("MESHTRACE_IMAGES_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/images"),
        PathBuf::from,
    );
    format!(
        "{}:{}",
        dir.join("meshtrace-proxy").display(),
        env!("CARGO_PKG_VERSION")
    )
}

/// The unpacked image, or `None` after announcing loudly that the test did not run.
fn bundle_or_skip(test: &str) -> Option<Bundle> {
    match Bundle::unpack(&image_ref(), test) {
        Ok(bundle) => Some(bundle),
        Err(why) if std::env::var_os("MESHTRACE_ALLOW_SKIP_NETNS").is_some() => {
            // Written to the real stderr, past the test harness's capture.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! image test {test} DID NOT RUN: {why} (MESHTRACE_ALLOW_SKIP_NETNS is set) !!!\n"
            );
            None
        }
        Err(why) => panic!(
            "the image test {test} cannot run: {why}. Run as root after `bash scripts/images.sh`, \
             or set MESHTRACE_ALLOW_SKIP_NETNS=1 to skip it knowingly."
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_image_runs_as_1337_and_prints_the_workspace_version() {
    let Some(bundle) = bundle_or_skip("version") else {
        return;
    };
    let config = bundle.config();
    assert_eq!(
        config["process"]["args"],
        json!(["/usr/local/bin/meshtrace-proxy", "run"]),
        "ENTRYPOINT + CMD"
    );
    assert_eq!(config["process"]["user"]["uid"], 1337);
    assert_eq!(config["process"]["user"]["gid"], 1337);
    assert!(
        !bundle.rootfs().join("bin/sh").exists() && !bundle.rootfs().join("usr/bin/sh").exists(),
        "the image carries a shell"
    );

    let out = bundle
        .run(&["/usr/local/bin/meshtrace-proxy", "--version"], |_| {})
        .await;
    assert_eq!(
        out.trim(),
        format!("meshtrace-proxy {}", env!("CARGO_PKG_VERSION")),
        "`--version` of the image's binary"
    );
}

/// The sidecar's config in the smoke run: inbound to the app, and one explicit
/// outbound route whose target is a name only the container's /etc/hosts knows.
const SIDECAR_CONFIG: &str = "\
inbound:
  listen: 0.0.0.0:15006
  app_port: 8080
outbound:
  mode: explicit
  listen: 127.0.0.1:15001
  routes:
  - authority: 127.0.0.1:15001
    target: backend.test:8080
admin:
  listen: 127.0.0.1:15000
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_image_serves_inbound_and_outbound_requests_in_a_network_namespace() {
    let Some(bundle) = bundle_or_skip("serve") else {
        return;
    };
    let ns = Netns::create(&format!("meshtrace-img{}", std::process::id()))
        .unwrap_or_else(|e| panic!("{e}"));
    let _app = ns
        .listen(&[env!("CARGO_BIN_EXE_netns-tool"), "serve", APP])
        .await;
    bundle.file("meshtrace.yaml", SIDECAR_CONFIG);
    bundle.file("hosts", "127.0.0.1 localhost backend.test\n");

    let started = Instant::now();
    let sidecar = bundle.start(&ns, |config| {
        config["process"]["args"] = json!([
            "/usr/local/bin/meshtrace-proxy",
            "run",
            "--config",
            "/etc/meshtrace/meshtrace.yaml"
        ]);
        config["root"]["readonly"] = json!(true);
        runtime::mount(
            config,
            &bundle.path("meshtrace.yaml"),
            "/etc/meshtrace/meshtrace.yaml",
        );
        runtime::mount(config, &bundle.path("hosts"), "/etc/hosts");
    });
    runtime::wait_ready(
        &ns,
        "http://127.0.0.1:15021/healthz/ready",
        Duration::from_secs(20),
        &sidecar,
    )
    .await;
    let ready = started.elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "image::serve: container start to ready {ready:?}"
    );

    let inbound = runtime::get(&ns, "http://127.0.0.1:15006/through-inbound").await;
    assert!(
        inbound.contains("200 OK")
            && inbound.contains("served-by 127.0.0.1:8080 path=/through-inbound"),
        "{inbound}"
    );
    assert_traceparent(&inbound);

    let outbound = runtime::get(&ns, "http://127.0.0.1:15001/through-outbound").await;
    assert!(
        outbound.contains("200 OK")
            && outbound.contains("served-by 127.0.0.1:8080 path=/through-outbound"),
        "backend.test resolved through the image's /etc/hosts: {outbound}"
    );
    assert_traceparent(&outbound);
}

/// The app saw a W3C `traceparent` the sidecar wrote.
fn assert_traceparent(response: &str) {
    let value = response
        .lines()
        .find_map(|l| l.strip_prefix("traceparent="))
        .unwrap_or_else(|| panic!("the app saw no traceparent: {response}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert!(
        parts.len() == 4 && parts[0] == "00" && parts[1].len() == 32 && parts[2].len() == 16,
        "traceparent {value}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_image_iptables_restore_programs_the_pods_netfilter() {
    let Some(bundle) = bundle_or_skip("iptables") else {
        return;
    };
    let ns = Netns::create(&format!("meshtrace-ipt{}", std::process::id()))
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = "*nat\n:MESHTRACE_IMAGE_TEST - [0:0]\n-A MESHTRACE_IMAGE_TEST -p tcp -j REDIRECT --to-ports 15001\n\
                 -A OUTPUT -p tcp -m owner ! --uid-owner 1337 -j MESHTRACE_IMAGE_TEST\nCOMMIT\n";
    bundle.file("rules", rules);
    for restore in ["iptables-restore", "ip6tables-restore"] {
        let out = bundle
            .run_in(
                &ns,
                &[&format!("/usr/sbin/{restore}"), "/rules"],
                |config| {
                    runtime::as_init_container(config);
                    runtime::mount(config, &bundle.path("rules"), "/rules");
                },
            )
            .await;
        assert!(out.trim().is_empty(), "{restore}: {out}");
    }
    for save in ["iptables", "ip6tables"] {
        let seen = ns.must(&[save, "-t", "nat", "-S"]).await;
        assert!(
            seen.contains("-A MESHTRACE_IMAGE_TEST -p tcp -j REDIRECT --to-ports 15001")
                && seen.contains("--uid-owner 1337 -j MESHTRACE_IMAGE_TEST"),
            "{save} in the namespace does not show the image's rules:\n{seen}"
        );
    }
}
