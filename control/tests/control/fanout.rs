//! 1 000 concurrent watchers all receive a change.

use std::time::{Duration, Instant};

use http::Method;
use meshtrace_control::testing::{start, within};
use serde_json::{json, Value};

const WATCHERS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_watchers_all_receive_a_change() {
    let cp = start("defaults: {sampling: {default_rate: 0.1}}\n", Some("t")).await;

    let mut ready = Vec::with_capacity(WATCHERS);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Instant>(WATCHERS);
    for i in 0..WATCHERS {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        let mut watch = cp.watch("checkout", "shop", &format!("pod-{i}"), &[]).await;
        let done = done_tx.clone();
        tokio::spawn(async move {
            let first = watch.next_config().await.ok().flatten();
            let _ = ready_tx.send(first.map(|e| e.version));
            if let Ok(Some(next)) = watch.next_config().await {
                if next.config.sampling.forced_workload.is_some() {
                    let _ = done.send(Instant::now()).await;
                }
            }
        });
    }
    drop(done_tx);
    for r in ready {
        within("first event", r)
            .await
            .unwrap()
            .expect("first config");
    }
    assert_eq!(cp.sidecars.count(), WATCHERS);

    let body = json!({"service": "checkout", "rate": 1.0, "for": "10m"});
    let written = Instant::now();
    let _: Value = within(
        "add",
        cp.client().send_json(Method::POST, "/v1/overrides", &body),
    )
    .await
    .unwrap();

    let mut last = written;
    for n in 0..WATCHERS {
        let at = tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {n} of {WATCHERS} watchers got the change within 10s"))
            .unwrap_or_else(|| panic!("a watcher failed after {n} received the change"));
        last = last.max(at);
    }
    let took = last - written;
    println!("{WATCHERS} watchers: write -> last watcher received the change in {took:?}");
    assert!(took < Duration::from_secs(10));
}
