//! `meshtrace-control injector`: the webhook over HTTPS. `POST /inject` answers
//! AdmissionReviews ([`review`](super::review)); `GET /healthz` is for probes.
//!
//! Bounds, since the API server waits on us for every pod creation:
//! * a body is at most [`MAX_BODY`] (7 MiB): the API server stores objects of
//!   up to 3 MiB (etcd's 1.5 MiB by default), and a review may carry the object
//!   and an old object, plus the envelope; more is refused with 413;
//! * a request must arrive and be answered within [`REQUEST_TIMEOUT`] (10 s, the
//!   webhook's default `timeoutSeconds`), the TLS handshake within as long;
//! * at most [`MAX_CONNECTIONS`] connections at once; more wait in the backlog.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::review;
use super::tls::ReloadingTls;
use super::InjectorConfig;

/// The largest AdmissionReview accepted.
pub const MAX_BODY: usize = 7 * 1024 * 1024;
/// Per request, and for the TLS handshake.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long open connections get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// What `injector` needs.
#[derive(Debug)]
pub struct InjectorServe {
    /// Where to listen (`0.0.0.0:15017`).
    pub listen: SocketAddr,
    /// The PEM certificate chain.
    pub tls_cert: PathBuf,
    /// The PEM private key.
    pub tls_key: PathBuf,
    /// What pods get.
    pub config: InjectorConfig,
}

/// A running injector.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Cancel to stop accepting and drain.
    pub shutdown: CancellationToken,
    /// Ends once drained.
    pub task: tokio::task::JoinHandle<()>,
}

/// Loads the certificate, binds and serves until `shutdown` is cancelled.
pub async fn start(serve: InjectorServe) -> Result<Running, String> {
    let tls = ReloadingTls::load(serve.tls_cert, serve.tls_key)?;
    let listener = TcpListener::bind(serve.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", serve.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "injector listening");
    let shutdown = CancellationToken::new();
    let config = Arc::new(serve.config);
    let task = tokio::spawn(accept_loop(listener, tls, config, shutdown.clone()));
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    config: Arc<InjectorConfig>,
    shutdown: CancellationToken,
) {
    let reloader = tokio::spawn(Arc::clone(&tls).watch());
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = accept(&listener) => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
        };
        let acceptor = tls.acceptor();
        let config = Arc::clone(&config);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(stream)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let service = hyper::service::service_fn(move |req| route(Arc::clone(&config), req));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    reloader.abort();
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}

/// Accepts a connection with Nagle's algorithm off: HTTP/2 writes a
/// response's HEADERS and DATA frames separately, and with Nagle on the second
/// waits for the client's delayed ACK (40 ms on Linux); `inject-load --h2`
/// showed it as a 40 ms p99.
async fn accept(listener: &TcpListener) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok((stream, peer))
}

async fn route(
    config: Arc<InjectorConfig>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = match (req.method(), req.uri().path()) {
        (&Method::POST, "/inject") => inject(&config, req).await,
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (_, "/inject" | "/healthz") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: POST /inject or GET /healthz\n",
        ),
    };
    Ok(reply)
}

async fn inject(config: &InjectorConfig, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let too_large = || {
        let message = format!("the review is larger than {MAX_BODY} bytes\n");
        text(StatusCode::PAYLOAD_TOO_LARGE, &message)
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body = Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(REQUEST_TIMEOUT, body.collect()).await {
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body took too long\n"),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}\n"),
            )
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let reply = review::handle(config, &bytes);
    tracing::info!("{}", reply.summary);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    let content_type = if status == StatusCode::OK {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    response(status, content_type, reply.body.into())
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

fn response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, _) = accept(&listener).await.unwrap();
        assert!(stream.nodelay().unwrap());
    }
}
