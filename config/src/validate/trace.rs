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
            if !label_like(name) {
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
    check_routes(s, problems);
    let period = s.adaptive.period.get();
    if period < std::time::Duration::from_millis(100)
        || period > std::time::Duration::from_secs(3600)
    {
        problems.add("sampling.adaptive.period", "must be between 100ms and 1h");
    }
    for (i, p) in s.probes.paths.iter().enumerate() {
        if !p.starts_with('/') {
            problems.add(
                format!("sampling.probes.paths[{i}]"),
                "a path starts with `/`",
            );
        }
    }
    for (i, ua) in s.probes.user_agents.iter().enumerate() {
        if ua.trim().is_empty() {
            problems.add(
                format!("sampling.probes.user_agents[{i}]"),
                "must not be empty",
            );
        }
    }
}

/// The rules, the default route and the tiers.
fn check_routes(s: &crate::Sampling, problems: &mut Problems) {
    let mut names = HashSet::new();
    for (i, r) in s.rules.iter().enumerate() {
        let path = format!("sampling.rules[{i}]");
        check_route(s, r, &path, problems);
        if r.rate.is_none()
            && r.target_traces_per_second.is_none()
            && r.tier.is_none()
            && s.tier.is_none()
        {
            problems.add(
                format!("{path}.rate"),
                "give `rate`, `target_traces_per_second` or a `tier`",
            );
        }
        if let Some(name) = &r.name {
            if !label_like(name) {
                problems.add(
                    format!("{path}.name"),
                    "1 to 64 characters of A-Z a-z 0-9 _ . - (it is a metric label)",
                );
            } else if name == crate::DEFAULT_ROUTE {
                problems.add(format!("{path}.name"), "`default` names the default route");
            } else if !names.insert(name.as_str()) {
                problems.add(format!("{path}.name"), format!("{name:?} is used twice"));
            }
        }
        if r.matches.grpc_method.is_some() && r.matches.grpc_service.is_none() {
            problems.add(format!("{path}.match.grpc_method"), "needs grpc_service");
        }
    }
    if let Some(d) = &s.default {
        check_route(s, d, "sampling.default", problems);
        if d.matches != crate::RuleMatch::default() {
            problems.add(
                "sampling.default.match",
                "the default route takes what no rule matches; it has no `match`",
            );
        }
        if d.name.is_some() {
            problems.add(
                "sampling.default.name",
                "the default route is called `default`",
            );
        }
    }
    if let Some(tier) = &s.tier {
        known_tier(s, "sampling.tier", tier, problems);
    }
    for (name, tier) in &s.tiers {
        let path = format!("sampling.tiers.{name}");
        if !label_like(name) {
            problems.add(
                &path,
                "a tier name is 1 to 64 characters of A-Z a-z 0-9 _ . -",
            );
        }
        positive(
            &format!("{path}.target_traces_per_second"),
            tier.target_traces_per_second,
            problems,
        );
        bounds(&path, Some(tier.min_rate), Some(tier.max_rate), problems);
        if let Some(boost) = &tier.boost {
            check_boost(s, &format!("{path}.boost"), boost, problems);
        }
    }
}

/// What a rule and the default route share: how they set their rate, their
/// floor and ceiling, reservoir, tier and boost.
fn check_route(s: &crate::Sampling, r: &crate::SamplingRule, path: &str, problems: &mut Problems) {
    if let Some(v) = r.rate {
        rate(&format!("{path}.rate"), v, problems);
    }
    if let Some(target) = r.target_traces_per_second {
        positive(
            &format!("{path}.target_traces_per_second"),
            target,
            problems,
        );
        if r.rate.is_some() {
            problems.add(
                format!("{path}.target_traces_per_second"),
                "give either a fixed `rate` or `target_traces_per_second`, not both",
            );
        }
    }
    if r.rate.is_some() && (r.min_rate.is_some() || r.max_rate.is_some()) {
        let key = if r.min_rate.is_some() {
            "min_rate"
        } else {
            "max_rate"
        };
        problems.add(
            format!("{path}.{key}"),
            "bounds an adaptive rate; this route's `rate` is fixed",
        );
    }
    bounds(path, r.min_rate, r.max_rate, problems);
    if r.reservoir_per_second == Some(0) {
        problems.add(
            format!("{path}.reservoir_per_second"),
            "must be greater than 0 (omit it for none)",
        );
    }
    if let Some(tier) = &r.tier {
        known_tier(s, &format!("{path}.tier"), tier, problems);
    }
    if let Some(boost) = &r.boost {
        check_boost(s, &format!("{path}.boost"), boost, problems);
    }
}

/// `min_rate` and `max_rate`: each a rate, the floor not above the ceiling.
fn bounds(path: &str, min: Option<f64>, max: Option<f64>, problems: &mut Problems) {
    if let Some(v) = min {
        rate(&format!("{path}.min_rate"), v, problems);
    }
    if let Some(v) = max {
        rate(&format!("{path}.max_rate"), v, problems);
        if v == 0.0 {
            problems.add(
                format!("{path}.max_rate"),
                "a ceiling of 0 keeps nothing; use `rate: 0`",
            );
        }
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            problems.add(
                format!("{path}.min_rate"),
                format!("the floor {lo} is above the ceiling max_rate {hi}"),
            );
        }
    }
}

fn check_boost(s: &crate::Sampling, path: &str, b: &crate::Boost, problems: &mut Problems) {
    if b.error_ratio.is_none() && b.latency.is_none() {
        problems.add(
            path,
            "a boost needs a trigger: `error_ratio`, `latency`, or both",
        );
    }
    if let Some(r) = b.error_ratio {
        if !(r > 0.0 && r <= 1.0) {
            problems.add(format!("{path}.error_ratio"), "must be in (0, 1]");
        }
    }
    if let Some(l) = &b.latency {
        if !(l.percentile > 0.0 && l.percentile < 100.0) {
            problems.add(
                format!("{path}.latency.percentile"),
                "must be in (0, 100), e.g. 99",
            );
        }
        if l.above.is_zero() {
            problems.add(format!("{path}.latency.above"), "must be greater than 0s");
        }
    }
    if b.window.get() < s.adaptive.period.get() {
        problems.add(
            format!("{path}.window"),
            format!(
                "must be at least sampling.adaptive.period ({})",
                String::from(s.adaptive.period)
            ),
        );
    }
    if b.min_requests == 0 {
        problems.add(format!("{path}.min_requests"), "must be at least 1");
    }
    if !(b.rate > 0.0 && b.rate <= 1.0) {
        problems.add(format!("{path}.rate"), "must be in (0, 1]");
    }
    budget(
        &format!("{path}.traces_per_second"),
        b.traces_per_second,
        problems,
    );
    if b.duration.is_zero() {
        problems.add(format!("{path}.duration"), "must be greater than 0s");
    }
}

fn known_tier(s: &crate::Sampling, path: &str, tier: &str, problems: &mut Problems) {
    if s.tier_named(tier).is_none() {
        problems.add(
            path,
            format!(
                "unknown tier {tier:?}; known: {}",
                s.tier_names().join(", ")
            ),
        );
    }
}

/// A positive, finite number.
fn positive(path: &str, v: f64, problems: &mut Problems) {
    if !(v.is_finite() && v > 0.0) {
        problems.add(path, "must be greater than 0");
    }
}

/// A metric-label-like name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
fn label_like(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
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
    if e.queue.max_bytes == Some(0) {
        problems.add("export.queue.max_bytes", "must be greater than 0");
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
