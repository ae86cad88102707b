//! The injector's config file, rendered from the `sidecar.*` values in the
//! contract's format (`meshtrace-control injector --config`).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

use super::render::{manifests, RELEASE, VALUES_SETS};
use super::{flag, mounted_volume, only_container};

/// The injector's config file, exactly the contract's keys (an unknown key fails).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectorConfig {
    proxy_image: String,
    image_pull_policy: String,
    native_sidecar: bool,
    control_url: Option<String>,
    proxy_uid: u32,
    resources: serde_yaml::Value,
    exclude_inbound_ports: Vec<u16>,
    exclude_outbound_ports: Vec<u16>,
    exclude_outbound_cidrs: Vec<String>,
    log_level: String,
    log_format: String,
}

async fn injector_config(set: &[&str]) -> InjectorConfig {
    let m = manifests(set).await;
    let injector: Deployment = m.get("Deployment", &format!("{RELEASE}-injector"));
    let path = flag(only_container(&injector), "--config").unwrap();
    let (dir, key) = path.rsplit_once('/').unwrap();
    let mount = mounted_volume(&injector, |mount| mount == dir).expect("--config is mounted");
    let map: ConfigMap = m.get("ConfigMap", &mount.config_map.unwrap().name);
    serde_yaml::from_str(&map.data.unwrap()[key]).unwrap()
}

#[tokio::test]
async fn the_injector_config_is_the_contracts_format_with_its_defaults() {
    let c = injector_config(&[]).await;
    assert_eq!(c.proxy_image, "meshtrace/meshtrace-proxy:0.1.0");
    assert_eq!(c.image_pull_policy, "IfNotPresent");
    assert!(c.native_sidecar);
    assert_eq!(
        c.control_url.as_deref(),
        Some("http://meshtrace-control.meshtrace.svc:15010")
    );
    assert_eq!(c.proxy_uid, 1337);
    let want: serde_yaml::Value =
        serde_yaml::from_str("{requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 256Mi}}")
            .unwrap();
    assert_eq!(c.resources, want);
    assert!(c.exclude_inbound_ports.is_empty() && c.exclude_outbound_ports.is_empty());
    assert!(c.exclude_outbound_cidrs.is_empty());
    assert_eq!(
        (c.log_level.as_str(), c.log_format.as_str()),
        ("info", "json")
    );
}

#[tokio::test]
async fn sidecar_values_reach_the_injector_config() {
    let classic = injector_config(&["sidecar.native=false", "sidecar.control.enabled=false"]).await;
    assert!(!classic.native_sidecar);
    assert_eq!(classic.control_url, None, "no control plane: null");
    let set = VALUES_SETS
        .iter()
        .find(|v| v.name.starts_with("fail closed"))
        .unwrap()
        .set;
    let excluded = injector_config(set).await;
    assert_eq!(excluded.exclude_outbound_ports, vec![5432, 6379]);
    assert_eq!(
        excluded.exclude_outbound_cidrs,
        vec!["169.254.169.254/32", "fd00::/8"]
    );
    let set = VALUES_SETS
        .iter()
        .find(|v| v.name == "custom images")
        .unwrap()
        .set;
    let custom = injector_config(set).await;
    assert_eq!(custom.proxy_image, "registry.example/mesh/proxy:1.2.4");
    assert_eq!(custom.image_pull_policy, "Always");
    let m = manifests(set).await;
    let image = |name: &str| {
        only_container(&m.get::<Deployment>("Deployment", name))
            .image
            .clone()
            .unwrap()
    };
    assert_eq!(image(RELEASE), "registry.example/mesh/control:1.2.3");
    assert_eq!(
        image(&format!("{RELEASE}-injector")),
        "registry.example/mesh/injector:1.2.3"
    );
}
