//! The HTTP/1 pool: idle connections wait in a LIFO list (the most recently used
//! is the warmest); a request takes one or dials, and its response body gives
//! the connection back when it ends ([`super::body`]).
//!
//! A connection has no task of its own: hyper's connection future (the
//! dispatcher that writes requests and reads responses) is polled by the
//! exchange using it — by the request future until the response head arrives,
//! then by the response body — on the downstream connection's task. With the
//! waker rules of [`Conn::poll_ready`], [`Conn::poll_response`] and
//! [`Conn::poll_body`], a request costs 2 task polls instead of 5, and 5.6 %
//! fewer instructions (benches/RESULTS.md, issue 18). An idle
//! connection is not polled at all; one that closed is found on checkout (its
//! dispatcher ends when polled). A connection that must run on its own — an
//! upgraded one, or one still sending a request body after its response ended —
//! gets a task ([`Conn::spawn`]).
//!
//! A request the pool could not even start on a reused connection (it closed
//! under us) is retried once on the next one, as hyper-util's client does; a
//! fresh connection's failure is final.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use meshtrace_config::HostPort;

use super::body::{GiveBack, UpstreamBody};
use super::{Idle, Pool, SendError, MAX_IDLE_PER_TARGET};

/// hyper's connection future, boxed once per connection.
type Dispatch = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// An HTTP/1 connection: the handle requests are sent on, and who drives it.
pub(super) struct Conn {
    sender: http1::SendRequest<Incoming>,
    driver: Driver,
}

/// Who polls a connection's dispatcher.
enum Driver {
    /// The exchange using the connection ([`Conn::drive`]).
    Inline(Dispatch),
    /// A task of its own.
    Spawned,
    /// Nobody: it ended.
    Ended,
}

// === impl Pool ===

impl Pool {
    pub(super) async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                // Boxed: the dial is rare, and inline it would make every
                // request's future (moved at each layer) several times larger.
                None => (Box::pin(self.dial_h1()).await?, false),
            };
            // A reused connection is ready unless it closed since (its
            // dispatcher, polled, notices); a fresh one once first polled.
            if let Err(error) = poll_fn(|cx| conn.poll_ready(cx, &self.target)).await {
                if reused {
                    continue;
                }
                return Err(SendError::Request(error));
            }
            let mut sent = std::pin::pin!(conn.sender.try_send_request(req));
            let mut just_sent = true;
            let response = poll_fn(|cx| {
                let just_sent = std::mem::take(&mut just_sent);
                conn.poll_response(cx, sent.as_mut(), just_sent, &self.target)
            });
            match response.await {
                Ok(response) => {
                    let give_back = if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        // The upgrade completes in the dispatcher, and the
                        // tunnel outlives this exchange.
                        conn.spawn(&self.target);
                        None
                    } else {
                        Some(GiveBack {
                            pool: self.clone(),
                            conn,
                        })
                    };
                    return Ok(response.map(|body| UpstreamBody::h1(body, give_back)));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that can take a request now. One
    /// with a task of its own still sending an earlier request's body (its
    /// response ended first, e.g. an early 413) stays listed until it can;
    /// waiting for it could take as long as that upload. Closed ones are dropped.
    fn checkout(&self) -> Option<Conn> {
        let mut state = self.lock();
        let mut i = state.idle.len();
        while i > 0 {
            i -= 1;
            let conn = &state.idle[i].conn;
            if conn.sender.is_closed() {
                state.idle.remove(i);
            } else if conn.is_inline() || conn.sender.is_ready() {
                return Some(state.idle.remove(i).conn);
            }
        }
        None
    }

    /// Takes back a connection whose exchange ended.
    pub(super) fn give_back(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut state = self.lock();
        if state.idle.len() < MAX_IDLE_PER_TARGET {
            state.idle.push(Idle {
                conn,
                since: tokio::time::Instant::now(),
            });
        }
    }

    pub(super) async fn dial_h1(&self) -> Result<Conn, SendError> {
        let io = TokioIo::new(self.dial().await?);
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Handshake(e.into()))?;
        Ok(Conn {
            sender,
            driver: Driver::Inline(Box::pin(conn.with_upgrades())),
        })
    }
}

// === impl Conn ===

impl Conn {
    /// A connection whose dispatcher a task of the caller's runs (tests that
    /// fill a pool's idle list by hand).
    #[cfg(test)]
    pub(super) fn spawned(sender: http1::SendRequest<Incoming>) -> Self {
        Self {
            sender,
            driver: Driver::Spawned,
        }
    }

    /// Polls the dispatcher, if this exchange drives it: it writes the request
    /// and its body, and reads the response and its body, waking `cx` as it
    /// needs to.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>, target: &HostPort) {
        if let Driver::Inline(dispatch) = &mut self.driver {
            if let Poll::Ready(result) = dispatch.as_mut().poll(cx) {
                if let Err(error) = result {
                    tracing::debug!(%target, %error, "upstream connection ended with an error");
                }
                self.driver = Driver::Ended;
            }
        }
    }

    /// Whether the connection can take a request; it closed if not ever.
    ///
    /// Wakers: an inline dispatcher is first polled without one. A connection
    /// that turns out ready is sent on at once and then driven with the task's
    /// waker ([`Self::poll_response`]), so the request's trip through hyper's
    /// channel does not wake this very task for a poll that finds nothing new.
    fn poll_ready(&mut self, cx: &mut Context<'_>, target: &HostPort) -> Poll<hyper::Result<()>> {
        if self.is_inline() {
            self.drive(&mut Context::from_waker(Waker::noop()), target);
            if self.sender.is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        self.drive(cx, target);
        self.sender.poll_ready(cx)
    }

    /// Polls `response` (of a request sent on this connection, `just_sent` on
    /// the first poll), driving the dispatcher first.
    ///
    /// Only the dispatcher completes the response — by reading it, or by
    /// ending — so with the dispatcher inline the response needs no waker of
    /// its own: one would be woken by this very poll, for a wasted poll of the
    /// whole connection's task. Woken later (by the upstream's bytes), the
    /// dispatcher is first polled without a waker either: a response it
    /// completes is followed by its body, which drives the dispatcher again
    /// (so a waker left behind — e.g. for room in the body's channel — would
    /// only wake the task for nothing). Only a poll that ends waiting gives
    /// the dispatcher the task's waker.
    fn poll_response<F: Future>(
        &mut self,
        cx: &mut Context<'_>,
        mut response: Pin<&mut F>,
        just_sent: bool,
        target: &HostPort,
    ) -> Poll<F::Output> {
        if !self.is_inline() {
            return response.poll(cx);
        }
        let mut no_waker = Context::from_waker(Waker::noop());
        if !just_sent {
            self.drive(&mut no_waker, target);
            if let Poll::Ready(output) = response.as_mut().poll(&mut no_waker) {
                return Poll::Ready(output);
            }
        }
        self.drive(cx, target);
        response.poll(&mut no_waker)
    }

    /// Polls `body` (the response's, fed by this inline dispatcher) without a
    /// waker, driving the dispatcher as [`Self::poll_response`] does: first
    /// without a waker, and with the task's only when the body must wait.
    pub(super) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut Incoming,
        target: &HostPort,
    ) -> Poll<Option<hyper::Result<http_body::Frame<bytes::Bytes>>>> {
        let mut no_waker = Context::from_waker(Waker::noop());
        let mut poll = |body: &mut Incoming| Pin::new(body).poll_frame(&mut no_waker);
        if let Poll::Ready(frame) = poll(body) {
            return Poll::Ready(frame);
        }
        self.drive(&mut Context::from_waker(Waker::noop()), target);
        if let Poll::Ready(frame) = poll(body) {
            return Poll::Ready(frame);
        }
        self.drive(cx, target);
        poll(body)
    }

    /// Readies a connection whose exchange ended for the next one: its
    /// dispatcher, polled once more, turns idle — unless it is still sending
    /// the request body, which then continues in a task of its own. Polled
    /// without a waker: an idle connection wakes no one (the next exchange
    /// drives it before waiting on it).
    pub(super) fn finish(&mut self, target: &HostPort) {
        if !self.is_inline() {
            return;
        }
        self.drive(&mut Context::from_waker(Waker::noop()), target);
        if self.is_inline() && !self.sender.is_ready() {
            self.spawn(target);
        }
    }

    /// Moves the dispatcher to a task of its own.
    pub(super) fn spawn(&mut self, target: &HostPort) {
        if let Driver::Inline(dispatch) = std::mem::replace(&mut self.driver, Driver::Spawned) {
            // Outside a runtime (a body dropped late) it just closes.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                self.driver = Driver::Ended;
                return;
            };
            let target = target.to_string();
            runtime.spawn(async move {
                if let Err(error) = dispatch.await {
                    tracing::debug!(%target, %error, "upstream connection ended with an error");
                }
            });
        }
    }

    pub(super) fn is_inline(&self) -> bool {
        matches!(self.driver, Driver::Inline(_))
    }

    /// Whether the connection closed (as far as it knows).
    pub(super) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}
