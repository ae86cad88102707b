//! What one route does, resolved: a rule (or the default route) with its tier's
//! defaults filled in. The sidecar's sampler, `explain` and the validation all
//! read routes through [`Sampling::route`], so they cannot disagree on which
//! setting wins:
//!
//! - the rate: the route's `rate` (fixed), else its `target_traces_per_second`
//!   (adaptive), else its tier's target (adaptive), else — the default route
//!   only — `default_rate`;
//! - the tier: the route's own, else the workload's (`sampling.tier`);
//! - floor and ceiling: the route's, else the tier's, else 0.00001 and 1;
//! - tail keep: `sampling.tail` and the tier's together (either one keeps);
//! - the boost: the route's, else the tier's.

use std::collections::BTreeMap;

use super::{Boost, Sampling, SamplingRule, TailKeep, Tier, DEFAULT_MIN_RATE};

/// The default route's name (a rule may not take it).
pub const DEFAULT_ROUTE: &str = "default";

/// How a route's probability is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateMode {
    /// A fixed probability.
    Fixed(f64),
    /// Adjusted so that about `traces_per_second` root traces a second are kept,
    /// within `min_rate..=max_rate`.
    Target {
        /// The route's target, fleet-wide.
        traces_per_second: f64,
        /// The floor.
        min_rate: f64,
        /// The ceiling.
        max_rate: f64,
    },
}

/// One route, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutePolicy {
    /// The rule's `name`, `rules[<index>]`, or [`DEFAULT_ROUTE`].
    pub name: String,
    /// Fixed or adaptive.
    pub rate: RateMode,
    /// The rule's reservoir.
    pub reservoir_per_second: Option<u32>,
    /// The tier in force, if any.
    pub tier: Option<String>,
    /// Tail keep for the route's requests.
    pub tail: TailKeep,
    /// The route's boost, if any.
    pub boost: Option<Boost>,
}

/// The built-in tiers: what `critical`, `standard` and `background` mean until
/// `sampling.tiers` says otherwise.
pub fn builtin_tiers() -> BTreeMap<String, Tier> {
    let boost = |error_ratio: f64, rate: f64, traces_per_second: f64| Boost {
        error_ratio: Some(error_ratio),
        latency: None,
        window: crate::Duration::from_secs(30),
        min_requests: 20,
        rate,
        traces_per_second,
        duration: crate::Duration::from_secs(300),
        decay: crate::Duration::from_secs(60),
    };
    BTreeMap::from([
        (
            "critical".to_owned(),
            Tier {
                target_traces_per_second: 10.0,
                min_rate: 0.001,
                max_rate: 1.0,
                tail: TailKeep {
                    errors: true,
                    slow: Some(crate::Duration::from_secs(1)),
                },
                boost: Some(boost(0.05, 1.0, 100.0)),
            },
        ),
        (
            "standard".to_owned(),
            Tier {
                target_traces_per_second: 2.0,
                min_rate: 0.0001,
                max_rate: 1.0,
                tail: TailKeep {
                    errors: true,
                    slow: None,
                },
                boost: Some(boost(0.1, 0.5, 20.0)),
            },
        ),
        (
            "background".to_owned(),
            Tier {
                target_traces_per_second: 0.2,
                min_rate: DEFAULT_MIN_RATE,
                max_rate: 1.0,
                tail: TailKeep::default(),
                boost: None,
            },
        ),
    ])
}

impl Sampling {
    /// The tier called `name`: `sampling.tiers`, else a built-in one.
    pub fn tier_named(&self, name: &str) -> Option<Tier> {
        self.tiers
            .get(name)
            .cloned()
            .or_else(|| builtin_tiers().remove(name))
    }

    /// Every tier name a route may use, sorted.
    pub fn tier_names(&self) -> Vec<String> {
        let mut names: Vec<String> = builtin_tiers().into_keys().collect();
        names.extend(self.tiers.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// Rule `index` resolved (`None` past the end).
    pub fn route(&self, index: usize) -> Option<RoutePolicy> {
        let rule = self.rules.get(index)?;
        let name = rule
            .name
            .clone()
            .unwrap_or_else(|| format!("rules[{index}]"));
        Some(self.resolve(rule, name, None))
    }

    /// The default route resolved: requests no rule matches.
    pub fn default_route(&self) -> RoutePolicy {
        let empty = SamplingRule::default();
        let rule = self.default.as_ref().unwrap_or(&empty);
        self.resolve(rule, DEFAULT_ROUTE.to_owned(), Some(self.default_rate))
    }

    /// Every route: the rules in order, then the default.
    pub fn routes(&self) -> Vec<RoutePolicy> {
        (0..self.rules.len())
            .filter_map(|i| self.route(i))
            .chain(std::iter::once(self.default_route()))
            .collect()
    }

    fn resolve(&self, rule: &SamplingRule, name: String, fallback: Option<f64>) -> RoutePolicy {
        let tier_name = rule.tier.clone().or_else(|| self.tier.clone());
        let tier = tier_name.as_deref().and_then(|t| self.tier_named(t));
        let min_rate = rule
            .min_rate
            .or(tier.as_ref().map(|t| t.min_rate))
            .unwrap_or(DEFAULT_MIN_RATE);
        let max_rate = rule
            .max_rate
            .or(tier.as_ref().map(|t| t.max_rate))
            .unwrap_or(1.0);
        let target = rule
            .target_traces_per_second
            .or(tier.as_ref().map(|t| t.target_traces_per_second));
        let rate = match (rule.rate, target) {
            (Some(rate), _) => RateMode::Fixed(rate),
            (None, Some(traces_per_second)) => RateMode::Target {
                traces_per_second,
                min_rate,
                max_rate,
            },
            // A rule without either fails validation; it would keep nothing.
            (None, None) => RateMode::Fixed(fallback.unwrap_or(0.0)),
        };
        let tier_tail = tier.as_ref().map(|t| t.tail.clone()).unwrap_or_default();
        let slow = match (self.tail.slow, tier_tail.slow) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        RoutePolicy {
            name,
            rate,
            reservoir_per_second: rule.reservoir_per_second,
            tier: tier.is_some().then_some(tier_name).flatten(),
            tail: TailKeep {
                errors: self.tail.errors || tier_tail.errors,
                slow,
            },
            boost: rule.boost.clone().or_else(|| tier.and_then(|t| t.boost)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn sampling(text: &str) -> Sampling {
        match Config::from_yaml_str(text, "test.yaml") {
            Ok(c) => c.sampling,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn default_route_is_default_rate_until_something_says_more() {
        let s = sampling("sampling: {default_rate: 0.25}\n");
        assert_eq!(s.default_route().rate, RateMode::Fixed(0.25));
        assert_eq!(s.default_route().name, "default");
        let s =
            sampling("sampling: {default_rate: 0.25, default: {target_traces_per_second: 3}}\n");
        assert!(matches!(
            s.default_route().rate,
            RateMode::Target { traces_per_second, .. } if traces_per_second == 3.0
        ));
    }

    #[test]
    fn the_workload_tier_fills_what_a_route_leaves_open() {
        let s = sampling(
            "sampling:\n  tier: critical\n  rules:\n    - {name: api, match: {path_prefix: /api/}, rate: 0.5}\n",
        );
        let api = s.route(0);
        let api = api.as_ref();
        assert_eq!(api.map(|r| r.rate), Some(RateMode::Fixed(0.5)));
        assert_eq!(api.map(|r| r.tail.errors), Some(true));
        assert!(api.is_some_and(|r| r.boost.is_some()));
        assert!(matches!(
            s.default_route().rate,
            RateMode::Target { traces_per_second, min_rate, .. }
                if traces_per_second == 10.0 && min_rate == 0.001
        ));
    }

    #[test]
    fn a_configured_tier_replaces_the_builtin_one() {
        let s = sampling(
            "sampling:\n  tier: background\n  tiers:\n    background: {target_traces_per_second: 0.5}\n",
        );
        assert!(matches!(
            s.default_route().rate,
            RateMode::Target { traces_per_second, .. } if traces_per_second == 0.5
        ));
    }

    #[test]
    fn unnamed_rules_are_named_by_index() {
        let s = sampling("sampling:\n  rules:\n    - {match: {method: GET}, rate: 1}\n    - {name: writes, rate: 0.1}\n");
        let names: Vec<String> = s.routes().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["rules[0]", "writes", "default"]);
    }
}
