//! Incident overrides: temporary sampling changes with an expiry.
//!
//! * A **service** override sets, for every workload of that service,
//!   `sampling.default_rate` and every `sampling.rules[*].rate` to its rate and
//!   removes the rules' reservoirs (so the rate is exactly what the operator asked).
//! * A **tenant** override adds (or replaces) a `sampling.forced_tenants` entry
//!   `{tenant, rate, traces_per_second, override_parent: true}` in every workload.
//!
//! Overrides are applied in creation order, after the document is merged. At most
//! one active override exists per service and per tenant: adding a second one is a
//! conflict (remove the first, then add), so "which one wins" never needs an answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshtrace_config::{Config, ForcedTenant};
use serde::{Deserialize, Serialize};

use crate::resolve::Workload;

/// Forced-tenant budget when a tenant override does not give one.
pub const DEFAULT_TRACES_PER_SECOND: f64 = 100.0;

/// An active incident override.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Its id (`ovr-` + random hex), for `DELETE /v1/overrides/{id}`.
    pub id: String,
    /// The service it applies to (exactly one of `service` and `tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The tenant it forces sampling for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The sampling rate, in [0, 1].
    pub rate: f64,
    /// Tenant overrides: the forced-trace budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces_per_second: Option<f64>,
    /// When it stops applying.
    pub expires_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// Why (free text, for the incident log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /v1/overrides`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    /// A service (exactly one of `service` and `tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The rate, in [0, 1].
    pub rate: f64,
    /// Tenant overrides: the budget (default 100 traces per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces_per_second: Option<f64>,
    /// How long it lasts, e.g. `30m` (exactly one of `for` and `expires_at`).
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// When it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A wall-clock instant: written as RFC 3339 (UTC, milliseconds), read from RFC
/// 3339 or from unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

// === impl Override ===

impl Override {
    /// Applies it to `config` if it concerns `workload`; returns whether it did.
    pub fn apply(&self, config: &mut Config, workload: &Workload) -> bool {
        if let Some(service) = &self.service {
            if workload.service.as_deref() != Some(service.as_str()) {
                return false;
            }
            let s = &mut config.sampling;
            s.default_rate = self.rate;
            for rule in &mut s.rules {
                rule.rate = self.rate;
                rule.reservoir_per_second = None;
            }
            return true;
        }
        if let Some(tenant) = &self.tenant {
            let forced = &mut config.sampling.forced_tenants;
            forced.retain(|t| &t.tenant != tenant);
            forced.push(ForcedTenant {
                tenant: tenant.clone(),
                rate: self.rate,
                override_parent: true,
                traces_per_second: self.traces_per_second.unwrap_or(DEFAULT_TRACES_PER_SECOND),
            });
            return true;
        }
        false
    }

    /// Whether `other` targets the same service or tenant.
    pub fn same_target(&self, other: &Override) -> bool {
        (self.service.is_some() && self.service == other.service)
            || (self.tenant.is_some() && self.tenant == other.tenant)
    }
}

// === impl NewOverride ===

impl NewOverride {
    /// Checks the request and builds the override, created at `now`.
    pub fn build(self, now: SystemTime) -> Result<Override, String> {
        let nonempty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        match (nonempty(&self.service), nonempty(&self.tenant)) {
            (true, false) | (false, true) => {}
            _ => return Err("give exactly one of `service` and `tenant`".into()),
        }
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!("`rate` must be in [0, 1], got {}", self.rate));
        }
        if let Some(tps) = self.traces_per_second {
            if self.service.is_some() {
                return Err("`traces_per_second` applies to tenant overrides only".into());
            }
            if !(tps.is_finite() && tps > 0.0) {
                return Err(format!("`traces_per_second` must be positive, got {tps}"));
            }
        }
        let expires_at = match (self.duration, self.expires_at) {
            (Some(d), None) => {
                let d = humantime::parse_duration(d.trim())
                    .map_err(|e| format!("invalid `for` {d:?} ({e}); write it like 30m or 2h"))?;
                Timestamp(now + d)
            }
            (None, Some(at)) => at,
            _ => return Err("give exactly one of `for` and `expires_at`".into()),
        };
        if expires_at.0 <= now {
            return Err(format!(
                "the override would expire at {expires_at}, which is not in the future"
            ));
        }
        Ok(Override {
            id: format!("ovr-{:016x}", fastrand::u64(..)),
            service: self.service,
            tenant: self.tenant,
            rate: self.rate,
            traces_per_second: self.traces_per_second,
            expires_at,
            created_at: Timestamp(now),
            reason: self.reason,
        })
    }
}

// === impl Timestamp ===

impl Timestamp {
    /// Milliseconds since the unix epoch (0 before it).
    pub fn unix_ms(self) -> u64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            UnixMs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::UnixMs(ms) => Ok(Self(UNIX_EPOCH + Duration::from_millis(ms))),
            Raw::Text(s) => humantime::parse_rfc3339_weak(s.trim())
                .map(Self)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid timestamp {s:?} ({e}); use RFC 3339 (2025-01-31T12:00:00Z) or unix milliseconds"
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use meshtrace_config::{RuleMatch, SamplingRule};

    use super::*;

    fn new(service: Option<&str>, tenant: Option<&str>) -> NewOverride {
        NewOverride {
            service: service.map(Into::into),
            tenant: tenant.map(Into::into),
            rate: 1.0,
            duration: Some("30m".into()),
            ..NewOverride::default()
        }
    }

    #[test]
    fn service_override_sets_every_rate_and_drops_reservoirs() {
        let o = new(Some("checkout"), None)
            .build(SystemTime::now())
            .unwrap();
        let mut c = Config::default();
        c.sampling.rules.push(SamplingRule {
            matches: RuleMatch::default(),
            rate: 0.1,
            reservoir_per_second: Some(5),
        });
        let w = Workload {
            service: Some("checkout".into()),
            ..Workload::default()
        };
        assert!(o.apply(&mut c, &w));
        assert_eq!(c.sampling.default_rate, 1.0);
        assert_eq!(c.sampling.rules[0].rate, 1.0);
        assert_eq!(c.sampling.rules[0].reservoir_per_second, None);
        let other = Workload {
            service: Some("cart".into()),
            ..Workload::default()
        };
        assert!(!o.apply(&mut Config::default(), &other));
    }

    #[test]
    fn tenant_override_replaces_the_forced_tenant_entry() {
        let o = new(None, Some("acme")).build(SystemTime::now()).unwrap();
        let mut c = Config::default();
        c.sampling.forced_tenants.push(ForcedTenant {
            tenant: "acme".into(),
            rate: 0.1,
            override_parent: false,
            traces_per_second: 1.0,
        });
        assert!(o.apply(&mut c, &Workload::default()));
        assert_eq!(c.sampling.forced_tenants.len(), 1);
        let t = &c.sampling.forced_tenants[0];
        assert_eq!(
            (t.rate, t.override_parent, t.traces_per_second),
            (1.0, true, 100.0)
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let now = SystemTime::now();
        assert!(new(Some("a"), Some("b")).build(now).is_err());
        assert!(new(None, None).build(now).is_err());
        assert!(NewOverride {
            rate: 1.5,
            ..new(Some("a"), None)
        }
        .build(now)
        .is_err());
        assert!(NewOverride {
            duration: Some("soon".into()),
            ..new(Some("a"), None)
        }
        .build(now)
        .is_err());
        assert!(NewOverride {
            duration: None,
            ..new(Some("a"), None)
        }
        .build(now)
        .is_err());
    }

    #[test]
    fn timestamps_read_rfc3339_and_unix_ms() {
        let a: Timestamp = serde_json::from_str("\"2025-01-31T12:00:00Z\"").unwrap();
        let b: Timestamp = serde_json::from_str("1738324800000").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"2025-01-31T12:00:00.000Z\""
        );
    }
}
