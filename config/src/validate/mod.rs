//! Semantic checks that run after the document parsed: every problem is collected
//! (not just the first) and named by its path in the document, e.g.
//! `outbound.routes[1].host`.

mod trace;
mod warn;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;

use crate::schema::{Config, OutboundMode};
use trace::{check_export, check_propagation, check_sampling, check_spans};

/// One thing wrong with a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document (`limits.max_connections`), or which environment
    /// variable (`env MESHTRACE_APP_PORT`).
    pub path: String,
    /// What is wrong, and what is expected instead.
    pub message: String,
    /// The 1-based line in the source, when known.
    pub line: Option<usize>,
    /// The 1-based column in the source, when known.
    pub column: Option<usize>,
}

// === impl Problem ===

impl Problem {
    /// `source:line:column: path: message` (the location as far as known), the
    /// way compilers print diagnostics, so editors can jump to it.
    pub fn in_source(&self, source_name: &str) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{source_name}:{l}:{c}: {self}"),
            (Some(l), None) => format!("{source_name}:{l}: {self}"),
            _ => format!("{source_name}: {self}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Collects problems as the checks walk the document.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

// === impl Problems ===

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            ..Problem::default()
        });
    }
}

/// Largest and smallest sensible header limits: below 1 KiB ordinary requests fail,
/// above 1 MiB one client can pin a lot of memory.
const HEADER_LIMIT_RANGE: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;
/// `limits.max_header_count`: hyper reserves room for twice as many per request.
const HEADER_COUNT_RANGE: std::ops::RangeInclusive<usize> = 8..=1000;

/// Every warning: valid settings that cannot do what they seem to.
pub(crate) fn warnings(config: &Config) -> Vec<Problem> {
    let mut warnings = Problems::default();
    warn::check(config, &mut warnings);
    warnings.0
}

/// Runs every check and returns all problems found.
pub(crate) fn check(config: &Config, problems: &mut Problems) {
    check_listeners(config, problems);
    check_routes(config, problems);
    check_timeouts(config, problems);
    check_limits(config, problems);
    check_propagation(config, problems);
    check_sampling(config, problems);
    check_spans(config, problems);
    check_export(config, problems);
    if config.opaque_ports.contains(&0) {
        problems.add("opaque_ports", "port 0 is not a port");
    }
    if config.runtime.workers == Some(0) {
        problems.add(
            "runtime.workers",
            "must be at least 1 (omit it for one per core)",
        );
    }
    if let Some(url) = &config.control.url {
        match url.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {}
            _ => problems.add("control.url", format!("{url:?} is not an http:// URL")),
        }
    }
    if config.control.reconnect_max.get() < config.control.reconnect_min.get()
        || config.control.reconnect_min.is_zero()
    {
        problems.add(
            "control.reconnect_min",
            "must be greater than 0 and not above reconnect_max",
        );
    }
    if config.control.report_interval.get() < std::time::Duration::from_secs(1) {
        problems.add("control.report_interval", "must be at least 1s");
    }
    if config.control.file_poll.is_zero() {
        problems.add("control.file_poll", "must be greater than 0");
    }
    if config.log.level.trim().is_empty() {
        problems.add("log.level", "must not be empty (e.g. `info`)");
    }
}

fn check_listeners(config: &Config, problems: &mut Problems) {
    let listeners: Vec<(&str, SocketAddr)> = [
        ("inbound.listen", Some(config.inbound.listen)),
        ("outbound.listen", Some(config.outbound.listen)),
        ("admin.listen", Some(config.admin.listen)),
        ("admin.health_listen", config.admin.health_listen),
        ("admin.metrics_listen", config.admin.metrics_listen),
    ]
    .into_iter()
    .filter_map(|(path, addr)| Some((path, addr?)))
    .collect();
    for (i, (path, addr)) in listeners.iter().enumerate() {
        let clash = listeners[..i].iter().find(|(_, other)| {
            addr.port() != 0 && other.port() == addr.port() && overlaps(addr, other)
        });
        if let Some((other_path, _)) = clash {
            problems.add(*path, format!("{addr} is already used by {other_path}"));
        }
    }
    if !config.admin.listen.ip().is_loopback() && !config.admin.allow_non_loopback {
        problems.add(
            "admin.listen",
            format!(
                "{} is not a loopback address; the admin server can shut the sidecar down \
                 (set admin.allow_non_loopback: true to accept this)",
                config.admin.listen
            ),
        );
    }
}

/// Whether two listen addresses would collide on bind.
fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

fn check_routes(config: &Config, problems: &mut Problems) {
    let outbound = &config.outbound;
    if outbound.mode == OutboundMode::Transparent {
        if !outbound.routes.is_empty() {
            problems.add("outbound.routes", "routes only apply in `explicit` mode");
        }
        if outbound.tcp_target.is_some() {
            problems.add("outbound.tcp_target", "only applies in `explicit` mode");
        }
    } else if outbound.routes.is_empty() && outbound.tcp_target.is_none() {
        problems.add(
            "outbound.routes",
            "`explicit` mode needs at least one route (or a tcp_target)",
        );
    }
    let mut seen = HashSet::new();
    for (i, route) in outbound.routes.iter().enumerate() {
        let path = format!("outbound.routes[{i}]");
        let key = match (&route.authority, &route.host) {
            (Some(a), None) => {
                if !a.contains(':') {
                    problems.add(
                        format!("{path}.authority"),
                        format!("{a:?} has no port; use `host:` to match any port"),
                    );
                }
                ("authority", a.to_ascii_lowercase())
            }
            (None, Some(h)) => {
                if h.contains(':') || h.is_empty() {
                    problems.add(
                        format!("{path}.host"),
                        format!("{h:?} must be a bare host name"),
                    );
                }
                ("host", h.to_ascii_lowercase())
            }
            _ => {
                problems.add(path, "set exactly one of `authority` and `host`");
                continue;
            }
        };
        if !seen.insert(key.clone()) {
            problems.add(
                format!("{path}.{}", key.0),
                format!("{:?} is matched by an earlier route", key.1),
            );
        }
    }
}

fn check_timeouts(config: &Config, problems: &mut Problems) {
    let t = &config.timeouts;
    for (name, value) in [
        ("connect", t.connect),
        ("idle", t.idle),
        ("header_read", t.header_read),
        ("detect", t.detect),
    ] {
        if value.is_zero() {
            problems.add(format!("timeouts.{name}"), "must be greater than 0s");
        }
    }
}

fn check_limits(config: &Config, problems: &mut Problems) {
    let l = &config.limits;
    if !HEADER_LIMIT_RANGE.contains(&l.max_header_bytes) {
        problems.add(
            "limits.max_header_bytes",
            format!(
                "{} is outside {}..={}",
                l.max_header_bytes,
                HEADER_LIMIT_RANGE.start(),
                HEADER_LIMIT_RANGE.end()
            ),
        );
    }
    if !HEADER_COUNT_RANGE.contains(&l.max_header_count) {
        problems.add(
            "limits.max_header_count",
            format!(
                "{} is outside {}..={}",
                l.max_header_count,
                HEADER_COUNT_RANGE.start(),
                HEADER_COUNT_RANGE.end()
            ),
        );
    }
    if l.max_connections == 0 {
        problems.add("limits.max_connections", "must be at least 1");
    }
    if l.backlog == 0 {
        problems.add("limits.backlog", "must be at least 1");
    }
}
