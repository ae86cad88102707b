//! The checks of how the sidecar traces: trace-context propagation, sampling,
//! span contents and their export.

use std::collections::HashSet;

use super::Problems;
use crate::schema::Config;

pub(super) fn check_propagation(config: &Config, problems: &mut Problems) {
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

pub(super) fn check_sampling(config: &Config, problems: &mut Problems) {
    let s = &config.sampling;
    rate("sampling.default_rate", s.default_rate, problems);
    if let Some(h) = &s.force_header {
        header_name("sampling.force_header", h, problems);
    }
    budget(
        "sampling.force_signal_budget.traces_per_second",
        s.force_signal_budget.traces_per_second,
        problems,
    );
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

/// A token bucket's `traces_per_second`: a finite, positive number.
fn budget(path: &str, traces_per_second: f64, problems: &mut Problems) {
    if !(traces_per_second.is_finite() && traces_per_second > 0.0) {
        problems.add(path, "the budget must be greater than 0");
    }
}

pub(super) fn check_spans(config: &Config, problems: &mut Problems) {
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

pub(super) fn check_export(config: &Config, problems: &mut Problems) {
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
