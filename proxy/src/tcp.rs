//! Opaque TCP forwarding: bytes in, bytes out, nothing parsed.
//!
//! Used for configured opaque ports and for connections detection did not
//! recognise as HTTP. The bytes detection already read are written upstream first.
//! Each direction is copied independently and half-closes propagate (a client that
//! shuts down its write side still receives the rest of the response). A
//! connection with no traffic in either direction for `idle` is closed.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Per-direction copy buffer.
const BUF_SIZE: usize = 16 * 1024;

/// Forwards `downstream` to `upstream` until both directions end or `idle` passes
/// with no traffic. Returns (bytes to upstream, bytes to downstream).
pub async fn forward<D, U>(
    downstream: D,
    prefix: Bytes,
    mut upstream: U,
    idle: Duration,
) -> io::Result<(u64, u64)>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    upstream.write_all(&prefix).await?;
    let start = Instant::now();
    let last_activity = AtomicU64::new(0);
    let (dr, dw) = tokio::io::split(downstream);
    let (ur, uw) = tokio::io::split(upstream);
    let copy = async {
        tokio::try_join!(
            copy(dr, uw, start, &last_activity),
            copy(ur, dw, start, &last_activity)
        )
    };
    let watchdog = async {
        loop {
            let last = start + Duration::from_millis(last_activity.load(Relaxed));
            tokio::time::sleep_until(last + idle).await;
            if Duration::from_millis(last_activity.load(Relaxed)) + idle <= start.elapsed() {
                return;
            }
        }
    };
    tokio::select! {
        result = copy => result.map(|(up, down)| (up + prefix.len() as u64, down)),
        () = watchdog => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    }
}

/// Copies until EOF, then shuts the writer down (propagating a half-close).
async fn copy<R, W>(
    mut r: R,
    mut w: W,
    start: Instant,
    last_activity: &AtomicU64,
) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
        last_activity.store(
            u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }
}
