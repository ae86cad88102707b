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

use meshtrace_config::diagnose::Diagnosis;
use meshtrace_config::{Config, ConfigError, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::merge::deep_merge;
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
    /// Parses YAML (or JSON, which is YAML) and checks shape and semantics. A
    /// valid document takes one typed parse of its shape; a broken one is
    /// reported whole: every unknown key, bad value and semantic problem, each
    /// once, as `file:line:column: path: message` (see
    /// [`meshtrace_config::diagnose`]).
    pub fn parse(text: &str, source_name: &str) -> Result<Self, DocumentError> {
        let mut value: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| DocumentError(vec![parse_error(source_name, String::new(), &e)]))?;
        if value.is_null() {
            return Ok(Self::default());
        }
        let mut diagnosis = None;
        if check_shape(text).is_err() {
            // The slow path: every shape error, then the semantics of the rest.
            diagnosis
                .insert(Diagnosis::new(text))
                .typed::<ShapeCheck>(&mut value);
        }
        let doc: Self = match serde_yaml::from_value(value) {
            Ok(doc) => doc,
            Err(e) => {
                let mut lines = diagnosis
                    .map(|d| render(d.into_problems(), source_name))
                    .unwrap_or_default();
                lines.push(parse_error(source_name, String::new(), &e));
                return Err(DocumentError(lines));
            }
        };
        let problems = doc.scoped(|config| config.problems());
        if diagnosis.is_none() && problems.is_empty() {
            return Ok(doc);
        }
        let mut diagnosis = diagnosis.unwrap_or_else(|| Diagnosis::new(text));
        for (scope, problem) in problems {
            let prefix = scope.prefix(&problem.path, |p| diagnosis.has(p));
            diagnosis.semantic(vec![problem], &prefix);
        }
        Err(DocumentError(render(
            diagnosis.into_problems(),
            source_name,
        )))
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
        let lines: Vec<String> = self
            .scoped(|config| config.problems())
            .into_iter()
            .map(|(scope, p)| format!("{source_name}: {}: {p}", scope.prefix("", |_| false)))
            .collect();
        if lines.is_empty() {
            Ok(())
        } else {
            Err(DocumentError(lines))
        }
    }

    /// What `meshtrace-control check` warns about in a valid document `text`
    /// (valid settings that cannot do what they seem to, see
    /// `Config::warnings`), each once, as `file:line:column: warning: path: message`.
    pub fn warnings(&self, text: &str, source_name: &str) -> Vec<String> {
        let warnings = self.scoped(Config::warnings);
        if warnings.is_empty() {
            return Vec::new();
        }
        let mut diagnosis = Diagnosis::new(text);
        for (scope, warning) in warnings {
            let prefix = scope.prefix(&warning.path, |p| diagnosis.has(p));
            diagnosis.semantic(vec![warning], &prefix);
        }
        diagnosis
            .into_problems()
            .iter()
            .map(|w| {
                let line = w.in_source(source_name);
                match line.strip_suffix(&w.to_string()) {
                    Some(location) => format!("{location}warning: {w}"),
                    None => format!("warning: {line}"),
                }
            })
            .collect()
    }

    /// `what` of `defaults` alone and of `defaults` + each section alone (a
    /// fragment that does not read as a config is one problem).
    fn scoped(&self, what: impl Fn(&Config) -> Vec<Problem>) -> Vec<(Scope, Problem)> {
        let mut found = Vec::new();
        let mut check = |scope: Scope, fragments: &[&Value]| {
            let mut merged = Value::Object(Default::default());
            for f in fragments {
                deep_merge(&mut merged, f);
            }
            let problems = match serde_path_to_error::deserialize::<_, Config>(merged) {
                Ok(config) => what(&config),
                Err(e) => vec![Problem {
                    path: e.path().to_string(),
                    message: e.into_inner().to_string(),
                    ..Problem::default()
                }],
            };
            found.extend(problems.into_iter().map(|p| (scope, p)));
        };
        check(Scope::Defaults, &[&self.defaults]);
        for (i, section) in self.workloads.iter().enumerate() {
            check(Scope::Section(i), &[&self.defaults, &section.config]);
        }
        found
    }

    /// The document as JSON, for the API and the state file.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Which resolution a problem was found in.
#[derive(Clone, Copy)]
enum Scope {
    Defaults,
    Section(usize),
}

impl Scope {
    /// Where in the document a problem at `path` of this resolution is: in the
    /// section when the section sets `path`, else in `defaults` when they set it
    /// (reported once there, not once per section), else the section.
    fn prefix(self, path: &str, in_document: impl Fn(&str) -> bool) -> String {
        match self {
            Scope::Defaults => "defaults".into(),
            Scope::Section(i) => {
                let section = format!("workloads[{i}].config");
                let full = |prefix: &str| format!("{prefix}.{path}");
                if !in_document(&full(&section)) && in_document(&full("defaults")) {
                    "defaults".into()
                } else {
                    section
                }
            }
        }
    }
}

/// Problems as `file:line:column: path: message` lines.
fn render(problems: Vec<Problem>, source_name: &str) -> Vec<String> {
    problems.iter().map(|p| p.in_source(source_name)).collect()
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

/// The fast path: the whole document read into the schema once.
fn check_shape(text: &str) -> Result<ShapeCheck, serde_yaml::Error> {
    serde_yaml::from_str(text)
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
    fn every_problem_of_a_document_is_reported_once_where_it_is() {
        let text = "defaults:
  sampling: {defualt_rate: 0.5}
  propagation: {stage: dule}
workloads:
  - match: {servce: checkout}
    config:
      outbound:
        mode: explicit
        routes:
        - host: reviews
        - authority: ratings
          target: 127.0.0.1:9080
      limits: {max_connections: 0}
  - config: {sampling: {default_rate: 2}}
";
        let err = Document::parse(text, "cm.yaml").unwrap_err();
        assert_eq!(
            err.0,
            [
                "cm.yaml:2:14: defaults.sampling.defualt_rate: unknown key `defualt_rate`; did you mean `default_rate`?",
                "cm.yaml:3:24: defaults.propagation.stage: unknown value `dule`; did you mean `dual`?",
                "cm.yaml:5:13: workloads[0].match.servce: unknown key `servce`; did you mean `service`?",
                "cm.yaml:10:11: workloads[0].config.outbound.routes[0]: missing required key `target` (the rest of this entry is not checked)",
                "cm.yaml:11:11: workloads[0].config.outbound.routes[1].authority: \"ratings\" has no port; use `host:` to match any port",
                "cm.yaml:13:16: workloads[0].config.limits.max_connections: must be at least 1",
                "cm.yaml:14:25: workloads[1].config.sampling.default_rate: 2 is not a rate in [0, 1]",
            ]
        );
    }

    #[test]
    fn a_problem_in_defaults_is_reported_once_not_per_section() {
        let text = "defaults: {limits: {backlog: 0}}\nworkloads:\n  - config: {}\n  - config: {}\n";
        let err = Document::parse(text, "cm.yaml").unwrap_err();
        assert_eq!(
            err.0,
            ["cm.yaml:1:21: defaults.limits.backlog: must be at least 1"]
        );
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
