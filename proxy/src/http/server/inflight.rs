//! Which requests of one downstream connection are in flight: from the
//! service call until hyper is done with the response body (or the call
//! failed), so a long response is never taken for an idle connection.
//!
//! Two counters that only grow, shared by the service wrapper ([`Counted`]) and
//! whatever watches the connection's deadlines: the HTTP/1 IO wrapper
//! ([`super::deadline`]) compares them inline, on the connection's own task;
//! the HTTP/2 watcher ([`idle`]) runs beside hyper's connection while streams
//! end on their own tasks, so it is woken when the last one ends. Per request
//! this costs two atomic increments and an `Arc` clone: no lock, no clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::ServiceExt;

/// Requests started and ended on one connection.
#[derive(Debug, Default)]
pub(super) struct Requests {
    started: AtomicUsize,
    ended: AtomicUsize,
    /// The HTTP/2 watcher, woken when nothing is left in flight.
    idle: AtomicWaker,
}

/// Holds one request in flight until dropped.
#[derive(Debug)]
pub(super) struct InFlight(Option<Arc<Requests>>);

/// A service whose calls are counted in [`Requests`]; it is hyper's service
/// (clones the tower service per call, as hyper-util's adapter does).
#[derive(Clone, Debug)]
pub(super) struct Counted<S> {
    inner: S,
    requests: Arc<Requests>,
}

pin_project_lite::pin_project! {
    /// A counted call: hands its [`InFlight`] to the response body.
    pub(super) struct CountedCall<S: tower::Service<Request<Incoming>>> {
        #[pin]
        call: Oneshot<S, Request<Incoming>>,
        in_flight: Option<InFlight>,
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its request in flight until hyper drops it.
    pub(super) struct CountedBody<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

// === impl Requests ===

impl Requests {
    /// Requests whose service call began.
    pub(super) fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Requests begun and not done. `ended` is read first: a request that
    /// starts and ends in between can only make this look busier.
    pub(super) fn in_flight(&self) -> usize {
        let ended = self.ended.load(Ordering::SeqCst);
        self.started().wrapping_sub(ended)
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::SeqCst);
        InFlight(Some(self.clone()))
    }

    fn end(&self) {
        let ended = self.ended.fetch_add(1, Ordering::SeqCst) + 1;
        if ended == self.started() {
            self.idle.wake();
        }
    }
}

// === impl InFlight ===

impl InFlight {
    /// The request upgraded the connection (101): it never ends, so the
    /// tunnel that now owns the IO is never cut as idle.
    fn upgraded(mut self) {
        self.0 = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(requests) = self.0.take() {
            requests.end();
        }
    }
}

// === impl Counted ===

impl<S> Counted<S> {
    /// `inner`, counting its calls in `requests`.
    pub(super) fn new(inner: S, requests: Arc<Requests>) -> Self {
        Self { inner, requests }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Counted<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = CountedCall<S>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        CountedCall {
            call: self.inner.clone().oneshot(req),
            in_flight: Some(self.requests.start()),
        }
    }
}

impl<S, B> Future for CountedCall<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>>,
{
    type Output = Result<Response<CountedBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // An error drops the in-flight guard with the call.
        let response = ready!(this.call.poll(cx))?;
        let mut in_flight = this.in_flight.take();
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(guard) = in_flight.take() {
                guard.upgraded();
            }
        }
        Poll::Ready(Ok(response.map(|inner| CountedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

// === impl CountedBody ===

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves once an HTTP/2 connection has had no request in flight for `idle`:
/// one timer for the connection, re-armed when its last open stream ends.
pub(super) async fn idle(requests: &Requests, idle: Duration) {
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let (mut seen, mut busy) = (0, false);
    std::future::poll_fn(|cx| {
        requests.idle.register(cx.waker());
        if requests.in_flight() > 0 {
            busy = true;
            return Poll::Pending;
        }
        let started = requests.started();
        if busy || started != seen {
            (seen, busy) = (started, false);
            sleep.as_mut().reset(Instant::now() + idle);
        }
        sleep.as_mut().poll(cx)
    })
    .await;
}
