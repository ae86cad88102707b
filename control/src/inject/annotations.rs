//! The per-pod annotations the injector reads, checked before anything is
//! injected: a pod whose annotation is wrong is refused with a message that
//! names the annotation, rather than started with rules it did not ask for.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// `"false"` opts a pod out; `"true"` documents an opt-in (the webhook's
/// namespaceSelector decides which pods reach the injector).
pub const INJECT: &str = "meshtrace.io/inject";
/// Written by the injector (`injected`): a pod carrying it gets no patch.
pub const STATUS: &str = "meshtrace.io/status";
/// Comma-separated outbound ports the init step leaves alone.
pub const EXCLUDE_OUTBOUND_PORTS: &str = "meshtrace.io/exclude-outbound-ports";
/// Comma-separated inbound ports the init step leaves alone.
pub const EXCLUDE_INBOUND_PORTS: &str = "meshtrace.io/exclude-inbound-ports";
/// Comma-separated destination CIDRs (v4 and v6) the init step leaves alone.
pub const EXCLUDE_OUTBOUND_CIDRS: &str = "meshtrace.io/exclude-outbound-cidrs";
/// Extra sidecar config (YAML), passed as `MESHTRACE_CONFIG_YAML`.
pub const CONFIG: &str = "meshtrace.io/config";
/// The value of [`STATUS`] on an injected pod.
pub const STATUS_INJECTED: &str = "injected";
/// The label every injected pod gets (`"true"`), for selectors that cannot
/// read annotations: a `PodMonitor`, a `NetworkPolicy`.
pub const INJECTED_LABEL: &str = "meshtrace.io/injected";
/// The prefix of the conventional scrape annotations. A pod carrying any of
/// them keeps its own (the app's metrics win); otherwise the injector points
/// them at the sidecar's metrics port.
pub const PROMETHEUS_PREFIX: &str = "prometheus.io/";

/// The `prometheus.io/*` annotations the injector adds for a metrics port on
/// `port` serving `path`; none when the pod already has one of its own.
pub fn scrape(
    annotations: Option<&BTreeMap<String, String>>,
    port: u16,
    path: &str,
) -> Vec<(String, String)> {
    let own = annotations
        .into_iter()
        .flatten()
        .any(|(key, _)| key.starts_with(PROMETHEUS_PREFIX));
    if own {
        return Vec::new();
    }
    [
        ("scrape", "true".to_string()),
        ("port", port.to_string()),
        ("path", path.into()),
    ]
    .into_iter()
    .map(|(key, value)| (format!("{PROMETHEUS_PREFIX}{key}"), value))
    .collect()
}

/// What a pod's annotations ask of its sidecar, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodOptions {
    /// From [`EXCLUDE_INBOUND_PORTS`].
    pub exclude_inbound_ports: Vec<u16>,
    /// From [`EXCLUDE_OUTBOUND_PORTS`].
    pub exclude_outbound_ports: Vec<u16>,
    /// From [`EXCLUDE_OUTBOUND_CIDRS`].
    pub exclude_outbound_cidrs: Vec<String>,
    /// From [`CONFIG`], checked against the sidecar schema; `None` when absent or blank.
    pub extra_config: Option<String>,
}

/// Whether the pod opted out (`meshtrace.io/inject: "false"`), and a warning
/// for a value that is neither `true` nor `false` (which does not opt out).
pub fn opted_out(annotations: &BTreeMap<String, String>) -> (bool, Option<String>) {
    match annotations.get(INJECT).map(|v| v.trim()) {
        None | Some("true") => (false, None),
        Some("false") => (true, None),
        Some(other) => (
            false,
            Some(format!(
                "{INJECT}: {other:?} is neither \"true\" nor \"false\"; the sidecar is injected"
            )),
        ),
    }
}

/// Reads and checks the annotations; the error is the reason the pod is refused.
pub fn read(annotations: &BTreeMap<String, String>) -> Result<PodOptions, String> {
    let get = |key: &str| annotations.get(key).map(String::as_str).unwrap_or("");
    let extra_config = match annotations.get(CONFIG) {
        Some(text) if !meshtrace_config::is_blank(text) => {
            meshtrace_config::Config::from_yaml_str(text, &format!("annotation {CONFIG}"))
                .map_err(|e| format!("the sidecar config is invalid: {e}"))?;
            Some(text.clone())
        }
        _ => None,
    };
    Ok(PodOptions {
        exclude_inbound_ports: parse_ports(get(EXCLUDE_INBOUND_PORTS))
            .map_err(at(EXCLUDE_INBOUND_PORTS))?,
        exclude_outbound_ports: parse_ports(get(EXCLUDE_OUTBOUND_PORTS))
            .map_err(at(EXCLUDE_OUTBOUND_PORTS))?,
        exclude_outbound_cidrs: parse_cidrs(get(EXCLUDE_OUTBOUND_CIDRS))
            .map_err(at(EXCLUDE_OUTBOUND_CIDRS))?,
        extra_config,
    })
}

/// `"80, 443"` → `[80, 443]`; blank items are skipped, so `""` is no port.
pub fn parse_ports(list: &str) -> Result<Vec<u16>, String> {
    items(list)
        .map(|p| match p.parse::<u16>() {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(format!("{p:?} is not a port (1-65535)")),
        })
        .collect()
}

/// `"10.0.0.0/8,fd00::/8"` → the CIDRs as written (trimmed); a bare address,
/// a prefix longer than the family allows or a non-address is refused.
pub fn parse_cidrs(list: &str) -> Result<Vec<String>, String> {
    items(list)
        .map(|c| {
            let bad = || format!("{c:?} is not a CIDR (like 10.0.0.0/8 or fd00::/8)");
            let (addr, prefix) = c.split_once('/').ok_or_else(bad)?;
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let prefix: u8 = prefix.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(format!("{c:?}: the prefix is longer than {max} bits"));
            }
            Ok(c.to_string())
        })
        .collect()
}

/// Names the annotation in its problem.
fn at(key: &'static str) -> impl Fn(String) -> String {
    move |e| format!("annotation {key}: {e}")
}

fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_false_opts_out() {
        assert_eq!(opted_out(&annotations(&[])), (false, None));
        assert_eq!(opted_out(&annotations(&[(INJECT, "false")])), (true, None));
        assert_eq!(opted_out(&annotations(&[(INJECT, "true")])), (false, None));
        let (out, warning) = opted_out(&annotations(&[(INJECT, "no")]));
        assert!(!out);
        assert!(warning.unwrap().contains("\"no\""));
    }

    #[test]
    fn port_lists_skip_blanks_and_refuse_non_ports() {
        assert_eq!(parse_ports("").unwrap(), Vec::<u16>::new());
        assert_eq!(parse_ports(" 80, ,443 ").unwrap(), vec![80, 443]);
        for bad in ["0", "65536", "http", "80-90"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_of_both_families_are_accepted_and_bad_ones_refused() {
        assert_eq!(
            parse_cidrs("10.0.0.0/8, fd00::/8").unwrap(),
            vec!["10.0.0.0/8", "fd00::/8"]
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.0/33",
            "fd00::/129",
            "example.com/8",
            "10.0.0.0/x",
        ] {
            assert!(parse_cidrs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_annotation_is_named_in_the_refusal() {
        let err = read(&annotations(&[(EXCLUDE_OUTBOUND_PORTS, "5432,pg")])).unwrap_err();
        assert!(
            err.contains(EXCLUDE_OUTBOUND_PORTS) && err.contains("\"pg\""),
            "{err}"
        );
    }

    #[test]
    fn extra_config_is_checked_against_the_sidecar_schema() {
        let ok = read(&annotations(&[(CONFIG, "log:\n  level: debug\n")])).unwrap();
        assert_eq!(ok.extra_config.as_deref(), Some("log:\n  level: debug\n"));
        let err = read(&annotations(&[(CONFIG, "log:\n  levle: debug\n")])).unwrap_err();
        assert!(
            err.contains("meshtrace.io/config") && err.contains("levle"),
            "{err}"
        );
        assert_eq!(
            read(&annotations(&[(CONFIG, "  ")])).unwrap().extra_config,
            None
        );
    }
}
