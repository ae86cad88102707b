//! The load benchmarks' OTLP collector: an OTLP/gRPC trace receiver that only
//! counts what it receives, so a benchmark can compare the sidecar's own export
//! counters with what actually arrived.
//!
//! Counts are served as plain text on `GET` of the stats port, one `name value`
//! pair per line (`spans 1234`, `requests 5`, `bytes 67890`), so a script reads
//! them with `curl -s http://STATS/ | awk '/^spans / {print $2}'`.
//!
//! `--discard` answers every export with success without decoding it (`spans`
//! stays 0; `requests` and `bytes` count): a collector that costs next to
//! nothing, to measure what the sink's own decoding takes from a benchmark
//! whose every process shares the same cores (benches/RESULTS.md, issue 18).

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

/// A counting OTLP/gRPC trace receiver.
#[derive(Parser)]
struct Args {
    /// Address of the OTLP/gRPC receiver.
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: SocketAddr,
    /// Address of the plain-text counts (`GET /`).
    #[arg(long, default_value = "127.0.0.1:18190")]
    stats: SocketAddr,
    /// Answer every export with success without decoding it: only requests
    /// and bytes are counted.
    #[arg(long)]
    discard: bool,
}

/// What has arrived so far; shared by the receiver and the stats server.
#[derive(Debug, Default)]
struct Counts {
    /// Spans in accepted export requests.
    spans: AtomicU64,
    /// Export requests.
    requests: AtomicU64,
    /// Bytes of export request bodies (`--discard` only).
    bytes: AtomicU64,
}

// === impl Counts ===

impl Counts {
    /// The stats page: one `name value` line per counter.
    fn render(&self) -> String {
        format!(
            "spans {}\nrequests {}\nbytes {}\n",
            self.spans.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed)
        )
    }
}

/// The `TraceService` that counts and answers an empty (full-success) response.
#[derive(Debug)]
struct Sink {
    counts: Arc<Counts>,
}

// === impl Sink ===

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.counts.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // One thread: the sink shares the benchmark machine's cores with the sidecar
    // under test, and decoding a few tens of thousands of spans a second is light.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let counts = Arc::new(Counts::default());
    let stats = tokio::net::TcpListener::bind(args.stats).await?;
    let receiver = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "otlp-sink: OTLP/gRPC on {}, counts on http://{}/",
        receiver.local_addr()?,
        stats.local_addr()?
    );
    tokio::spawn(serve_stats(stats, counts.clone()));
    if args.discard {
        tokio::select! {
            () = discard(receiver, counts) => {}
            () = shutdown() => {}
        }
        return Ok(());
    }
    let service = TraceServiceServer::new(Sink { counts })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(64 * 1024 * 1024);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(receiver);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown())
        .await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C, so the benchmark's cleanup stops the sink
/// gracefully.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Answers every OTLP/gRPC export on `listener` with success, reading its
/// bytes but decoding none of them (`--discard`).
async fn discard(listener: tokio::net::TcpListener, counts: Arc<Counts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let counts = counts.clone();
                async move {
                    let read = req
                        .into_body()
                        .collect()
                        .await
                        .map_or(0, |b| b.to_bytes().len());
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    counts.bytes.fetch_add(read as u64, Ordering::Relaxed);
                    // An empty `ExportTraceServiceResponse` (full success): a
                    // gRPC message of length 0, then `grpc-status: 0`.
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let frames = [
                        Frame::data(Bytes::from_static(&[0; 5])),
                        Frame::trailers(trailers),
                    ];
                    let body = StreamBody::new(tokio_stream::iter(frames.map(Ok::<_, Infallible>)));
                    let mut response = hyper::Response::new(body);
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers every HTTP/1.1 request on `listener` with the current counts.
async fn serve_stats(listener: tokio::net::TcpListener, counts: Arc<Counts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let body = Bytes::from(counts.render());
                async move {
                    let mut response = hyper::Response::new(Full::new(body));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
