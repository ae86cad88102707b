//! Semantic checks that run after the document parsed: every problem is collected
//! (not just the first) and named by its path in the document, e.g.
//! `outbound.routes[1].host`.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;

use crate::schema::{Config, OutboundMode};

/// One thing wrong with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document (`limits.max_connections`), or which environment
    /// variable (`env MESHTRACE_APP_PORT`).
    pub path: String,
    /// What is wrong, and what is expected instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects problems as the checks walk the document.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Largest and smallest sensible header limits: below 1 KiB ordinary requests fail,
/// above 1 MiB one client can pin a lot of memory.
const HEADER_LIMIT_RANGE: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;

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
    let listeners: [(&str, SocketAddr); 3] = [
        ("inbound.listen", config.inbound.listen),
        ("outbound.listen", config.outbound.listen),
        ("admin.listen", config.admin.listen),
    ];
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
    if l.max_connections == 0 {
        problems.add("limits.max_connections", "must be at least 1");
    }
    if l.backlog == 0 {
        problems.add("limits.backlog", "must be at least 1");
    }
}

fn check_propagation(config: &Config, problems: &mut Problems) {
    let p = &config.propagation;
    no_duplicates("propagation.extract", &p.extract, problems);
    if let Some(formats) = &p.app_formats {
        no_duplicates("propagation.app_formats", formats, problems);
    }
    if p.learn_for.get() < std::time::Duration::from_secs(1) {
        problems.add("propagation.learn_for", "must be at least 1s");
    }
    let mut names = HashSet::new();
    for (i, rule) in p.upstreams.iter().enumerate() {
        let path = format!("propagation.upstreams[{i}]");
        no_duplicates(&format!("{path}.inject"), &rule.inject, problems);
        match (rule.external, rule.inject.is_empty()) {
            (true, false) => problems.add(
                format!("{path}.inject"),
                "an external rule writes no trace header; remove `inject` or `external`",
            ),
            (false, true) => problems.add(
                format!("{path}.inject"),
                "name the formats this upstream gets (e.g. [tracecontext, b3multi]), or set `external: true` to send none",
            ),
            _ => {}
        }
        if let Some(name) = &rule.name {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid {
                problems.add(
                    format!("{path}.name"),
                    "1 to 64 characters of A-Z a-z 0-9 _ . - (it is a metric label)",
                );
            } else if !names.insert(name.as_str()) {
                problems.add(format!("{path}.name"), format!("{name:?} is used twice"));
            }
        }
        let m = &rule.matches;
        if m.authority.is_none() && m.host.is_none() && m.port.is_none() {
            problems.add(
                format!("{path}.match"),
                "give at least one of authority, host, port",
            );
        }
        if m.authority.as_deref().is_some_and(|a| !a.contains(':')) {
            problems.add(
                format!("{path}.match.authority"),
                "must be host:port; use `host:` for any port",
            );
        }
        if m.port == Some(0) {
            problems.add(format!("{path}.match.port"), "port 0 is not a port");
        }
    }
}

fn no_duplicates<T: PartialEq + std::fmt::Debug>(path: &str, list: &[T], problems: &mut Problems) {
    for (i, item) in list.iter().enumerate() {
        if list[..i].contains(item) {
            problems.add(format!("{path}[{i}]"), format!("{item:?} is listed twice"));
        }
    }
}

fn check_sampling(config: &Config, problems: &mut Problems) {
    let s = &config.sampling;
    rate("sampling.default_rate", s.default_rate, problems);
    if let Some(h) = &s.force_header {
        header_name("sampling.force_header", h, problems);
    }
    for (i, h) in s.tenant.headers.iter().enumerate() {
        header_name(&format!("sampling.tenant.headers[{i}]"), h, problems);
    }
    if s.tenant
        .baggage_key
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        problems.add("sampling.tenant.baggage_key", "must not be empty");
    }
    for (i, t) in s.forced_tenants.iter().enumerate() {
        let path = format!("sampling.forced_tenants[{i}]");
        if t.tenant.is_empty() {
            problems.add(format!("{path}.tenant"), "must not be empty");
        }
        if s.forced_tenants[..i].iter().any(|o| o.tenant == t.tenant) {
            problems.add(
                format!("{path}.tenant"),
                format!("{:?} is listed twice", t.tenant),
            );
        }
        rate(&format!("{path}.rate"), t.rate, problems);
        if !(t.traces_per_second.is_finite() && t.traces_per_second > 0.0) {
            problems.add(
                format!("{path}.traces_per_second"),
                "the budget must be greater than 0",
            );
        }
    }
    if let Some(forced) = &s.forced_workload {
        rate("sampling.forced_workload.rate", forced.rate, problems);
        if !(forced.traces_per_second.is_finite() && forced.traces_per_second > 0.0) {
            problems.add(
                "sampling.forced_workload.traces_per_second",
                "the budget must be greater than 0",
            );
        }
    }
    for (i, r) in s.rules.iter().enumerate() {
        let path = format!("sampling.rules[{i}]");
        rate(&format!("{path}.rate"), r.rate, problems);
        if r.reservoir_per_second == Some(0) {
            problems.add(
                format!("{path}.reservoir_per_second"),
                "must be greater than 0 (omit it for none)",
            );
        }
        if r.matches.grpc_method.is_some() && r.matches.grpc_service.is_none() {
            problems.add(format!("{path}.match.grpc_method"), "needs grpc_service");
        }
    }
}

fn check_spans(config: &Config, problems: &mut Problems) {
    let s = &config.spans;
    for (i, route) in s.routes.iter().enumerate() {
        if let Err(e) = crate::RouteTemplate::parse(route) {
            problems.add(format!("spans.routes[{i}]"), e);
        }
    }
    if s.max_path_length < 16 {
        problems.add("spans.max_path_length", "must be at least 16");
    }
    if s.max_tag_length < 1 {
        problems.add("spans.max_tag_length", "must be at least 1");
    }
    for (i, tag) in s.tags.iter().enumerate() {
        let path = format!("spans.tags[{i}]");
        if tag.name.trim().is_empty() {
            problems.add(format!("{path}.name"), "must not be empty");
        }
        let sources = [tag.value.is_some(), tag.env.is_some(), tag.header.is_some()];
        if sources.iter().filter(|&&set| set).count() != 1 {
            problems.add(path.clone(), "needs exactly one of value, env, header");
        }
        if let Some(h) = &tag.header {
            header_name(&format!("{path}.header"), h, problems);
        }
    }
    for (i, h) in s.redact.headers.iter().enumerate() {
        header_name(&format!("spans.redact.headers[{i}]"), h, problems);
    }
    if let Some(slow) = config.sampling.tail.slow {
        if slow.is_zero() {
            problems.add("sampling.tail.slow", "must be greater than 0 (null: off)");
        }
    }
}

fn check_export(config: &Config, problems: &mut Problems) {
    let e = &config.export;
    if let Some(endpoint) = &e.endpoint {
        match endpoint.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some() => {}
            _ => problems.add(
                "export.endpoint",
                format!("{endpoint:?} is not an http:// or https:// URL"),
            ),
        }
    }
    for name in e.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.add(format!("export.headers.{name}"), "is not a header name");
        }
    }
    if e.queue.max_size == Some(0) {
        problems.add("export.queue.max_size", "must be greater than 0");
    }
    if e.queue.batch_size == Some(0) {
        problems.add("export.queue.batch_size", "must be greater than 0");
    }
    if e.queue.delay.is_some_and(|d| d.is_zero()) {
        problems.add("export.queue.delay", "must be greater than 0");
    }
    if e.timeout.is_some_and(|d| d.is_zero()) {
        problems.add("export.timeout", "must be greater than 0");
    }
    if e.retry.max_backoff.get() < e.retry.initial_backoff.get() {
        problems.add(
            "export.retry.max_backoff",
            "must not be less than initial_backoff",
        );
    }
    if e.tls.cert_file.is_some() != e.tls.key_file.is_some() {
        problems.add("export.tls", "cert_file and key_file go together");
    }
}

fn rate(path: &str, value: f64, problems: &mut Problems) {
    if !(0.0..=1.0).contains(&value) {
        problems.add(path, format!("{value} is not a rate in [0, 1]"));
    }
}

/// RFC 9110 token characters, lower case (HTTP/2 requires lower-case names).
fn header_name(path: &str, name: &str, problems: &mut Problems) {
    let ok = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        });
    if !ok {
        problems.add(path, format!("{name:?} is not a lower-case header name"));
    }
}
