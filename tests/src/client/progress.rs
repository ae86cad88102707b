//! Bounds an exchange by its progress rather than its total time: a request
//! whose body is still flowing is not stuck, however long a gigabyte upload
//! takes; one where nothing moved for [`STEP`] is.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::Notify;

use super::body::RequestBody;
use crate::bound::STEP;
use crate::BoxError;

/// Signalled each time the request body hands a frame to the connection.
#[derive(Clone, Debug, Default)]
pub(super) struct Progress(Arc<Notify>);

/// A request body that signals its [`Progress`].
struct Watched {
    inner: RequestBody,
    progress: Progress,
}

/// Sends `req` with `send` (a connection's `ready`, then `send_request`),
/// bounded by the progress of its body; `addr` names the server in a failure.
pub(super) async fn send_watched<F, Fut>(
    req: Request<RequestBody>,
    addr: SocketAddr,
    send: F,
) -> Result<Response<Incoming>, hyper::Error>
where
    F: FnOnce(Request<RequestBody>) -> Fut,
    Fut: Future<Output = Result<Response<Incoming>, hyper::Error>>,
{
    let what = format!("the response to {} {} from {addr}", req.method(), req.uri());
    let (parts, body) = req.into_parts();
    let (body, progress) = Progress::watch(body);
    progress
        .bound(&what, send(Request::from_parts(parts, body)))
        .await
}

/// How a failed exchange is named: `GET /x over HTTP/2 to 127.0.0.1:1`.
pub(super) fn exchange<B>(req: &Request<B>, protocol: &str, addr: SocketAddr) -> String {
    format!("{} {} over {protocol} to {addr}", req.method(), req.uri())
}

// === impl Progress ===

impl Progress {
    /// Wraps `body` so that sending it counts as progress.
    pub(super) fn watch(body: RequestBody) -> (RequestBody, Self) {
        let progress = Self::default();
        let watched = Watched {
            inner: body,
            progress: progress.clone(),
        };
        (watched.boxed(), progress)
    }

    /// Awaits `fut`, panicking with `what` if neither it finished nor the body
    /// moved for [`STEP`].
    pub(super) async fn bound<F: std::future::Future>(&self, what: &str, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            let step = async {
                tokio::select! {
                    output = &mut fut => Some(output),
                    () = self.0.notified() => None,
                }
            };
            match tokio::time::timeout(STEP, step).await {
                Ok(Some(output)) => return output,
                Ok(None) => continue,
                Err(_) => panic!("no progress for {STEP:?}: {what}"),
            }
        }
    }
}

// === impl Watched ===

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            // A stored permit if no one waits yet: progress is never missed.
            self.progress.0.notify_one();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
