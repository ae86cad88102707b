//! The request header limit, as a layer.
//!
//! hyper enforces a hard buffer limit of its own, set well above ours, so that a
//! request over `limits.max_header_bytes` reaches this layer and gets a 431 whose
//! body says how large it was and what the limit is.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures_util::future::{self, Either, Ready};
use http::{Request, Response};

use super::edge::{self, Refusal};
use super::{is_grpc, ProxyBody};

/// Adds [`HeaderLimit`] in front of a service.
#[derive(Clone, Copy, Debug)]
pub struct HeaderLimitLayer {
    max: usize,
}

impl HeaderLimitLayer {
    /// Rejects header blocks larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> tower::Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimit {
            inner,
            max: self.max,
        }
    }
}

/// Answers 431 (gRPC: RESOURCE_EXHAUSTED) instead of forwarding an oversized head.
#[derive(Clone, Debug)]
pub struct HeaderLimit<S> {
    inner: S,
    max: usize,
}

impl<S, B> tower::Service<Request<B>> for HeaderLimit<S>
where
    S: tower::Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Self::Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let size = header_block_size(&req);
        if size <= self.max {
            return Either::Right(self.inner.call(req));
        }
        let message = format!(
            "request header block is {size} bytes, over the limit of {} bytes",
            self.max
        );
        Either::Left(future::ready(Ok(edge::respond(
            Refusal::HeadersTooLarge,
            is_grpc(&req),
            &message,
        ))))
    }
}

/// The size of the request line and header fields as HTTP/1.1 would send them.
pub fn header_block_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

#[cfg(test)]
mod tests;
