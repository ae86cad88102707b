//! gRPC clients of the mock Echo service.

use std::net::SocketAddr;

use http::Uri;
use tonic::transport::{Channel, Endpoint};

use crate::bound::{within, STEP};
use crate::pb::echo_client::EchoClient;

/// An Echo client connected to `http://ADDR` (the proxy, or the app directly).
pub async fn grpc_client(addr: SocketAddr) -> EchoClient<Channel> {
    connect(addr, None).await
}

/// An Echo client connected to `addr` whose requests carry `:authority:
/// authority`: the service name an explicit-mode route matches (`svc:80`).
pub async fn grpc_client_for(addr: SocketAddr, authority: &str) -> EchoClient<Channel> {
    let origin: Uri = format!("http://{authority}")
        .parse()
        .unwrap_or_else(|e| panic!("{authority:?} is not an authority: {e}"));
    connect(addr, Some(origin)).await
}

async fn connect(addr: SocketAddr, origin: Option<Uri>) -> EchoClient<Channel> {
    let mut endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("an address makes a URI")
        .connect_timeout(STEP);
    if let Some(origin) = origin {
        endpoint = endpoint.origin(origin);
    }
    let channel = within(format!("a gRPC connection to {addr}"), endpoint.connect())
        .await
        .unwrap_or_else(|e| panic!("cannot open a gRPC channel to {addr}: {e}"));
    EchoClient::new(channel)
}
