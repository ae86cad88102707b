//! The seam the fuzz targets (`proxy/fuzz`) drive the HTTP stack through:
//! compiled only with the `fuzzing` feature, and not a stable API.
//!
//! [`Stack`] is a real listener ([`Listener::from_parts`], spans off, upstream
//! connections opened by an injected [`Connect`]) serving a connection over
//! any byte stream (`tokio::io::duplex` in the fuzz target) instead of an
//! accepted socket: protocol detection, then [`Listener::http`], the very
//! layers and server every listener runs. Only what needs a socket differs:
//! the destination is given, not looked up, and a connection not detected as
//! HTTP is closed rather than forwarded as opaque TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use meshtrace_config::Config;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::detect::{self, Detected, Prefixed};
use crate::drain::Drain;
use crate::http::upstream::{Connect, Upstreams};
use crate::http::Wire;
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::orig_dst;
use crate::stack::{Listener, ListenerParts};
use crate::target::{Accepted, Destination, Direction};

/// One listener's HTTP stack with a fixed destination and an injected
/// upstream connector; spans off.
pub struct Stack {
    direction: Direction,
    listener: Arc<Listener>,
    config: Arc<Config>,
    destination: Destination,
    metrics: Arc<Metrics>,
}

// === impl Stack ===

impl Stack {
    /// A `direction` listener with `config` whose requests all go to
    /// `destination` over connections `connect` opens. Call inside a Tokio
    /// runtime (the upstream pools spawn their reaper there).
    pub fn new(
        direction: Direction,
        config: Config,
        destination: Destination,
        connect: Arc<dyn Connect>,
    ) -> Self {
        let config = Arc::new(config);
        let metrics = Metrics::new();
        let timeouts = &config.timeouts;
        let parts = ListenerParts {
            upstreams: Upstreams::new(timeouts.connect.get(), timeouts.idle.get())
                .with_connector(connect),
            metrics: metrics.clone(),
            migration: Arc::new(Migration::new(&metrics)),
            adaptive: crate::adaptive::Adaptive::new(&config, metrics.clone()),
            spans: None,
            drain: Drain::default(),
            // Never asked: the destination is given.
            orig_dst: Arc::new(orig_dst::Kernel),
        };
        Self {
            direction,
            listener: Listener::from_parts(direction, config.clone(), parts),
            config,
            destination,
            metrics,
        }
    }

    /// The listener's metrics, rendered as Prometheus text.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Serves one downstream connection from `peer` until it ends: detection,
    /// then HTTP/1 or HTTP/2 through the listener's stack; anything else is
    /// closed.
    pub async fn serve<I>(&self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let config = &self.config;
        let mut io = io;
        let limit = config.limits.max_header_bytes;
        let (wire, prefix) =
            match detect::detect(&mut io, limit, config.timeouts.detect.get()).await {
                Ok((Detected::Http1, prefix)) => (Wire::Http1, prefix),
                Ok((Detected::Http2, prefix)) => (Wire::Http2, prefix),
                Ok((Detected::Opaque | Detected::Closed, _)) | Err(_) => return,
            };
        let accepted = Accepted {
            direction: self.direction,
            peer,
        };
        let io = Prefixed::new(prefix, io);
        let destination = self.destination.clone();
        self.listener
            .http(config, io, wire, destination, accepted)
            .await;
    }
}
