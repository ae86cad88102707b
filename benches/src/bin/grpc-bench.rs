//! The load harness's gRPC pair: a tonic server for the `Echo` service of
//! `tests/proto/echo.proto`, and a closed-loop unary load client.
//!
//! ```text
//! grpc-bench serve --listen 127.0.0.1:0 [--workers 1]
//! grpc-bench load --target http://127.0.0.1:PORT --concurrency 32 --secs 5 [--channels 4]
//! ```
//!
//! `serve` prints `grpc-bench listening on ADDR`. `load` keeps `concurrency` unary
//! calls in flight, spread over `channels` tonic channels (each one HTTP/2
//! connection multiplexing its share of the calls), for `secs` seconds, then prints
//! one JSON line: `{"requests": N, "errors": N, "rps": R, "secs": S}`.
//! Only `Unary` is served; the streaming methods answer `UNIMPLEMENTED`.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use meshtrace_tests::pb::echo_client::EchoClient;
use meshtrace_tests::pb::echo_server::{Echo, EchoServer};
use meshtrace_tests::pb::{EchoReply, EchoRequest};
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// gRPC unary benchmark: server and closed-loop client.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `Echo.Unary` (tonic, HTTP/2 cleartext).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Worker threads (1, like the HTTP backend).
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Closed-loop unary calls against a target; prints one JSON line.
    Load {
        /// The server (or the sidecar's inbound listener), `http://HOST:PORT`.
        #[arg(long)]
        target: String,
        /// Calls in flight at any time.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// tonic channels (HTTP/2 connections) the calls are spread over.
        #[arg(long, default_value_t = 4)]
        channels: usize,
        /// Client worker threads (2, like wrk -t2).
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
}

fn main() -> Result<(), BoxError> {
    match Args::parse().command {
        Command::Serve { listen, workers } => runtime(workers)?.block_on(serve(listen)),
        Command::Load {
            target,
            concurrency,
            secs,
            channels,
            workers,
        } => runtime(workers)?.block_on(load(target, concurrency, secs, channels)),
    }
}

fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
}

// === serve ===

/// The benchmark's `Echo`: answers `Unary` with the request's message and nothing
/// else, so the figures measure the path, not the application.
#[derive(Clone, Copy, Debug)]
struct EchoService;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            message: request.into_inner().message,
            metadata: Default::default(),
        }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        _request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Err(Status::unimplemented("grpc-bench serves Unary only"))
    }

    async fn client_stream(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        Err(Status::unimplemented("grpc-bench serves Unary only"))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Err(Status::unimplemented("grpc-bench serves Unary only"))
    }
}

async fn serve(listen: SocketAddr) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("grpc-bench listening on {}", listener.local_addr()?);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming_shutdown(incoming, shutdown())
        .await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

// === load ===

/// What the callers counted.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    errors: AtomicU64,
}

async fn load(
    target: String,
    concurrency: usize,
    secs: f64,
    channels: usize,
) -> Result<(), BoxError> {
    let secs = Duration::try_from_secs_f64(secs).map_err(|e| format!("--secs {secs}: {e}"))?;
    let mut clients = Vec::new();
    for i in 0..channels.max(1) {
        let endpoint = Endpoint::from_shared(target.clone())
            .map_err(|e| format!("--target {target:?}: {e}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let channel: Channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("channel {i} to {target}: {e}"))?;
        clients.push(EchoClient::new(channel));
    }
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut callers = Vec::new();
    for i in 0..concurrency.max(1) {
        let mut client = clients[i % clients.len()].clone();
        let counts = counts.clone();
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = EchoRequest {
                    message: "ping".into(),
                    ..Default::default()
                };
                match client.unary(request).await {
                    Ok(_) => counts.requests.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counts.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    // Calls in flight finish within a round trip; a stuck one is abandoned.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for caller in callers {
            let _ = caller.await;
        }
    })
    .await;
    let requests = counts.requests.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "requests": requests,
        "errors": errors,
        "rps": requests as f64 / elapsed,
        "secs": elapsed,
    });
    println!("{report}");
    Ok(())
}
