//! A transparent listener reached without a redirect explains itself.
//!
//! A connection arrives at a transparent listener with no original destination
//! when the redirect rules are missing: someone runs the sidecar on a laptop and
//! curls the capture port, or the pod's init step did not run. Closing such a
//! connection left an HTTP client with `Empty reply from server` and the cause in
//! the sidecar's log only. Instead the protocol is detected as for any
//! connection, and an HTTP/1 or HTTP/2 client gets a 502 (gRPC: `UNAVAILABLE`)
//! whose one-line body names the cause and the fix, on every request of the
//! connection. Other TCP is closed as before: there is no way to tell it.
//!
//! The connection is counted once in `meshtrace_upstream_errors_total` as
//! `kind="no_original_dst"` (also when the kernel reports the listener itself:
//! a direct dial, not a redirect), and the log line carries the same sentence
//! as the body.

use std::convert::Infallible;
use std::future::ready;

use meshtrace_config::Config;
use tokio::net::TcpStream;

use crate::detect::{self, Detected, Prefixed};
use crate::drain::Drain;
use crate::http::edge::{self, Refusal};
use crate::http::server::{self, ServerSettings};
use crate::http::{is_grpc, Wire};
use crate::metrics::ErrorKind;
use crate::target::{Accepted, Direction};

/// The one-line explanation for a connection of `direction` that has no
/// original destination (`cause`: what the lookup found).
pub(super) fn message(direction: Direction, cause: &str) -> String {
    let fix = match direction {
        Direction::Outbound => {
            "run the init step (`meshtrace-proxy init`, or inject the pod) so the app's \
             traffic is redirected to the sidecar, or set `outbound.mode: explicit` to use \
             it as a local proxy"
        }
        Direction::Inbound => {
            "run the init step (`meshtrace-proxy init`, or inject the pod) so the pod's \
             traffic is redirected to the sidecar, or set a fixed `inbound.app_port`"
        }
    };
    format!(
        "no original destination found for this connection ({cause}): it was not redirected \
         to the sidecar's {direction} listener; {fix}"
    )
}

/// Answers every HTTP request on `stream` with a 502 carrying `message`, or
/// closes a connection that is not HTTP.
pub(super) async fn explain(
    config: &Config,
    mut stream: TcpStream,
    kind: ErrorKind,
    message: String,
    accepted: Accepted,
    drain: Drain,
) {
    let timeouts = &config.timeouts;
    let limit = config.limits.max_header_bytes;
    let wire = match detect::detect(&mut stream, limit, timeouts.detect.get()).await {
        Ok((Detected::Http1, prefix)) => (Wire::Http1, prefix),
        Ok((Detected::Http2, prefix)) => (Wire::Http2, prefix),
        Ok((Detected::Opaque | Detected::Closed, _)) => return,
        Err(error) => {
            tracing::debug!(%error, peer = %accepted.peer, "connection failed during detection");
            return;
        }
    };
    let (wire, prefix) = wire;
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let grpc = is_grpc(&req);
        ready(Ok::<_, Infallible>(edge::respond(
            Refusal::Upstream(kind),
            grpc,
            &message,
        )))
    });
    let settings = ServerSettings {
        header_read: timeouts.header_read.get(),
        idle: timeouts.idle.get(),
        max_header_bytes: config.limits.max_header_bytes,
        max_header_count: config.limits.max_header_count,
    };
    server::serve(
        Prefixed::new(prefix, stream),
        wire,
        service,
        settings,
        drain,
    )
    .await;
}
