//! Warnings: settings that are valid but almost certainly not what was meant. A
//! config with warnings is used as written (`check-config` prints them and exits
//! 0; the sidecar logs them); each names the setting and why it does nothing.

use super::Problems;
use crate::propagation::UpstreamMatch;
use crate::sampling::RuleMatch;
use crate::schema::Config;

/// Every warning for `config`.
pub(crate) fn check(config: &Config, warnings: &mut Problems) {
    let p = &config.propagation;
    if p.extract.is_empty() {
        warnings.add(
            "propagation.extract",
            "no format is read: incoming trace context is dropped and every request starts a new trace",
        );
    }
    for (i, rule) in p.upstreams.iter().enumerate() {
        if let Some(e) = p.upstreams[..i]
            .iter()
            .position(|earlier| upstream_covers(&earlier.matches, &rule.matches))
        {
            warnings.add(
                format!("propagation.upstreams[{i}]"),
                format!(
                    "never applies: propagation.upstreams[{e}] comes first and matches every upstream this rule matches"
                ),
            );
        }
    }
    let s = &config.sampling;
    for (i, rule) in s.rules.iter().enumerate() {
        if let Some(e) = s.rules[..i]
            .iter()
            .position(|earlier| rule_covers(&earlier.matches, &rule.matches))
        {
            warnings.add(
                format!("sampling.rules[{i}]"),
                format!(
                    "never applies: sampling.rules[{e}] comes first and matches every request this rule matches"
                ),
            );
        }
    }
    if s.default_rate != 1.0 && s.default_route().rate != crate::RateMode::Fixed(s.default_rate) {
        warnings.add(
            "sampling.default_rate",
            "never applies: the default route's rate comes from sampling.default or the tier",
        );
    }
    if !s.forced_tenants.is_empty() && s.tenant.headers.is_empty() && s.tenant.baggage_key.is_none()
    {
        warnings.add(
            "sampling.forced_tenants",
            "never applies: sampling.tenant names no header and no baggage_key to read a tenant from",
        );
    }
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A `host:port` authority's host and port (IPv6 brackets removed).
fn split(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().ok(),
        ),
        _ => (authority, None),
    }
}

/// Whether every upstream `later` matches is matched by `earlier` too.
fn upstream_covers(earlier: &UpstreamMatch, later: &UpstreamMatch) -> bool {
    if earlier.authority.is_none() && earlier.host.is_none() && earlier.port.is_none() {
        return false; // An error of its own (`give at least one of …`).
    }
    let later_host = later
        .host
        .as_deref()
        .or(later.authority.as_deref().map(|a| split(a).0));
    let later_port = later
        .port
        .or(later.authority.as_deref().and_then(|a| split(a).1));
    given(&earlier.authority, |a| {
        later.authority.as_deref().is_some_and(|l| same(a, l))
    }) && given(&earlier.host, |h| later_host.is_some_and(|l| same(h, l)))
        && earlier.port.is_none_or(|p| later_port == Some(p))
}

/// Whether every request `later` matches is matched by `earlier` too.
fn rule_covers(earlier: &RuleMatch, later: &RuleMatch) -> bool {
    let later_host = later
        .host
        .as_deref()
        .or(later.authority.as_deref().map(|a| split(a).0));
    given(&earlier.authority, |a| {
        later.authority.as_deref().is_some_and(|l| same(a, l))
    }) && given(&earlier.host, |h| later_host.is_some_and(|l| same(h, l)))
        && given(&earlier.method, |m| {
            later.method.as_deref().is_some_and(|l| same(m, l))
        })
        && given(&earlier.path_prefix, |p| {
            later
                .path_prefix
                .as_deref()
                .is_some_and(|l| l.starts_with(p))
        })
        && given(&earlier.grpc_service, |s| {
            later.grpc_service.as_deref() == Some(s)
        })
        && given(&earlier.grpc_method, |m| {
            later.grpc_method.as_deref() == Some(m)
        })
}

/// A criterion the earlier rule does not give holds for everything.
fn given(criterion: &Option<String>, holds: impl FnOnce(&str) -> bool) -> bool {
    criterion.as_deref().is_none_or(holds)
}
