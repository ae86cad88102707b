//! The accept loop every mock server shares (the mock applications and the OTLP
//! receiver): one task per connection, all of them owned by the loop, so ending
//! the loop (stopped, or its task aborted) closes the listener and every open
//! connection — an exporter's pooled connection included, as when a real
//! server goes away.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Serves each connection `listener` accepts with `serve`, counting them in
/// `accepted`, until `stopped` resolves; then closes the listener and every
/// connection. `who` names the server when an accept fails.
pub(crate) async fn accept_loop<S, F>(
    listener: TcpListener,
    who: &str,
    accepted: Arc<AtomicUsize>,
    serve: S,
    stopped: impl Future<Output = ()>,
) where
    S: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            conn = listener.accept() => match conn {
                Ok((stream, _peer)) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(stream));
                }
                // Out of file descriptors and the like: the client will notice
                // its connection failing (an exporter retries); keep serving.
                Err(error) => eprintln!("{who}: accept failed: {error}"),
            },
            // Reap finished connections so a long test does not accumulate them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}
