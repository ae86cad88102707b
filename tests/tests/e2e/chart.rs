//! The Helm chart `charts/meshtrace-control`, through a real helm binary.
//!
//! Every values set is linted (`helm lint --strict`), rendered (`helm template`)
//! and validated against the Kubernetes JSON schemas of the oldest supported
//! version (`kubernetes-validate --strict`). Then the renders are read back as
//! typed objects and what matters is asserted: the webhook reaches the injector
//! (service, port, path, a CA that verifies its certificate), it selects the
//! right namespaces and pods, every selector matches its pods, the control plane
//! has the RBAC its Kubernetes store needs, and the injector's config has exactly
//! the contract's keys. No cluster is needed: the chart's contract with the API
//! server is what the schemas and these assertions check.

mod injector_config;
mod monitoring;
mod pod_monitor;
mod render;
mod webhook;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service, Volume};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use render::{manifests, selects, venv_tool, Manifests, NAMESPACE, RELEASE, VALUES_SETS};

const INJECTOR_SERVICE: &str = "meshtrace-injector";

#[tokio::test]
async fn helm_lint_strict_passes_for_every_values_set() {
    let helm = venv_tool("helm");
    for values in VALUES_SETS {
        let mut args = vec!["lint".to_string(), "--strict".to_string()];
        args.push(render::chart_dir().display().to_string());
        args.extend(render::set_args(values.set));
        let out = render::run(&helm, &args).await;
        assert!(
            out.status.success(),
            "helm lint --strict ({}):\n{}{}",
            values.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `../shared/tools/helm-lint`: Helm v4's lint through its library. It fetches
/// its wheel once; when the tool is absent or cannot set up (exit 2) the test
/// says so loudly, since helm 3's strict lint above still ran.
#[tokio::test]
async fn helm_v4_library_lint_passes() {
    let tool = render::repo().join("../shared/tools/helm-lint");
    if !tool.exists() {
        eprintln!(
            "WARNING: {} not found: Helm v4 lint NOT run",
            tool.display()
        );
        return;
    }
    let out = render::run(&tool, &[render::chart_dir().display().to_string()]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(2) {
        eprintln!("WARNING: helm-lint could not set up, Helm v4 lint NOT run:\n{report}");
        return;
    }
    assert!(out.status.success(), "helm-lint:\n{report}");
    assert!(!report.contains("warning:"), "helm-lint warned:\n{report}");
}

#[tokio::test]
async fn every_values_set_renders_and_validates_against_the_oldest_kubernetes() {
    for values in VALUES_SETS {
        let rendered = render::template(values.set)
            .await
            .unwrap_or_else(|e| panic!("helm template ({}):\n{e}", values.name));
        render::validate(values.name, &rendered).await;
        let m = Manifests::parse(&rendered);
        assert!(
            m.has("Deployment", RELEASE),
            "{}: no control plane",
            values.name
        );
        assert!(
            m.has("Service", INJECTOR_SERVICE),
            "{}: no injector",
            values.name
        );
    }
}

#[tokio::test]
async fn every_service_budget_and_policy_selects_exactly_its_deployments_pods() {
    for values in VALUES_SETS {
        let m = manifests(values.set).await;
        let deployments: Vec<Deployment> = m.all("Deployment");
        let pods_of = |selector: &LabelSelector| -> Vec<String> {
            deployments
                .iter()
                .filter(|d| selects(selector, &pod_labels(d)))
                .map(|d| d.metadata.name.clone().unwrap())
                .collect()
        };
        for d in &deployments {
            let own = pods_of(&d.spec.as_ref().unwrap().selector);
            assert_eq!(
                own,
                vec![d.metadata.name.clone().unwrap()],
                "{}",
                values.name
            );
        }
        for s in m.all::<Service>("Service") {
            let selector = s.spec.unwrap().selector.unwrap();
            let selector = LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            };
            assert_eq!(
                pods_of(&selector).len(),
                1,
                "{}: Service {:?}",
                values.name,
                s.metadata.name
            );
        }
        for p in m.all::<PodDisruptionBudget>("PodDisruptionBudget") {
            let selector = p.spec.unwrap().selector.unwrap();
            assert_eq!(
                pods_of(&selector).len(),
                1,
                "{}: PDB {:?}",
                values.name,
                p.metadata.name
            );
        }
        for p in m.all::<NetworkPolicy>("NetworkPolicy") {
            let selector = p.spec.unwrap().pod_selector.unwrap();
            assert_eq!(
                pods_of(&selector).len(),
                1,
                "{}: policy {:?}",
                values.name,
                p.metadata.name
            );
        }
    }
}

#[tokio::test]
async fn the_control_plane_runs_two_replicas_on_the_kubernetes_store_by_default() {
    let m = manifests(&[]).await;
    let control: Deployment = m.get("Deployment", RELEASE);
    let spec = control.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        spec.strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let pod = spec.template.spec.unwrap();
    assert!(pod
        .affinity
        .unwrap()
        .pod_anti_affinity
        .unwrap()
        .preferred_during_scheduling_ignored_during_execution
        .is_some());
    let c = only_container(&control);
    assert_eq!(flag(c, "--store").as_deref(), Some("kubernetes"));
    let store = flag(c, "--store-name").unwrap();
    assert_eq!(store, format!("{RELEASE}-state"));
    assert_eq!(flag(c, "--state"), None);
    for (name, value) in [
        ("--max-connections", "16384"),
        ("--first-byte-timeout", "5s"),
        ("--header-timeout", "10s"),
        ("--idle-timeout", "60s"),
    ] {
        assert_eq!(flag(c, name).as_deref(), Some(value), "{name}");
    }
    let env = c.env.clone().unwrap();
    let ns = env
        .iter()
        .find(|e| e.name == "POD_NAMESPACE")
        .expect("POD_NAMESPACE");
    let field = ns.value_from.clone().unwrap().field_ref.unwrap().field_path;
    assert_eq!(field, "metadata.namespace");
    assert_ne!(
        pod.automount_service_account_token,
        Some(false),
        "the store needs a token"
    );
    // The Role bound to the pod's service account allows what the store does.
    let account = pod.service_account_name.unwrap();
    let binding: RoleBinding = m.all("RoleBinding").remove(0);
    let subjects = binding.subjects.unwrap();
    let subject = &subjects[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (account.as_str(), Some(NAMESPACE))
    );
    let role: Role = m.get("Role", &binding.role_ref.name);
    let rules = role.rules.unwrap();
    for verb in ["get", "list", "watch", "create", "update", "patch"] {
        let allowed = rules.iter().any(|r| {
            r.api_groups
                .as_ref()
                .is_some_and(|g| g.contains(&String::new()))
                && r.resources
                    .as_ref()
                    .is_some_and(|x| x.contains(&"configmaps".to_string()))
                && r.verbs.contains(&verb.to_string())
                && r.resource_names.as_ref().is_none_or(|n| n.contains(&store))
        });
        assert!(
            allowed,
            "the Role does not allow {verb} on ConfigMap {store}"
        );
    }
    let budget: PodDisruptionBudget = m.get("PodDisruptionBudget", RELEASE);
    assert_eq!(
        budget.spec.unwrap().max_unavailable,
        Some(IntOrString::Int(1))
    );
}

#[tokio::test]
async fn the_file_store_runs_one_replica_on_its_volume_without_rbac() {
    let m = manifests(&["store=file", "replicas=1", "persistence.enabled=true"]).await;
    let control: Deployment = m.get("Deployment", RELEASE);
    let spec = control.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let c = only_container(&control);
    assert_eq!(flag(c, "--store").as_deref(), Some("file"));
    assert_eq!(
        flag(c, "--state").as_deref(),
        Some("/var/lib/meshtrace/state.json")
    );
    let volumes = spec.template.spec.unwrap().volumes.unwrap();
    let state = volumes.iter().find(|v| v.name == "state").unwrap();
    let claim = state.persistent_volume_claim.clone().unwrap().claim_name;
    assert!(m.has("PersistentVolumeClaim", &claim));
    assert!(
        m.of_kind("Role").next().is_none(),
        "no API access for the file store"
    );
    assert!(
        !m.has("PodDisruptionBudget", RELEASE),
        "no budget over one replica"
    );
    let two = render::template(&["store=file"])
        .await
        .expect_err("two file-store replicas");
    assert!(two.contains("set replicas to 1"), "{two}");
}

// === helpers ===

fn only_container(d: &Deployment) -> &Container {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let [c] = &pod.containers[..] else {
        panic!("one container")
    };
    c
}

fn pod_labels(d: &Deployment) -> std::collections::BTreeMap<String, String> {
    let meta = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    meta.labels.clone().unwrap_or_default()
}

/// The value of `--name=value` among the container's args.
fn flag(c: &Container, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    c.args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix(&prefix).map(String::from))
}

/// The container port a Service's targetPort names.
fn container_port(c: &Container, target: &IntOrString) -> i32 {
    let ports = c.ports.iter().flatten();
    match target {
        IntOrString::Int(port) => *port,
        IntOrString::String(name) => {
            ports
                .into_iter()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

/// The volume of the deployment's only container mounted at a path `at` accepts.
fn mounted_volume(d: &Deployment, at: impl Fn(&str) -> bool) -> Option<Volume> {
    let mounts = only_container(d).volume_mounts.iter().flatten();
    let name = mounts.into_iter().find(|v| at(&v.mount_path))?.name.clone();
    let pod = d.spec.as_ref()?.template.spec.as_ref()?;
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .cloned()
}
