//! In-memory upstreams for in-process tests of the forwarding path: a
//! [`Connect`] whose connections are `tokio::io::duplex` streams served by a
//! hyper "app", or that never complete, or that are refused.

use std::convert::Infallible;
use std::future::{pending, ready};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use meshtrace_config::HostPort;
use tokio::io::DuplexStream;

use super::{Connect, Connecting, Io};

/// How the mock app answers a request.
pub(crate) type Reply = Arc<dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// What a connection attempt does.
pub(crate) enum Behaviour {
    /// Connects to an app (HTTP/1 or HTTP/2) answering with the reply.
    App(Reply),
    /// Connects, then never answers (the request is read by nobody).
    Silent,
    /// Never completes: the connect timeout has to end it.
    Hang,
    /// Fails at once with `ECONNREFUSED`.
    Refuse,
}

/// A connector with one behaviour for every target; it remembers what it was
/// asked to dial.
pub(crate) struct MockConnect {
    behaviour: Behaviour,
    dialled: Mutex<Vec<String>>,
    /// The app ends of `Silent` connections, kept open.
    silent: Mutex<Vec<DuplexStream>>,
}

// === impl MockConnect ===

impl MockConnect {
    /// A connector behaving as `behaviour`.
    pub(crate) fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour,
            dialled: Mutex::default(),
            silent: Mutex::default(),
        })
    }

    /// A connector to an app answering every request with `reply`.
    pub(crate) fn app(
        reply: impl Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::new(Behaviour::App(Arc::new(reply)))
    }

    /// The targets dialled so far, in order.
    pub(crate) fn dialled(&self) -> Vec<String> {
        self.dialled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Connect for MockConnect {
    fn connect(&self, target: &HostPort) -> Connecting {
        self.dialled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(target.to_string());
        let (near, far) = tokio::io::duplex(64 * 1024);
        match &self.behaviour {
            Behaviour::App(reply) => {
                let reply = reply.clone();
                let service = service_fn(move |req| ready(Ok::<_, Infallible>(reply(&req))));
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(far), service).await;
                });
            }
            Behaviour::Silent => self
                .silent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(far),
            Behaviour::Hang => return Box::pin(pending()),
            Behaviour::Refuse => {
                let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
                return Box::pin(ready(Err(refused)));
            }
        }
        Box::pin(ready(Ok(Box::new(near) as Box<dyn Io>)))
    }
}

/// An app answering 500 with the sidecar's error header, as if it were its
/// sidecar reporting a failure.
pub(crate) fn posing_as_the_sidecar(_: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        crate::http::edge::PROXY_ERROR.clone(),
        http::HeaderValue::from_static("whatever"),
    );
    response
}
