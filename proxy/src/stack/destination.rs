//! The destination phase: where a connection's requests go, decided once when
//! it starts — the local app (inbound), the original destination of a redirected
//! connection (transparent outbound, asked of an [`OrigDst`]), or the route table
//! (explicit outbound).

use std::net::SocketAddr;
use std::sync::Arc;

use meshtrace_config::{AppPort, Config, HostPort, OutboundMode};
use tokio::net::TcpStream;

use crate::metrics::ErrorKind;
use crate::orig_dst::{self, OrigDst};
use crate::target::{Destination, Direction, RouteTable};

/// What a connection reads from the config when it starts.
pub(super) struct ConnState {
    pub(super) config: Arc<Config>,
    destination: DestinationRule,
}

/// How a listener finds a connection's destination.
enum DestinationRule {
    /// Inbound to a fixed app port.
    App(Arc<HostPort>),
    /// Inbound to the app host at the original destination port.
    AppOriginalPort(std::net::IpAddr),
    /// Outbound, transparent.
    OriginalDst,
    /// Outbound, explicit.
    Routes(Arc<RouteTable>),
}

// === impl ConnState ===

impl ConnState {
    pub(super) fn new(direction: Direction, config: Arc<Config>) -> Self {
        let destination = match direction {
            Direction::Inbound => match config.inbound.app_port {
                AppPort::Fixed(port) => DestinationRule::App(Arc::new(HostPort::from(
                    SocketAddr::new(config.inbound.app_host, port),
                ))),
                AppPort::Original => DestinationRule::AppOriginalPort(config.inbound.app_host),
            },
            Direction::Outbound => match config.outbound.mode {
                OutboundMode::Transparent => DestinationRule::OriginalDst,
                OutboundMode::Explicit => DestinationRule::Routes(Arc::new(RouteTable::new(
                    &config.outbound.routes,
                    config.outbound.tcp_target.as_ref(),
                ))),
            },
        };
        Self {
            config,
            destination,
        }
    }

    pub(super) fn destination(
        &self,
        stream: &TcpStream,
        source: &dyn OrigDst,
    ) -> Result<Destination, (ErrorKind, String)> {
        let original = || {
            // Either way the connection was not redirected (a client dialled the
            // listener itself): no original destination.
            orig_dst::lookup(stream, source).map_err(|e| (ErrorKind::NoOriginalDst, e.to_string()))
        };
        Ok(match &self.destination {
            DestinationRule::App(app) => Destination::Fixed(app.clone()),
            DestinationRule::AppOriginalPort(host) => {
                let port = original()?.port();
                Destination::Fixed(Arc::new(HostPort::from(SocketAddr::new(*host, port))))
            }
            DestinationRule::OriginalDst => {
                Destination::Fixed(Arc::new(HostPort::from(original()?)))
            }
            DestinationRule::Routes(table) => Destination::Routes(table.clone()),
        })
    }
}

/// The port that opaque-port configuration is matched against.
pub(super) fn destination_port(destination: &Destination) -> Option<u16> {
    match destination {
        Destination::Fixed(target) => Some(target.port()),
        Destination::Routes(_) => None,
    }
}
