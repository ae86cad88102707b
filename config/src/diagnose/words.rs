//! What serde said, reworded: once, without the path or the location (the
//! report puts those in front), with the offending value and a "did you mean".

use serde_yaml::Value;

/// The smallest Jaro-Winkler similarity at which a name is suggested.
const SIMILAR: f64 = 0.8;

/// What kind of error serde reported.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// `unknown field `x`, expected one of `a`, `b``: a misspelt key.
    UnknownKey { name: String, expected: Vec<String> },
    /// `unknown variant `x`, expected one of …`: a misspelt enum value.
    UnknownValue { name: String, expected: Vec<String> },
    /// `missing field `x``.
    Missing { name: String },
    /// Anything else: a wrong type or a value its type refused.
    Other,
}

// === impl Found ===

impl Found {
    pub(super) fn of(message: &str) -> Self {
        let quoted = backticked(message);
        let (name, expected) = match quoted.split_first() {
            Some((name, rest)) => (name.clone(), rest.to_vec()),
            None => return Self::Other,
        };
        if message.starts_with("unknown field `") {
            Self::UnknownKey { name, expected }
        } else if message.starts_with("unknown variant `") {
            Self::UnknownValue { name, expected }
        } else if message.starts_with("missing field `") {
            Self::Missing { name }
        } else {
            Self::Other
        }
    }

    pub(super) fn is_unknown_key(&self) -> bool {
        matches!(self, Self::UnknownKey { .. })
    }

    pub(super) fn is_missing(&self) -> bool {
        matches!(self, Self::Missing { .. })
    }

    /// An unknown key is shown where the key is; anything else where its value is.
    pub(super) fn points_at_key(&self) -> bool {
        matches!(self, Self::UnknownKey { .. } | Self::Missing { .. })
    }

    /// The unknown key's name, when this is one.
    pub(super) fn unknown_key(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The message to report; `value` is the offending node as written.
    pub(super) fn explain(&self, message: &str, value: Option<&str>) -> String {
        match self {
            Self::UnknownKey { name, expected } => {
                format!("unknown key `{name}`{}", suggest(name, expected))
            }
            Self::UnknownValue { name, expected } => {
                format!("unknown value `{name}`{}", suggest(name, expected))
            }
            Self::Missing { name } => {
                format!("missing required key `{name}` (the rest of this entry is not checked)")
            }
            Self::Other => match value {
                Some(v) if !message.contains(v.trim_matches('"')) => format!("{message}: {v}"),
                _ => message.to_string(),
            },
        }
    }
}

/// `; did you mean `x`?`, else the list of what is accepted.
fn suggest(name: &str, expected: &[String]) -> String {
    let best = expected
        .iter()
        .map(|e| (strsim::jaro_winkler(&name.to_ascii_lowercase(), e), e))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, e)) if score >= SIMILAR => format!("; did you mean `{e}`?"),
        _ if expected.is_empty() => String::new(),
        _ => {
            let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            format!(" (expected one of {})", list.join(", "))
        }
    }
}

/// The words serde put in backticks, in order.
fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A node as the report shows it: a scalar as written (strings quoted), a
/// collection by its kind.
pub(super) fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("{} {}", t.tag, render(&t.value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_gets_the_closest_name() {
        let found =
            Found::of("unknown field `app_prot`, expected one of `listen`, `app_host`, `app_port`");
        assert_eq!(found.unknown_key(), Some("app_prot"));
        assert_eq!(
            found.explain("", None),
            "unknown key `app_prot`; did you mean `app_port`?"
        );
    }

    #[test]
    fn a_name_like_none_lists_what_is_accepted() {
        let found = Found::of("unknown variant `zzz`, expected one of `legacy`, `dual`, `w3c`");
        assert_eq!(
            found.explain("", None),
            "unknown value `zzz` (expected one of `legacy`, `dual`, `w3c`)"
        );
    }

    #[test]
    fn another_error_shows_the_value_once() {
        let msg = "invalid socket address syntax";
        assert_eq!(
            Found::Other.explain(msg, Some("\"0.0.0.0:15006 x\"")),
            "invalid socket address syntax: \"0.0.0.0:15006 x\""
        );
        let msg = "invalid duration \"3 parsecs\" (unknown unit)";
        assert_eq!(Found::Other.explain(msg, Some("\"3 parsecs\"")), msg);
    }
}
