//! Clients a test drives the sidecar (or a mock app) with, each call one line.
//!
//! Every await inside is bounded by [`crate::bound::STEP`] (while a request body
//! is being sent, [`STEP`](crate::bound::STEP) without progress: a gigabyte upload
//! may take longer, a stalled one may not), and every failure the
//! test did not ask about panics with a message saying what failed. Where a test
//! *expects* a failure (a connection the proxy refuses or resets), a `try_`
//! variant returns it instead.
//!
//! HTTP helpers stream: a response's body is a [`hyper::body::Incoming`] until a
//! test collects it ([`collect`], [`read_body`]) or drains it without holding it
//! ([`count_body`], [`read_generated`]).

mod body;
mod closed;
mod grpc;
mod h1;
mod h2;
mod load;
mod progress;
mod tcp;
mod ws;

pub use body::{
    body_with_trailers, collect, count_body, empty, full, generated_body, read_body,
    read_body_and_trailers, read_generated, RequestBody,
};
pub use grpc::{grpc_client, grpc_client_for};
pub use h1::{http1_get, http1_get_with, http1_request, H1Conn};
pub use h2::{http2_get, http2_request, H2Conn};
pub use load::SteadyLoad;
pub use tcp::TcpConn;
pub use ws::{ws_connect, ws_connect_request, WsMessage, WsStream};
