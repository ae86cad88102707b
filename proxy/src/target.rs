//! Typed targets: which way traffic flows, what protocol it speaks, and where it
//! goes. Each layer of the stack receives these small types rather than strings, so
//! the compiler checks that the stack fits together.

use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use meshtrace_config::{HostPort, Route};
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// Which listener a connection arrived on. Ordered for metric series
/// (inbound first).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// From the mesh to the local application.
    Inbound,
    /// From the local application to the mesh.
    Outbound,
}

impl Direction {
    /// Both directions, inbound first.
    pub const ALL: [Direction; 2] = [Self::Inbound, Self::Outbound];

    /// The label and log value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// One `T` per direction, named rather than indexed, so that the inbound
/// listener can never be paired with the outbound address by an off-by-one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByDirection<T> {
    /// The inbound one.
    pub inbound: T,
    /// The outbound one.
    pub outbound: T,
}

// === impl ByDirection ===

impl<T> ByDirection<T> {
    /// Builds both from `f`, inbound first.
    pub fn from_fn(mut f: impl FnMut(Direction) -> T) -> Self {
        Self {
            inbound: f(Direction::Inbound),
            outbound: f(Direction::Outbound),
        }
    }

    /// Builds both from `f`, inbound first, stopping at the first error.
    pub fn try_from_fn<E>(mut f: impl FnMut(Direction) -> Result<T, E>) -> Result<Self, E> {
        Ok(Self {
            inbound: f(Direction::Inbound)?,
            outbound: f(Direction::Outbound)?,
        })
    }

    /// The one for `direction`.
    pub fn get(&self, direction: Direction) -> &T {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    /// The one for `direction`, to change it.
    pub fn get_mut(&mut self, direction: Direction) -> &mut T {
        match direction {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        }
    }

    /// Both transformed by `f`, which is told the direction.
    pub fn map<U>(self, mut f: impl FnMut(Direction, T) -> U) -> ByDirection<U> {
        ByDirection {
            inbound: f(Direction::Inbound, self.inbound),
            outbound: f(Direction::Outbound, self.outbound),
        }
    }

    /// Both with their direction, inbound first.
    pub fn iter(&self) -> impl Iterator<Item = (Direction, &T)> {
        Direction::ALL.into_iter().map(|d| (d, self.get(d)))
    }
}

/// What a connection (or request) speaks.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.x.
    Http1 = 0,
    /// HTTP/2 with prior knowledge (h2c).
    Http2 = 1,
    /// gRPC: HTTP/2 with `content-type: application/grpc*` (a request-level refinement).
    Grpc = 2,
    /// Anything else, forwarded byte for byte.
    Tcp = 3,
}

impl Protocol {
    /// Every protocol, in discriminant order.
    pub const ALL: [Protocol; 4] = [Self::Http1, Self::Http2, Self::Grpc, Self::Tcp];

    /// The label and log value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
            Self::Tcp => "tcp",
        }
    }
}

macro_rules! label_value {
    ($ty:ty) => {
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_value!(Direction);
label_value!(Protocol);

/// Where a downstream connection's requests go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Every request to one upstream: the local app (inbound) or the original
    /// destination (outbound, transparent mode).
    Fixed(Arc<HostPort>),
    /// Each request by its authority (outbound, explicit mode).
    Routes(Arc<RouteTable>),
}

/// The explicit-mode route table, first match wins.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<(Match, Arc<HostPort>)>,
    tcp_target: Option<Arc<HostPort>>,
}

#[derive(Debug)]
enum Match {
    /// `host:port`, lower-cased.
    Authority(String),
    /// `host`, lower-cased, any port.
    Host(String),
}

// === impl RouteTable ===

impl RouteTable {
    /// Builds the table from validated config routes.
    pub fn new(routes: &[Route], tcp_target: Option<&HostPort>) -> Self {
        let routes = routes
            .iter()
            .filter_map(|r| {
                let m = match (&r.authority, &r.host) {
                    (Some(a), _) => Match::Authority(a.to_ascii_lowercase()),
                    (None, Some(h)) => Match::Host(h.to_ascii_lowercase()),
                    (None, None) => return None,
                };
                Some((m, Arc::new(r.target.clone())))
            })
            .collect();
        Self {
            routes,
            tcp_target: tcp_target.cloned().map(Arc::new),
        }
    }

    /// The upstream for a request authority (`host[:port]`), if any route matches.
    pub fn lookup(&self, authority: &str) -> Option<&Arc<HostPort>> {
        let host = split_host(authority);
        self.routes.iter().find_map(|(m, target)| {
            let hit = match m {
                Match::Authority(a) => a.eq_ignore_ascii_case(authority),
                Match::Host(h) => h.eq_ignore_ascii_case(host),
            };
            hit.then_some(target)
        })
    }

    /// Where non-HTTP connections go in explicit mode.
    pub fn tcp_target(&self) -> Option<&Arc<HostPort>> {
        self.tcp_target.as_ref()
    }
}

/// The host of `host[:port]` / `[v6][:port]`.
fn split_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// What the accept loop learnt about a connection before any byte was read.
#[derive(Clone, Copy, Debug)]
pub struct Accepted {
    /// The listener's direction.
    pub direction: Direction,
    /// The downstream peer.
    pub peer: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let routes: Vec<Route> = serde_yaml::from_str(
            "- {authority: 'reviews:9080', target: '127.0.0.1:1'}\n- {host: reviews, target: '127.0.0.1:2'}\n- {host: '::1', target: '127.0.0.1:3'}\n",
        )
        .unwrap();
        RouteTable::new(&routes, None)
    }

    #[test]
    fn exact_authority_wins_over_host_when_listed_first() {
        let t = table();
        assert_eq!(t.lookup("Reviews:9080").unwrap().port(), 1);
        assert_eq!(t.lookup("reviews:80").unwrap().port(), 2);
        assert_eq!(t.lookup("reviews").unwrap().port(), 2);
    }

    #[test]
    fn ipv6_literal_hosts_match_without_brackets() {
        assert_eq!(table().lookup("[::1]:8080").unwrap().port(), 3);
    }

    #[test]
    fn by_direction_pairs_each_direction_with_its_own_value() {
        let names = ByDirection::from_fn(Direction::as_str);
        assert_eq!(names.get(Direction::Outbound), &"outbound");
        let lengths = names.map(|direction, name| (direction, name.len()));
        assert_eq!(lengths.inbound, (Direction::Inbound, 7));
        let order: Vec<Direction> = lengths.iter().map(|(d, _)| d).collect();
        assert_eq!(order, Direction::ALL);
        let failed = ByDirection::try_from_fn(|d| match d {
            Direction::Inbound => Ok(1),
            Direction::Outbound => Err("outbound"),
        });
        assert_eq!(failed, Err("outbound"));
    }

    #[test]
    fn unknown_authority_has_no_route() {
        assert!(table().lookup("ratings:9080").is_none());
    }
}
