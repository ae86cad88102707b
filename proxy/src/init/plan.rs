//! What the init step is asked to do, as typed values: the ports, the sidecar's
//! identity and the exclusions, parsed from the command line once so that rule
//! generation ([`super::rules`]) never sees a malformed port or CIDR.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The health port the kubelet probes: never redirected inbound, so readiness
/// reflects the sidecar itself rather than whatever listens on 15006.
pub const HEALTH_PORT: u16 = 15021;

/// The metrics port Prometheus scrapes: never redirected inbound, so a scrape
/// reaches the sidecar's `/metrics` rather than the app behind 15006.
pub const METRICS_PORT: u16 = 15020;

/// The inbound ports every pod excludes, whatever its flags say, in rule order.
pub const ALWAYS_EXCLUDED_INBOUND: [u16; 2] = [HEALTH_PORT, METRICS_PORT];

/// The redirect rules a pod gets, before they are written for one IP family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where the app's outbound TCP is redirected (the sidecar's outbound listener).
    pub outbound_port: u16,
    /// Where inbound TCP is redirected (the sidecar's inbound listener).
    pub inbound_port: u16,
    /// The sidecar's uid: its own connections are never redirected outbound.
    pub proxy_uid: u32,
    /// The sidecar's gid, exempt like its uid.
    pub proxy_gid: u32,
    /// Destination ports the app reaches directly, bypassing the sidecar.
    pub exclude_outbound_ports: Vec<u16>,
    /// Pod ports reached directly from outside; always starts with
    /// [`ALWAYS_EXCLUDED_INBOUND`] (health, then metrics).
    pub exclude_inbound_ports: Vec<u16>,
    /// Destinations (both families mixed) the app reaches directly.
    pub exclude_outbound_cidrs: Vec<Cidr>,
}

impl Plan {
    /// The plan for the given flags: the health and metrics ports are added to
    /// the inbound exclusions, and duplicates are dropped keeping the first occurrence.
    pub fn new(
        (outbound_port, inbound_port): (u16, u16),
        (proxy_uid, proxy_gid): (u32, u32),
        exclude_outbound_ports: &[u16],
        exclude_inbound_ports: &[u16],
        exclude_outbound_cidrs: &[Cidr],
    ) -> Self {
        let inbound = ALWAYS_EXCLUDED_INBOUND.iter().chain(exclude_inbound_ports);
        Self {
            outbound_port,
            inbound_port,
            proxy_uid,
            proxy_gid,
            exclude_outbound_ports: dedup(exclude_outbound_ports.iter().copied()),
            exclude_inbound_ports: dedup(inbound.copied()),
            exclude_outbound_cidrs: dedup(exclude_outbound_cidrs.iter().copied()),
        }
    }
}

fn dedup<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// An IP family: each gets its own table (`iptables` / `ip6tables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    /// The loopback network, whose destinations are never redirected.
    pub fn loopback(self) -> &'static str {
        match self {
            Self::V4 => "127.0.0.0/8",
            Self::V6 => "::1/128",
        }
    }

    /// For messages: "IPv4" or "IPv6".
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

/// An address block (`10.0.0.0/8`, `fd00::/8`; a bare address is a host),
/// written back in the canonical form `iptables-save` prints: host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The family whose table this block belongs in.
    pub fn family(&self) -> Family {
        match self.addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() && !text.contains('/') {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has a prefix length outside 0..={max}"))?
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::from(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::from(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Ok(Self { addr, prefix })
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated list of ports from one flag (`""` is the empty list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

impl FromStr for PortList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        items(text)
            .map(|item| match item.parse::<u16>() {
                Ok(port) if port != 0 => Ok(port),
                _ => Err(format!("`{item}` is not a port (1-65535)")),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// A comma-separated list of CIDRs from one flag, IPv4 and IPv6 mixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        items(text)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// The non-empty, trimmed items of a comma-separated list.
fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}
