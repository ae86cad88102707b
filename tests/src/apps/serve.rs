//! The accept loop every mock application shares: one task per connection, all of
//! them owned by the loop's task, so aborting that one task (when the app handle
//! is dropped) closes the listener and every open connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

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
        let task = tokio::spawn(accept_loop(listener, accepted.clone(), serve));
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

async fn accept_loop<S, F>(listener: TcpListener, accepted: Arc<AtomicUsize>, serve: S)
where
    S: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _peer)) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(stream));
                }
                // Out of file descriptors and the like: the test will notice its
                // connection failing; keep serving the others.
                Err(error) => eprintln!("mock app on {:?}: accept failed: {error}", listener.local_addr()),
            },
            // Reap finished connections so a long test does not accumulate them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
