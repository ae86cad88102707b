//! The original destination of a redirected connection.
//!
//! When iptables `REDIRECT`s a connection to the sidecar, the kernel's connection
//! tracker remembers where it was going; `SO_ORIGINAL_DST` (IPv4) and
//! `IP6T_SO_ORIGINAL_DST` (IPv6) read it back. socket2 wraps both getsockopts, so
//! no `unsafe` is needed here.
//!
//! A connection that was *not* redirected reports its own local address (or no
//! entry at all). Forwarding it would connect the sidecar to itself, so the caller
//! refuses connections whose original destination is the listener: see
//! [`lookup`], which applies that check to whatever [`OrigDst`] answered.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Why a connection has no usable original destination.
#[derive(Debug, thiserror::Error)]
pub enum OrigDstError {
    /// The kernel has no redirect record (no iptables rule matched, or no netfilter).
    #[error("no original destination recorded: {0}")]
    Unavailable(io::Error),
    /// The connection was addressed to the listener itself: forwarding it would loop.
    #[error("original destination {0} is the sidecar's own listener")]
    Loop(SocketAddr),
}

/// Where a redirected connection was originally going. Production asks the
/// kernel ([`Kernel`]); tests give a fixed answer, so transparent mode runs
/// in-process without root, iptables or a network namespace.
pub trait OrigDst: Send + Sync + 'static {
    /// The raw original destination of `stream`, before the loop check of
    /// [`lookup`].
    fn original_dst(&self, stream: &TcpStream) -> io::Result<SocketAddr>;
}

/// The kernel's redirect record (`SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Kernel;

// === impl Kernel ===

impl OrigDst for Kernel {
    fn original_dst(&self, stream: &TcpStream) -> io::Result<SocketAddr> {
        let sock = socket2::SockRef::from(stream);
        let local = stream.local_addr()?;
        // An IPv4 connection accepted on a dual-stack socket has an IPv4-mapped
        // local address, but its redirect record is IPv4: ask by the canonical
        // family.
        if local.ip().to_canonical().is_ipv4() {
            sock.original_dst_v4()
        } else {
            sock.original_dst_v6()
        }?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet address"))
    }
}

/// The address `stream` was originally sent to according to `source`, refusing
/// loops to the sidecar.
pub fn lookup(stream: &TcpStream, source: &dyn OrigDst) -> Result<SocketAddr, OrigDstError> {
    let local = stream.local_addr().map_err(OrigDstError::Unavailable)?;
    let addr = source
        .original_dst(stream)
        .map_err(OrigDstError::Unavailable)?;
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    if addr == SocketAddr::new(local.ip().to_canonical(), local.port()) {
        return Err(OrigDstError::Loop(addr));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_connection_is_not_forwarded_to_itself() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // Without a REDIRECT rule the kernel either has no record or reports the
        // listener itself; both must refuse rather than loop.
        assert!(lookup(&accepted, &Kernel).is_err());
    }
}
