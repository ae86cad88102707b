//! Values: the document's JSON fragments merged into one sidecar config, and read
//! into the sidecar schema with the sidecar's own validation.
//!
//! The lowest layer of resolution: the document, stage moves and API patches all
//! merge through here, and nothing here knows about any of them.

use meshtrace_config::Config;
use serde_json::Value;

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

pub(crate) fn check(config: &Config) -> Result<(), String> {
    let problems = config.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(lines.join("\n"))
    }
}
