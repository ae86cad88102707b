//! The HTTP/1 pool: idle connections wait in a LIFO list (the most recently used
//! is the warmest); a request takes one or dials, and its response body gives
//! the connection back when it ends ([`super::body`]).
//!
//! A request the pool could not even start on a reused connection (it closed
//! under us) is retried once on the next one, as hyper-util's client does; a
//! fresh connection's failure is final.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::body::{GiveBack, UpstreamBody};
use super::{Idle, Pool, SendError, MAX_IDLE_PER_TARGET};

// === impl Pool ===

impl Pool {
    pub(super) async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                // Boxed: the dial is rare, and inline it would make every
                // request's future (moved at each layer) several times larger.
                None => (Box::pin(self.dial_h1()).await?, false),
            };
            // A reused connection is ready (checked) unless it closed since; a
            // fresh one once its task runs.
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Request(error));
            }
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                    let give_back = (!upgraded).then(|| GiveBack {
                        pool: self.clone(),
                        sender,
                    });
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
    /// still sending an earlier request's body (its response ended first, e.g. an
    /// early 413) stays listed until it can; waiting for it could take as long as
    /// that upload. Closed ones are dropped.
    fn checkout(&self) -> Option<http1::SendRequest<Incoming>> {
        let mut state = self.lock();
        let mut i = state.idle.len();
        while i > 0 {
            i -= 1;
            let sender = &state.idle[i].sender;
            if sender.is_closed() {
                state.idle.remove(i);
            } else if sender.is_ready() {
                return Some(state.idle.remove(i).sender);
            }
        }
        None
    }

    /// Takes back a connection whose exchange ended.
    pub(super) fn give_back(&self, sender: http1::SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut state = self.lock();
        if state.idle.len() < MAX_IDLE_PER_TARGET {
            state.idle.push(Idle {
                sender,
                since: tokio::time::Instant::now(),
            });
        }
    }

    pub(super) async fn dial_h1(&self) -> Result<http1::SendRequest<Incoming>, SendError> {
        let io = self.dial().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Handshake)?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%target, %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}
