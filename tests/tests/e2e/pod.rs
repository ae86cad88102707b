//! A pod that really runs as injected: the injector's own output, run the way
//! the kubelet would run it, on this machine.
//!
//! `meshtrace-control inject` (the webhook's code) injects a pod manifest. The
//! test then plays the node and the kubelet, taking everything from the patched
//! spec and nothing from its own knowledge of the sidecar:
//!
//! - a "node" and a "pod" network namespace joined by a veth pair;
//! - the init container's command and args, as the user its securityContext
//!   names (root), in the pod's namespace: the redirect rules;
//! - the sidecar container's command, args and environment (downward-API fields
//!   resolved as the kubelet resolves them, the `emptyDir` mount emulated by a
//!   temporary directory) as its `runAsUser`/`runAsGroup`, probed on its
//!   readiness probe's port and path from the node, as the kubelet probes;
//! - the app, as another uid, on the pod's container port;
//! - a control plane and an upstream on the node.
//!
//! It checks that a request from the node to the app's port reaches the app
//! through the inbound listener, that the app's own call to the upstream goes
//! through the outbound listener, that Prometheus can scrape the sidecar from
//! the node where the pod's annotations say, that the control plane sees the sidecar under
//! the pod's identity, and prints the sidecar's start-to-ready time (the
//! figure in `benches/RESULTS.md`). Root and iptables are needed: see
//! [`meshtrace_tests::netns`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use meshtrace_tests::netns::{self, Netns};
use meshtrace_tests::process::{control_binary, proxy_binary, Group, Logs, Supervised};
use tokio::process::Command;
use tokio::time::Instant;

const NODE_IP: &str = "10.248.0.1";
const POD_IP: &str = "10.248.0.2";
const POD_NAME: &str = "checkout-7d9f-x2k";
const NODE_NAME: &str = "node-a";
/// The app's uid: anything but root and the sidecar's.
const APP_UID: &str = "1000";
/// Where the proxy image keeps its binary (its ENTRYPOINT).
const PROXY_ENTRYPOINT: &str = "/usr/local/bin/meshtrace-proxy";
/// How long the sidecar may take to turn ready.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// The manifest a user applies: nothing of meshtrace in it.
const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: checkout-7d9f-x2k
  namespace: shop
  labels: {app.kubernetes.io/name: checkout, version: v2}
spec:
  containers:
    - name: app
      image: shop/checkout:2
      ports: [{containerPort: 8080}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_pod_runs_with_its_traffic_through_the_sidecar() {
    let pid = std::process::id();
    let Some(pod_ns) = netns::or_skip(&format!("mt-pod-{pid}"), "the injected-pod test") else {
        return;
    };
    let node = Netns::create(&format!("mt-node-{pid}")).expect("the node's namespace");
    pod_ns
        .link(
            &node,
            &[&format!("{POD_IP}/24")],
            &[&format!("{NODE_IP}/24")],
        )
        .expect("veth between node and pod");
    let dir = tempfile::tempdir().expect("a scratch directory");
    let tool = env!("CARGO_BIN_EXE_netns-tool");

    let pod = injected(dir.path()).await;
    let (init, sidecar) = meshtrace_containers(&pod);

    // The init container, as root: the pod's redirect rules.
    assert_eq!(run_as(init), ("0".to_string(), "0".to_string()));
    let rules = pod_ns
        .must(
            &command(init)
                .await
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await;
    assert!(
        rules.contains("REDIRECT"),
        "init printed no rules:\n{rules}"
    );
    for port in ["15021", "15020"] {
        let bypass = format!("-A MESHTRACE_INBOUND -p tcp -m tcp --dport {port} -j RETURN");
        assert!(rules.contains(&bypass), "{port} is redirected:\n{rules}");
    }

    // The node: a control plane and an upstream the app calls.
    let _control = control_plane(&node, dir.path()).await;
    let _upstream = node
        .listen(&[tool, "serve", &format!("{NODE_IP}:9090")])
        .await;

    // The sidecar, exactly as the spec says, probed as the kubelet probes it.
    let started = Instant::now();
    let mut proxy = start_sidecar(&pod_ns, sidecar, dir.path()).await;
    let probe = readiness_url(sidecar);
    proxy
        .wait_until("the readiness probe to pass", READY_LIMIT, || {
            node_get(&node, &probe, "200 OK")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("sidecar start-to-ready: {:?}", started.elapsed());

    let _app = pod_ns
        .listen(&netns::as_user(APP_UID, &[tool, "serve", "0.0.0.0:8080"]))
        .await;
    assert_traffic_goes_through_the_sidecar(&pod_ns, &node).await;
    assert_prometheus_scrapes_the_sidecar(&pod, sidecar, &node).await;

    // The control plane knows the sidecar by the identity the downward API gave.
    let sidecars = format!("http://{NODE_IP}:15010/v1/sidecars");
    proxy
        .wait_until("the control plane to list the sidecar", READY_LIMIT, || {
            node_get(&node, &sidecars, POD_NAME)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A request from the node to the app's port, and the app's own call to the
/// node, each reach the other end through the sidecar: each end sees a trace
/// context that neither client sent, and the sidecar counted both directions.
async fn assert_traffic_goes_through_the_sidecar(pod_ns: &Netns, node: &Netns) {
    let tool = env!("CARGO_BIN_EXE_netns-tool");

    // Inbound: the node calls the app's port; the inbound listener takes it and
    // hands it to the app with a trace context it wrote.
    let inbound = node
        .must(&[tool, "get", &format!("http://{POD_IP}:8080/inbound")])
        .await;
    assert!(
        inbound.contains("200 OK") && inbound.contains("path=/inbound"),
        "{inbound}"
    );
    assert!(
        inbound.contains("traceparent=00-"),
        "the app saw no sidecar-written context:\n{inbound}"
    );

    // Outbound: the app calls the upstream; the outbound listener takes it.
    let outbound = pod_ns
        .must(&netns::as_user(
            APP_UID,
            &[tool, "get", &format!("http://{NODE_IP}:9090/outbound")],
        ))
        .await;
    assert!(outbound.contains("path=/outbound"), "{outbound}");
    assert!(
        outbound.contains("traceparent=00-"),
        "the upstream saw no sidecar-written context:\n{outbound}"
    );

    let metrics = pod_ns
        .must(&[tool, "get", "http://127.0.0.1:15000/metrics"])
        .await;
    for direction in ["inbound", "outbound"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("meshtrace_requests_total")
                    && l.contains(&format!("direction=\"{direction}\""))),
            "no {direction} request counted:\n{metrics}"
        );
    }
}

/// Prometheus, from the node, scrapes what the pod's `prometheus.io/*`
/// annotations point at (the `kubernetes_sd` convention), and the port is the
/// sidecar's `http-metrics` one (what the chart's `PodMonitor` selects): it
/// answers the sidecar's metrics and nothing of its admin server.
async fn assert_prometheus_scrapes_the_sidecar(pod: &Pod, sidecar: &Container, node: &Netns) {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let annotation = |key: &str| {
        annotations
            .get(&format!("prometheus.io/{key}"))
            .unwrap_or_else(|| panic!("no prometheus.io/{key} annotation: {annotations:?}"))
            .clone()
    };
    assert_eq!(annotation("scrape"), "true");
    let (port, path) = (annotation("port"), annotation("path"));
    let named = sidecar.ports.iter().flatten();
    let declared: Vec<String> = named
        .filter(|p| p.name.as_deref() == Some("http-metrics"))
        .map(|p| p.container_port.to_string())
        .collect();
    assert_eq!(declared, std::slice::from_ref(&port));
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("meshtrace.io/injected").map(String::as_str),
        Some("true")
    );

    let tool = env!("CARGO_BIN_EXE_netns-tool");
    let scrape = node
        .must(&[tool, "get", &format!("http://{POD_IP}:{port}{path}")])
        .await;
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("meshtrace_requests_total{")
                && l.contains("direction=\"inbound\"")),
        "the scrape has no inbound request:\n{scrape}"
    );
    let series = scrape
        .lines()
        .filter(|l| l.starts_with("meshtrace_"))
        .count();
    eprintln!(
        "metrics port scrape: {} bytes, {series} series",
        scrape.len()
    );
    for other in ["/config", "/shutdown", "/ready", "/healthz/ready", "/"] {
        let url = format!("http://{POD_IP}:{port}{other}");
        let answer = node.must(&[tool, "get", &url]).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{url}: {answer}");
    }
}

/// The pod after `meshtrace-control inject`, pointed at the node's control plane.
async fn injected(dir: &Path) -> Pod {
    let config = dir.join("injector.yaml");
    std::fs::write(&config, format!("control_url: http://{NODE_IP}:15010\n")).unwrap();
    let manifest = dir.join("pod.yaml");
    std::fs::write(&manifest, POD).unwrap();
    let out = Command::new(control_binary().await)
        .arg("inject")
        .arg("--config")
        .arg(&config)
        .arg("-f")
        .arg(&manifest)
        .output()
        .await
        .expect("run meshtrace-control inject");
    assert!(
        out.status.success(),
        "inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).expect("inject prints a Pod")
}

/// The init container and the native sidecar, checking their order: the rules
/// are written before the sidecar starts, and the sidecar before the app.
fn meshtrace_containers(pod: &Pod) -> (&Container, &Container) {
    let spec = pod.spec.as_ref().expect("a pod spec");
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let position = |name: &str| {
        inits
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no init container {name}"))
    };
    let (init, sidecar) = (position("meshtrace-init"), position("meshtrace-proxy"));
    assert!(
        init < sidecar,
        "the rules must be written before the sidecar starts"
    );
    assert_eq!(inits[sidecar].restart_policy.as_deref(), Some("Always"));
    (&inits[init], &inits[sidecar])
}

/// The uid and gid a container runs as (its securityContext's).
fn run_as(container: &Container) -> (String, String) {
    let context = container
        .security_context
        .as_ref()
        .expect("a securityContext");
    let uid = context.run_as_user.expect("runAsUser");
    let gid = context.run_as_group.unwrap_or(uid);
    (uid.to_string(), gid.to_string())
}

/// The container's command line, with the image's binary mapped to the one
/// this test built.
async fn command(container: &Container) -> Vec<String> {
    let mut line = container
        .command
        .clone()
        .unwrap_or_else(|| vec![PROXY_ENTRYPOINT.to_string()]);
    line.extend(container.args.clone().unwrap_or_default());
    assert_eq!(line[0], PROXY_ENTRYPOINT, "the proxy image's binary");
    line[0] = proxy_binary().await.display().to_string();
    line
}

/// Starts the sidecar in the pod's namespace with exactly the container's
/// command, environment and user.
async fn start_sidecar(pod: &Netns, container: &Container, dir: &Path) -> Supervised {
    let (uid, gid) = run_as(container);
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        pod.name(),
        "setpriv",
        "--reuid",
        &uid,
        "--regid",
        &gid,
    ])
    .arg("--clear-groups")
    .args(command(container).await)
    .env_clear()
    .env("PATH", "/usr/bin:/bin");
    for (name, value) in environment(container, dir) {
        cmd.env(name, value);
    }
    Supervised::spawn("the injected sidecar", cmd, Logs::Capture, Group::Inherit)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The container's environment as the kubelet sets it: literal values, and
/// downward-API fields of this pod. Paths under a volume mount point into a
/// directory of `dir` owned by the sidecar's user (the emptyDir).
fn environment(container: &Container, dir: &Path) -> BTreeMap<String, String> {
    let mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let local = dir.join(&m.name);
            std::fs::create_dir_all(&local).unwrap();
            chown(&local, container);
            (m.mount_path.clone(), local)
        })
        .collect();
    let field = |path: &str| match path {
        "metadata.name" => POD_NAME.to_string(),
        "metadata.namespace" => "shop".to_string(),
        "spec.nodeName" => NODE_NAME.to_string(),
        "status.podIP" => POD_IP.to_string(),
        "status.hostIP" => NODE_IP.to_string(),
        other => panic!("the test does not resolve the downward-API field {other}"),
    };
    let mut env = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => {
                let reference = from.field_ref.as_ref().expect("only fieldRef is used");
                field(&reference.field_path)
            }
            (None, None) => String::new(),
        };
        let value = mounts
            .iter()
            .find_map(|(mount, local)| {
                value
                    .strip_prefix(mount.as_str())
                    .map(|rest| format!("{}{rest}", local.display()))
            })
            .unwrap_or(value);
        env.insert(var.name.clone(), value);
    }
    env
}

/// Gives `path` to the container's user, as an emptyDir is writable by it.
fn chown(path: &Path, container: &Container) {
    let (uid, gid) = run_as(container);
    netns::sync(&[
        "chown",
        &format!("{uid}:{gid}"),
        &path.display().to_string(),
    ])
    .unwrap();
    // The scratch directory itself must be traversable by that user.
    if let Some(parent) = path.parent() {
        netns::sync(&["chmod", "755", &parent.display().to_string()]).unwrap();
    }
}

/// The readiness probe's URL, as the kubelet builds it from the pod's IP.
fn readiness_url(container: &Container) -> String {
    let probe = container
        .readiness_probe
        .as_ref()
        .expect("a readiness probe");
    let get = probe.http_get.as_ref().expect("an httpGet probe");
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port) => port.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port.to_string())
            .unwrap_or_else(|| panic!("no container port named {name}")),
    };
    format!(
        "http://{POD_IP}:{port}{}",
        get.path.as_deref().unwrap_or("/")
    )
}

/// Whether a GET from the node to `url` answers with `needle` in it.
async fn node_get(node: &Netns, url: &str, needle: &str) -> bool {
    let out = node
        .run(&[env!("CARGO_BIN_EXE_netns-tool"), "get", url])
        .await;
    String::from_utf8_lossy(&out.stdout).contains(needle)
}

/// A control plane on the node, serving an empty source document.
async fn control_plane(node: &Netns, dir: &Path) -> Supervised {
    let source = dir.join("mesh.yaml");
    std::fs::write(&source, "defaults: {}\n").unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node.name()])
        .arg(control_binary().await)
        .args(["serve", "--listen", &format!("{NODE_IP}:15010"), "--source"])
        .arg(&source)
        .arg("--state")
        .arg(dir.join("state.json"));
    let mut control = Supervised::spawn("the control plane", cmd, Logs::Capture, Group::Inherit)
        .unwrap_or_else(|e| panic!("{e}"));
    let health = format!("http://{NODE_IP}:15010/healthz");
    control
        .wait_until("the control plane to answer", READY_LIMIT, || {
            node_get(node, &health, "200 OK")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    control
}
