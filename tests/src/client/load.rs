//! Steady background load: keep-alive HTTP/1.1 connections sending `GET /` back
//! to back, for tests that change something under traffic (reloads, pushes, a
//! control plane restarting) and then assert that no request failed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::StatusCode;
use tokio::sync::watch;

use super::H1Conn;
use crate::bound::within;

/// Keep-alive connections sending `GET /` back to back until stopped.
pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    served: watch::Receiver<usize>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl SteadyLoad {
    /// Starts `connections` connections to `addr`.
    pub fn start(addr: SocketAddr, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (count, served) = watch::channel(0);
        let count = Arc::new(count);
        let tasks = (0..connections)
            .map(|_| {
                let (stop, count) = (stop.clone(), count.clone());
                tokio::spawn(async move {
                    let mut conn = H1Conn::connect(addr).await;
                    let mut failed = 0;
                    while !stop.load(Ordering::Relaxed) {
                        match conn.get("/").await.status() {
                            StatusCode::OK => count.send_modify(|n| *n += 1),
                            _ => failed += 1,
                        }
                    }
                    failed
                })
            })
            .collect();
        Self {
            stop,
            served,
            tasks,
        }
    }

    /// Waits until `n` more requests succeeded.
    pub async fn serves(&mut self, n: usize) {
        let target = *self.served.borrow() + n;
        within(
            format!("{n} more requests"),
            self.served.wait_for(|&s| s >= target),
        )
        .await
        .expect("the load runs");
    }

    /// Stops; returns (succeeded, failed). A connection error fails the test.
    pub async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failed = 0;
        for task in self.tasks {
            failed += within("a load connection", task)
                .await
                .expect("load connection");
        }
        (*self.served.borrow(), failed)
    }
}
