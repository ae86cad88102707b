//! The load benchmarks' backend: the smallest hyper server that answers every
//! request (HTTP/1.1 keep-alive or h2c) with a fixed body, so the figures measure
//! the proxy, not the application.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// A fixed-response HTTP/1.1 + h2c server.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Requests for this path get `--large-bytes` instead (e.g. `/big`).
    #[arg(long)]
    large_path: Option<String>,
    /// Response body size for `--large-path`, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    large_bytes: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("backend listening on {}", listener.local_addr()?);
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let large = args
        .large_path
        .map(|path| (path, Bytes::from(vec![b'x'; args.large_bytes])));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (body, large) = (body.clone(), large.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let body = match &large {
                    Some((path, large)) if req.uri().path() == path => large.clone(),
                    _ => body.clone(),
                };
                async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
