//! Small value types shared by the schema: durations written as `250ms` / `1s` /
//! `2m`, and `host:port` authorities for upstream targets.
//!
//! Each parses from a YAML string through `TryFrom<String>`, so a malformed value is
//! a parse error that serde_yaml reports with its line and column.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A duration written the human way (`250ms`, `1s`, `1m30s`, `0s`).
///
/// A plain integer is rejected on purpose: "is `30` seconds or milliseconds?" is the
/// classic config bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration(std::time::Duration);

// === impl Duration ===

impl Duration {
    /// A duration of `secs` seconds, for defaults written in code.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds, for defaults written in code.
    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    /// The standard-library duration the runtime uses.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whether this is zero, which the schema uses to mean "disabled" where it says so.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl TryFrom<String> for Duration {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        humantime::parse_duration(s.trim())
            .map(Self)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 250ms, 5s or 1m"))
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        humantime::format_duration(d.0).to_string()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

/// An upstream written as `host:port`: an IP literal (`127.0.0.1:8080`,
/// `[::1]:8080`) or a DNS name resolved at connect time (`reviews.default.svc:9080`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    host: String,
    port: u16,
}

// === impl HostPort ===

impl HostPort {
    /// The host part, without brackets for IPv6 literals.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address when the host is an IP literal (no DNS needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl TryFrom<String> for HostPort {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let bad = || format!("invalid address {s:?}: expected host:port, e.g. 127.0.0.1:8080");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_name || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl From<HostPort> for String {
    fn from(hp: HostPort) -> String {
        hp.to_string()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            Duration::try_from("250ms".to_string()),
            Ok(Duration::from_millis(250))
        );
        assert!(Duration::try_from("30".to_string()).is_err());
    }

    #[test]
    fn host_port_accepts_ip_literals_and_dns_names() {
        let v6 = HostPort::try_from("[::1]:80".to_string()).unwrap();
        assert_eq!(v6.socket_addr(), Some("[::1]:80".parse().unwrap()));
        assert_eq!(v6.to_string(), "[::1]:80");
        let name = HostPort::try_from("Reviews.default.svc:9080".to_string()).unwrap();
        assert_eq!(name.host(), "reviews.default.svc");
        assert_eq!(name.socket_addr(), None);
    }

    #[test]
    fn host_port_rejects_missing_port_and_bad_names() {
        for bad in [
            "reviews",
            "reviews:",
            "reviews:0",
            "re views:80",
            ":80",
            "a..b:80",
        ] {
            assert!(HostPort::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
