//! HTTP/1.1 clients: one-shot requests, and a keep-alive connection that proves
//! which requests shared it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::body::{collect, empty, RequestBody};
use super::closed::Closed;
use super::progress::{exchange, send_watched};
use crate::BoxError;

/// `GET path` on a new HTTP/1.1 connection, the whole response read.
pub async fn http1_get(addr: SocketAddr, path: &str) -> Response<Bytes> {
    H1Conn::connect(addr).await.get(path).await
}

/// Sends `req` on a new HTTP/1.1 connection and returns the response with its
/// body still streaming. `Host` defaults to the URI's authority, else `addr`.
pub async fn http1_request<B>(addr: SocketAddr, req: Request<B>) -> Response<Incoming>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    H1Conn::connect(addr).await.send(req).await
}

/// One HTTP/1.1 connection, kept alive across requests (one at a time, as
/// HTTP/1.1 allows). Dropping it closes the connection once the response in
/// flight, if any, has been read.
#[derive(Debug)]
pub struct H1Conn {
    sender: http1::SendRequest<RequestBody>,
    addr: SocketAddr,
    local: SocketAddr,
    closed: Closed,
}

// === impl H1Conn ===

impl H1Conn {
    /// Connects to `addr` and performs the (trivial) HTTP/1.1 handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        let (stream, local) = super::tcp::connect(addr).await;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 client handshake does no I/O");
        let closed = Closed::spawn(connection.with_upgrades());
        Self {
            sender,
            addr,
            local,
            closed,
        }
    }

    /// The client side of the connection: a server (the app behind a proxy) that
    /// sees two requests from the same peer port saw them on one connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The client side's port; see [`H1Conn::local_addr`].
    pub fn local_port(&self) -> u16 {
        self.local.port()
    }

    /// `GET path`, the whole response read.
    pub async fn get(&mut self, path: &str) -> Response<Bytes> {
        let req = Request::get(path)
            .body(empty())
            .expect("a GET request with a valid path");
        collect(self.send(req).await).await
    }

    /// Sends `req` and returns the response with its body still streaming;
    /// panics if the exchange fails.
    pub async fn send<B>(&mut self, req: Request<B>) -> Response<Incoming>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let what = exchange(&req, "HTTP/1.1", self.addr);
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"))
    }

    /// Sends `req`; an error is the connection failing (refused, closed or reset
    /// by the server), for tests that expect it.
    pub async fn try_send<B>(&mut self, req: Request<B>) -> Result<Response<Incoming>, hyper::Error>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let mut req = req.map(|b| b.map_err(Into::into).boxed());
        if !req.headers().contains_key(HOST) {
            let host = req
                .uri()
                .authority()
                .map_or_else(|| self.addr.to_string(), |a| a.to_string());
            let host = HeaderValue::try_from(host).expect("an authority is a valid Host value");
            req.headers_mut().insert(HOST, host);
        }
        let sender = &mut self.sender;
        send_watched(req, self.addr, |req| async move {
            sender.ready().await?;
            sender.send_request(req).await
        })
        .await
    }

    /// Whether the connection has ended (closed by either side, or failed).
    pub fn is_closed(&self) -> bool {
        self.closed.is_closed()
    }

    /// Resolves once the server closed the connection (an idle timeout, a
    /// drain), within [`crate::bound::STEP`].
    pub async fn closed(&self) {
        let what = format!(
            "{} to close the HTTP/1.1 connection from {}",
            self.addr, self.local
        );
        self.closed.wait(&what).await;
    }
}

/// `GET /` on a new HTTP/1.1 connection with `Host: authority` and `headers`,
/// the whole response read: for tests that care which headers arrive where.
pub async fn http1_get_with(
    addr: SocketAddr,
    authority: &str,
    headers: &[(&str, &str)],
) -> Response<Bytes> {
    let mut req = Request::get("/").header(HOST, authority);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(empty()).expect("test headers are valid");
    collect(http1_request(addr, req).await).await
}
