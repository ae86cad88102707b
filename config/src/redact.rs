//! Secrets in a configuration, and how a configuration is shown without them.
//!
//! A sidecar's configuration is shown in many places: the admin `/config`, the
//! control plane's `GET /v1/config` and `GET /v1/config/base`, logs, and NACK
//! messages. Whoever can read those must not learn a credential from them, so
//! each of those places shows a redacted copy. Only what the sidecar itself
//! uses stays unredacted: the running config, the control plane's watch push
//! and the sidecar's cache file.
//!
//! Exactly these values are secret ([`SECRETS`]):
//!
//! - every value of `export.headers`: they exist to carry collector credentials
//!   (`x-api-key`, `authorization`); the header *names* stay visible;
//! - the userinfo of `export.endpoint` and `control.url`
//!   (`https://user:pass@host` is shown as `https://REDACTED@host`).
//!
//! Everything else is shown as is: file paths (`export.tls.key_file`) name a
//! secret but are not one, and `spans.tags` with a `header` are read per request,
//! so the config holds only the header's name.
//!
//! Free text (a validation error, a log line) can quote a URL; [`redact_urls`]
//! removes the userinfo of every URL in it.

use crate::Config;

/// What a redacted value is replaced by (the same word spans use).
pub const REDACTED: &str = "REDACTED";

/// How a secret-bearing key is redacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secret {
    /// A map whose every value is a secret (its keys are not).
    EveryValue,
    /// A URL whose userinfo (`user:pass@`) is a secret.
    UrlUserinfo,
}

/// Every secret-bearing key of the sidecar schema, as a path of map keys. A
/// document that holds config fragments as data (the control plane's) redacts
/// these paths in each fragment; [`Config::redacted`] is the typed equivalent.
pub const SECRETS: [(&[&str], Secret); 3] = [
    (&["export", "headers"], Secret::EveryValue),
    (&["export", "endpoint"], Secret::UrlUserinfo),
    (&["control", "url"], Secret::UrlUserinfo),
];

// === impl Config ===

impl Config {
    /// A copy with every value of [`SECRETS`] replaced: the configuration as it
    /// may be shown to people.
    pub fn redacted(&self) -> Config {
        let mut config = self.clone();
        for value in config.export.headers.values_mut() {
            *value = REDACTED.to_string();
        }
        for url in [&mut config.export.endpoint, &mut config.control.url]
            .into_iter()
            .flatten()
        {
            *url = redact_urls(url);
        }
        config
    }

    /// The redacted configuration as YAML, as `/config` shows it.
    pub fn to_redacted_yaml(&self) -> String {
        self.redacted().to_yaml()
    }
}

/// `text` with the userinfo of every `scheme://user:pass@host` in it replaced by
/// [`REDACTED`]; a URL without userinfo, and all other text, is unchanged.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends where the path, query or fragment starts, or where
        // the URL ends inside prose or a quoted value.
        let end = after
            .find(|c: char| "/?#\"'`\\<>".contains(c) || c.is_whitespace())
            .unwrap_or(after.len());
        let (authority, tail) = after.split_at(end);
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(REDACTED);
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_SECRETS: &str = r#"
export:
  endpoint: "https://otel:hunter2@collector:4318/v1/traces"
  headers: {x-api-key: s3cret-key, authorization: "Bearer t0ken"}
  tls: {cert_file: /etc/otel/client.crt, key_file: /etc/otel/client.key}
control:
  url: "http://cp-user:cp-pass@control:15010"
"#;

    fn config() -> Config {
        Config::from_yaml_str(WITH_SECRETS, "test").unwrap()
    }

    #[test]
    fn export_header_values_are_redacted_and_names_kept() {
        let yaml = config().to_redacted_yaml();
        for secret in ["s3cret-key", "t0ken"] {
            assert!(!yaml.contains(secret), "{secret} shown:\n{yaml}");
        }
        let headers = config().redacted().export.headers;
        assert_eq!(headers["x-api-key"], REDACTED);
        assert_eq!(headers["authorization"], REDACTED);
    }

    #[test]
    fn url_userinfo_is_redacted_and_host_and_path_kept() {
        let redacted = config().redacted();
        assert_eq!(
            redacted.export.endpoint.as_deref(),
            Some("https://REDACTED@collector:4318/v1/traces")
        );
        assert_eq!(
            redacted.control.url.as_deref(),
            Some("http://REDACTED@control:15010")
        );
    }

    #[test]
    fn paths_and_other_keys_are_not_secrets() {
        let (config, redacted) = (config(), config().redacted());
        assert_eq!(redacted.export.tls, config.export.tls);
        assert_eq!(redacted.sampling, config.sampling);
        assert_eq!(redacted.spans, config.spans);
    }

    #[test]
    fn the_running_config_is_not_changed() {
        let config = config();
        let _ = config.redacted();
        assert_eq!(config.export.headers["x-api-key"], "s3cret-key");
    }

    #[test]
    fn urls_in_text_lose_their_userinfo_only() {
        let text = r#"control.url: "http://u:p@cp:1/x" is bad; see https://docs.example/a@b and ftp://me@h"#;
        assert_eq!(
            redact_urls(text),
            r#"control.url: "http://REDACTED@cp:1/x" is bad; see https://docs.example/a@b and ftp://REDACTED@h"#
        );
    }

    #[test]
    fn text_without_urls_is_unchanged() {
        for text in ["", "no url here", "a :// b", "x@y", "http://host:1/a@b"] {
            assert_eq!(redact_urls(text), text);
        }
    }
}
