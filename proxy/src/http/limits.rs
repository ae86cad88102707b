//! The request header limits, as a layer.
//!
//! hyper enforces hard limits of its own (buffer size, HTTP/1 field count), set
//! well above ours, so that a request over `limits.max_header_bytes` or
//! `limits.max_header_count` reaches this layer and gets a 431 whose body says how
//! large it was and what the limit is.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures_util::future::{self, Either, Ready};
use http::{Request, Response};

use super::edge::{self, Refusal};
use super::{is_grpc, ProxyBody};

/// Adds [`HeaderLimit`] in front of a service.
#[derive(Clone, Copy, Debug)]
pub struct HeaderLimitLayer {
    max: Max,
}

/// The two limits of a request head.
#[derive(Clone, Copy, Debug)]
struct Max {
    bytes: usize,
    fields: usize,
}

impl HeaderLimitLayer {
    /// Rejects header blocks larger than `bytes` or with more than `fields` fields.
    pub fn new(bytes: usize, fields: usize) -> Self {
        Self {
            max: Max { bytes, fields },
        }
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
    max: Max,
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
        let fields = req.headers().len();
        let size = header_block_size(&req);
        let message = if fields > self.max.fields {
            format!(
                "request has {fields} header fields, over the limit of {}",
                self.max.fields
            )
        } else if size > self.max.bytes {
            format!(
                "request header block is {size} bytes, over the limit of {} bytes",
                self.max.bytes
            )
        } else {
            return Either::Right(self.inner.call(req));
        };
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
