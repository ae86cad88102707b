//! meshtrace configuration: the schema the sidecar reads, its embedded defaults,
//! and validation that names every problem.
//!
//! A configuration is read in three steps:
//!
//! 1. **Parse** the YAML (`serde_yaml`) into the schema, once.
//! 2. **Override** from the environment Kubernetes sets (see [`env`](mod@env)).
//! 3. **Validate** the result: every semantic problem (clashing listeners, a route
//!    with no match, an out-of-range limit…) is collected.
//!
//! A document that fails step 1 is [diagnosed](diagnose): every unknown key, wrong
//! type and bad value, then the semantic problems of what did parse, each once, as
//! `file:line:column: path: message` with the offending value and a "did you
//! mean". A syntax error (not YAML at all) is the one thing that stops early.
//! [`Config::warnings`] names settings that are valid but cannot do what they seem
//! to.
//!
//! A file only needs the keys it changes; everything else keeps the embedded
//! default, documented in `default.yaml` ([`DEFAULT_YAML`]).
//!
//! ```
//! let config = meshtrace_config::Config::from_yaml_str("limits: {max_connections: 100}", "inline")
//!     .unwrap();
//! assert_eq!(config.limits.max_connections, 100);
//! assert_eq!(config.timeouts.connect.get(), std::time::Duration::from_secs(1));
//! ```

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods)]
// Production code returns errors; tests may unwrap (clippy.toml `allow-*-in-tests`).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod diagnose;
pub mod env;
mod propagation;
pub mod redact;
pub mod report;
mod route;
mod sampling;
mod schema;
mod telemetry;
mod types;
mod validate;
pub mod wire;

use std::fmt;
use std::path::Path;

pub use propagation::*;
pub use route::RouteTemplate;
pub use sampling::*;
pub use schema::*;

/// The variable holding a whole config file's text, for a sidecar started
/// without `--config` (see [`Config::without_file`]).
pub const INLINE_CONFIG_ENV: &str = "MESHTRACE_CONFIG_YAML";
pub use telemetry::*;
pub use types::{Duration, HostPort};
pub use validate::Problem;

/// The embedded default configuration, with every key documented. Running the
/// sidecar with no file is the same as running it with this one.
pub const DEFAULT_YAML: &str = include_str!("../default.yaml");

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{source_name}: cannot read: {error}")]
    Read {
        /// The file.
        source_name: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The YAML did not parse (a syntax error, or one error of a document
    /// parsed outside [`Config::load`]).
    #[error("{source_name}:{}: {}{message}", location(*.line, *.column), at_path(path))]
    Parse {
        /// The file (or `env`, `inline`…).
        source_name: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The path in the document (`outbound.routes[0].target`), when known.
        path: String,
        /// What serde_yaml said.
        message: String,
    },
    /// The file holds nothing but whitespace and comments. A file is never taken
    /// for "all defaults": a truncated or half-written file looks the same, and
    /// would silently move the listeners to the default ports.
    #[error("{source_name}: the document is empty (nothing but whitespace or comments); an empty file is rejected because a truncated or half-written one looks the same")]
    Empty {
        /// The file.
        source_name: String,
    },
    /// The document is not usable; every problem is listed (unknown keys, bad
    /// values and semantic problems alike), each with its line and column when
    /// the text is known. `Parse` is left for a document that is not YAML.
    #[error("{}", list(source_name, problems))]
    Invalid {
        /// The file.
        source_name: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

// === impl ConfigError ===

impl ConfigError {
    /// A YAML document that did not parse, at `path` (empty: the whole
    /// document) in `source_name`, with serde_yaml's line and column. Public so
    /// the control plane words its documents' parse errors the same way.
    pub fn yaml(source_name: &str, path: String, e: &serde_yaml::Error) -> Self {
        let loc = e.location();
        let (line, column) = (
            loc.as_ref().map(|l| l.line()),
            loc.as_ref().map(|l| l.column()),
        );
        let message = bare_message(&e.to_string(), &path, line, column);
        ConfigError::Parse {
            source_name: source_name.to_string(),
            line,
            column,
            path,
            message,
        }
    }
}

/// serde_yaml's message without what the report already says in front of it:
/// its own path prefix (`inbound: `) and its ` at line L column C` suffix.
fn bare_message(message: &str, path: &str, line: Option<usize>, column: Option<usize>) -> String {
    let mut message = message;
    let owned;
    if let (Some(l), Some(c)) = (line, column) {
        let here = format!(" at line {l} column {c}");
        if let Some(i) = message.find(&here) {
            owned = format!("{}{}", &message[..i], &message[i + here.len()..]);
            message = &owned;
        }
    }
    let mut prefix = path;
    while !prefix.is_empty() && prefix != "." {
        if let Some(rest) = message.strip_prefix(&format!("{prefix}: ")) {
            return rest.to_string();
        }
        prefix = diagnose_parent(prefix);
    }
    message.to_string()
}

fn diagnose_parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{l}:{c}"),
        _ => "?".into(),
    }
}

fn at_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn list(source_name: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| p.in_source(source_name)).collect();
    lines.join("\n")
}

// === impl Config ===

impl Config {
    /// Reads, overrides from the process environment, and validates a file. An
    /// empty file is an error ([`ConfigError::Empty`]); only running without a
    /// file means the embedded default.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let content = Self::read_file(path)?;
        Self::from_file_content(&content, &path.display().to_string())
    }

    /// A config file's bytes, for [`Config::from_file_content`]; an error names the file.
    pub fn read_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
        std::fs::read(path).map_err(|error| ConfigError::Read {
            source_name: path.display().to_string(),
            error,
        })
    }

    /// [`Config::from_file`] for content the caller already read, so a watcher
    /// reads a file once for both change detection and loading.
    pub fn from_file_content(content: &[u8], source_name: &str) -> Result<Self, ConfigError> {
        let read_error = |error| ConfigError::Read {
            source_name: source_name.to_string(),
            error,
        };
        let text = std::str::from_utf8(content)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if is_blank(text) {
            return Err(ConfigError::Empty {
                source_name: source_name.to_string(),
            });
        }
        Self::load(text, source_name, &|name| std::env::var(name).ok())
    }

    /// The configuration a sidecar runs with when given no file, overridden from
    /// the process environment and validated: see [`Config::without_file`].
    pub fn from_env_defaults() -> Result<Self, ConfigError> {
        Self::without_file(&|name| std::env::var(name).ok())
    }

    /// The configuration without a file: the text of `MESHTRACE_CONFIG_YAML` when
    /// it is set (the injector passes a pod's `meshtrace.io/config` annotation so:
    /// a config file's keys, over the defaults), else the embedded default; then
    /// the environment's overrides. Problems in the variable's text are reported
    /// as `MESHTRACE_CONFIG_YAML:line:column`.
    pub fn without_file(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match var(INLINE_CONFIG_ENV).filter(|text| !text.trim().is_empty()) {
            Some(text) => Self::load(&text, INLINE_CONFIG_ENV, var),
            None => Self::load(DEFAULT_YAML, "<embedded default>", var),
        }
    }

    /// Parses and validates a document without consulting the environment.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        Self::load(text, source_name, &|_| None)
    }

    /// The three steps, with the environment supplied by `var` (for tests).
    pub fn load(
        text: &str,
        source_name: &str,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        match parse(text) {
            Ok(config) => config.finish(source_name, var).map_err(|e| locate(e, text)),
            Err(e) => diagnose_all(text, source_name, var, &e),
        }
    }

    /// Settings that are valid but cannot do what they seem to (a rule behind
    /// one that matches everything it matches, `extract: []`…): the sidecar logs
    /// them and runs the config as written.
    pub fn warnings(&self) -> Vec<Problem> {
        validate::warnings(self)
    }

    /// What `check-config` reports on a file: the config and its warnings with
    /// their lines and columns, or every problem.
    pub fn check_file(path: &Path) -> Result<(Self, Vec<Problem>), ConfigError> {
        let config = Self::from_file(path)?;
        let warnings = config.warnings();
        if warnings.is_empty() {
            return Ok((config, warnings));
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let positions = diagnose::Positions::of(&text);
        let warnings = warnings
            .into_iter()
            .map(|w| diagnose::Diagnosis::locate(&positions, w, ""))
            .collect();
        Ok((config, warnings))
    }

    /// A configuration that arrived whole (a control-plane push, a cache file):
    /// the environment applied through `var`, then validated.
    pub fn finish(
        mut self,
        source_name: &str,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut problems = validate::Problems::default();
        env::apply(&mut self, var, &mut problems);
        self.validate_into(&mut problems);
        if problems.0.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError::Invalid {
                source_name: source_name.to_string(),
                problems: problems.0,
            })
        }
    }

    /// Every semantic problem in this configuration (empty when it is usable).
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = validate::Problems::default();
        self.validate_into(&mut problems);
        problems.0
    }

    fn validate_into(&self, problems: &mut validate::Problems) {
        validate::check(self, problems);
    }

    /// The configuration as YAML, secrets included: for the sidecar's own cache
    /// file. What people see is [`Config::to_redacted_yaml`] (see [`redact`]).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Whether a YAML document holds nothing but whitespace, comments and document
/// markers: what an emptied or half-written file looks like. Public so the
/// control plane rejects its source file by the same rule.
pub fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// The fast path: one typed parse. A valid config (every reload) ends here.
fn parse(text: &str) -> Result<Config, serde_path_to_error::Error<serde_yaml::Error>> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
}

/// The slow path, for a document the typed parse refused: every problem at once
/// (see [`diagnose`]). An empty document (comments only, or `null`) is all
/// defaults; checked only here, so that a valid config is parsed once.
fn diagnose_all(
    text: &str,
    source_name: &str,
    var: &dyn Fn(&str) -> Option<String>,
    first: &serde_path_to_error::Error<serde_yaml::Error>,
) -> Result<Config, ConfigError> {
    let first_error = || ConfigError::yaml(source_name, first.path().to_string(), first.inner());
    let mut value = match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(value) if value.is_null() => return Config::default().finish(source_name, var),
        Ok(value) => value,
        Err(syntax) => return Err(diagnose::syntax(text, source_name, first, &syntax)),
    };
    let mut diagnosis = diagnose::Diagnosis::new(text);
    if let Some(mut config) = diagnosis.typed::<Config>(&mut value) {
        let mut problems = validate::Problems::default();
        env::apply(&mut config, var, &mut problems);
        config.validate_into(&mut problems);
        diagnosis.semantic(problems.0, "");
    }
    if diagnosis.is_empty() {
        return Err(first_error());
    }
    Err(ConfigError::Invalid {
        source_name: source_name.to_string(),
        problems: diagnosis.into_problems(),
    })
}

/// Semantic problems of a document that parsed, with their lines and columns.
fn locate(error: ConfigError, text: &str) -> ConfigError {
    match error {
        ConfigError::Invalid {
            source_name,
            problems,
        } => {
            let positions = diagnose::Positions::of(text);
            let problems = problems
                .into_iter()
                .map(|p| diagnose::Diagnosis::locate(&positions, p, ""))
                .collect();
            ConfigError::Invalid {
                source_name,
                problems,
            }
        }
        other => other,
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_yaml())
    }
}

#[cfg(test)]
mod tests;
