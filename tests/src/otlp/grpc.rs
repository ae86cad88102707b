//! OTLP/gRPC: tonic's generated `TraceService` server, gzip accepted, served
//! per connection by hyper (cleartext HTTP/2, or after a TLS handshake).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{Collector, Failure, Outcome};

/// The connection handler of a gRPC receiver, over TLS when `tls` is given.
pub(super) fn serve(
    collector: Arc<Collector>,
    tls: Option<TlsAcceptor>,
) -> impl Fn(TcpStream) -> BoxFuture<'static, ()> + Send + 'static {
    move |stream| {
        let collector = collector.clone();
        let tls = tls.clone();
        Box::pin(async move {
            match tls {
                None => serve_connection(collector, stream).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => serve_connection(collector, stream).await,
                    // A client that does not trust the certificate: its error
                    // is the one the test sees.
                    Err(error) => eprintln!("OTLP receiver: TLS handshake failed: {error}"),
                },
            }
        })
    }
}

async fn serve_connection<IO>(collector: Arc<Collector>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let server = TraceServiceServer::new(GrpcCollector { collector })
        .accept_compressed(CompressionEncoding::Gzip);
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(server))
        .await;
}

/// The `TraceService` implementation: the shared collector behind tonic.
#[derive(Debug)]
struct GrpcCollector {
    collector: Arc<Collector>,
}

#[tonic::async_trait]
impl TraceService for GrpcCollector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let gzip = request
            .metadata()
            .get("grpc-encoding")
            .is_some_and(|encoding| encoding.as_encoded_bytes().eq_ignore_ascii_case(b"gzip"));
        let headers = request.metadata().clone().into_headers();
        match self
            .collector
            .export(headers, gzip, request.into_inner())
            .await
        {
            Outcome::Accept(response) => Ok(Response::new(response)),
            Outcome::Fail(Failure::Grpc(code)) => {
                Err(Status::new(code, "scripted failure of the test collector"))
            }
            // `OtlpReceiver::fail_next` refuses HTTP failures on a gRPC receiver.
            Outcome::Fail(failure @ Failure::Http { .. }) => Err(Status::internal(format!(
                "the test collector was scripted with {failure:?}"
            ))),
        }
    }
}
