//! Resolution: the fully merged, validated sidecar config of one workload.
//!
//! Order: `defaults` → every matching `workloads` section, in document order →
//! active incident overrides → the embedded sidecar defaults fill every key nobody
//! set → validation. Merging is a deep merge of values: maps merge key by key,
//! anything else (lists included) replaces. Overrides are applied to the typed
//! config after the merge (they set exact fields, which is the same as merging them
//! last) and the result is validated again.

use std::collections::BTreeMap;

use meshtrace_config::Config;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::Document;
use crate::overrides::Override;

/// Who a config is resolved for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub struct Workload {
    /// Its service name.
    pub service: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its pod labels.
    pub labels: BTreeMap<String, String>,
}

/// Merges `patch` into `base`: maps recursively, anything else replaces.
pub fn deep_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                match base.get_mut(k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        base.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        // A null fragment (`config:` left empty) changes nothing.
        (_, Value::Null) => {}
        (base, patch) => *base = patch.clone(),
    }
}

/// Applies an RFC 7386 JSON merge patch: `null` removes a key, maps merge, anything
/// else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(target) = target {
        for (k, v) in patch {
            if v.is_null() {
                target.remove(k);
            } else {
                merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Reads a merged value into the sidecar schema and validates it. The error lists
/// every problem, one `path: message` per line.
pub fn to_config(value: Value) -> Result<Config, String> {
    if value.is_null() {
        return Ok(Config::default());
    }
    let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })?;
    check(&config)?;
    Ok(config)
}

fn check(config: &Config) -> Result<(), String> {
    let problems = config.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(lines.join("\n"))
    }
}

/// The effective config of `workload`.
pub fn resolve(
    doc: &Document,
    overrides: &[Override],
    workload: &Workload,
) -> Result<Config, String> {
    let mut merged = Value::Object(Default::default());
    deep_merge(&mut merged, &doc.defaults);
    for section in doc.workloads.iter().filter(|s| s.matches.matches(workload)) {
        deep_merge(&mut merged, &section.config);
    }
    let mut config = to_config(merged)?;
    if overrides.iter().any(|o| o.apply(&mut config, workload)) {
        check(&config).map_err(|e| format!("after incident overrides: {e}"))?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(yaml: &str) -> Document {
        Document::parse(yaml, "test").unwrap()
    }

    fn workload(service: &str, labels: &[(&str, &str)]) -> Workload {
        Workload {
            service: Some(service.into()),
            namespace: Some("shop".into()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const DOC: &str = r#"
defaults:
  sampling: {default_rate: 0.1, tenant: {headers: [x-org]}}
  export: {endpoint: "http://otel-collector:4317"}
workloads:
  - match: {service: checkout}
    config: {sampling: {default_rate: 0.5}}
  - match: {service: checkout, labels: {tier: web}}
    config: {sampling: {default_rate: 0.7}, limits: {max_connections: 10}}
"#;

    #[test]
    fn later_matching_sections_win_and_maps_merge() {
        let c = resolve(&doc(DOC), &[], &workload("checkout", &[("tier", "web")])).unwrap();
        assert_eq!(c.sampling.default_rate, 0.7);
        assert_eq!(c.limits.max_connections, 10);
        // Untouched keys of a merged map survive.
        assert_eq!(c.sampling.tenant.headers, vec!["x-org".to_string()]);
        assert_eq!(
            c.export.endpoint.as_deref(),
            Some("http://otel-collector:4317")
        );
    }

    #[test]
    fn a_section_needs_all_its_labels() {
        let c = resolve(&doc(DOC), &[], &workload("checkout", &[("tier", "db")])).unwrap();
        assert_eq!(c.sampling.default_rate, 0.5);
        assert_eq!(c.limits.max_connections, 16_384);
    }

    #[test]
    fn unmatched_workload_gets_defaults_then_embedded_defaults() {
        let c = resolve(&doc(DOC), &[], &workload("cart", &[])).unwrap();
        assert_eq!(c.sampling.default_rate, 0.1);
        assert_eq!(
            c,
            Config {
                sampling: c.sampling.clone(),
                export: c.export.clone(),
                ..Config::default()
            }
        );
    }

    #[test]
    fn lists_replace_rather_than_append() {
        let mut base = json!({"a": [1, 2], "m": {"x": 1}});
        deep_merge(&mut base, &json!({"a": [3], "m": {"y": 2}}));
        assert_eq!(base, json!({"a": [3], "m": {"x": 1, "y": 2}}));
    }

    #[test]
    fn merge_patch_null_removes() {
        let mut doc = json!({"defaults": {"a": 1, "b": 2}, "workloads": []});
        merge_patch(&mut doc, &json!({"defaults": {"a": null, "c": 3}}));
        assert_eq!(doc, json!({"defaults": {"b": 2, "c": 3}, "workloads": []}));
    }

    #[test]
    fn resolved_config_round_trips_through_json() {
        let c = resolve(&doc(DOC), &[], &workload("checkout", &[])).unwrap();
        let text = serde_json::to_string(&c).unwrap();
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
}
