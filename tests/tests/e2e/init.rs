//! `meshtrace-proxy init`, for real: the binary writes its rules inside a fresh
//! network namespace (the "pod"), joined by a veth pair to a second one (the
//! "peer"), and real connections prove what the rules do, for IPv4 and IPv6:
//! the app's connections to any remote port reach the outbound capture port with
//! the address it dialled as their `SO_ORIGINAL_DST`; the sidecar's (uid 1337)
//! do not; the peer's connections to any pod port reach the inbound capture
//! port, except the health port and excluded ports; excluded outbound ports and
//! CIDRs bypass; a second run changes nothing; `--remove` removes everything.
//!
//! The capture listeners are `netns-tool capture`, which answers with the
//! original destination it read, so each assertion names where a connection
//! went. Needs root and iptables: see [`meshtrace_tests::netns`] for what
//! happens without them (these tests never pass silently).

use meshtrace_tests::netns::{self, Netns};
use meshtrace_tests::process::proxy_binary;
use tokio::process::Child;

const TOOL: &str = env!("CARGO_BIN_EXE_netns-tool");

/// One IP family's addresses: the pod, the peer, and a second peer address
/// that the init step excludes by CIDR.
struct Family {
    pod: &'static str,
    peer: &'static str,
    excluded_peer: &'static str,
}

const V4: Family = Family {
    pod: "10.77.0.1",
    peer: "10.77.0.2",
    excluded_peer: "10.77.0.3",
};

const V6: Family = Family {
    pod: "[fd77::1]",
    peer: "[fd77::2]",
    excluded_peer: "[fd77::3]",
};

const INIT_FLAGS: [&str; 8] = [
    "--exclude-inbound-ports",
    "7171",
    "--exclude-outbound-ports",
    "9191",
    "--exclude-outbound-cidrs",
    "10.77.0.3/32,fd77::3/128",
    "--ipv6",
    "on",
];

/// A pod namespace with capture listeners on 15001 and 15006, health and
/// metrics servers on 15021 and 15020 and an excluded-port server on 7171, linked to a peer namespace
/// serving 9090 and 9191 on all its addresses.
struct Pod {
    pod: Netns,
    peer: Netns,
    _servers: Vec<Child>,
}

impl Pod {
    /// The namespaces and servers, before any rule; `None` if skipped loudly.
    async fn start(test: &str) -> Option<Self> {
        let name = format!("mt-init-{test}-{}", std::process::id());
        let pod = netns::or_skip(&name, "the init-step test")?;
        let peer = Netns::create(&format!("{name}-peer")).expect("the peer namespace");
        pod.link(
            &peer,
            &["10.77.0.1/24", "fd77::1/64"],
            &["10.77.0.2/24", "10.77.0.3/24", "fd77::2/64", "fd77::3/64"],
        )
        .expect("veth between pod and peer");
        let mut servers = Vec::new();
        for port in ["15001", "15006"] {
            servers.push(
                pod.listen(&[TOOL, "capture", &format!("[::]:{port}")])
                    .await,
            );
        }
        for port in ["15021", "15020", "7171"] {
            servers.push(pod.listen(&[TOOL, "serve", &format!("[::]:{port}")]).await);
        }
        for port in ["9090", "9191"] {
            servers.push(peer.listen(&[TOOL, "serve", &format!("[::]:{port}")]).await);
        }
        Some(Self {
            pod,
            peer,
            _servers: servers,
        })
    }

    /// Runs `meshtrace-proxy init ARGS` in the pod and returns what it printed.
    async fn init(&self, args: &[&str]) -> String {
        let binary = proxy_binary().await;
        let mut all = vec![binary.to_str().expect("utf-8 path"), "init"];
        all.extend_from_slice(args);
        self.pod.must(&all).await
    }

    /// The pod's `nat` tables as `iptables-save` prints them, minus comments
    /// and packet counters.
    async fn nat_tables(&self) -> String {
        let mut text = String::new();
        for save in ["iptables-save", "ip6tables-save"] {
            let table = self.pod.must(&[save, "-t", "nat"]).await;
            for line in table.lines().filter(|l| !l.starts_with('#')) {
                let line = line.split(" [").next().unwrap_or(line);
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

/// `GET http://{authority}/{path}` from inside `ns`: the answering server's
/// line (`captured orig-dst=… path=…` or `served-by … path=…`).
async fn get(ns: &Netns, authority: &str, path: &str) -> String {
    let out = ns
        .must(&[TOOL, "get", &format!("http://{authority}/{path}")])
        .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.lines().nth(1).unwrap_or_default().to_string()
}

fn captured(authority: &str, path: &str) -> String {
    format!("captured orig-dst={authority} path=/{path}")
}

fn served(port: u16, path: &str) -> String {
    format!("served-by [::]:{port} path=/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_outbound_connections_reach_15001_with_the_address_they_dialled() {
    let Some(pod) = Pod::start("out").await else {
        return;
    };
    pod.init(&INIT_FLAGS).await;
    for family in [V4, V6] {
        for port in ["9090", "5432", "80"] {
            let dialled = format!("{}:{port}", family.peer);
            assert_eq!(
                get(&pod.pod, &dialled, "app").await,
                captured(&dialled, "app")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecars_own_connections_and_localhost_are_not_redirected() {
    let Some(pod) = Pod::start("uid").await else {
        return;
    };
    pod.init(&INIT_FLAGS).await;
    for family in [V4, V6] {
        let url = format!("http://{}:9090/sidecar", family.peer);
        let out = pod.pod.must_as_sidecar(&[TOOL, "get", &url]).await;
        assert!(out.contains(&served(9090, "sidecar")), "{out}");
    }
    for local in ["127.0.0.1:15021", "[::1]:15021"] {
        assert_eq!(get(&pod.pod, local, "local").await, served(15021, "local"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_reach_15006_except_health_metrics_and_excluded_ports() {
    let Some(pod) = Pod::start("in").await else {
        return;
    };
    pod.init(&INIT_FLAGS).await;
    for family in [V4, V6] {
        for port in ["8080", "9090", "15001"] {
            let dialled = format!("{}:{port}", family.pod);
            assert_eq!(
                get(&pod.peer, &dialled, "in").await,
                captured(&dialled, "in")
            );
        }
        for port in [15021, 15020] {
            let always = format!("{}:{port}", family.pod);
            assert_eq!(
                get(&pod.peer, &always, "probe").await,
                served(port, "probe")
            );
        }
        let excluded = format!("{}:7171", family.pod);
        assert_eq!(get(&pod.peer, &excluded, "x").await, served(7171, "x"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_outbound_ports_and_cidrs_bypass_the_sidecar() {
    let Some(pod) = Pod::start("excl").await else {
        return;
    };
    pod.init(&INIT_FLAGS).await;
    for family in [V4, V6] {
        let port = format!("{}:9191", family.peer);
        assert_eq!(get(&pod.pod, &port, "port").await, served(9191, "port"));
        let cidr = format!("{}:9090", family.excluded_peer);
        assert_eq!(get(&pod.pod, &cidr, "cidr").await, served(9090, "cidr"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_changes_nothing_and_remove_deletes_every_rule() {
    let Some(pod) = Pod::start("idem").await else {
        return;
    };
    let first = pod.init(&INIT_FLAGS).await;
    assert!(
        first.contains("-A PREROUTING -p tcp -j MESHTRACE_INBOUND"),
        "{first}"
    );
    let installed = pod.nat_tables().await;
    assert_eq!(installed.matches("-j MESHTRACE_INBOUND").count(), 2);

    let second = pod.init(&INIT_FLAGS).await;
    assert!(!second.contains("-A PREROUTING"), "{second}");
    assert_eq!(pod.nat_tables().await, installed);

    let removed = pod.init(&["--remove", "--ipv6", "on"]).await;
    assert!(removed.contains("-X MESHTRACE_OUTPUT"), "{removed}");
    let after = pod.nat_tables().await;
    assert!(!after.contains("MESHTRACE"), "{after}");
    let peer = format!("{}:9090", V4.peer);
    assert_eq!(get(&pod.pod, &peer, "gone").await, served(9090, "gone"));

    let again = pod.init(&["--remove", "--ipv6", "on"]).await;
    assert!(again.contains("no meshtrace rules to remove"), "{again}");
}

#[tokio::test]
async fn init_without_privileges_or_iptables_says_why_and_fails() {
    let Some(pod) = Pod::start("errors").await else {
        return;
    };
    let binary = proxy_binary().await;
    let binary = binary.to_str().expect("utf-8 path");
    let unprivileged = pod
        .pod
        .run(&[
            "setpriv",
            "--reuid",
            "1000",
            "--regid",
            "1000",
            "--clear-groups",
            binary,
            "init",
        ])
        .await;
    assert!(!unprivileged.status.success());
    let stderr = String::from_utf8_lossy(&unprivileged.stderr);
    assert!(
        stderr.contains("NET_ADMIN") && stderr.lines().count() == 1,
        "{stderr}"
    );

    let no_tools = pod
        .pod
        .run(&["env", "PATH=/nonexistent", binary, "init"])
        .await;
    assert!(!no_tools.status.success());
    let stderr = String::from_utf8_lossy(&no_tools.stderr);
    assert!(stderr.contains("`iptables-save` was not found"), "{stderr}");
}

#[tokio::test]
async fn dry_run_prints_both_scripts_and_bad_flags_name_flag_and_value() {
    let binary = proxy_binary().await;
    let run = |args: &'static [&'static str]| async move {
        let out = tokio::process::Command::new(binary).args(args).output();
        out.await.expect("run meshtrace-proxy init")
    };
    let dry = run(&["init", "--dry-run", "--ipv6", "on"]).await;
    assert!(dry.status.success());
    let text = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        text.matches("-j REDIRECT --to-ports 15001").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("# IPv6") && text.contains("-d ::1/128 -j RETURN"),
        "{text}"
    );

    let bad = run(&[
        "init",
        "--dry-run",
        "--exclude-outbound-cidrs",
        "10.0.0.0/40",
    ])
    .await;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--exclude-outbound-cidrs") && stderr.contains("10.0.0.0/40"));
}
