//! The reaper's policy, on a paused clock: HTTP/1 connections over in-memory IO
//! put in and taken from the pool as the forwarding path does.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::time::advance;

use super::super::{Connector, Key, Pool, State};
use super::*;
use crate::http::Wire;

const IDLE: Duration = Duration::from_secs(90);

/// An HTTP/1 pool that dials nothing (every connection is given back by the test).
fn pool() -> Arc<Pool> {
    let target: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    Arc::new(Pool {
        target: Arc::new(target.into()),
        wire: Wire::Http1,
        connect_timeout: Duration::from_secs(1),
        connector: Connector::Tcp,
        state: std::sync::Mutex::new(State::default()),
        h2_dial: tokio::sync::Mutex::new(()),
    })
}

/// Puts `n` new connections in the pool's idle list; keep the returned server
/// ends, or the connections close.
async fn give_back_new(pool: &Pool, n: usize) -> Vec<DuplexStream> {
    let mut servers = Vec::new();
    for _ in 0..n {
        let (client, server) = tokio::io::duplex(1024);
        let (sender, conn) = http1::handshake::<_, Incoming>(TokioIo::new(client))
            .await
            .unwrap();
        tokio::spawn(conn);
        pool.give_back(super::super::h1::Conn::spawned(sender));
        servers.push(server);
    }
    servers
}

/// `n` requests at once: take the `n` most recently used connections (as the
/// pool's checkout does), then give them back.
fn use_connections(pool: &Pool, n: usize) {
    let taken: Vec<_> = (0..n)
        .map(|_| pool.lock().idle.pop().unwrap().conn)
        .collect();
    for conn in taken {
        pool.give_back(conn);
    }
}

fn idle_count(pool: &Pool) -> usize {
    pool.lock().idle.len()
}

#[tokio::test(start_paused = true)]
async fn a_burst_shrinks_back_to_what_the_traffic_now_uses() {
    let pool = pool();
    let _servers = give_back_new(&pool, 30).await;
    advance(Duration::from_secs(5)).await;
    use_connections(&pool, 2);
    advance(SURPLUS_AFTER - Duration::from_secs(4)).await;
    pool.reap(IDLE, true);
    // The two in use and the most recent others, up to KEEP_WARM, stay.
    assert_eq!(idle_count(&pool), KEEP_WARM);
    advance(IDLE).await;
    pool.reap(IDLE, true);
    assert_eq!(idle_count(&pool), 0, "past the idle timeout, none stays");
}

#[tokio::test(start_paused = true)]
async fn connections_in_recent_use_are_not_surplus() {
    let pool = pool();
    let _servers = give_back_new(&pool, 30).await;
    // 12 used 5 s ago: beyond KEEP_WARM, but not surplus yet.
    advance(Duration::from_secs(6)).await;
    use_connections(&pool, 12);
    advance(Duration::from_secs(5)).await;
    pool.reap(IDLE, true);
    assert_eq!(idle_count(&pool), 12);
}

#[tokio::test(start_paused = true)]
async fn steady_traffic_keeps_its_warm_connections() {
    let pool = pool();
    let _servers = give_back_new(&pool, 20).await;
    // 3 requests at once, with a peak of 20 every 8 s, for three idle timeouts;
    // the reaper sweeps every 5 s: no connection is ever closed.
    for second in 1..=270 {
        advance(Duration::from_secs(1)).await;
        use_connections(&pool, if second % 8 == 0 { 20 } else { 3 });
        if second % 5 == 0 {
            pool.reap(IDLE, true);
            assert_eq!(idle_count(&pool), 20, "closed at {second} s");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_reaper_task_closes_a_burst_within_surplus_after_and_a_period() {
    let pool = pool();
    let key = Key {
        target: pool.target.clone(),
        wire: Wire::Http1,
    };
    let pools: Arc<ArcSwap<Pools>> = Arc::default();
    pools.store(Arc::new(HashMap::from([(key, pool.clone())])));
    tokio::spawn(reap(Arc::downgrade(&pools), IDLE));
    let _servers = give_back_new(&pool, 30).await;
    tokio::time::sleep(SURPLUS_AFTER + SURPLUS_AFTER / 2).await;
    assert_eq!(idle_count(&pool), KEEP_WARM);
}
