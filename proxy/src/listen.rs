//! Binding listeners and dialling upstreams with the socket options a proxy wants.
//!
//! - `SO_REUSEADDR`, so a restarted sidecar rebinds while old connections sit in
//!   TIME_WAIT;
//! - a configurable accept backlog;
//! - `TCP_NODELAY` on every accepted and dialled socket (proxied request/response
//!   traffic is latency-bound; Nagle would add up to 40 ms per small write);
//! - TCP keepalive, so half-dead peers are noticed by the kernel.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Keepalive probes start after this long without traffic.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// Binds a listener with `SO_REUSEADDR` and `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]` accepts IPv4 too, like most servers' default.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Applies per-connection options to an accepted or dialled socket.
pub fn tune(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    SockRef::from(stream).set_tcp_keepalive(&TcpKeepalive::new().with_time(KEEPALIVE_IDLE))
}

/// Dials `addr` within `timeout`, with the options of [`tune`].
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
    tune(&stream)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bound_listener_accepts_tuned_connections() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = connect(addr, Duration::from_secs(1)).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        tune(&accepted).unwrap();
        assert!(client.nodelay().unwrap() && accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn refused_connect_is_reported_as_refused() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(addr, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
