//! The configured tenants and rules, compiled once per listener into what a
//! decision compares: thresholds instead of rates, hosts without brackets, and a
//! token bucket per budget and reservoir.

use meshtrace_config::{ForcedTenant, ForcedWorkload, RuleMatch, SamplingRule};

use super::budget::TokenBucket;
use super::consistent::Threshold;
use super::Input;

/// A forced tenant: its budget, and the probability its traces are kept with.
#[derive(Debug)]
pub(super) struct Tenant {
    pub(super) id: Box<str>,
    pub(super) threshold: Option<Threshold>,
    override_parent: bool,
    pub(super) budget: TokenBucket,
}

/// The forced workload: every request of this workload, within a budget.
#[derive(Debug)]
pub(super) struct Forced {
    pub(super) threshold: Option<Threshold>,
    pub(super) budget: TokenBucket,
}

/// A root-decision rule: its criteria and reservoir (its probability, fixed or
/// adaptive, lives in its route: [`super::Routes`]).
#[derive(Debug)]
pub(super) struct Rule {
    matches: Match,
    pub(super) reservoir: Option<TokenBucket>,
}

/// A rule's criteria; `None` matches anything.
#[derive(Debug, PartialEq, Eq)]
struct Match {
    authority: Option<Box<str>>,
    host: Option<Box<str>>,
    method: Option<Box<str>>,
    path_prefix: Option<Box<str>>,
    grpc_service: Option<Box<str>>,
    grpc_method: Option<Box<str>>,
}

/// The forced tenants, sorted by id for a binary search.
pub(super) fn tenants(config: &[ForcedTenant]) -> Vec<Tenant> {
    let mut tenants: Vec<Tenant> = config.iter().map(Tenant::new).collect();
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    // Validation rejects duplicates; should one slip through, the first one stays.
    tenants.dedup_by(|later, first| later.id == first.id);
    tenants
}

/// Finds `id` among tenants built by [`tenants`].
pub(super) fn find<'t>(tenants: &'t [Tenant], id: &str) -> Option<&'t Tenant> {
    let at = tenants.binary_search_by(|t| (*t.id).cmp(id)).ok()?;
    tenants.get(at)
}

// === impl Tenant ===

impl Tenant {
    fn new(config: &ForcedTenant) -> Self {
        Self {
            id: config.tenant.as_str().into(),
            threshold: Threshold::for_rate(config.rate),
            override_parent: config.override_parent,
            budget: TokenBucket::new(config.traces_per_second),
        }
    }

    /// Whether forcing applies given the caller's decision. A forced tenant only
    /// adds traces: a parent that already sampled needs no forcing (and spends no
    /// budget); a parent's "not sampled" is overridden only with `override_parent`.
    pub(super) fn applies(&self, parent: Option<bool>) -> bool {
        match parent {
            None => true,
            Some(true) => false,
            Some(false) => self.override_parent,
        }
    }
}

// === impl Forced ===

impl Forced {
    pub(super) fn new(config: &ForcedWorkload) -> Self {
        Self {
            threshold: Threshold::for_rate(config.rate),
            budget: TokenBucket::new(config.traces_per_second),
        }
    }

    /// Like a tenant with `override_parent`: a sampled parent needs no forcing.
    pub(super) fn applies(&self, parent: Option<bool>) -> bool {
        parent != Some(true)
    }
}

// === impl Rule ===

impl Rule {
    pub(super) fn new(config: &SamplingRule) -> Self {
        Self {
            matches: Match::new(&config.matches),
            reservoir: config
                .reservoir_per_second
                .map(|n| TokenBucket::new(f64::from(n))),
        }
    }

    /// Whether `other` has the same criteria (the same rule, for a reload).
    pub(super) fn same_criteria(&self, other: &Rule) -> bool {
        self.matches == other.matches
    }

    /// Whether every criterion the rule gives holds for the request.
    pub(super) fn matches(&self, input: &Input<'_>) -> bool {
        self.matches.matches(input)
    }
}

// === impl Match ===

impl Match {
    fn new(config: &RuleMatch) -> Self {
        let owned = |s: &Option<String>| s.as_deref().map(Box::from);
        // Stored in the case requests usually carry, so that the exact comparison
        // tried first usually decides.
        let lower = |s: &str| Box::from(s.to_ascii_lowercase());
        Self {
            authority: config.authority.as_deref().map(lower),
            host: config.host.as_deref().map(|h| lower(unbracket(h))),
            method: config
                .method
                .as_deref()
                .map(|m| m.to_ascii_uppercase().into()),
            path_prefix: owned(&config.path_prefix),
            grpc_service: owned(&config.grpc_service),
            grpc_method: owned(&config.grpc_method),
        }
    }

    fn matches(&self, input: &Input<'_>) -> bool {
        let (authority, grpc) = (input.authority, input.grpc);
        // Cheapest criteria first: most rules are told apart by path or method.
        given(&self.path_prefix, |p| input.path.starts_with(p))
            && given(&self.method, |m| same_ignoring_case(input.method, m))
            && given(&self.grpc_service, |s| {
                grpc.is_some_and(|(got, _)| got == s)
            })
            && given(&self.grpc_method, |m| grpc.is_some_and(|(_, got)| got == m))
            && given(&self.authority, |a| {
                authority.is_some_and(|got| same_ignoring_case(got, a))
            })
            && given(&self.host, |h| {
                authority.is_some_and(|got| same_ignoring_case(host(got), h))
            })
    }
}

/// A criterion holds when the rule does not give it, or when `holds` says so.
fn given(criterion: &Option<Box<str>>, holds: impl FnOnce(&str) -> bool) -> bool {
    criterion.as_deref().is_none_or(holds)
}

/// ASCII case-insensitive equality; the exact comparison first is a `memcmp`.
fn same_ignoring_case(got: &str, want: &str) -> bool {
    got == want || got.eq_ignore_ascii_case(want)
}

/// The host of a `host[:port]` authority, IPv6 brackets removed (`[::1]:80` → `::1`).
pub(super) fn host(authority: &str) -> &str {
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split_once(']').map_or(authority, |(h, _)| h);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// A configured host with IPv6 brackets removed, to compare with [`host`].
fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}
