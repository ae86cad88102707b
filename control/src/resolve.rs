//! Resolution: the fully merged, validated sidecar config of one workload.
//!
//! Order: `defaults` → every matching `workloads` section, in document order →
//! stage assignments set through the API ([`crate::stages`]) → the embedded
//! sidecar defaults fill every key nobody set → validation → every active incident
//! override that concerns the workload → validation again → the fleet-wide
//! [`Switches`] (boosts off: `sampling.adaptive.boosts: false`). Merging is a deep merge
//! of values: maps merge key by key, anything else (lists included) replaces.
//!
//! Overrides are applied to the typed config (they set exact fields, which is the
//! same as merging them last), **all** of them, in the order of
//! [`overrides::in_order`]: unscoped ones before namespace-scoped ones, then
//! creation order. A later one replaces the same field (a tenant's
//! `forced_tenants` entry, or `sampling.forced_workload`), so a namespace-scoped
//! override wins over an unscoped one and overrides of different targets all hold.

use meshtrace_config::Config;
use serde_json::Value;

use crate::document::Document;
use crate::merge::check;
pub use crate::merge::{deep_merge, merge_patch, to_config};
use crate::overrides::{self, Override};
use crate::stages::{self, StageAssignment};
use crate::switches::Switches;
pub use crate::workload::Workload;

/// The effective config of `workload`, without fleet switches.
pub fn resolve(
    doc: &Document,
    stages: &[StageAssignment],
    overrides: &[Override],
    workload: &Workload,
) -> Result<Config, String> {
    resolve_with(doc, stages, overrides, &Switches::default(), workload)
}

/// The effective config of `workload` under the fleet-wide `switches`.
pub fn resolve_with(
    doc: &Document,
    stages: &[StageAssignment],
    overrides: &[Override],
    switches: &Switches,
    workload: &Workload,
) -> Result<Config, String> {
    let mut merged = Value::Object(Default::default());
    deep_merge(&mut merged, &doc.defaults);
    for section in doc.workloads.iter().filter(|s| s.matches.matches(workload)) {
        deep_merge(&mut merged, &section.config);
    }
    stages::apply(&mut merged, stages, workload);
    let mut config = to_config(merged)?;
    let mut applied = false;
    for o in overrides::in_order(overrides) {
        applied |= o.apply(&mut config, workload);
    }
    if applied {
        check(&config).map_err(|e| format!("after incident overrides: {e}"))?;
    }
    switches.apply(&mut config);
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
        let c = resolve(
            &doc(DOC),
            &[],
            &[],
            &workload("checkout", &[("tier", "web")]),
        )
        .unwrap();
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
        let c = resolve(
            &doc(DOC),
            &[],
            &[],
            &workload("checkout", &[("tier", "db")]),
        )
        .unwrap();
        assert_eq!(c.sampling.default_rate, 0.5);
        assert_eq!(c.limits.max_connections, 16_384);
    }

    #[test]
    fn unmatched_workload_gets_defaults_then_embedded_defaults() {
        let c = resolve(&doc(DOC), &[], &[], &workload("cart", &[])).unwrap();
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

    fn incident(service: Option<&str>, tenant: Option<&str>) -> Override {
        let new = crate::overrides::NewOverride {
            service: service.map(Into::into),
            tenant: tenant.map(Into::into),
            rate: 1.0,
            duration: Some("30m".into()),
            ..Default::default()
        };
        let max = crate::overrides::DEFAULT_MAX_DURATION;
        new.build(std::time::SystemTime::now(), max).unwrap()
    }

    fn forced_tenants(c: &Config) -> Vec<&str> {
        let forced = &c.sampling.forced_tenants;
        forced.iter().map(|t| t.tenant.as_str()).collect()
    }

    #[test]
    fn a_service_override_and_two_tenant_overrides_all_apply() {
        let checkout = workload("checkout", &[]);
        let mut active = vec![
            incident(Some("checkout"), None),
            incident(None, Some("acme")),
        ];
        let c = resolve(&doc(DOC), &[], &active, &checkout).unwrap();
        assert!(c.sampling.forced_workload.is_some());
        assert_eq!(forced_tenants(&c), ["acme"]);

        active.push(incident(None, Some("globex")));
        let c = resolve(&doc(DOC), &[], &active, &checkout).unwrap();
        assert!(c.sampling.forced_workload.is_some());
        assert_eq!(forced_tenants(&c), ["acme", "globex"]);
    }

    #[test]
    fn a_namespaced_override_replaces_the_unscoped_one_whatever_their_age() {
        let mut in_shop = incident(Some("checkout"), None);
        in_shop.namespace = Some("shop".into());
        in_shop.rate = 0.5;
        let everywhere = incident(Some("checkout"), None);
        let active = [in_shop, everywhere];
        let c = resolve(&doc(DOC), &[], &active, &workload("checkout", &[])).unwrap();
        assert_eq!(c.sampling.forced_workload.map(|f| f.rate), Some(0.5));
    }

    #[test]
    fn a_stage_assignment_applies_after_the_sections() {
        let text =
            "workloads:\n  - match: {service: checkout}\n    config: {propagation: {stage: w3c}}\n";
        let stages = [StageAssignment {
            service: "checkout".into(),
            namespace: None,
            stage: meshtrace_config::MigrationStage::Dual,
            updated_at: crate::timestamp::Timestamp(std::time::UNIX_EPOCH),
        }];
        let c = resolve(&doc(text), &stages, &[], &workload("checkout", &[])).unwrap();
        assert_eq!(c.propagation.stage, meshtrace_config::MigrationStage::Dual);
        let c = resolve(&doc(text), &stages, &[], &workload("cart", &[])).unwrap();
        assert_eq!(
            c.propagation.stage,
            meshtrace_config::MigrationStage::Legacy
        );
    }

    #[test]
    fn boosts_off_fleet_wide_wins_over_every_section_and_on_gives_them_back() {
        let text = "defaults: {sampling: {adaptive: {boosts: true}}}\nworkloads:\n  - match: {service: cart}\n    config: {sampling: {adaptive: {boosts: false, period: 2s}}}\n";
        let off = Switches {
            boosts_off_since: Some(crate::timestamp::Timestamp(std::time::UNIX_EPOCH)),
        };
        for service in ["checkout", "cart"] {
            let c = resolve_with(&doc(text), &[], &[], &off, &workload(service, &[])).unwrap();
            assert!(!c.sampling.adaptive.boosts, "{service}");
        }
        // Nothing else changes: cart keeps its period.
        let cart = resolve_with(&doc(text), &[], &[], &off, &workload("cart", &[])).unwrap();
        assert_eq!(cart.sampling.adaptive.period.get().as_secs(), 2);
        let on = Switches::default();
        let c = resolve_with(&doc(text), &[], &[], &on, &workload("checkout", &[])).unwrap();
        assert!(c.sampling.adaptive.boosts, "back to the document");
        let c = resolve_with(&doc(text), &[], &[], &on, &workload("cart", &[])).unwrap();
        assert!(!c.sampling.adaptive.boosts, "the document's own off stays");
    }

    const TIERS: &str = r#"
defaults:
  sampling: {default_rate: 0.1}
workloads:
  - match: {service: checkout}
    config: {sampling: {tier: critical}}
  - match: {labels: {team: data}}
    config: {sampling: {tier: nightly, tiers: {nightly: {target_traces_per_second: 0.5}}}}
"#;

    #[test]
    fn a_workload_selector_sets_the_tier_of_the_workloads_it_matches_only() {
        let d = doc(TIERS);
        let checkout = resolve(&d, &[], &[], &workload("checkout", &[])).unwrap();
        assert_eq!(checkout.sampling.tier.as_deref(), Some("critical"));
        let route = checkout.sampling.default_route();
        assert_eq!(route.tier.as_deref(), Some("critical"), "{route:?}");
        let cart = resolve(&d, &[], &[], &workload("cart", &[])).unwrap();
        assert_eq!(cart.sampling.tier, None);
        assert_eq!(cart.sampling.default_route().tier, None);
        // A tier the document defines in the same section.
        let etl = resolve(&d, &[], &[], &workload("etl", &[("team", "data")])).unwrap();
        assert_eq!(etl.sampling.tier.as_deref(), Some("nightly"));
    }

    #[test]
    fn an_unknown_tier_is_reported_with_its_section_index() {
        let text = "workloads:\n  - match: {service: checkout}\n    config: {sampling: {tier: critical}}\n  - match: {service: batch}\n    config: {sampling: {tier: nightly}}\n";
        let err = Document::parse(text, "mesh.yaml").unwrap_err().to_string();
        assert!(err.contains("workloads[1]"), "{err}");
        assert!(err.contains("sampling.tier"), "{err}");
        assert!(err.contains("unknown tier \"nightly\""), "{err}");
        assert!(!err.contains("workloads[0]"), "{err}");
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
        let c = resolve(&doc(DOC), &[], &[], &workload("checkout", &[])).unwrap();
        let text = serde_json::to_string(&c).unwrap();
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
}
