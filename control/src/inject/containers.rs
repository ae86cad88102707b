//! The containers and the volume an injected pod gets, as typed k8s-openapi
//! objects: the init step (`meshtrace-init`) that writes the pod's redirect
//! rules, and the sidecar (`meshtrace-proxy`) with the downward-API variables,
//! probes and security context it needs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, Pod, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::annotations::PodOptions;
use super::config::InjectorConfig;

/// The init container's name.
pub const INIT_NAME: &str = "meshtrace-init";
/// The sidecar's name; a pod that already has a container by this name is
/// taken as injected.
pub const SIDECAR_NAME: &str = "meshtrace-proxy";
/// The emptyDir holding the sidecar's config cache.
pub const RUN_VOLUME: &str = "meshtrace-run";
/// Where [`RUN_VOLUME`] is mounted.
pub const RUN_DIR: &str = "/var/run/meshtrace";
/// Where the app's outbound connections are redirected (the sidecar's default).
pub const OUTBOUND_PORT: u16 = 15001;
/// Where inbound connections are redirected.
pub const INBOUND_PORT: u16 = 15006;
/// The pod-reachable health port (`GET /healthz/ready`); never redirected.
pub const HEALTH_PORT: u16 = 15021;
/// The readiness path on [`HEALTH_PORT`].
pub const READY_PATH: &str = "/healthz/ready";
/// The pod-reachable metrics port (`GET /metrics`, for Prometheus); never redirected.
pub const METRICS_PORT: u16 = 15020;
/// The scrape path on [`METRICS_PORT`].
pub const METRICS_PATH: &str = "/metrics";
/// The name of [`METRICS_PORT`] on the sidecar container (a `PodMonitor` selects it).
pub const METRICS_PORT_NAME: &str = "http-metrics";

/// The labels that name a service, in order of preference.
const SERVICE_LABELS: [&str; 3] = ["app.kubernetes.io/name", "app", "k8s-app"];

/// `meshtrace-init`: `meshtrace-proxy init` as root with NET_ADMIN and NET_RAW
/// only, excluding the config's and the pod's ports and CIDRs (and always the
/// health and metrics ports inbound, so the kubelet's probes and Prometheus's
/// scrapes reach the sidecar directly).
pub fn init_container(config: &InjectorConfig, options: &PodOptions) -> Container {
    let uid = config.proxy_uid.to_string();
    let inbound = merged(
        [HEALTH_PORT, METRICS_PORT]
            .iter()
            .chain(&config.exclude_inbound_ports)
            .chain(&options.exclude_inbound_ports)
            .map(u16::to_string),
    );
    let outbound = merged(
        config
            .exclude_outbound_ports
            .iter()
            .chain(&options.exclude_outbound_ports)
            .map(u16::to_string),
    );
    let cidrs = merged(
        config
            .exclude_outbound_cidrs
            .iter()
            .chain(&options.exclude_outbound_cidrs)
            .cloned(),
    );
    let args = [
        ("--outbound-port", OUTBOUND_PORT.to_string()),
        ("--inbound-port", INBOUND_PORT.to_string()),
        ("--proxy-uid", uid.clone()),
        ("--proxy-gid", uid),
        ("--exclude-outbound-ports", outbound),
        ("--exclude-inbound-ports", inbound),
        ("--exclude-outbound-cidrs", cidrs),
        ("--ipv6", "auto".into()),
    ];
    let mut all = vec!["init".to_string()];
    for (flag, value) in args {
        all.extend([flag.to_string(), value]);
    }
    Container {
        name: INIT_NAME.into(),
        image: Some(config.proxy_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some(all),
        resources: resources(config),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// `meshtrace-proxy run`, unprivileged, configured through its environment.
/// Native (`restartPolicy: Always` as an init container): its startup probe
/// holds the app's containers back until it is ready.
pub fn sidecar(config: &InjectorConfig, pod: &Pod, options: &PodOptions) -> Container {
    let port = |name: &str, port: u16| ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(config.proxy_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some(vec!["run".into()]),
        restart_policy: config.native_sidecar.then(|| "Always".to_string()),
        env: Some(env(config, pod, options)),
        ports: Some(vec![
            port("mt-inbound", INBOUND_PORT),
            port("mt-health", HEALTH_PORT),
            port(METRICS_PORT_NAME, METRICS_PORT),
        ]),
        readiness_probe: Some(probe(5, 3)),
        startup_probe: Some(probe(1, 120)),
        resources: resources(config),
        security_context: Some(SecurityContext {
            run_as_user: Some(config.proxy_uid),
            run_as_group: Some(config.proxy_uid),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: RUN_VOLUME.into(),
            mount_path: RUN_DIR.into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The emptyDir for the sidecar's config cache (its root filesystem is read-only).
pub fn run_volume() -> Volume {
    Volume {
        name: RUN_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// The service a pod belongs to: the first of `app.kubernetes.io/name`, `app`,
/// `k8s-app`; else the name its controller gave it: `generateName` without its
/// trailing `-` and, for a Deployment's pod, its `pod-template-hash`
/// (`checkout-7d9f8b6c5-` → `checkout`); else the pod's own name. `None` when
/// the pod has none of these (the sidecar then uses its own default).
pub fn service_name(pod: &Pod) -> Option<String> {
    let meta = &pod.metadata;
    let labels = meta.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).filter(|v| !v.is_empty());
    if let Some(name) = SERVICE_LABELS.iter().find_map(|k| label(k)) {
        return Some(name.clone());
    }
    if let Some(generated) = meta.generate_name.as_deref() {
        let base = generated.trim_end_matches('-');
        let base = match label("pod-template-hash") {
            Some(hash) => base.strip_suffix(&format!("-{hash}")).unwrap_or(base),
            None => base,
        };
        if !base.is_empty() {
            return Some(base.to_string());
        }
    }
    meta.name.clone().filter(|n| !n.is_empty())
}

fn env(config: &InjectorConfig, pod: &Pod, options: &PodOptions) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    };
    let value = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("NODE_NAME", "spec.nodeName"),
        field("POD_IP", "status.podIP"),
    ];
    if let Some(service) = service_name(pod) {
        env.push(value("MESHTRACE_SERVICE_NAME", &service));
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(value("MESHTRACE_POD_LABELS", &labels.join(",")));
    env.push(value("MESHTRACE_APP_PORT", "original"));
    if let Some(url) = &config.control_url {
        env.push(value("MESHTRACE_CONTROL_URL", url));
    }
    let cache = format!("{RUN_DIR}/config-cache.json");
    env.push(value("MESHTRACE_CONTROL_CACHE", &cache));
    env.push(value("MESHTRACE_LOG_LEVEL", &config.log_level));
    env.push(value("MESHTRACE_LOG_FORMAT", &config.log_format));
    if let Some(extra) = &options.extra_config {
        env.push(value("MESHTRACE_CONFIG_YAML", extra));
    }
    env
}

fn probe(period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(READY_PATH.into()),
            port: IntOrString::Int(i32::from(HEALTH_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

fn resources(config: &InjectorConfig) -> Option<ResourceRequirements> {
    let quantities = |m: &BTreeMap<String, String>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    let r = &config.resources;
    Some(ResourceRequirements {
        requests: quantities(&r.requests),
        limits: quantities(&r.limits),
        ..ResourceRequirements::default()
    })
}

/// Comma-joined, first occurrence kept.
fn merged(items: impl Iterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen.join(",")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(labels: &[(&str, &str)], generate_name: Option<&str>, name: Option<&str>) -> Pod {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Pod {
            metadata: ObjectMeta {
                labels: Some(labels),
                generate_name: generate_name.map(Into::into),
                name: name.map(Into::into),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn service_name_prefers_the_recommended_label_then_app_then_k8s_app() {
        let all = [
            ("k8s-app", "c"),
            ("app", "b"),
            ("app.kubernetes.io/name", "a"),
        ];
        assert_eq!(service_name(&pod(&all, None, None)).as_deref(), Some("a"));
        assert_eq!(
            service_name(&pod(&all[..2], None, None)).as_deref(),
            Some("b")
        );
        assert_eq!(
            service_name(&pod(&all[..1], None, None)).as_deref(),
            Some("c")
        );
    }

    #[test]
    fn service_name_falls_back_to_the_controller_given_name() {
        let rs = pod(
            &[("pod-template-hash", "7d9f8b6c5")],
            Some("checkout-7d9f8b6c5-"),
            None,
        );
        assert_eq!(service_name(&rs).as_deref(), Some("checkout"));
        let sts = pod(&[], Some("web-"), None);
        assert_eq!(service_name(&sts).as_deref(), Some("web"));
        assert_eq!(
            service_name(&pod(&[], None, Some("solo"))).as_deref(),
            Some("solo")
        );
        assert_eq!(service_name(&pod(&[], None, None)), None);
    }

    #[test]
    fn the_health_and_metrics_ports_are_always_excluded_inbound_and_lists_are_merged() {
        let config = InjectorConfig {
            exclude_inbound_ports: vec![9090, 15021, 15020],
            exclude_outbound_ports: vec![5432],
            ..InjectorConfig::default()
        };
        let options = PodOptions {
            exclude_inbound_ports: vec![9090, 8081],
            exclude_outbound_cidrs: vec!["10.0.0.0/8".into()],
            ..PodOptions::default()
        };
        let args = init_container(&config, &options).args.unwrap();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(after("--exclude-inbound-ports"), "15021,15020,9090,8081");
        assert_eq!(after("--exclude-outbound-ports"), "5432");
        assert_eq!(after("--exclude-outbound-cidrs"), "10.0.0.0/8");
        assert_eq!(after("--proxy-gid"), "1337");
    }

    #[test]
    fn classic_mode_has_no_restart_policy() {
        let config = InjectorConfig {
            native_sidecar: false,
            ..InjectorConfig::default()
        };
        let s = sidecar(&config, &Pod::default(), &PodOptions::default());
        assert_eq!(s.restart_policy, None);
        let native = sidecar(
            &InjectorConfig::default(),
            &Pod::default(),
            &PodOptions::default(),
        );
        assert_eq!(native.restart_policy.as_deref(), Some("Always"));
    }
}
