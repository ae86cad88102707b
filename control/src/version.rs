//! Config versions derived from content.
//!
//! The published version is a function of the effective state only (the base
//! document, the stage assignments, the active overrides and the fleet
//! switches), never a counter:
//! every replica holding the same source file and the same stored state
//! publishes the same version, so a sidecar that reconnects to another replica
//! sees the same config under the same version, and a restart does not change
//! it. Versions identify a state; they do not order states (going back to an
//! earlier state gives back its version). Compare them for equality only.
//!
//! The value fits in 53 bits, so JavaScript and `jq` read it exactly, and is
//! never 0.

use serde::Serialize;
use serde_json::Value;

use crate::overrides::Override;
use crate::source::fnv1a;
use crate::stages::StageAssignment;
use crate::switches::Switches;

/// The largest version (2^53 - 1).
pub const MAX: u64 = (1 << 53) - 1;

#[derive(Serialize)]
struct Content<'a> {
    document: &'a Value,
    stages: &'a [StageAssignment],
    overrides: &'a [Override],
    /// Left out when none is set, so states without switches keep their versions.
    #[serde(skip_serializing_if = "Switches::is_default")]
    switches: &'a Switches,
}

/// The version of a state: a 53-bit hash of its canonical JSON (object keys
/// sorted, as `serde_json` keeps them).
pub fn of(
    document: &Value,
    stages: &[StageAssignment],
    overrides: &[Override],
    switches: &Switches,
) -> u64 {
    let content = Content {
        document,
        stages,
        overrides,
        switches,
    };
    let bytes = serde_json::to_vec(&content).unwrap_or_default();
    // FNV-1a mixes upwards only; the finaliser spreads every input bit over the
    // 53 bits kept.
    let hash = mix(fnv1a(&bytes)) >> 11;
    hash.max(1)
}

/// MurmurHash3's 64-bit finaliser.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn same_content_same_version_and_53_bits() {
        let none = Switches::default();
        let doc = json!({"defaults": {"sampling": {"default_rate": 0.1}}, "a": [1, 2]});
        let again = json!({"a": [1, 2], "defaults": {"sampling": {"default_rate": 0.1}}});
        let v = of(&doc, &[], &[], &none);
        assert_eq!(v, of(&again, &[], &[], &none), "key order does not matter");
        assert!((1..=MAX).contains(&v), "{v}");
        let other = json!({"defaults": {"sampling": {"default_rate": 0.2}}, "a": [1, 2]});
        assert_ne!(v, of(&other, &[], &[], &none));
    }

    #[test]
    fn a_known_state_has_a_fixed_version() {
        let none = Switches::default();
        // Pinned: a different value would mean replicas built from different
        // commits disagree on versions for the same state.
        assert_eq!(
            of(&json!({}), &[], &[], &none),
            of(&json!({}), &[], &[], &none)
        );
        assert_eq!(of(&json!({}), &[], &[], &none), 6_920_691_908_913_452);
    }

    #[test]
    fn boosts_off_is_another_version() {
        let none = Switches::default();
        let off = Switches {
            boosts_off_since: Some(crate::timestamp::Timestamp(std::time::UNIX_EPOCH)),
        };
        assert_ne!(
            of(&json!({}), &[], &[], &none),
            of(&json!({}), &[], &[], &off)
        );
    }
}
