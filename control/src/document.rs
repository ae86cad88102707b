//! The base document: sidecar defaults plus per-workload sections.
//!
//! ```yaml
//! defaults:            # a partial sidecar config applied to every workload
//!   sampling: {default_rate: 0.1}
//! workloads:           # in order; every matching section is merged on top
//!   - match: {service: checkout, namespace: shop, labels: {tier: web}}
//!     config: {sampling: {default_rate: 0.5}}
//! ```
//!
//! A document is checked in two passes before it is accepted:
//!
//! 1. **Shape**: the text is read into the sidecar schema (every `defaults` and
//!    `config` fragment must be a valid partial [`Config`]), so YAML errors, unknown
//!    keys and wrong types are reported with `file:line:col` and their path.
//! 2. **Semantics**: `defaults` alone, and `defaults` + each section alone, are
//!    resolved and validated; a problem is reported with the section index and the
//!    validation path (`workloads[2]: sampling.default_rate: ...`).
//!
//! Fragments are kept as JSON values so that they can be deep-merged per workload
//! (see [`crate::resolve`]) and served and persisted as JSON.

use std::collections::BTreeMap;

use meshtrace_config::{Config, ConfigError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::merge::{deep_merge, to_config};
use crate::workload::Workload;

/// The control plane's source of truth (from the file or from the API).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// A partial sidecar config applied to every workload.
    #[serde(default)]
    pub defaults: Value,
    /// Sections merged, in order, on top of `defaults` for the workloads they match.
    #[serde(default)]
    pub workloads: Vec<Section>,
}

/// One `workloads` entry.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Which workloads it applies to.
    #[serde(rename = "match", default)]
    pub matches: Match,
    /// A partial sidecar config merged on top for those workloads.
    #[serde(default)]
    pub config: Value,
}

/// Workload criteria; all given criteria must hold (an empty match takes everyone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Match {
    /// The workload's service name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The workload's Kubernetes namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod labels that must all be present with these values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Why a document was rejected: every problem, one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct DocumentError(pub Vec<String>);

// === impl Match ===

impl Match {
    /// Whether every given criterion holds for `workload`.
    pub fn matches(&self, workload: &Workload) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref() == Some(w.as_str()),
        };
        eq(&self.service, &workload.service)
            && eq(&self.namespace, &workload.namespace)
            && self
                .labels
                .iter()
                .all(|(k, v)| workload.labels.get(k) == Some(v))
    }
}

// === impl Document ===

impl Document {
    /// Parses YAML (or JSON, which is YAML) and checks shape and semantics.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, DocumentError> {
        let empty: Value = serde_yaml::from_str(text)
            .map_err(|e| DocumentError(vec![parse_error(source_name, String::new(), &e)]))?;
        if empty.is_null() {
            return Ok(Self::default());
        }
        check_shape(text, source_name)?;
        let doc: Self = serde_yaml::from_str(text)
            .map_err(|e| DocumentError(vec![parse_error(source_name, String::new(), &e)]))?;
        doc.validate(source_name)?;
        Ok(doc)
    }

    /// Checks a document built from a JSON value (a merge patch result).
    pub fn from_json(value: Value, source_name: &str) -> Result<Self, DocumentError> {
        // Re-reading the JSON text through the YAML path gives the same checks and
        // error paths as a file.
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| DocumentError(vec![format!("{source_name}: {e}")]))?;
        Self::parse(&text, source_name)
    }

    /// Resolves `defaults` alone and `defaults` + each section alone, collecting
    /// every validation problem.
    pub fn validate(&self, source_name: &str) -> Result<(), DocumentError> {
        let mut problems = Vec::new();
        let mut check = |label: &str, fragments: &[&Value]| {
            let mut merged = Value::Object(Default::default());
            for f in fragments {
                deep_merge(&mut merged, f);
            }
            if let Err(e) = to_config(merged) {
                for line in e.lines() {
                    problems.push(format!("{source_name}: {label}{line}"));
                }
            }
        };
        check("defaults: ", &[&self.defaults]);
        for (i, section) in self.workloads.iter().enumerate() {
            check(
                &format!("workloads[{i}] (with defaults): "),
                &[&self.defaults, &section.config],
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DocumentError(problems))
        }
    }

    /// The document as JSON, for the API and the state file.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The document read into the sidecar schema, only for its errors' locations.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read for its errors only.
struct ShapeCheck {
    #[serde(default)]
    defaults: Option<Config>,
    #[serde(default)]
    workloads: Vec<SectionShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read for its errors only.
struct SectionShape {
    #[serde(rename = "match", default)]
    matches: Match,
    #[serde(default)]
    config: Option<Config>,
}

fn check_shape(text: &str, source_name: &str) -> Result<(), DocumentError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, ShapeCheck>(de)
        .map(drop)
        .map_err(|e| {
            DocumentError(vec![parse_error(
                source_name,
                e.path().to_string(),
                e.inner(),
            )])
        })
}

/// A parse error worded as the sidecar words its own (`ConfigError::Parse`).
fn parse_error(source_name: &str, path: String, e: &serde_yaml::Error) -> String {
    ConfigError::yaml(source_name, path, e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_in_a_section_is_reported_with_line_and_column() {
        let text = "workloads:\n  - match: {service: a}\n    config:\n      sampling: {defualt_rate: 0.5}\n";
        let err = Document::parse(text, "cm.yaml").unwrap_err().to_string();
        assert!(err.starts_with("cm.yaml:4:"), "{err}");
        assert!(err.contains("workloads[0].config.sampling"), "{err}");
        assert!(err.contains("defualt_rate"), "{err}");
    }

    #[test]
    fn invalid_section_is_reported_with_its_index_and_path() {
        let text = "workloads:\n  - config: {}\n  - config: {sampling: {default_rate: 2.0}}\n";
        let err = Document::parse(text, "cm.yaml").unwrap_err().to_string();
        assert!(err.contains("workloads[1]"), "{err}");
        assert!(err.contains("sampling.default_rate"), "{err}");
    }

    #[test]
    fn empty_document_is_all_defaults() {
        assert_eq!(
            Document::parse("# nothing\n", "x").unwrap(),
            Document::default()
        );
    }

    #[test]
    fn match_requires_every_given_criterion() {
        let m = Match {
            service: Some("checkout".into()),
            namespace: None,
            labels: [("tier".to_string(), "web".to_string())].into(),
        };
        let mut w = Workload {
            service: Some("checkout".into()),
            namespace: Some("shop".into()),
            labels: [("tier".to_string(), "web".to_string())].into(),
        };
        assert!(m.matches(&w));
        w.labels.insert("tier".into(), "db".into());
        assert!(!m.matches(&w));
        assert!(Match::default().matches(&w));
    }
}
