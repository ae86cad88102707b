//! Where the inbound and outbound stacks are assembled: read this file top to
//! bottom to follow a connection through the sidecar.
//!
//! ```text
//! accept ─ connection limit ─ socket options
//!   └ destination: inbound → the local app; outbound → SO_ORIGINAL_DST or routes
//!   └ opaque port? ─ yes → TCP forward
//!   └ detect protocol (bounded read, timeout)
//!       ├ HTTP/1 | HTTP/2 → hyper server → Trace → Record → HeaderLimit → Forward
//!       │   (Trace: extract, sample, inject; Record: metrics, access log, span)
//!       └ other          → inbound.unidentified: close (counted), or
//!                          TCP forward (detected bytes replayed first)
//!   (transparent, no original destination: counted; HTTP gets a 502 that says
//!    why and what to do, other TCP is closed — `no_destination`)
//! ```

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use meshtrace_config::Config;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::adaptive::Adaptive;
use crate::detect::{self, Detected, Prefixed};
use crate::drain::Drain;
use crate::http::decide::SamplingHeaders;
use crate::http::forward::Forward;
use crate::http::limits::HeaderLimitLayer;
use crate::http::record::{RecordContext, RecordLayer};
use crate::http::server::{self, ServerSettings};
use crate::http::trace::{PolicyHandle, TraceLayer, TracePolicy};
use crate::http::upstream::{self, Upstreams};
use crate::http::{Attachments, Wire};
use crate::metrics::SamplingMetrics;
use crate::metrics::{ConnMetrics, ErrorKind, HttpMetrics, Metrics, TraceContextMetrics};
use crate::migration::{caller, Migration};
use crate::orig_dst::OrigDst;
use crate::propagation::extract::Extractor;
use crate::propagation::inject::Injector;
use crate::sampling::Sampler;
use crate::target::{Accepted, Destination, Direction, Protocol};
use crate::telemetry::{PeerAddress, Recorder};
use crate::{listen, tcp};
use destination::{destination_port, ConnState};

/// Everything the connections of one listener share. The config-derived parts are
/// swapped whole on a reload ([`Listener::reload`]): a connection reads them once
/// when it starts (destination, detection, limits), a request reads the trace
/// policy when it arrives.
pub struct Listener {
    direction: Direction,
    upstreams: Upstreams,
    conns: ConnMetrics,
    http1: HttpMetrics,
    http2: HttpMetrics,
    grpc: HttpMetrics,
    trace_context: TraceContextMetrics,
    sampling: SamplingMetrics,
    metrics: Arc<Metrics>,
    migration: Arc<Migration>,
    adaptive: Arc<Adaptive>,
    state: ArcSwap<ConnState>,
    trace: PolicyHandle,
    drain: Drain,
    /// Where transparent connections were going (the kernel, or a test's answer).
    orig_dst: Arc<dyn OrigDst>,
}

/// What a listener is built from besides its direction and config: what both
/// listeners of a sidecar share, and where transparent connections were going.
pub struct ListenerParts {
    /// The upstream pools (and how they connect).
    pub upstreams: Upstreams,
    /// The sidecar's metrics.
    pub metrics: Arc<Metrics>,
    /// Migration counts and what the app speaks (process-wide).
    pub migration: Arc<Migration>,
    /// The sampling routes (process-wide).
    pub adaptive: Arc<Adaptive>,
    /// The span recorder, when spans are on.
    pub spans: Option<Arc<Recorder>>,
    /// The sidecar's drain, which every connection task joins.
    pub drain: Drain,
    /// Where transparent connections were going: the kernel, or a test's answer.
    pub orig_dst: Arc<dyn OrigDst>,
}

// === impl Listener ===

impl Listener {
    /// The shared state for `direction`'s listener, built from `parts`: the
    /// constructor that takes the IO seams (tests give a mock original
    /// destination here, and a mock connector inside the upstreams).
    pub fn from_parts(
        direction: Direction,
        config: Arc<Config>,
        parts: ListenerParts,
    ) -> Arc<Self> {
        let ListenerParts {
            upstreams,
            metrics,
            migration,
            adaptive,
            spans,
            drain,
            orig_dst,
        } = parts;
        let metrics = &metrics;
        let trace_context = metrics.trace_context(direction);
        let sampling = metrics.sampling(direction);
        let sampler = Sampler::with_routes(&config.sampling, adaptive.current());
        let shared = PolicyParts {
            direction,
            trace_context: &trace_context,
            sampling: &sampling,
            metrics,
            migration: &migration,
        };
        let trace = Arc::new(ArcSwap::from_pointee(
            shared.policy(&config, sampler, spans),
        ));
        Arc::new(Self {
            direction,
            state: ArcSwap::from_pointee(ConnState::new(direction, config)),
            trace,
            trace_context,
            sampling,
            metrics: metrics.clone(),
            migration,
            adaptive,
            upstreams,
            conns: metrics.conns(direction),
            http1: metrics.http(direction, Protocol::Http1),
            http2: metrics.http(direction, Protocol::Http2),
            grpc: metrics.http(direction, Protocol::Grpc),
            drain,
            orig_dst,
        })
    }

    /// Applies a new (validated) config: new connections see it when they start,
    /// requests on every connection when they arrive. The sidecar has reloaded
    /// the shared sampling routes ([`Adaptive::reload`]) first.
    pub fn reload(&self, config: Arc<Config>, spans: Option<Arc<Recorder>>) {
        // Budgets and reservoirs keep what they have spent across the reload.
        let sampler = Sampler::reloaded_with(
            &config.sampling,
            &self.trace.load().sampler,
            self.adaptive.current(),
        );
        let shared = PolicyParts {
            direction: self.direction,
            trace_context: &self.trace_context,
            sampling: &self.sampling,
            metrics: &self.metrics,
            migration: &self.migration,
        };
        self.trace
            .store(Arc::new(shared.policy(&config, sampler, spans)));
        self.state
            .store(Arc::new(ConnState::new(self.direction, config)));
    }

    /// Accepts connections until the drain starts or `stop` (a rebind) fires; each
    /// runs in a drain-tracked task, so a rebind never cuts a connection.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        let max = self.state.load().config.limits.max_connections;
        let limit = Arc::new(Semaphore::new(max));
        loop {
            let permit = tokio::select! {
                () = self.drain.signaled() => break,
                () = stop.cancelled() => break,
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                () = self.drain.signaled() => break,
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(%error, direction = %self.direction, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let this = self.clone();
            let accepted = Accepted {
                direction: self.direction,
                peer,
            };
            self.drain.spawn(async move {
                let _permit = permit;
                this.connection(stream, accepted).await;
            });
        }
        tracing::debug!(direction = %self.direction, "listener closed");
    }

    async fn connection(&self, stream: TcpStream, accepted: Accepted) {
        let _open = self.conns.open();
        let state = self.state.load_full();
        if let Err(error) = listen::tune(&stream) {
            tracing::debug!(%error, "cannot set socket options");
        }
        let config = &state.config;
        let destination = match state.destination(&stream, &*self.orig_dst) {
            Ok(destination) => destination,
            Err((kind, reason)) => {
                self.conns.error(kind);
                let message = no_destination::message(self.direction, &reason);
                tracing::warn!(peer = %accepted.peer, direction = %self.direction, kind = kind.as_str(), "{message}");
                let drain = self.drain.clone();
                return no_destination::explain(config, stream, kind, message, accepted, drain)
                    .await;
            }
        };
        let timeouts = &config.timeouts;
        if let Some(port) = destination_port(&destination) {
            if config.opaque_ports.contains(&port) {
                return self
                    .opaque(config, stream, bytes::Bytes::new(), &destination, accepted)
                    .await;
            }
        }
        let mut stream = stream;
        let limit = config.limits.max_header_bytes;
        let detected = detect::detect(&mut stream, limit, timeouts.detect.get()).await;
        match detected {
            Ok((Detected::Http1, prefix)) => {
                let io = Prefixed::new(prefix, stream);
                self.http(config, io, Wire::Http1, destination, accepted)
                    .await
            }
            Ok((Detected::Http2, prefix)) => {
                let io = Prefixed::new(prefix, stream);
                self.http(config, io, Wire::Http2, destination, accepted)
                    .await
            }
            Ok((Detected::Opaque, _)) if self.closes_unidentified(config) => {
                self.conns.error(ErrorKind::UnidentifiedClosed);
                tracing::info!(peer = %accepted.peer, direction = %self.direction, "connection not identified as HTTP: closed (inbound.unidentified)");
            }
            Ok((Detected::Opaque, prefix)) => {
                self.opaque(config, stream, prefix, &destination, accepted)
                    .await
            }
            Ok((Detected::Closed, _)) => {}
            Err(error) => {
                tracing::debug!(%error, peer = %accepted.peer, "connection failed during detection")
            }
        }
    }

    /// Whether a connection detection could not identify as HTTP is closed: on
    /// an inbound listener per `inbound.unidentified`, so a slow or malformed
    /// client cannot skip the HTTP stack; the local app (outbound) is trusted.
    fn closes_unidentified(&self, config: &Config) -> bool {
        self.direction == Direction::Inbound && config.inbound.closes_unidentified()
    }

    /// The HTTP stack for one connection (any IO: the fuzzing seam serves
    /// in-memory streams through it too).
    pub(crate) async fn http<I>(
        &self,
        config: &Config,
        io: Prefixed<I>,
        wire: Wire,
        destination: Destination,
        accepted: Accepted,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let protocol = wire.protocol();
        self.conns.detected(protocol);
        let timeouts = &config.timeouts;
        let request_timeout = (!timeouts.request.is_zero()).then(|| timeouts.request.get());
        // The one place that decides which extensions the layers attach.
        let attach = Attachments::for_access_log(config.log.access_log).sending_over(wire);
        let (measure_head, refuse_head) = HeaderLimitLayer::client_head(
            config.limits.max_header_bytes,
            config.limits.max_header_count,
        );
        let stack = ServiceBuilder::new()
            .layer(measure_head)
            .layer(TraceLayer::new(
                self.trace.clone(),
                destination_port(&destination),
                attach,
            ))
            .layer(RecordLayer::new(RecordContext {
                direction: self.direction,
                peer: PeerAddress::new(accepted.peer),
                http: match wire {
                    Wire::Http1 => self.http1.clone(),
                    Wire::Http2 => self.http2.clone(),
                },
                grpc: self.grpc.clone(),
                protocol,
                access_log: config.log.access_log,
                policy: self.trace.clone(),
                sampling: self.sampling.clone(),
            }))
            .layer(refuse_head)
            .service(Forward::new(
                destination,
                self.upstreams.clone(),
                wire,
                request_timeout,
                self.conns.clone(),
                attach,
                self.drain.clone(),
            ));
        let settings = ServerSettings {
            header_read: timeouts.header_read.get(),
            idle: timeouts.idle.get(),
            max_header_bytes: config.limits.max_header_bytes,
            max_header_count: config.limits.max_header_count,
        };
        server::serve(io, wire, stack, settings, self.drain.clone()).await;
    }

    /// Byte-for-byte forwarding to the connection's destination.
    async fn opaque(
        &self,
        config: &Config,
        stream: TcpStream,
        prefix: bytes::Bytes,
        destination: &Destination,
        accepted: Accepted,
    ) {
        self.conns.detected(Protocol::Tcp);
        let target = match destination {
            Destination::Fixed(target) => target.clone(),
            Destination::Routes(table) => match table.tcp_target() {
                Some(target) => target.clone(),
                None => {
                    self.conns.error(ErrorKind::NoRoute);
                    tracing::warn!(peer = %accepted.peer, "non-HTTP connection in explicit mode with no tcp_target: closed");
                    return;
                }
            },
        };
        let timeouts = &config.timeouts;
        let connector = self.upstreams.connector();
        let upstream = match connector.connect(&target, timeouts.connect.get()).await {
            Ok(upstream) => upstream,
            Err(error) => {
                self.conns.error(upstream::classify_connect(&error));
                tracing::warn!(peer = %accepted.peer, %target, %error, "opaque upstream connect failed");
                return;
            }
        };
        match tcp::forward(stream, prefix, upstream, timeouts.idle.get()).await {
            Ok((up, down)) => {
                tracing::debug!(peer = %accepted.peer, %target, up, down, "opaque connection closed")
            }
            Err(error) => {
                tracing::debug!(peer = %accepted.peer, %target, %error, "opaque connection ended")
            }
        }
    }
}

/// What every trace policy of a listener shares, across reloads.
pub(crate) struct PolicyParts<'a> {
    pub(crate) direction: Direction,
    pub(crate) trace_context: &'a TraceContextMetrics,
    pub(crate) sampling: &'a SamplingMetrics,
    pub(crate) metrics: &'a Metrics,
    pub(crate) migration: &'a Arc<Migration>,
}

impl PolicyParts<'_> {
    /// The trace policy `config` asks for.
    pub(crate) fn policy(
        &self,
        config: &Config,
        sampler: Sampler,
        spans: Option<Arc<Recorder>>,
    ) -> TracePolicy {
        let propagation = &config.propagation;
        let direction = self.direction;
        let targets: Vec<String> = match direction {
            Direction::Inbound => vec!["app".into()],
            Direction::Outbound => std::iter::once("default".to_string())
                .chain(
                    propagation
                        .upstreams
                        .iter()
                        .enumerate()
                        .map(|(i, r)| r.label(i)),
                )
                .collect(),
        };
        let routes = config.sampling.routes();
        TracePolicy {
            direction,
            // The local app (outbound) is always trusted; mesh callers per config.
            trusted: direction == Direction::Outbound || config.inbound.trusted,
            extractor: Extractor::new(propagation.extract.clone(), propagation.on_conflict),
            injector: match direction {
                Direction::Inbound => Injector::inbound(propagation),
                Direction::Outbound => Injector::outbound(propagation),
            },
            metrics: self.trace_context.clone(),
            sampler,
            sampling_headers: SamplingHeaders::new(&config.sampling),
            sampling_metrics: self.sampling.clone(),
            observes_routes: routes.iter().any(|r| r.boost.is_some()),
            route_tails: routes.iter().any(|r| r.tail != config.sampling.tail),
            spans,
            migration: self.migration.clone(),
            learn_for: propagation.learn_for.get(),
            caller: match direction {
                Direction::Inbound => None,
                Direction::Outbound => caller::identity(&config.workload),
            },
            written: self.metrics.written(direction, &targets),
        }
    }
}

mod destination;
mod no_destination;
#[cfg(test)]
mod tests;
