//! Protocol detection on a connection's first bytes.
//!
//! The sidecar reads (never more than `limit` bytes, never longer than the detect
//! timeout) until it can tell:
//!
//! - the HTTP/2 connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` → HTTP/2 (h2c
//!   with prior knowledge);
//! - an HTTP/1.x request line `METHOD SP target SP HTTP/1.d CRLF` → HTTP/1;
//! - anything else, or silence until the timeout → opaque TCP.
//!
//! A byte that cannot continue either form decides "opaque" at once, so binary
//! protocols pay no timeout. The bytes read are replayed to whichever server takes
//! the connection through [`Prefixed`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 prior knowledge.
    Http2,
    /// Not HTTP: forward bytes untouched.
    Opaque,
    /// The peer closed before sending anything.
    Closed,
}

/// The verdict on the bytes seen so far.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Done(Detected),
    NeedMore,
}

/// Reads from `io` until the protocol is known. Returns the verdict and every byte
/// read, which the caller must replay.
pub async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    limit: usize,
    timeout: Duration,
) -> io::Result<(Detected, Bytes)> {
    let mut buf = BytesMut::with_capacity(1024);
    let read_until_known = async {
        loop {
            if buf.len() >= limit {
                // A valid-looking request line this long: let the HTTP/1 server
                // answer it (414/431) rather than misroute it as TCP.
                return Ok::<_, io::Error>(Detected::Http1);
            }
            buf.reserve(1024.min(limit - buf.len()));
            if io.read_buf(&mut buf).await? == 0 {
                return Ok(if buf.is_empty() {
                    Detected::Closed
                } else {
                    Detected::Opaque
                });
            }
            if let Verdict::Done(d) = classify(&buf) {
                return Ok(d);
            }
        }
    };
    let detected = match tokio::time::timeout(timeout, read_until_known).await {
        Ok(result) => result?,
        Err(_elapsed) => Detected::Opaque,
    };
    Ok((detected, buf.freeze()))
}

/// Classifies a prefix of the stream.
fn classify(buf: &[u8]) -> Verdict {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Verdict::Done(Detected::Http2)
        } else {
            Verdict::NeedMore
        };
    }
    http1_request_line(buf)
}

/// Checks `METHOD SP request-target SP HTTP/1.d CRLF` incrementally (RFC 9112 §3).
fn http1_request_line(buf: &[u8]) -> Verdict {
    let opaque = Verdict::Done(Detected::Opaque);
    // method = token
    let method_len = buf.iter().take_while(|b| is_tchar(**b)).count();
    let Some(&after_method) = buf.get(method_len) else {
        return Verdict::NeedMore;
    };
    if method_len == 0 || after_method != b' ' {
        return opaque;
    }
    // request-target: visible ASCII up to the next space.
    let rest = &buf[method_len + 1..];
    let target_len = rest.iter().take_while(|b| b.is_ascii_graphic()).count();
    let Some(&after_target) = rest.get(target_len) else {
        return Verdict::NeedMore;
    };
    if target_len == 0 || after_target != b' ' {
        return opaque;
    }
    // HTTP-version CRLF (a bare LF is tolerated, as RFC 9112 §2.2 allows).
    let version = &rest[target_len + 1..];
    const V: &[u8] = b"HTTP/1.";
    let n = version.len().min(V.len());
    if version[..n] != V[..n] {
        return opaque;
    }
    match version.get(V.len()..) {
        None | Some([]) => Verdict::NeedMore,
        Some([d, ..]) if !d.is_ascii_digit() => opaque,
        Some([_]) | Some([_, b'\r']) => Verdict::NeedMore,
        Some([_, b'\n', ..]) | Some([_, b'\r', b'\n', ..]) => Verdict::Done(Detected::Http1),
        Some(_) => opaque,
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pin_project_lite::pin_project! {
    /// An I/O stream that first replays bytes already read from it.
    #[derive(Debug)]
    pub struct Prefixed<I> {
        prefix: Bytes,
        #[pin]
        io: I,
    }
}

// === impl Prefixed ===

impl<I> Prefixed<I> {
    /// Replays `prefix` before reading from `io`.
    pub fn new(prefix: Bytes, io: I) -> Self {
        Self { prefix, io }
    }
}

impl<I: AsyncRead> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(bytes: &[u8]) -> Verdict {
        classify(bytes)
    }

    #[test]
    fn h2_preface_is_http2_only_when_complete() {
        assert_eq!(verdict(H2_PREFACE), Verdict::Done(Detected::Http2));
        assert_eq!(verdict(&H2_PREFACE[..10]), Verdict::NeedMore);
    }

    #[test]
    fn request_line_is_http1() {
        assert_eq!(
            verdict(b"GET / HTTP/1.1\r\n"),
            Verdict::Done(Detected::Http1)
        );
        assert_eq!(
            verdict(b"DELETE /a?b=c HTTP/1.0\n"),
            Verdict::Done(Detected::Http1)
        );
    }

    #[test]
    fn partial_request_line_needs_more() {
        for prefix in [
            "G",
            "GET",
            "GET ",
            "GET /x",
            "GET /x HTTP/",
            "GET /x HTTP/1.1",
            "GET /x HTTP/1.1\r",
        ] {
            assert_eq!(verdict(prefix.as_bytes()), Verdict::NeedMore, "{prefix:?}");
        }
    }

    #[test]
    fn binary_and_other_protocols_are_opaque_at_once() {
        for bytes in [
            &b"\x16\x03\x01\x02"[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/2.0\r\n",
            b"GET / FTP/1.1",
        ] {
            assert_eq!(verdict(bytes), Verdict::Done(Detected::Opaque), "{bytes:?}");
        }
    }

    #[test]
    fn empty_flags_style_truncation_never_panics() {
        for len in 0..H2_PREFACE.len() {
            let _ = verdict(&b"GET /x HTTP/1.1\r\n"[..len.min(17)]);
            let _ = verdict(&H2_PREFACE[..len]);
        }
    }

    #[tokio::test]
    async fn silence_until_the_timeout_is_opaque() {
        let (mut a, _b) = tokio::io::duplex(64);
        let (d, bytes) = detect(&mut a, 1024, Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!((d, bytes.len()), (Detected::Opaque, 0));
    }

    #[tokio::test]
    async fn prefixed_replays_the_detected_bytes() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (d, bytes) = detect(&mut a, 1024, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d, Detected::Http1);
        let mut replay = Prefixed::new(bytes, a);
        let mut out = vec![0; 27];
        replay.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
}
