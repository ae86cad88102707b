//! Wall-clock instants on the API and in the state file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A wall-clock instant: written as RFC 3339 (UTC, milliseconds), read from RFC
/// 3339 or from unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

/// A duration as an operator writes it on the command line, to the second
/// (`24h`, `1h30m`, `45s`).
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
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
    use super::*;

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

    #[test]
    fn human_durations_read_like_the_command_line() {
        assert_eq!(human(Duration::from_millis(30 * 3600 * 1000 + 999)), "30h");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_millis(10)), "0s");
        let text = human(Duration::from_secs(90061));
        assert_eq!(humantime::parse_duration(&text).unwrap().as_secs(), 90061);
    }
}
