//! The HTTP/2 pool: one connection carries every request; a closed one is
//! replaced by the next request, one dial at a time (a burst on a cold pool
//! opens one connection, not one per request).

use std::io;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::UpstreamBody;
use super::{Pool, SendError};

// === impl Pool ===

impl Pool {
    pub(super) async fn send_h2(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.shared_h2() {
                Some(sender) => (sender, true),
                None => Box::pin(self.dial_h2()).await?,
            };
            if let Err(error) = sender.ready().await {
                self.forget_h2();
                if reused {
                    continue;
                }
                return Err(SendError::Request(error));
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response.map(|body| UpstreamBody::new(body, None))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => {
                        self.forget_h2();
                        req = unsent;
                    }
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<Incoming>> {
        self.lock().h2.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    fn forget_h2(&self) {
        let mut state = self.lock();
        if state.h2.as_ref().is_some_and(http2::SendRequest::is_closed) {
            state.h2 = None;
        }
    }

    /// The shared HTTP/2 connection, dialled unless another request just did; the
    /// flag says whether it was already there.
    async fn dial_h2(&self) -> Result<(http2::SendRequest<Incoming>, bool), SendError> {
        let _dialing = self.h2_dial.lock().await;
        if let Some(sender) = self.shared_h2() {
            return Ok((sender, true));
        }
        let io = self.dial().await?;
        let handshake = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io);
        let (sender, conn) = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(result) => result.map_err(SendError::Handshake)?,
            Err(_) => {
                return Err(SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP/2 handshake timed out",
                )))
            }
        };
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%target, %error, "upstream connection ended with an error");
            }
        });
        self.lock().h2 = Some(sender.clone());
        Ok((sender, false))
    }
}
