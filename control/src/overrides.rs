//! Incident overrides: temporary sampling changes with an expiry.
//!
//! * A **service** override sets `sampling.forced_workload = {rate,
//!   traces_per_second}` for the workloads of that service: each of their
//!   requests is sampled at `rate` even when the caller said "not sampled", up to
//!   the budget (default [`DEFAULT_TRACES_PER_SECOND`]); beyond it the normal
//!   decision applies. `default_rate` and `rules` are left alone.
//! * A **tenant** override adds (or replaces) the `sampling.forced_tenants` entry
//!   `{tenant, rate, traces_per_second, override_parent: true}` in every workload.
//!
//! # Scope
//!
//! With `namespace`, a service override applies to that service in that namespace
//! only, and a tenant override to the workloads of that namespace only. At most one
//! active override exists per target — (kind, name, namespace) — so adding a
//! second one is a conflict; change the first in place (`PATCH`, see [`change`]).
//! `checkout` and `checkout` in `shop` are different targets and may both be active.
//!
//! # Order
//!
//! Every active override that concerns a workload applies, after the document's
//! sections and stage assignments ([`crate::resolve`]): unscoped overrides first,
//! then namespace-scoped ones, each group in creation order ([`in_order`]). A later
//! one replaces the same field: a tenant override replaces that tenant's
//! `forced_tenants` entry, a service override sets `sampling.forced_workload`. So
//! the namespace-scoped override wins over the unscoped one of the same name, and
//! overrides of different targets all hold at once.
//!
//! # Lifetime
//!
//! An override is given `for` (a duration) or `expires_at`, at most the server's
//! `--max-override-duration` (default [`DEFAULT_MAX_DURATION`]) from now; the same
//! limit holds whenever its expiry is changed. It is removed, and the change pushed,
//! when it expires.

pub mod change;

use std::time::{Duration, SystemTime};

use meshtrace_config::{Config, ForcedTenant, ForcedWorkload};
use serde::{Deserialize, Serialize};

pub use self::change::OverrideChange;
use crate::timestamp::human;
pub use crate::timestamp::Timestamp;
use crate::workload::Workload;

/// Forced-trace budget when an override does not give one.
pub const DEFAULT_TRACES_PER_SECOND: f64 = 100.0;

/// The longest an override may last when the server is not told otherwise: an
/// incident setting forgotten for a day is the limit of what is safe to leave on.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// An active incident override (the resource of `/v1/overrides`).
///
/// Unknown fields are ignored when it is read, so a client keeps working when the
/// server adds one (e.g. `warnings` on creation).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Override {
    /// Its id (`ovr-` + random hex), for `PATCH` and `DELETE /v1/overrides/{id}`.
    pub id: String,
    /// The service it applies to (exactly one of `service` and `tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The tenant it forces sampling for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Only workloads of this namespace (unset: every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The sampling rate, in [0, 1].
    pub rate: f64,
    /// The forced-trace budget per second (unset: the default).
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
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The rate, in [0, 1].
    pub rate: f64,
    /// The budget (default 100 forced traces per second).
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

/// The answer to `POST /v1/overrides`: the override's own fields, plus `warnings`
/// when the server accepted it but has something to say (omitted when empty).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Created {
    /// The override.
    #[serde(flatten)]
    pub created: Override,
    /// E.g. that no known workload has the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The overrides in the order they are applied: unscoped first, then
/// namespace-scoped, each in creation order.
pub fn in_order(overrides: &[Override]) -> impl Iterator<Item = &Override> {
    let unscoped = overrides.iter().filter(|o| o.namespace.is_none());
    unscoped.chain(overrides.iter().filter(|o| o.namespace.is_some()))
}

// === impl Override ===

impl Override {
    /// Applies it to `config` if it concerns `workload`; returns whether it did.
    pub fn apply(&self, config: &mut Config, workload: &Workload) -> bool {
        if let Some(ns) = &self.namespace {
            if workload.namespace.as_deref() != Some(ns.as_str()) {
                return false;
            }
        }
        let traces_per_second = self.traces_per_second.unwrap_or(DEFAULT_TRACES_PER_SECOND);
        if let Some(service) = &self.service {
            if workload.service.as_deref() != Some(service.as_str()) {
                return false;
            }
            config.sampling.forced_workload = Some(ForcedWorkload {
                rate: self.rate,
                traces_per_second,
            });
            return true;
        }
        if let Some(tenant) = &self.tenant {
            let forced = &mut config.sampling.forced_tenants;
            forced.retain(|t| &t.tenant != tenant);
            forced.push(ForcedTenant {
                tenant: tenant.clone(),
                rate: self.rate,
                override_parent: true,
                traces_per_second,
            });
            return true;
        }
        false
    }

    /// Whether `other` has the same target: kind, name and namespace.
    pub fn same_target(&self, other: &Override) -> bool {
        let same_name = (self.service.is_some() && self.service == other.service)
            || (self.tenant.is_some() && self.tenant == other.tenant);
        same_name && self.namespace == other.namespace
    }

    /// The target for messages: `service "checkout" in namespace "shop"`.
    pub fn target(&self) -> String {
        let mut target = match (&self.service, &self.tenant) {
            (Some(s), _) => format!("service {s:?}"),
            (None, Some(t)) => format!("tenant {t:?}"),
            (None, None) => "nothing".into(),
        };
        if let Some(ns) = &self.namespace {
            target.push_str(&format!(" in namespace {ns:?}"));
        }
        target
    }
}

// === impl NewOverride ===

impl NewOverride {
    /// Checks the request and builds the override, created at `now` and lasting at
    /// most `max`.
    pub fn build(self, now: SystemTime, max: Duration) -> Result<Override, String> {
        let nonempty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        match (nonempty(&self.service), nonempty(&self.tenant)) {
            (true, false) | (false, true) => {}
            _ => return Err("give exactly one of `service` and `tenant`".into()),
        }
        if self.namespace.is_some() && !nonempty(&self.namespace) {
            return Err("`namespace` must not be empty (leave it out for every namespace)".into());
        }
        check_rate(self.rate)?;
        let traces_per_second = self.traces_per_second.unwrap_or(DEFAULT_TRACES_PER_SECOND);
        check_budget(traces_per_second)?;
        let expires_at = match (self.duration, self.expires_at) {
            (Some(d), None) => Timestamp(now + parse_duration("for", &d)?),
            (None, Some(at)) => at,
            _ => return Err("give exactly one of `for` and `expires_at`".into()),
        };
        check_expiry(expires_at, now, max)?;
        Ok(Override {
            id: format!("ovr-{:016x}", fastrand::u64(..)),
            service: self.service,
            tenant: self.tenant,
            namespace: self.namespace,
            rate: self.rate,
            traces_per_second: Some(traces_per_second),
            expires_at,
            created_at: Timestamp(now),
            reason: self.reason,
        })
    }
}

// === validation shared with `change` ===

fn check_rate(rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("`rate` must be in [0, 1], got {rate}"))
    }
}

fn check_budget(tps: f64) -> Result<(), String> {
    if tps.is_finite() && tps > 0.0 {
        Ok(())
    } else {
        Err(format!("`traces_per_second` must be positive, got {tps}"))
    }
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid `{field}` {text:?} ({e}); write it like 30m or 2h"))
}

/// An expiry must be in the future and at most `max` from now.
fn check_expiry(expires_at: Timestamp, now: SystemTime, max: Duration) -> Result<(), String> {
    let lasts = match expires_at.0.duration_since(now) {
        Ok(lasts) if !lasts.is_zero() => lasts,
        _ => {
            return Err(format!(
                "the override would expire at {expires_at}, which is not in the future"
            ))
        }
    };
    if lasts > max {
        return Err(format!(
            "the override would last until {expires_at} ({} from now); overrides last at most {} (serve --max-override-duration)",
            human(lasts),
            human(max)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
