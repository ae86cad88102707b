//! Fleet-wide switches an operator sets through the API, kept and replicated
//! with the overrides: today one, **boosts off** (`meshtrace-control boost
//! off`, `PUT /v1/boosts {"enabled": false}`).
//!
//! While boosts are off, every sidecar's resolved config has
//! `sampling.adaptive.boosts: false` whatever the document says (applied last,
//! after the overrides), so a running boost ends and none starts; the change is
//! a new config version, pushed to every connected sidecar at once. Turning
//! them on again removes the switch: each workload gets back what its document
//! sections say.

use meshtrace_config::Config;
use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// The switches in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Switches {
    /// Since when boosts are off fleet-wide (`None`: as the document says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boosts_off_since: Option<Timestamp>,
}

/// `PUT /v1/boosts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoostsRequest {
    /// `false`: boosts off on every sidecar; `true`: as the document says.
    pub enabled: bool,
}

/// `GET` and `PUT /v1/boosts`: the fleet switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct BoostsState {
    /// Whether sidecars may boost (as their config says); `false`: off everywhere.
    pub enabled: bool,
    /// When they were turned off.
    #[serde(default)]
    pub off_since: Option<Timestamp>,
    /// The config version in force.
    pub version: u64,
}

// === impl Switches ===

impl Switches {
    /// No switch set.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether boosts are on (as the documents say).
    pub fn boosts_enabled(&self) -> bool {
        self.boosts_off_since.is_none()
    }

    /// Applies the switches to a resolved config; returns whether it changed.
    pub fn apply(&self, config: &mut Config) -> bool {
        let adaptive = &mut config.sampling.adaptive;
        if self.boosts_off_since.is_some() && adaptive.boosts {
            adaptive.boosts = false;
            return true;
        }
        false
    }
}
