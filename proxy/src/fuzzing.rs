//! The seam the fuzz targets (`proxy/fuzz`) drive the HTTP stack through:
//! compiled only with the `fuzzing` feature, and not a stable API.
//!
//! [`Stack`] is one listener's HTTP path for a connection over any byte stream
//! (`tokio::io::duplex` in the fuzz target) instead of an accepted socket:
//! protocol detection, then the hyper server with the same tower layers
//! [`crate::stack`] assembles (Trace → Record → HeaderLimit → Forward), with
//! upstream connections opened by an injected [`Connect`]. It mirrors the
//! private `Listener::connection` / `Listener::http` (which take a
//! `TcpStream`), minus what needs a socket: the destination is given, not
//! looked up, and a connection not detected as HTTP is closed rather than
//! forwarded as opaque TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use meshtrace_config::Config;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceBuilder;

use crate::detect::{self, Detected, Prefixed};
use crate::drain::Drain;
use crate::http::forward::Forward;
use crate::http::limits::HeaderLimitLayer;
use crate::http::record::{RecordContext, RecordLayer};
use crate::http::server::{self, ServerSettings};
use crate::http::trace::{PolicyHandle, TraceLayer};
use crate::http::upstream::{Connect, Upstreams};
use crate::http::{Attachments, Wire};
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::sampling::Sampler;
use crate::stack::PolicyParts;
use crate::target::{Destination, Direction};

/// One listener's HTTP stack with a fixed destination and an injected
/// upstream connector; spans off.
pub struct Stack {
    direction: Direction,
    config: Arc<Config>,
    destination: Destination,
    metrics: Arc<Metrics>,
    trace: PolicyHandle,
    upstreams: Upstreams,
    drain: Drain,
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
        let migration = Arc::new(Migration::new(&metrics));
        let parts = PolicyParts {
            direction,
            trace_context: &metrics.trace_context(direction),
            sampling: &metrics.sampling(direction),
            metrics: &metrics,
            migration: &migration,
        };
        let policy = parts.policy(&config, Sampler::new(&config.sampling), None);
        let timeouts = &config.timeouts;
        let upstreams =
            Upstreams::new(timeouts.connect.get(), timeouts.idle.get()).with_connector(connect);
        Self {
            direction,
            destination,
            metrics,
            trace: Arc::new(ArcSwap::from_pointee(policy)),
            upstreams,
            drain: Drain::default(),
            config,
        }
    }

    /// The listener's metrics, rendered as Prometheus text.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Serves one downstream connection from `peer` until it ends: detection,
    /// then HTTP/1 or HTTP/2 through the stack; anything else is closed.
    pub async fn serve<I>(&self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let config = &self.config;
        let mut io = io;
        let limit = config.limits.max_header_bytes;
        let wire = match detect::detect(&mut io, limit, config.timeouts.detect.get()).await {
            Ok((Detected::Http1, prefix)) => (Wire::Http1, prefix),
            Ok((Detected::Http2, prefix)) => (Wire::Http2, prefix),
            Ok((Detected::Opaque | Detected::Closed, _)) | Err(_) => return,
        };
        let (wire, prefix) = wire;
        self.http(Prefixed::new(prefix, io), wire, peer).await;
    }

    /// `Listener::http`, over any IO.
    async fn http<I>(&self, io: Prefixed<I>, wire: Wire, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let config = &self.config;
        let direction = self.direction;
        let protocol = wire.protocol();
        let conns = self.metrics.conns(direction);
        conns.detected(protocol);
        let timeouts = &config.timeouts;
        let request_timeout = (!timeouts.request.is_zero()).then(|| timeouts.request.get());
        let attach = Attachments::for_access_log(config.log.access_log);
        let port = match &self.destination {
            Destination::Fixed(target) => Some(target.port()),
            Destination::Routes(_) => None,
        };
        let stack = ServiceBuilder::new()
            .layer(TraceLayer::new(self.trace.clone(), port, attach))
            .layer(RecordLayer::new(RecordContext {
                direction,
                peer,
                http: self.metrics.http(direction, protocol),
                grpc: self.metrics.http(direction, crate::target::Protocol::Grpc),
                protocol,
                access_log: config.log.access_log,
                policy: self.trace.clone(),
                sampling: self.metrics.sampling(direction),
            }))
            .layer(HeaderLimitLayer::new(
                config.limits.max_header_bytes,
                config.limits.max_header_count,
            ))
            .service(Forward::new(
                self.destination.clone(),
                self.upstreams.clone(),
                wire,
                request_timeout,
                conns,
                attach,
            ));
        let settings = ServerSettings {
            header_read: timeouts.header_read.get(),
            max_header_bytes: config.limits.max_header_bytes,
            max_header_count: config.limits.max_header_count,
        };
        server::serve(io, wire, stack, settings, self.drain.clone()).await;
    }
}
