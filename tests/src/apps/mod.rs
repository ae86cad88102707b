//! Mock applications a sidecar is put in front of (inbound) or calls (outbound).
//!
//! Each binds `127.0.0.1:0`, serves every connection on its own task, and stops
//! (listener and open connections alike) when its handle is dropped. They answer
//! in ways a test can check from the client side alone: the HTTP app echoes what
//! it received as `x-echo-*` response headers, the gRPC app echoes the metadata it
//! saw, the TCP and WebSocket apps echo bytes and messages.

mod gate;
pub(crate) mod generated;
mod grpc;
mod http;
mod serve;
mod tcp;
mod ws;

pub use gate::Gate;
pub use generated::{generated_bytes, is_generated, CHUNK};
pub use grpc::GrpcApp;
pub use http::{echo_headers, echoed, HttpApp};
pub use tcp::{TcpBannerApp, TcpEchoApp, BANNER};
pub use ws::WsEchoApp;
