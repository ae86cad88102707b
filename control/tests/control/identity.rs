//! One pod identity, two watch streams: the one that leaves takes only itself away.

use http::Method;
use meshtrace_control::testing::{start, within};
use serde_json::{json, Value};

#[tokio::test]
async fn a_second_watch_leaving_does_not_unregister_the_real_sidecar() {
    let cp = start("defaults: {}\n", None).await;
    let c = cp.client();
    let mut real = cp.watch("checkout", "shop", "checkout-1", &[]).await;
    let first = within("first", real.next_config()).await.unwrap().unwrap();
    let claim = ("claimant", "yes");
    let mut claimant = cp.watch("checkout", "shop", "checkout-1", &[claim]).await;
    within("claimant's first", claimant.next_config())
        .await
        .unwrap();

    // The newest stream is the one shown; wait until the server saw it end.
    let shows_claimant = || {
        let list = cp.sidecars.list();
        list.first().is_some_and(|s| s.labels.contains_key(claim.0))
    };
    assert!(shows_claimant(), "{:?}", cp.sidecars.list());
    drop(claimant);
    within("the claimant's stream ends", async {
        while shows_claimant() {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let list: Value = within("sidecars", c.get("/v1/sidecars")).await.unwrap();
    assert_eq!(list[0]["identity"], "shop/checkout-1");
    let ack = json!({"namespace": "shop", "pod": "checkout-1", "version": first.version, "status": "ack"});
    let recorded: Value = within("ack", c.send_json(Method::POST, "/v1/ack", &ack))
        .await
        .unwrap();
    assert_eq!(recorded, json!({"recorded": true}));
    drop(real);
}
