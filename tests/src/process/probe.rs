//! The HTTP question readiness is asked with: one bounded `GET` on a fresh
//! connection that reports failure as a value, never a panic, because "not yet"
//! is the usual answer while a process starts.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one exchange may take: a ready process answers in milliseconds, a
/// request through a demo mesh of two sidecars and two apps in well under this.
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// `GET path` with `Host: host` on a new HTTP/1.1 connection to `addr`, bounded
/// by [`PROBE_LIMIT`]: the status and the body as (trimmed) text.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<(StatusCode, String), String> {
    get_with(addr, host, path, &[]).await
}

/// [`get`] with extra request headers (a demo app's trace context).
pub async fn get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<(StatusCode, String), String> {
    let what = format!("GET http://{host}{path} via {addr}");
    match tokio::time::timeout(PROBE_LIMIT, exchange(addr, host, path, headers)).await {
        Ok(result) => result.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {PROBE_LIMIT:?}")),
    }
}

async fn exchange(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<(StatusCode, String), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = Request::get(path).header(http::header::HOST, host);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
}
