//! Rendering the chart with a real `helm`, validating what it renders with
//! `kubernetes-validate`, and reading it back as typed Kubernetes objects.
//!
//! Both tools come from the venv `scripts/test-all.sh` creates from
//! `tests/python/requirements.txt` (`helm-binary` ships a helm 3 binary). A
//! missing venv fails the test with the fix: it never skips.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use meshtrace_tests::bound::within_for;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

/// The release every render uses: the contract's default control-plane URL
/// (`http://meshtrace-control.meshtrace.svc:15010`) names it.
pub const RELEASE: &str = "meshtrace-control";
pub const NAMESPACE: &str = "meshtrace";

/// The oldest Kubernetes the chart supports: native sidecars (init containers
/// with `restartPolicy: Always`) are on by default from 1.29.
pub const OLDEST_KUBERNETES: &str = "1.29.0";

/// How long one helm or kubernetes-validate run may take on a busy machine.
const TOOL_LIMIT: Duration = Duration::from_secs(60);

/// A values set the suite renders: a name for messages and `--set` pairs.
pub struct ValuesSet {
    pub name: &'static str,
    pub set: &'static [&'static str],
}

/// Every values set the suite lints, renders and validates.
pub const VALUES_SETS: &[ValuesSet] = &[
    ValuesSet {
        name: "defaults",
        set: &[],
    },
    ValuesSet {
        name: "cert-manager",
        set: &["injector.tls.mode=certManager"],
    },
    ValuesSet {
        name: "classic sidecar",
        set: &["sidecar.native=false", "sidecar.control.enabled=false"],
    },
    ValuesSet {
        name: "file store, one replica",
        set: &[
            "store=file",
            "replicas=1",
            "persistence.enabled=true",
            "token=s3cret",
        ],
    },
    ValuesSet {
        name: "custom images",
        set: &[
            "image.repository=registry.example/mesh/control",
            "image.tag=1.2.3",
            "sidecar.image.repository=registry.example/mesh/proxy",
            "sidecar.image.tag=1.2.4",
            "sidecar.image.pullPolicy=Always",
            "injector.image.repository=registry.example/mesh/injector",
        ],
    },
    ValuesSet {
        name: "pod monitor",
        set: &[
            "monitoring.podMonitor.enabled=true",
            "monitoring.podMonitor.labels.release=kube-prometheus-stack",
        ],
    },
    ValuesSet {
        name: "fail closed, locked-down injector port",
        set: &[
            "injector.failurePolicy=Fail",
            "injector.networkPolicy.from[0].ipBlock.cidr=10.0.0.0/24",
            "sidecar.excludeOutboundPorts={5432,6379}",
            "sidecar.excludeOutboundCidrs={169.254.169.254/32,fd00::/8}",
        ],
    },
    ValuesSet {
        name: "dashboard and alert rules",
        set: MONITORING,
    },
];

/// The opt-in monitoring objects: the Grafana dashboard's ConfigMap (in
/// Grafana's namespace) and the PrometheusRule, labelled for an operator.
pub const MONITORING: &[&str] = &[
    "monitoring.dashboard.enabled=true",
    "monitoring.dashboard.namespace=grafana",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
];

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn chart_dir() -> PathBuf {
    repo().join("charts/meshtrace-control")
}

/// `<repo>/.venv/bin/<tool>`; fails the test, with the fix, when it is missing.
pub fn venv_tool(tool: &str) -> PathBuf {
    let path = repo().join(".venv/bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: the chart tests need helm-binary and kubernetes-validate from \
         tests/python/requirements.txt; run `bash scripts/test-all.sh` once (it creates the venv)",
        path.display()
    );
    path
}

/// Runs `program args`, bounded in time; panics when it cannot start.
pub async fn run(program: &Path, args: &[String]) -> Output {
    let what = format!("{} {}", program.display(), args.join(" "));
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    within_for(TOOL_LIMIT, &what, output)
        .await
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

/// `--set a=b` pairs for helm.
pub fn set_args(set: &[&str]) -> Vec<String> {
    set.iter()
        .flat_map(|s| ["--set".to_string(), (*s).to_string()])
        .collect()
}

/// Renders already made, by `--set` list: the chart does not change during a
/// run, and each values set is read by several tests.
static RENDERS: LazyLock<Mutex<HashMap<Vec<String>, Rendered>>> = LazyLock::new(Mutex::default);

/// The rendered text, or helm's error.
type Rendered = Result<String, String>;

/// `helm template` of the chart with `set`: the rendered text, or helm's error.
pub async fn template(set: &[&str]) -> Rendered {
    let key: Vec<String> = set.iter().map(|s| (*s).to_string()).collect();
    if let Some(done) = RENDERS.lock().unwrap().get(&key) {
        return done.clone();
    }
    let rendered = render(set).await;
    RENDERS.lock().unwrap().insert(key, rendered.clone());
    rendered
}

async fn render(set: &[&str]) -> Rendered {
    let mut args: Vec<String> = ["template", RELEASE].map(String::from).to_vec();
    args.push(chart_dir().display().to_string());
    args.extend(["--namespace".to_string(), NAMESPACE.to_string()]);
    args.extend(set_args(set));
    let out = run(&venv_tool("helm"), &args).await;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The API groups of the CRDs the chart may render (no schema to validate against).
const CRD_GROUPS: [&str; 2] = ["cert-manager.io/v1", "monitoring.coreos.com/v1"];

/// Validates `rendered` with `kubernetes-validate --strict` against the oldest
/// supported Kubernetes. Kinds it has no schema for may only be cert-manager's
/// and the Prometheus Operator's (CRDs, checked field by field by the tests
/// instead).
pub async fn validate(name: &str, rendered: &str) {
    let file = std::env::temp_dir().join(format!(
        "meshtrace-chart-{}-{}.yaml",
        std::process::id(),
        name.replace([' ', ','], "-")
    ));
    std::fs::write(&file, rendered).unwrap();
    let args = ["--strict", "--quiet", "-k", OLDEST_KUBERNETES]
        .map(String::from)
        .into_iter()
        .chain([file.display().to_string()])
        .collect::<Vec<_>>();
    let out = run(&venv_tool("kubernetes-validate"), &args).await;
    let _ = std::fs::remove_file(&file);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name}: kubernetes-validate failed:\n{report}"
    );
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("Couldn't find schema")
                && CRD_GROUPS.iter().any(|group| line.contains(group)),
            "{name}: kubernetes-validate reported: {line}"
        );
    }
}

/// The objects of a render, in order.
pub struct Manifests {
    pub docs: Vec<Value>,
}

impl Manifests {
    pub fn parse(rendered: &str) -> Self {
        let docs = serde_yaml::Deserializer::from_str(rendered)
            .map(|doc| Value::deserialize(doc).unwrap())
            .filter(|doc| !doc.is_null())
            .collect();
        Self { docs }
    }

    /// Every object of `kind`, untyped.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs
            .iter()
            .filter(move |d| d["kind"].as_str() == Some(kind))
    }

    /// The one Prometheus Operator object of `kind` the monitoring values turn
    /// on: `<release>-sidecars` in the release namespace, carrying the
    /// `release: kube-prometheus-stack` label the tests' values give it.
    pub fn operator_object<'a>(&'a self, kind: &'a str) -> &'a Value {
        let found: Vec<&Value> = self.of_kind(kind).collect();
        let [object] = found[..] else {
            panic!("one {kind}, got {}", found.len())
        };
        assert_eq!(
            object["apiVersion"].as_str(),
            Some("monitoring.coreos.com/v1")
        );
        let meta = &object["metadata"];
        assert_eq!(
            meta["name"].as_str(),
            Some(format!("{RELEASE}-sidecars").as_str())
        );
        assert_eq!(meta["namespace"].as_str(), Some(NAMESPACE));
        assert_eq!(
            meta["labels"]["release"].as_str(),
            Some("kube-prometheus-stack")
        );
        object
    }

    /// Every object of `kind` as the typed object `T`.
    pub fn all<T: DeserializeOwned>(&self, kind: &str) -> Vec<T> {
        self.of_kind(kind)
            .map(|d| {
                serde_yaml::from_value(d.clone())
                    .unwrap_or_else(|e| panic!("a {kind} does not parse as the typed object: {e}"))
            })
            .collect()
    }

    /// The one object of `kind` named `name`.
    pub fn get<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        let doc = self
            .of_kind(kind)
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} named {name}"));
        serde_yaml::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{kind} {name} does not parse as the typed object: {e}"))
    }

    pub fn has(&self, kind: &str, name: &str) -> bool {
        self.of_kind(kind)
            .any(|d| d["metadata"]["name"].as_str() == Some(name))
    }
}

/// Renders `set` (it must render) and parses it.
pub async fn manifests(set: &[&str]) -> Manifests {
    let rendered = template(set)
        .await
        .unwrap_or_else(|e| panic!("helm template with {set:?} failed:\n{e}"));
    Manifests::parse(&rendered)
}

/// Whether `selector` selects an object labelled `labels`, by the API server's
/// rules: every matchLabels pair and every expression must hold.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten();
    let pairs_hold = pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten();
    pairs_hold
        && expressions.into_iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("unknown selector operator {other}"),
            }
        })
}

/// A label map from `k=v` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}
