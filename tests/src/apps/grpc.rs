//! The mock gRPC application: the `meshtrace.test.v1.Echo` service of
//! `proto/echo.proto`, one method per gRPC call kind.
//!
//! Every reply carries the request metadata the server saw, so a test can check
//! what crossed the proxy (`grpc-timeout`, `traceparent`, …). A request may ask the
//! server to fail with a status code (`fail_with_code`) or to wait before
//! answering (`delay_ms`).
//!
//! The app does not enforce the `grpc-timeout` it receives (it is served by
//! hyper, not tonic's server, which would): a delayed call that misses its
//! deadline is ended by the proxy or by the client, which is what deadline tests
//! are about. tonic's client reports its own expiry as `CANCELLED`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

use super::serve::Serving;
use crate::pb::echo_server::{Echo, EchoServer};
use crate::pb::{EchoReply, EchoRequest};

/// A running mock gRPC application; stops when dropped.
#[derive(Debug)]
pub struct GrpcApp {
    serving: Serving,
}

// === impl GrpcApp ===

impl GrpcApp {
    /// Starts the app on `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self {
            serving: Serving::bind(serve_connection).await,
        }
    }

    /// Where the app listens.
    pub fn addr(&self) -> SocketAddr {
        self.serving.addr()
    }

    /// How many TCP (HTTP/2) connections the app has accepted.
    pub fn connections(&self) -> usize {
        self.serving.accepted()
    }
}

/// Serves one connection with hyper directly (rather than tonic's own server),
/// so the connection belongs to the app's accept loop and ends with it.
async fn serve_connection(stream: TcpStream) {
    let service = TowerToHyperService::new(EchoServer::new(EchoService));
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The `Echo` implementation.
#[derive(Clone, Copy, Debug)]
struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let metadata = seen(request.metadata());
        answer(request.into_inner(), metadata)
            .await
            .map(Response::new)
    }

    type ServerStreamStream = BoxStream<'static, Result<EchoReply, Status>>;

    /// `repeat` replies, then the requested failure (as the trailers that end the
    /// stream) if there is one.
    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let metadata = seen(request.metadata());
        let request = request.into_inner();
        delay(&request).await;
        let reply = EchoReply {
            message: request.message,
            metadata,
        };
        let replies = stream::iter((0..request.repeat).map(move |_| Ok(reply.clone())));
        let end = stream::iter(failure(request.fail_with_code).map(Err));
        Ok(Response::new(replies.chain(end).boxed()))
    }

    /// One reply once the client half-closed: every message joined by `,`. A
    /// request asking for a failure fails the call as soon as it arrives.
    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let metadata = seen(request.metadata());
        let mut requests = request.into_inner();
        let mut messages = Vec::new();
        while let Some(request) = requests.message().await? {
            delay(&request).await;
            if let Some(status) = failure(request.fail_with_code) {
                return Err(status);
            }
            messages.push(request.message);
        }
        Ok(Response::new(EchoReply {
            message: messages.join(","),
            metadata,
        }))
    }

    type BidiStream = BoxStream<'static, Result<EchoReply, Status>>;

    /// One reply per request, as each arrives.
    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let metadata = seen(request.metadata());
        let replies = request.into_inner().then(move |request| {
            let metadata = metadata.clone();
            async move { answer(request?, metadata).await }
        });
        Ok(Response::new(replies.boxed()))
    }
}

/// One request's reply, after its delay, or its requested failure.
async fn answer(
    request: EchoRequest,
    metadata: HashMap<String, String>,
) -> Result<EchoReply, Status> {
    delay(&request).await;
    match failure(request.fail_with_code) {
        Some(status) => Err(status),
        None => Ok(EchoReply {
            message: request.message,
            metadata,
        }),
    }
}

/// The app's behaviour under test, not synchronisation: a slow upstream.
async fn delay(request: &EchoRequest) {
    if request.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(request.delay_ms.into())).await;
    }
}

fn failure(code: u32) -> Option<Status> {
    let code = i32::try_from(code).unwrap_or(i32::MAX);
    (code != 0).then(|| Status::new(Code::from_i32(code), "requested failure"))
}

/// The metadata as a map; repeated keys are joined with `, ` as HTTP would, and
/// binary values are shown lossily.
fn seen(metadata: &MetadataMap) -> HashMap<String, String> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let headers = metadata.clone().into_headers();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        seen.entry(name.to_string())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    seen
}
