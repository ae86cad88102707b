//! The injector's config file: what every injected pod gets (image, resources,
//! control-plane URL, excluded ports…). YAML, snake_case, every key optional;
//! unknown keys and wrong types are errors with `file:line:column`, as
//! everywhere else in meshtrace.

use std::collections::BTreeMap;
use std::path::Path;

use meshtrace_config::ConfigError;
use serde::Deserialize;

use super::annotations::parse_cidrs;

/// The injector's settings; [`InjectorConfig::default`] is the contract's table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InjectorConfig {
    /// The sidecar image; the init container runs the same image (`init`).
    pub proxy_image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    pub image_pull_policy: String,
    /// `true`: the sidecar is an init container with `restartPolicy: Always`
    /// (Kubernetes ≥ 1.29), so it starts before the app and Jobs complete.
    /// `false`: a classic container, first in `spec.containers`.
    pub native_sidecar: bool,
    /// `MESHTRACE_CONTROL_URL` of the sidecar; `null`: none (local config only).
    pub control_url: Option<String>,
    /// The sidecar's uid and gid; the init step exempts its traffic.
    pub proxy_uid: i64,
    /// The sidecar's (and the init container's) resources.
    pub resources: Resources,
    /// Inbound ports never redirected, added to the pod annotation's.
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound ports never redirected, added to the pod annotation's.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations never redirected (v4 or v6 CIDRs).
    pub exclude_outbound_cidrs: Vec<String>,
    /// `MESHTRACE_LOG_LEVEL`.
    pub log_level: String,
    /// `MESHTRACE_LOG_FORMAT` (`json` or `text`).
    pub log_format: String,
}

/// Requests and limits, as Kubernetes quantities (`100m`, `64Mi`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// `cpu`, `memory`, … → quantity.
    pub requests: BTreeMap<String, String>,
    /// `cpu`, `memory`, … → quantity.
    pub limits: BTreeMap<String, String>,
}

impl Default for Resources {
    fn default() -> Self {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Self {
            requests: map(&[("cpu", "100m"), ("memory", "64Mi")]),
            limits: map(&[("memory", "256Mi")]),
        }
    }
}

impl Default for InjectorConfig {
    fn default() -> Self {
        Self {
            proxy_image: format!("meshtrace/meshtrace-proxy:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: "IfNotPresent".into(),
            native_sidecar: true,
            control_url: Some("http://meshtrace-control.meshtrace.svc:15010".into()),
            proxy_uid: 1337,
            resources: Resources::default(),
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            log_level: "info".into(),
            log_format: "json".into(),
        }
    }
}

// === impl InjectorConfig ===

impl InjectorConfig {
    /// Reads and checks a file; `None`: the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
        Self::parse(&text, &name)
    }

    /// Parses and checks YAML; errors name `source_name:line:column` and the key.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, String> {
        if meshtrace_config::is_blank(text) {
            return Ok(Self::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::yaml(source_name, path, e.inner()).to_string()
        })?;
        config.check().map_err(|e| format!("{source_name}: {e}"))?;
        Ok(config)
    }

    /// What serde cannot check: values Kubernetes would refuse later, per pod.
    fn check(&self) -> Result<(), String> {
        if self.proxy_image.trim().is_empty() {
            return Err("proxy_image: must not be empty".into());
        }
        if !matches!(
            self.image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(format!(
                "image_pull_policy: {:?} is not Always, IfNotPresent or Never",
                self.image_pull_policy
            ));
        }
        if !(1..=i64::from(u32::MAX)).contains(&self.proxy_uid) {
            return Err(format!(
                "proxy_uid: {} is not a non-root uid",
                self.proxy_uid
            ));
        }
        if self.exclude_inbound_ports.contains(&0) || self.exclude_outbound_ports.contains(&0) {
            return Err("exclude_*_ports: 0 is not a port".into());
        }
        parse_cidrs(&self.exclude_outbound_cidrs.join(","))
            .map_err(|e| format!("exclude_outbound_cidrs: {e}"))?;
        if !matches!(self.log_format.as_str(), "json" | "text") {
            return Err(format!(
                "log_format: {:?} is not json or text",
                self.log_format
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_contract_defaults() {
        let c = InjectorConfig::parse("# nothing\n", "c.yaml").unwrap();
        assert_eq!(c, InjectorConfig::default());
        assert_eq!(c.proxy_image, "meshtrace/meshtrace-proxy:0.1.0");
        assert!(c.native_sidecar);
        assert_eq!(c.resources.requests["cpu"], "100m");
    }

    #[test]
    fn every_key_parses() {
        let text = "proxy_image: r/p:1\nimage_pull_policy: Always\nnative_sidecar: false\n\
                    control_url: null\nproxy_uid: 2000\n\
                    resources: {requests: {cpu: 10m}, limits: {}}\n\
                    exclude_inbound_ports: [9090]\nexclude_outbound_ports: [5432]\n\
                    exclude_outbound_cidrs: [10.0.0.0/8, 'fd00::/8']\n\
                    log_level: debug\nlog_format: text\n";
        let c = InjectorConfig::parse(text, "c.yaml").unwrap();
        assert_eq!(c.control_url, None);
        assert!(!c.native_sidecar);
        assert_eq!(c.exclude_outbound_cidrs.len(), 2);
        assert!(c.resources.limits.is_empty());
    }

    #[test]
    fn an_unknown_key_is_reported_with_its_line_and_column() {
        let err = InjectorConfig::parse("log_level: info\nproxy_imgae: x\n", "c.yaml").unwrap_err();
        assert!(err.starts_with("c.yaml:2:1: "), "{err}");
        assert!(err.contains("proxy_imgae"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        let err = InjectorConfig::parse("exclude_inbound_ports: [http]\n", "c.yaml").unwrap_err();
        assert!(err.contains("c.yaml:1:"), "{err}");
        assert!(err.contains("exclude_inbound_ports[0]"), "{err}");
    }

    #[test]
    fn semantic_problems_are_refused() {
        for (text, want) in [
            ("image_pull_policy: Sometimes\n", "image_pull_policy"),
            ("proxy_uid: 0\n", "proxy_uid"),
            (
                "exclude_outbound_cidrs: [10.0.0.0/33]\n",
                "exclude_outbound_cidrs",
            ),
            ("log_format: xml\n", "log_format"),
        ] {
            let err = InjectorConfig::parse(text, "c.yaml").unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
