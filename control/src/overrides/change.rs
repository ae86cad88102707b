//! Changing an active override in place (`PATCH /v1/overrides/{id}`).
//!
//! During an incident the rate or budget needs tuning, or the incident outlasts
//! the override: changing it in place keeps its id, its creation time and its
//! place in the application order, and never leaves a moment without it (removing
//! and re-adding would). Every change is checked like a creation: the rate range,
//! a positive budget, and an expiry in the future and at most the server's maximum
//! duration from now.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{check_budget, check_expiry, check_rate, parse_duration, Override, Timestamp};

/// The body of `PATCH /v1/overrides/{id}`: every field is optional, at least one
/// is given, and at most one of `for`, `extend` and `expires_at`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideChange {
    /// A new rate, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// A new budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces_per_second: Option<f64>,
    /// A new expiry: now + this duration (`30m`).
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// A new expiry: the current expiry + this duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend: Option<String>,
    /// A new expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// A new reason (empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// === impl OverrideChange ===

impl OverrideChange {
    /// `current` with this change, as of `now`, lasting at most `max` from now.
    pub fn apply_to(
        &self,
        current: &Override,
        now: SystemTime,
        max: Duration,
    ) -> Result<Override, String> {
        if *self == Self::default() {
            return Err(
                "nothing to change: give `rate`, `traces_per_second`, `for`, `extend`, `expires_at` or `reason`"
                    .into(),
            );
        }
        let mut next = current.clone();
        if let Some(rate) = self.rate {
            check_rate(rate)?;
            next.rate = rate;
        }
        if let Some(tps) = self.traces_per_second {
            check_budget(tps)?;
            next.traces_per_second = Some(tps);
        }
        let expires_at = match (&self.duration, &self.extend, self.expires_at) {
            (None, None, None) => None,
            (Some(d), None, None) => Some(Timestamp(now + parse_duration("for", d)?)),
            (None, Some(d), None) => Some(Timestamp(
                current.expires_at.0 + parse_duration("extend", d)?,
            )),
            (None, None, Some(at)) => Some(at),
            _ => return Err("give at most one of `for`, `extend` and `expires_at`".into()),
        };
        // The limit holds for a new expiry; a rate change alone never fails on it
        // (the server may have been restarted with a smaller maximum).
        if let Some(at) = expires_at {
            check_expiry(at, now, max)?;
            next.expires_at = at;
        }
        if let Some(reason) = &self.reason {
            next.reason = (!reason.trim().is_empty()).then(|| reason.clone());
        }
        Ok(next)
    }
}
