//! How fast two control-plane replicas sharing one Kubernetes store agree.
//!
//! Starts the in-test Kubernetes API ([`FakeKubeApi`]: ConfigMap GET/POST/PUT
//! with `resourceVersion` conflicts and watches) and two real
//! `meshtrace-control serve --store kubernetes` processes reaching it through a
//! kubeconfig, opens a sidecar's watch on replica B, then writes N base
//! documents on replica A and reports, per write, how long A took to answer
//! (after its ConfigMap write) and how long until B pushed the same version.
//!
//! ```text
//! cargo build --release --bins
//! target/release/replica-propagation [--writes 200]
//! ```
//!
//! The binaries are the `meshtrace-control` beside this one (or
//! `MESHTRACE_PROXY_BIN`'s directory's, as for the tests).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use clap::Parser;
use http::Method;
use meshtrace_control::client::{ControlClient, WatchStream};
use meshtrace_tests::kube_api::FakeKubeApi;
use meshtrace_tests::process::ControlProcess;
use serde_json::{json, Value};

const TOKEN: &str = "replicas-token";
const SOURCE: &str = "defaults: {sampling: {default_rate: 0.1}}\n";
const WORKLOAD: &str = "namespace=shop&pod=checkout-1&service=checkout";

/// Write latency on one replica and propagation to the other.
#[derive(Parser)]
struct Args {
    /// Base-document writes on replica A.
    #[arg(long, default_value_t = 200)]
    writes: usize,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    if std::env::var_os("MESHTRACE_PROXY_BIN").is_none() {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        // Set before the runtime starts: no other thread reads the environment yet.
        std::env::set_var("MESHTRACE_PROXY_BIN", me.with_file_name("meshtrace-proxy"));
    }
    tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())?
        .block_on(measure(args.writes))
}

async fn measure(writes: usize) -> Result<(), String> {
    let api = FakeKubeApi::start().await;
    let kubeconfig = std::env::temp_dir().join(format!(
        "meshtrace-replica-propagation-{}-kubeconfig.yaml",
        std::process::id()
    ));
    api.write_kubeconfig(&kubeconfig, "default");
    let a = ControlProcess::serve_kubernetes("bench-replica-a", SOURCE, TOKEN, &kubeconfig).await;
    let b = ControlProcess::serve_kubernetes("bench-replica-b", SOURCE, TOKEN, &kubeconfig).await;
    let client = |p: &ControlProcess| ControlClient::new(&p.url(), Some(TOKEN.into()));
    let (a, b) = (
        client(&a).map_err(|e| e.to_string())?,
        client(&b).map_err(|e| e.to_string())?,
    );
    let mut on_b = b.watch(WORKLOAD).await.map_err(|e| e.to_string())?;
    next_version(&mut on_b).await?;
    let (mut write, mut seen) = (Vec::new(), Vec::new());
    for i in 0..writes {
        let rate = (i % 900 + 1) as f64 / 1000.0;
        let patch = json!({"defaults": {"sampling": {"default_rate": rate}}});
        let start = Instant::now();
        let answer: Value = a
            .send_json(Method::PATCH, "/v1/config/base", &patch)
            .await
            .map_err(|e| e.to_string())?;
        write.push(start.elapsed());
        let version = answer["version"]
            .as_u64()
            .ok_or("no version in the answer")?;
        while next_version(&mut on_b).await? != version {}
        seen.push(start.elapsed());
    }
    let (ok, conflicts) = api.writes();
    let _ = std::fs::remove_file(&kubeconfig);
    println!(
        "{writes} writes on A: write {}; visible on B {}; API writes {ok}, 409s {conflicts}",
        summary(&mut write),
        summary(&mut seen)
    );
    Ok(())
}

/// The version of the next config push on `watch` (10 s at most).
async fn next_version(watch: &mut WatchStream) -> Result<u64, String> {
    match tokio::time::timeout(Duration::from_secs(10), watch.next_config()).await {
        Ok(Ok(Some(push))) => Ok(push.version),
        Ok(Ok(None)) => Err("replica B ended the watch".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("replica B pushed nothing for 10 s".into()),
    }
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    )
}
