//! What the API's reads show of secrets: nothing.
//!
//! Reads are open to whoever reaches the port, so `GET /v1/config`, `GET
//! /v1/config/base` and the NACK messages of `GET /v1/sidecars` are redacted as
//! [`meshtrace_config::redact`] lists. The watch stream is not: sidecars need
//! the real values. The base document holds config fragments as JSON, so the
//! same [`SECRETS`] paths are redacted in `defaults` and in every section's
//! `config`.

use meshtrace_config::redact::{redact_urls, Secret, REDACTED, SECRETS};
use serde_json::Value;

use crate::document::Document;

/// A copy of `document` with the secrets of every config fragment redacted.
pub(super) fn document(document: &Document) -> Document {
    let mut document = document.clone();
    fragment(&mut document.defaults);
    for section in &mut document.workloads {
        fragment(&mut section.config);
    }
    document
}

/// Redacts every [`SECRETS`] path present in a (partial) sidecar config.
pub(super) fn fragment(fragment: &mut Value) {
    each_secret(fragment, |_, secret, value| match (secret, value) {
        (Secret::EveryValue, Value::Object(map)) => {
            for value in map.values_mut() {
                *value = Value::String(REDACTED.into());
            }
        }
        (Secret::UrlUserinfo, Value::String(url)) => *url = redact_urls(url),
        _ => {}
    });
}

/// Where a document (or a merge patch of one) written to the API holds a value
/// that a read redacted, e.g. a `GET /v1/config/base` sent back with `PUT`.
/// Storing it would replace the real secret with the word `REDACTED`.
pub(super) fn read_back(document: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = |label: &str, fragment: Option<&Value>| {
        let mut fragment = fragment.cloned().unwrap_or(Value::Null);
        each_secret(&mut fragment, |path, secret, value| {
            let redacted = match (secret, &*value) {
                (Secret::EveryValue, Value::Object(map)) => {
                    map.values().any(|v| v.as_str() == Some(REDACTED))
                }
                (Secret::UrlUserinfo, Value::String(url)) => url.contains("://REDACTED@"),
                _ => false,
            };
            if redacted {
                found.push(format!("{label}.{path}"));
            }
        });
    };
    check("defaults", document.get("defaults"));
    let sections = document.get("workloads").and_then(Value::as_array);
    for (i, section) in sections.into_iter().flatten().enumerate() {
        check(&format!("workloads[{i}].config"), section.get("config"));
    }
    found
}

/// Calls `visit` with the dotted path, kind and value of every [`SECRETS`] key
/// present in `fragment`.
fn each_secret(fragment: &mut Value, mut visit: impl FnMut(String, Secret, &mut Value)) {
    for (path, secret) in SECRETS {
        let found = path
            .iter()
            .try_fold(&mut *fragment, |value, key| value.get_mut(*key));
        if let Some(value) = found {
            visit(path.join("."), secret, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use meshtrace_config::Config;

    const WITH_SECRETS: &str = r#"
export:
  endpoint: "https://otel:hunter2@collector:4318"
  headers: {x-api-key: s3cret-key}
control:
  url: "http://u:p@control:15010"
"#;

    #[test]
    fn a_fragment_is_redacted_as_the_typed_config_is() {
        let config = Config::from_yaml_str(WITH_SECRETS, "test").unwrap();
        let mut value = serde_json::to_value(&config).unwrap();
        super::fragment(&mut value);
        assert_eq!(value, serde_json::to_value(config.redacted()).unwrap());
    }

    #[test]
    fn fragments_without_the_keys_are_unchanged() {
        let mut value = serde_json::json!({"export": {"timeout": "1s"}, "control": null});
        let before = value.clone();
        super::fragment(&mut value);
        assert_eq!(value, before);
    }

    #[test]
    fn a_read_back_document_names_its_redacted_values() {
        let doc = serde_json::json!({
            "defaults": {"export": {"headers": {"x-api-key": "REDACTED"}}},
            "workloads": [
                {"match": {}, "config": {"export": {"endpoint": "http://a:1"}}},
                {"match": {}, "config": {"control": {"url": "http://REDACTED@cp:1"}}},
            ],
        });
        assert_eq!(
            super::read_back(&doc),
            ["defaults.export.headers", "workloads[1].config.control.url"]
        );
    }

    #[test]
    fn a_document_with_real_values_is_not_a_read_back() {
        let doc = serde_json::json!({"defaults": {"export": {"headers": {"k": "v"}}}});
        assert!(super::read_back(&doc).is_empty());
    }
}
