//! The request header limits, as a layer.
//!
//! hyper enforces hard limits of its own (buffer size, HTTP/1 field count), set
//! well above ours, so that a request over `limits.max_header_bytes` or
//! `limits.max_header_count` reaches this layer and gets a 431 whose body says how
//! large it was and what the limit is.
//!
//! The limits are the client's: they measure the head it sent, not the trace
//! headers the sidecar adds. In the listener's stack the head is measured
//! before the trace layer ([`HeaderLimitLayer::client_head`]: [`MeasureHead`]
//! outermost marks a head over the limit), and refused inside the recording
//! layer, so that a 431 is logged, counted and traced like any response.

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
    /// Whether [`HeaderLimit`] measures the head itself; if not, it refuses
    /// what [`MeasureHead`] marked.
    measure: bool,
}

/// Measures the head the client sent and marks it when over a limit, for a
/// [`HeaderLimit`] further in to refuse.
#[derive(Clone, Copy, Debug)]
pub struct MeasureHeadLayer {
    max: Max,
}

/// Why a head is over a limit, from [`MeasureHead`] to [`HeaderLimit`].
#[derive(Clone, Debug)]
struct OverLimit(String);

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
            measure: true,
        }
    }

    /// The same limits split in two: the measuring layer goes outside the
    /// layers that add headers, the refusing one inside those that record.
    pub fn client_head(bytes: usize, fields: usize) -> (MeasureHeadLayer, Self) {
        let max = Max { bytes, fields };
        (
            MeasureHeadLayer { max },
            Self {
                max,
                measure: false,
            },
        )
    }
}

impl Max {
    /// Why `req`'s head is over a limit, if it is.
    fn exceeded<B>(self, req: &Request<B>) -> Option<String> {
        let fields = req.headers().len();
        if fields > self.fields {
            return Some(format!(
                "request has {fields} header fields, over the limit of {}",
                self.fields
            ));
        }
        let size = header_block_size(req);
        (size > self.bytes).then(|| {
            format!(
                "request header block is {size} bytes, over the limit of {} bytes",
                self.bytes
            )
        })
    }
}

impl<S> tower::Layer<S> for MeasureHeadLayer {
    type Service = MeasureHead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MeasureHead {
            inner,
            max: self.max,
        }
    }
}

/// Marks a request whose head, as the client sent it, is over a limit.
#[derive(Clone, Debug)]
pub struct MeasureHead<S> {
    inner: S,
    max: Max,
}

impl<S, B> tower::Service<Request<B>> for MeasureHead<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(why) = self.max.exceeded(&req) {
            req.extensions_mut().insert(OverLimit(why));
        }
        self.inner.call(req)
    }
}

impl<S> tower::Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimit {
            inner,
            max: self.max,
            measure: self.measure,
        }
    }
}

/// Answers 431 (gRPC: RESOURCE_EXHAUSTED) instead of forwarding an oversized head.
#[derive(Clone, Debug)]
pub struct HeaderLimit<S> {
    inner: S,
    max: Max,
    measure: bool,
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let over = match self.measure {
            true => self.max.exceeded(&req),
            false => req.extensions_mut().remove::<OverLimit>().map(|o| o.0),
        };
        let Some(message) = over else {
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
