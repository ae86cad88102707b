//! Reports to the control plane: while watching, the sidecar `POST`s
//! `{control.url}/v1/report` every `control.report_interval` (15 s), a
//! [`meshtrace_config::report::Report`] of the trace formats it has seen per
//! direction and calling workload and the formats its app sends
//! ([`crate::migration`]), for the control plane's fleet-wide migration view. A
//! report that fails is dropped; the next one carries the cumulative counts anyway.

use meshtrace_config::Config;

use super::apply::Reloader;
use super::client::{identity, post_json, HttpClient};

/// Sends a report every `control.report_interval`, forever.
pub(super) async fn report_loop(
    client: &HttpClient,
    url: &str,
    local: &Config,
    reloader: &Reloader,
) {
    let (namespace, pod) = identity(local);
    let uri = format!("{}/v1/report", url.trim_end_matches('/'));
    let mut ticks = tokio::time::interval(local.control.report_interval.get());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let config = reloader.current();
        let report =
            reloader
                .migration()
                .report(&config, &namespace, &pod, tokio::time::Instant::now());
        post_json(client, &uri, &report, "report").await;
    }
}
