//! Two real `meshtrace-control serve --store kubernetes` processes sharing one
//! store (a ConfigMap in [`FakeKubeApi`], reached through a kubeconfig) converge
//! on the same state under the same version: a write on one replica appears on
//! the other, concurrent writes on both land, and a sidecar reconnecting from one
//! replica to the other gets the same config under the same version.

use std::path::PathBuf;

use meshtrace_control::client::{ControlClient, WatchStream};
use meshtrace_control::overrides::NewOverride;
use meshtrace_tests::bound::within;
use meshtrace_tests::kube_api::FakeKubeApi;
use meshtrace_tests::process::ControlProcess;
use serde_json::{json, Value};

const TOKEN: &str = "replicas-token";
const SOURCE: &str = "defaults: {sampling: {default_rate: 0.1}}\n";
const WORKLOAD: &str = "namespace=shop&pod=checkout-1&service=checkout";

/// The fake API, its kubeconfig (removed on drop) and two replicas.
struct Pair {
    api: FakeKubeApi,
    kubeconfig: PathBuf,
    a: ControlProcess,
    b: ControlProcess,
}

impl Pair {
    async fn start(name: &str) -> Self {
        let api = FakeKubeApi::start().await;
        let kubeconfig = std::env::temp_dir().join(format!(
            "meshtrace-{name}-{}-kubeconfig.yaml",
            std::process::id()
        ));
        api.write_kubeconfig(&kubeconfig, "default");
        let (name_a, name_b) = (format!("{name}-a"), format!("{name}-b"));
        let a = ControlProcess::serve_kubernetes(&name_a, SOURCE, TOKEN, &kubeconfig).await;
        let b = ControlProcess::serve_kubernetes(&name_b, SOURCE, TOKEN, &kubeconfig).await;
        Self {
            api,
            kubeconfig,
            a,
            b,
        }
    }

    fn clients(&self) -> (ControlClient, ControlClient) {
        let client = |p: &ControlProcess| ControlClient::new(&p.url(), Some(TOKEN.into())).unwrap();
        (client(&self.a), client(&self.b))
    }

    /// The version the stored state was last written under.
    fn stored_version(&self) -> u64 {
        let cm = self
            .api
            .configmap("mesh", "meshtrace-control-state")
            .expect("the state ConfigMap");
        let state: Value =
            serde_json::from_str(cm["data"]["state.json"].as_str().unwrap()).unwrap();
        state["version"].as_u64().expect("a stored version")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

async fn status_version(client: &ControlClient) -> u64 {
    let status: Value = within("GET /v1/status", client.get("/v1/status"))
        .await
        .unwrap();
    status["version"].as_u64().expect("a version")
}

/// The next config push on `watch`: (version, config as JSON).
async fn next_push(watch: &mut WatchStream) -> (u64, Value) {
    let push = within("a config push", watch.next_config()).await.unwrap();
    let push = push.expect("the stream goes on");
    (push.version, serde_json::to_value(push.config).unwrap())
}

/// Reads pushes until one has `version`.
async fn push_of(watch: &mut WatchStream, version: u64) -> Value {
    within(format!("version {version} pushed"), async {
        loop {
            let (v, config) = next_push(watch).await;
            if v == version {
                return config;
            }
        }
    })
    .await
}

fn checkout_override(namespace: Option<&str>) -> NewOverride {
    serde_json::from_value(json!({"service": "checkout", "namespace": namespace,
        "rate": 1.0, "for": "1h", "reason": "replicas test"}))
    .unwrap()
}

#[tokio::test]
async fn a_write_on_one_replica_appears_on_the_other_under_the_same_version() {
    let pair = Pair::start("replicas-write").await;
    let (a, b) = pair.clients();
    let v0 = status_version(&a).await;
    assert_eq!(
        v0,
        status_version(&b).await,
        "same source, same state, same version"
    );
    let mut on_b = within("watch on B", b.watch(WORKLOAD)).await.unwrap();
    assert_eq!(next_push(&mut on_b).await.0, v0);

    within("override on A", a.add_override(&checkout_override(None)))
        .await
        .unwrap();
    let v1 = status_version(&a).await;
    assert_ne!(v1, v0);
    let pushed = push_of(&mut on_b, v1).await;
    let forced = &pushed["sampling"]["forced_workload"];
    assert_eq!(forced["rate"], json!(1.0), "{pushed}");
    assert_eq!(status_version(&b).await, v1);
    assert_eq!(pair.stored_version(), v1);

    // A sidecar watching A reconnects to B: same version, same config.
    let mut on_a = within("watch on A", a.watch(WORKLOAD)).await.unwrap();
    let from_a = next_push(&mut on_a).await;
    drop(on_a);
    let mut again = within("watch on B again", b.watch(WORKLOAD)).await.unwrap();
    assert_eq!(next_push(&mut again).await, from_a);
}

#[tokio::test]
async fn concurrent_writes_on_both_replicas_both_land_and_converge() {
    let pair = Pair::start("replicas-race").await;
    let (a, b) = pair.clients();
    let scoped = checkout_override(Some("shop"));
    let unscoped = checkout_override(None);
    let (on_one, on_other) = tokio::join!(a.add_override(&scoped), b.add_override(&unscoped));
    on_one.unwrap();
    on_other.unwrap();
    // The last write's version, as stored; both replicas end there.
    let last = pair.stored_version();
    within(format!("both replicas at version {last}"), async {
        while status_version(&a).await != last || status_version(&b).await != last {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (from_a, from_b) = (a.overrides().await.unwrap(), b.overrides().await.unwrap());
    assert_eq!(from_a.len(), 2, "{from_a:?}");
    assert_eq!(from_a, from_b);
    let mut on_a = within("watch on A", a.watch(WORKLOAD)).await.unwrap();
    let mut on_b = within("watch on B", b.watch(WORKLOAD)).await.unwrap();
    let (pushed_a, pushed_b) = (next_push(&mut on_a).await, next_push(&mut on_b).await);
    assert_eq!(pushed_a.0, last);
    assert_eq!(pushed_a, pushed_b);
}
