//! The `OTEL_*` export variables as an overlay on the `export` section, applied
//! when a config is loaded (beside [`crate::env`]), so that a malformed variable
//! fails `check-config` like any other problem and `/config` shows the endpoint
//! the environment chose.
//!
//! The OpenTelemetry convention decides the order: a key the file sets wins; a key
//! left `null` is taken from `OTEL_EXPORTER_OTLP_TRACES_*`, then
//! `OTEL_EXPORTER_OTLP_*` (`OTEL_BSP_*` for the queue); what is still `null` gets
//! the OpenTelemetry default in [`Export::settings`]. `OTEL_EXPORTER_OTLP_*HEADERS`
//! stays with the exporter, which adds it to `export.headers`.

use std::path::PathBuf;

use super::{Compression, Export, OtlpProtocol};
use crate::types::Duration;
use crate::Problem;

/// Reads the variables of one overlay and collects what is wrong with them.
struct Vars<'a> {
    var: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Vars<'_> {
    /// `name`'s value, trimmed; empty counts as unset.
    fn get(&self, name: &str) -> Option<(String, String)> {
        let value = (self.var)(name)?.trim().to_string();
        (!value.is_empty()).then(|| (name.to_string(), value))
    }

    /// The traces-specific variable, else the generic one, with its name.
    fn signal(&self, suffix: &str) -> Option<(String, String)> {
        self.get(&format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}"))
            .or_else(|| self.get(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
    }

    fn problem(&mut self, name: &str, message: String) {
        self.problems.push(Problem {
            path: format!("env {name}"),
            message,
            ..Problem::default()
        });
    }

    /// A whole number, or a problem naming the variable.
    fn number(&mut self, found: Option<(String, String)>, unit: &str) -> Option<u64> {
        let (name, value) = found?;
        let parsed = value.parse().ok();
        if parsed.is_none() {
            self.problem(&name, format!("{value:?} is not a whole number{unit}"));
        }
        parsed
    }

    /// One of `choices` (variable spelling, value), or a problem naming the variable.
    fn choice<T: Copy>(&mut self, suffix: &str, choices: &[(&str, T)]) -> Option<T> {
        let (name, value) = self.signal(suffix)?;
        let found = choices.iter().find(|(word, _)| *word == value);
        if found.is_none() {
            let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
            self.problem(
                &name,
                format!("{value:?} is not supported ({})", words.join(" or ")),
            );
        }
        found.map(|(_, choice)| *choice)
    }
}

// === impl Export ===

impl Export {
    /// Fills every key this section leaves `null` from its `OTEL_*` variable, read
    /// through `var`. A malformed variable is returned as a problem
    /// (`env NAME: …`) and its key stays `null`.
    pub fn apply_env(&mut self, var: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
        let mut vars = Vars {
            var,
            problems: Vec::new(),
        };
        fill(&mut self.protocol, || {
            let protocols = [
                ("grpc", OtlpProtocol::Grpc),
                ("http/protobuf", OtlpProtocol::HttpProtobuf),
            ];
            vars.choice("PROTOCOL", &protocols)
        });
        let protocol = self.protocol.unwrap_or(OtlpProtocol::Grpc);
        fill(&mut self.endpoint, || endpoint(&mut vars, protocol));
        fill(&mut self.compression, || {
            let compressions = [("gzip", Compression::Gzip), ("none", Compression::None)];
            vars.choice("COMPRESSION", &compressions)
        });
        fill(&mut self.timeout, || {
            let found = vars.signal("TIMEOUT");
            vars.number(found, " of milliseconds")
                .map(Duration::from_millis)
        });
        for (slot, suffix) in [
            (&mut self.tls.ca_file, "CERTIFICATE"),
            (&mut self.tls.cert_file, "CLIENT_CERTIFICATE"),
            (&mut self.tls.key_file, "CLIENT_KEY"),
        ] {
            fill(slot, || vars.signal(suffix).map(|(_, v)| PathBuf::from(v)));
        }
        let queue = &mut self.queue;
        for (slot, name) in [
            (&mut queue.max_size, "OTEL_BSP_MAX_QUEUE_SIZE"),
            (&mut queue.batch_size, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        ] {
            fill(slot, || {
                let found = vars.get(name);
                vars.number(found, "")
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            });
        }
        fill(&mut queue.delay, || {
            let found = vars.get("OTEL_BSP_SCHEDULE_DELAY");
            vars.number(found, " of milliseconds")
                .map(Duration::from_millis)
        });
        vars.problems
    }
}

/// Sets a `null` key to what `from_env` finds.
fn fill<T>(slot: &mut Option<T>, from_env: impl FnOnce() -> Option<T>) {
    if slot.is_none() {
        *slot = from_env();
    }
}

/// The signal-specific variable is the full URL; the generic one is a base to
/// which OTLP/HTTP appends the signal path (OTLP exporter specification).
fn endpoint(vars: &mut Vars<'_>, protocol: OtlpProtocol) -> Option<String> {
    let (name, url) = match vars.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(found) => found,
        None => {
            let (name, base) = vars.get("OTEL_EXPORTER_OTLP_ENDPOINT")?;
            let url = match protocol {
                OtlpProtocol::Grpc => base,
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            };
            (name, url)
        }
    };
    let is_http_url = url.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    });
    if !is_http_url {
        vars.problem(&name, format!("{url:?} is not an http:// or https:// URL"));
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(text, "t.yaml", &|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn loading_a_config_applies_the_otel_variables() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ];
        let config = load("", &env).unwrap();
        let endpoint = "http://collector:4318/v1/traces";
        assert_eq!(config.export.endpoint.as_deref(), Some(endpoint));
        assert!(config.to_yaml().contains(endpoint), "/config shows it");
        let settings = config.export.settings();
        assert_eq!(settings.delay, std::time::Duration::from_millis(250));
        assert_eq!(settings.queue_size, 65_536, "still null: the default");
    }

    #[test]
    fn the_file_wins_over_the_otel_variables() {
        let env = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env:4318")];
        let config = load("export: {endpoint: 'http://file:4317'}", &env).unwrap();
        assert_eq!(config.export.endpoint.as_deref(), Some("http://file:4317"));
    }

    #[test]
    fn a_malformed_otel_variable_fails_the_load_by_name() {
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
        ] {
            let error = load("", &[(name, value)]).unwrap_err().to_string();
            assert!(
                error.contains(&format!("t.yaml: env {name}: \"{value}\"")),
                "{error}"
            );
        }
    }
}
