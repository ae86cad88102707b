//! The receiver's listener: the shared [`accept_loop`], which a stop (or the
//! handle's drop) ends, closing the listener and every open connection.

use std::future::Future;
use std::net::SocketAddr;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::accept::accept_loop;

/// A running accept loop.
#[derive(Debug)]
pub(super) struct Listening {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

// === impl Listening ===

impl Listening {
    /// Binds `addr` and serves each accepted connection with `serve`.
    ///
    /// # Panics
    ///
    /// If `addr` cannot be bound (test setup, e.g. a port still in use).
    pub(super) async fn bind<S, F>(addr: SocketAddr, serve: S) -> Self
    where
        S: Fn(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener =
            listen(addr).unwrap_or_else(|e| panic!("bind the OTLP receiver on {addr}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the OTLP receiver's local address: {e}"));
        let (stop, stopped) = oneshot::channel();
        let stopped = async move {
            // A stop request, or the handle dropped without one.
            let _ = stopped.await;
        };
        let counted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            accept_loop(listener, "OTLP receiver", counted, serve, stopped).await;
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the loop and returns once the listener and every connection are
    /// closed.
    pub(super) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // A panicking connection handler is the only error; the test that
            // caused it already failed.
            let _ = task.await;
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        // Without an await, the best a drop can do: the loop's future, its
        // listener and its JoinSet (aborting every connection) are dropped as
        // soon as the runtime gets to it.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A listener on `addr` with `SO_REUSEADDR`, so a receiver can come back on the
/// port of one that just closed its connections (leaving them in `TIME_WAIT`).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
