//! OpenTelemetry consistent probability sampling: a rejection threshold compared
//! with 56 random bits of the trace id.
//!
//! - Randomness (`rv`) is the trace id's least-significant 56 bits, which W3C Trace
//!   Context Level 2 requires to be random (§ "Randomness of trace-id"). An explicit
//!   `ot=rv:` value is not consulted: a root has none, and only roots and forced
//!   tenants decide by probability here.
//! - The rejection threshold (`th`) of probability `p` is `(1 - p) · 2^56`, rounded:
//!   how many of the 2^56 randomness values are dropped. A trace is kept iff
//!   `rv >= th` (OTel "TraceState: Probability Sampling", § Definitions and
//!   § "Testing randomness vs threshold"). `p = 1` gives `th = 0`; `p = 0` has no
//!   threshold ("never" is not probability sampling), nor has any `p < 2^-57`,
//!   which rounds to it.
//! - `th` is written as the 14 hex digits of the threshold with trailing zeros
//!   removed, `0` for zero; it is read by padding 1–14 hex digits with zeros back to
//!   14 (OTel "TraceState Handling", § "Sampling threshold value `th`"). Thresholds
//!   keep full 56-bit precision, so the `th` written is exactly the one decided
//!   with; the spec's table rounds to 3–5 digits (`1/3` → `aaab` at 4 digits),
//!   this writes `aaaaaaaaaaaaab`.
//!
//! Every sampler deciding with the same threshold keeps the same trace ids, and a
//! lower probability keeps a subset of what a higher one keeps: the decisions of
//! independent sidecars fit together into whole traces.

use std::fmt;

use crate::propagation::hex;
use crate::propagation::TraceId;

/// 2^56, the spec's `MaxAdjustedCount`: the number of distinct randomness values.
const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
/// A `th` value has at most 14 hex digits (56 bits).
const TH_DIGITS: usize = 14;

/// The 56-bit rejection threshold of OpenTelemetry consistent probability
/// sampling: randomness below it is dropped. It is what the caller propagates as
/// `ot=th:…` so that later stages know the probability a span was kept with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Threshold(u64);

/// The randomness a decision compares with a [`Threshold`]: the trace id's low 56
/// bits (the W3C Level 2 random bits), the same in every sidecar the trace crosses.
pub fn randomness(trace_id: TraceId) -> u64 {
    (trace_id.get() as u64) & (MAX_ADJUSTED_COUNT - 1)
}

// === impl Threshold ===

impl Threshold {
    /// The threshold that keeps `rate` of all traces; `None` when nothing is kept
    /// (rate 0, NaN, or below 2^-57). Rates above 1 keep everything.
    pub fn for_rate(rate: f64) -> Option<Threshold> {
        if rate >= 1.0 {
            return Some(Self(0));
        }
        if rate.is_nan() || rate <= 0.0 {
            return None;
        }
        // `rate · 2^56` is exact in f64 (a power-of-two scaling), so the one rounding
        // is the spec's; computing `1 - rate` first would drop the low bits of
        // small rates. Below 1, `kept` is at most 2^56 - 8.
        let kept = (rate * MAX_ADJUSTED_COUNT as f64).round() as u64;
        (kept > 0).then(|| Self(MAX_ADJUSTED_COUNT - kept))
    }

    /// The `th` value for the `ot` tracestate member: hex, trailing zeros removed,
    /// `0` for the threshold that keeps everything.
    pub fn to_th(&self) -> String {
        self.to_string()
    }

    /// Reads a `th` value: 1–14 hex digits (either case), extended with trailing
    /// zeros to 14. `None` for anything else, so a malformed `th` is dropped.
    pub fn parse_th(s: &str) -> Option<Threshold> {
        if s.len() > TH_DIGITS {
            return None;
        }
        let value = hex::parse_u64(s.as_bytes(), true)?;
        Some(Self(value << (4 * (TH_DIGITS - s.len()))))
    }

    /// The threshold as stored in an atomic (`Self::from_bits` reads it back).
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// A threshold stored with [`Self::to_bits`]; `None` for anything above
    /// 2^56 (the "keep nothing" marker `u64::MAX` among them).
    pub const fn from_bits(bits: u64) -> Option<Threshold> {
        if bits > MAX_ADJUSTED_COUNT {
            return None;
        }
        Some(Self(bits))
    }

    /// The probability this threshold keeps, in (0, 1].
    pub fn rate(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// Whether a trace with this `randomness` is kept: `randomness >= threshold`.
    pub fn accepts(&self, randomness: u64) -> bool {
        randomness >= self.0
    }
}

/// Formats as the `th` value, without allocating (`write!(out, "th:{threshold}")`).
impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut digits = [0u8; TH_DIGITS];
        hex::write(u128::from(self.0), &mut digits);
        let len = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&digits[..len]).unwrap_or("0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(rate: f64) -> String {
        Threshold::for_rate(rate).map_or_else(|| "none".into(), |t| t.to_th())
    }

    #[test]
    fn rate_one_is_threshold_zero() {
        assert_eq!(th(1.0), "0");
        assert_eq!(Threshold::parse_th("0"), Threshold::for_rate(1.0));
    }

    #[test]
    fn power_of_two_rates_are_one_digit_as_in_the_spec_table() {
        assert_eq!(th(0.5), "8");
        assert_eq!(th(0.25), "c");
        assert_eq!(th(0.125), "e");
        assert_eq!(th(0.0625), "f");
    }

    #[test]
    fn other_rates_keep_all_14_digits() {
        // (1 - p) · 2^56 rounded, for the f64 nearest p.
        assert_eq!(th(1.0 / 3.0), "aaaaaaaaaaaaac");
        assert_eq!(th(0.1), "e6666666666666");
        assert_eq!(th(0.01), "fd70a3d70a3d71");
    }

    #[test]
    fn spec_table_thresholds_are_these_rounded_to_their_precision() {
        // OTel "TraceState: Probability Sampling", § Algorithms: 1-in-N at
        // precision 3, 4 and 5 (more digits near 0).
        let table: [(f64, [&str; 3]); 8] = [
            (1.0 / 3.0, ["aab", "aaab", "aaaab"]),
            (0.2, ["ccd", "cccd", "ccccd"]),
            (0.1, ["e66", "e666", "e6666"]),
            (0.01, ["fd71", "fd70a", "fd70a4"]),
            (0.001, ["ffbe7", "ffbe77", "ffbe76d"]),
            (0.0001, ["fff972", "fff9724", "fff97247"]),
            (0.00001, ["ffff584", "ffff583a", "ffff583a5"]),
            (0.000001, ["ffffef4", "ffffef39", "ffffef391"]),
        ];
        for (rate, rounded) in table {
            let Some(Threshold(exact)) = Threshold::for_rate(rate) else {
                panic!("{rate} has a threshold");
            };
            for spec in rounded {
                let Some(Threshold(value)) = Threshold::parse_th(spec) else {
                    panic!("{spec} parses");
                };
                let half_digit = 1u64 << (4 * (TH_DIGITS - spec.len()) - 1);
                assert!(exact.abs_diff(value) <= half_digit, "{rate} vs {spec}");
            }
        }
    }

    #[test]
    fn spec_one_percent_example_parses_to_its_integer() {
        // "(1-0.01) * 2^56 ≈ 71337018784743424 = 0xfd70a400000000" → `fd70a4`.
        assert_eq!(
            Threshold::parse_th("fd70a4"),
            Some(Threshold(71_337_018_784_743_424))
        );
    }

    #[test]
    fn smallest_probability_is_two_to_the_minus_56() {
        assert_eq!(th(2f64.powi(-56)), "ffffffffffffff");
        assert_eq!(th(2f64.powi(-58)), "none");
    }

    #[test]
    fn rates_that_keep_nothing_have_no_threshold() {
        assert_eq!(th(0.0), "none");
        assert_eq!(th(-0.5), "none");
        assert_eq!(th(f64::NAN), "none");
    }

    #[test]
    fn rates_above_one_keep_everything() {
        assert_eq!(th(1.5), "0");
    }

    #[test]
    fn th_round_trips() {
        for rate in [1.0, 0.75, 0.5, 1.0 / 3.0, 0.1, 0.01, 1e-9, 2f64.powi(-56)] {
            let threshold = Threshold::for_rate(rate);
            let th = threshold.map(|t| t.to_th());
            assert_eq!(th.as_deref().and_then(Threshold::parse_th), threshold);
        }
    }

    #[test]
    fn th_is_padded_with_trailing_zeros() {
        assert_eq!(
            Threshold::parse_th("8"),
            Threshold::parse_th("80000000000000")
        );
        assert_eq!(Threshold::parse_th("c"), Threshold::for_rate(0.25));
    }

    #[test]
    fn th_accepts_upper_case_digits() {
        assert_eq!(Threshold::parse_th("FD70A4"), Threshold::parse_th("fd70a4"));
    }

    #[test]
    fn malformed_th_is_rejected() {
        for bad in [
            "",
            "800000000000000",
            "g",
            "+8",
            "0x8",
            " 8",
            "8 ",
            "-1",
            "8;",
        ] {
            assert_eq!(Threshold::parse_th(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn threshold_accepts_randomness_at_or_above_it() {
        let half = Threshold::for_rate(0.5).unwrap();
        assert!(half.accepts(0x80_0000_0000_0000));
        assert!(half.accepts(0xff_ffff_ffff_ffff));
        assert!(!half.accepts(0x7f_ffff_ffff_ffff));
        assert!(Threshold::for_rate(1.0).unwrap().accepts(0));
    }

    #[test]
    fn randomness_is_the_low_56_bits_of_the_trace_id() {
        let id = TraceId::new(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736).unwrap();
        assert_eq!(randomness(id), 0xce_929d_0e0e_4736);
    }
}
