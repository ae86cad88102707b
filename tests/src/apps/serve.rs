//! A mock application's listener: the shared [`accept_loop`] on a loopback
//! port, whose task is aborted (closing the listener and every open
//! connection) when the app handle is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::accept::accept_loop;

/// A running accept loop on a loopback port.
#[derive(Debug)]
pub(crate) struct Serving {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

// === impl Serving ===

impl Serving {
    /// Binds `127.0.0.1:0` and serves each accepted connection with `serve`.
    pub(crate) async fn bind<S, F>(serve: S) -> Self
    where
        S: Fn(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a mock app on 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock app's local address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let who = format!("mock app on {addr}");
        let counter = accepted.clone();
        // Never stopped: aborting the task (on drop) ends it.
        let forever = std::future::pending();
        let task =
            tokio::spawn(async move { accept_loop(listener, &who, counter, serve, forever).await });
        Self {
            addr,
            accepted,
            task,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Dropping the loop's future drops the listener and the JoinSet, which
        // aborts every connection task.
        self.task.abort();
    }
}
