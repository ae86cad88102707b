//! HTTP/2 (h2c prior knowledge) clients: one connection, many concurrent streams.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::body::{collect, empty, RequestBody};
use super::closed::Closed;
use super::progress::{exchange, send_watched};
use crate::bound::within;
use crate::BoxError;

/// `GET path` on a new HTTP/2 connection, the whole response read.
pub async fn http2_get(addr: SocketAddr, path: &str) -> Response<Bytes> {
    H2Conn::connect(addr).await.get(path).await
}

/// Sends `req` on a new HTTP/2 connection, its body still streaming; see
/// [`H2Conn::send`] for how the URI is completed.
pub async fn http2_request<B>(addr: SocketAddr, req: Request<B>) -> Response<Incoming>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    H2Conn::connect(addr).await.send(req).await
}

/// One HTTP/2 connection. Clones share it, so concurrent `send`s from clones are
/// multiplexed as streams of the one connection. It closes once every clone is
/// dropped and the streams in flight are done.
#[derive(Clone, Debug)]
pub struct H2Conn {
    sender: http2::SendRequest<RequestBody>,
    addr: SocketAddr,
    local: SocketAddr,
    closed: Closed,
}

// === impl H2Conn ===

impl H2Conn {
    /// Connects to `addr` and performs the HTTP/2 handshake (prior knowledge).
    pub async fn connect(addr: SocketAddr) -> Self {
        let (stream, local) = super::tcp::connect(addr).await;
        let handshake = http2::handshake(TokioExecutor::new(), TokioIo::new(stream));
        let (sender, connection) = within(format!("the HTTP/2 handshake with {addr}"), handshake)
            .await
            .unwrap_or_else(|e| panic!("the HTTP/2 handshake with {addr} failed: {e}"));
        let closed = Closed::spawn(connection);
        Self {
            sender,
            addr,
            local,
            closed,
        }
    }

    /// The client side of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `GET path`, the whole response read.
    pub async fn get(&self, path: &str) -> Response<Bytes> {
        let req = Request::get(path)
            .body(empty())
            .expect("a GET request with a valid path");
        collect(self.send(req).await).await
    }

    /// Sends `req` as a new stream and returns the response with its body still
    /// streaming; panics if the exchange fails.
    ///
    /// A URI without a scheme gets `http`; one without an authority gets the
    /// `Host` header's value (removed, as HTTP/2 carries it as `:authority`), else
    /// the connected address.
    pub async fn send<B>(&self, req: Request<B>) -> Response<Incoming>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let what = exchange(&req, "HTTP/2", self.addr);
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"))
    }

    /// Sends `req`; an error is the stream or connection failing (refused,
    /// reset, `GOAWAY`), for tests that expect it.
    pub async fn try_send<B>(&self, req: Request<B>) -> Result<Response<Incoming>, hyper::Error>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let mut req = req.map(|b| b.map_err(Into::into).boxed());
        let uri = self.absolute(&mut req);
        *req.uri_mut() = uri;
        let mut sender = self.sender.clone();
        send_watched(req, self.addr, |req| async move {
            sender.ready().await?;
            sender.send_request(req).await
        })
        .await
    }

    fn absolute(&self, req: &mut Request<RequestBody>) -> Uri {
        let host = req.headers_mut().remove(HOST);
        let mut parts = req.uri().clone().into_parts();
        if parts.authority.is_none() {
            let authority = match host {
                Some(host) => Authority::try_from(host.as_bytes()).expect("Host is an authority"),
                None => {
                    Authority::try_from(self.addr.to_string()).expect("an address is an authority")
                }
            };
            parts.authority = Some(authority);
        }
        parts.scheme.get_or_insert(Scheme::HTTP);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some("/".parse().expect("/ is a path"));
        }
        Uri::from_parts(parts).expect("scheme, authority and path make a URI")
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_closed()
    }

    /// Resolves once the server closed the connection (`GOAWAY` then close on a
    /// drain, an idle timeout), within [`crate::bound::STEP`].
    pub async fn closed(&self) {
        let what = format!(
            "{} to close the HTTP/2 connection from {}",
            self.addr, self.local
        );
        self.closed.wait(&what).await;
    }
}
