//! The resource every span carries: who emitted it.
//!
//! `service.name`, first found: `OTEL_SERVICE_NAME`; `workload.service` (config
//! or `MESHTRACE_SERVICE_NAME`); `service.name` in `OTEL_RESOURCE_ATTRIBUTES`; the
//! pod name without its ReplicaSet / StatefulSet suffix (`checkout-7d9f8c6b5-x2x9z`
//! → `checkout`); else `unknown_service:meshtrace-proxy`.
//!
//! Other attributes, later overriding earlier: `k8s.pod.name`,
//! `k8s.namespace.name`, `k8s.node.name` from the downward-API environment (via
//! `workload`); `export.resource.attributes`; `OTEL_RESOURCE_ATTRIBUTES`;
//! `service.version` from `export.resource.service_version` or
//! `MESHTRACE_SERVICE_VERSION`.

use std::collections::BTreeMap;

use meshtrace_config::Config;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

/// The resource's attributes, sorted by key.
pub fn attributes(
    config: &Config,
    var: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let get = |name: &str| {
        var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let w = &config.workload;
    let mut attrs = BTreeMap::new();
    for (key, value) in [
        ("k8s.pod.name", &w.pod_name),
        ("k8s.namespace.name", &w.namespace),
        ("k8s.node.name", &w.node_name),
    ] {
        if let Some(v) = value {
            attrs.insert(key.to_string(), v.clone());
        }
    }
    for (k, v) in &config.export.resource.attributes {
        attrs.insert(k.clone(), v.clone());
    }
    let from_env = get("OTEL_RESOURCE_ATTRIBUTES")
        .map(|v| parse_resource_attributes(&v))
        .unwrap_or_default();
    let env_service = from_env.get("service.name").cloned();
    attrs.extend(from_env);
    if let Some(v) = config
        .export
        .resource
        .service_version
        .clone()
        .or_else(|| get("MESHTRACE_SERVICE_VERSION"))
    {
        attrs.insert("service.version".into(), v);
    }
    let service = get("OTEL_SERVICE_NAME")
        .or_else(|| w.service.clone())
        .or(env_service)
        .or_else(|| w.pod_name.as_deref().map(workload_of_pod))
        .unwrap_or_else(|| "unknown_service:meshtrace-proxy".into());
    attrs.insert("service.name".into(), service);
    attrs.insert("telemetry.sdk.name".into(), "meshtrace".into());
    attrs.insert("telemetry.sdk.language".into(), "rust".into());
    attrs.insert(
        "telemetry.sdk.version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    attrs
}

/// The SDK resource built from [`attributes`].
pub fn resource(config: &Config, var: &dyn Fn(&str) -> Option<String>) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            attributes(config, var)
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v)),
        )
        .build()
}

/// `key1=value1,key2=value2`, values percent-decoded (the OTel SDK
/// environment-variable specification); malformed pairs are skipped.
fn parse_resource_attributes(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (k.trim(), percent_decode(v.trim())?);
            (!k.is_empty()).then(|| (k.to_string(), v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The workload name of a pod: without a Deployment's `-<template hash>-<suffix>`,
/// or a StatefulSet's `-<ordinal>`, or a DaemonSet's / Job's `-<suffix>`.
fn workload_of_pod(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    let random = |p: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let keep = match parts.as_slice() {
        [rest @ .., hash, suffix]
            if !rest.is_empty() && random(hash, 6..=10) && random(suffix, 5..=5) =>
        {
            rest.len()
        }
        [rest @ .., last]
            if !rest.is_empty()
                && (last.bytes().all(|b| b.is_ascii_digit()) || random(last, 5..=5)) =>
        {
            rest.len()
        }
        _ => parts.len(),
    };
    parts[..keep].join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn service_name_precedence() {
        let mut config = Config::default();
        config.workload.pod_name = Some("checkout-7d9f8c6b5-x2x9z".into());
        let name =
            |c: &Config, vars: &[(&str, &str)]| attributes(c, &env(vars))["service.name"].clone();
        assert_eq!(name(&config, &[]), "checkout", "from the pod name");
        assert_eq!(
            name(
                &config,
                &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=fromattrs")]
            ),
            "fromattrs"
        );
        config.workload.service = Some("configured".into());
        assert_eq!(
            name(
                &config,
                &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=fromattrs")]
            ),
            "configured"
        );
        assert_eq!(name(&config, &[("OTEL_SERVICE_NAME", "otel")]), "otel");
        assert_eq!(
            name(&Config::default(), &[]),
            "unknown_service:meshtrace-proxy"
        );
    }

    #[test]
    fn kubernetes_and_env_attributes() {
        let mut config = Config::default();
        config.workload.namespace = Some("shop".into());
        config.workload.node_name = Some("node-1".into());
        config
            .export
            .resource
            .attributes
            .insert("team".into(), "a".into());
        let attrs = attributes(
            &config,
            &env(&[
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "team=b, deployment.environment.name=prod%20eu,bad",
                ),
                ("MESHTRACE_SERVICE_VERSION", "1.2.3"),
            ]),
        );
        assert_eq!(attrs["k8s.namespace.name"], "shop");
        assert_eq!(attrs["k8s.node.name"], "node-1");
        assert_eq!(attrs["team"], "b", "OTEL_RESOURCE_ATTRIBUTES wins");
        assert_eq!(attrs["deployment.environment.name"], "prod eu");
        assert_eq!(attrs["service.version"], "1.2.3");
    }

    #[test]
    fn pod_names_to_workloads() {
        assert_eq!(workload_of_pod("checkout-7d9f8c6b5-x2x9z"), "checkout");
        assert_eq!(
            workload_of_pod("payments-api-5c8d7f9b4d-abcde"),
            "payments-api"
        );
        assert_eq!(workload_of_pod("redis-0"), "redis");
        assert_eq!(workload_of_pod("fluentd-x7k2p"), "fluentd");
        assert_eq!(workload_of_pod("standalone"), "standalone");
    }
}
