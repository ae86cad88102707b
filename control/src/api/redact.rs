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
    for (path, secret) in SECRETS {
        let found = path
            .iter()
            .try_fold(&mut *fragment, |value, key| value.get_mut(*key));
        match (secret, found) {
            (Secret::EveryValue, Some(Value::Object(map))) => {
                for value in map.values_mut() {
                    *value = Value::String(REDACTED.into());
                }
            }
            (Secret::UrlUserinfo, Some(Value::String(url))) => *url = redact_urls(url),
            _ => {}
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
}
