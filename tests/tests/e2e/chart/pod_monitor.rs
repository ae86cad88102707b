//! The opt-in `PodMonitor` (`monitoring.podMonitor.enabled`): off by default;
//! when on, it selects exactly the pods the injector really injected (the
//! injector's own patch applied to a pod) and scrapes the port and path their
//! sidecar container declares.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use meshtrace_control::inject::{inject, InjectorConfig, Outcome};

use super::render::{manifests, selects};

const ENABLED: &[&str] = &[
    "monitoring.podMonitor.enabled=true",
    "monitoring.podMonitor.labels.release=kube-prometheus-stack",
];

const APP_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: checkout-1
  namespace: shop
  labels: {app.kubernetes.io/name: checkout}
  annotations: {prometheus.io/scrape: "true", prometheus.io/port: "9090"}
spec:
  containers: [{name: app, image: shop/checkout:2, ports: [{containerPort: 8080}]}]
"#;

/// `APP_POD` as the injector's webhook leaves it.
fn injected() -> Pod {
    let pod: Pod = serde_yaml::from_str(APP_POD).unwrap();
    let Outcome::Patch { patch, .. } = inject(&InjectorConfig::default(), &pod) else {
        panic!("the injector did not patch the pod");
    };
    let mut value = serde_json::to_value(&pod).unwrap();
    json_patch::patch(&mut value, &patch).unwrap();
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn the_pod_monitor_is_off_by_default() {
    let m = manifests(&[]).await;
    assert_eq!(m.of_kind("PodMonitor").count(), 0);
}

#[tokio::test]
async fn the_pod_monitor_scrapes_the_metrics_port_of_every_injected_pod() {
    let m = manifests(ENABLED).await;
    let monitor = m.operator_object("PodMonitor");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["any"].as_bool(),
        Some(true)
    );

    // Its selector takes the injected pod, not the pod before injection.
    let selector: LabelSelector =
        serde_yaml::from_value(monitor["spec"]["selector"].clone()).unwrap();
    let before: Pod = serde_yaml::from_str(APP_POD).unwrap();
    let pod = injected();
    let labels = |pod: &Pod| pod.metadata.labels.clone().unwrap_or_default();
    assert!(selects(&selector, &labels(&pod)), "{selector:?}");
    assert!(!selects(&selector, &labels(&before)), "{selector:?}");
    // The app kept its own scrape annotations: the PodMonitor is how its
    // sidecar is scraped.
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["prometheus.io/port"], "9090");

    // One endpoint: a port the sidecar declares, 15020, on /metrics.
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_sequence()
        .unwrap();
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let port = endpoint["port"].as_str().expect("a named port");
    let spec = pod.spec.as_ref().unwrap();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let declared: Vec<i32> = containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.name.as_deref() == Some(port))
        .map(|p| p.container_port)
        .collect();
    assert_eq!(declared, [15020], "port {port} on the injected pod");
}
