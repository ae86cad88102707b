//! The two text formats a scrape may ask for.
//!
//! prometheus-client writes OpenMetrics, which Prometheus asks for by
//! `Accept: application/openmetrics-text`. Everything else — `curl`, `promtool
//! check metrics`, older scrapers — reads the Prometheus text format 0.0.4, in
//! which a counter's `HELP` and `TYPE` lines name the sample (`…_total`) and
//! there is no `# EOF`. For what this registry holds (counters, gauges and
//! histograms, no units, no `_created` samples) those are the only differences,
//! so the OpenMetrics text is rewritten line by line rather than encoded twice.

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Prometheus text format's content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics `text` in the Prometheus text format 0.0.4.
pub(super) fn prometheus_text(openmetrics: &str) -> String {
    // HELP precedes TYPE, so the counters are found first.
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 32 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((prefix, (name, tail))) if counters.contains(&name) => {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_eof_goes() {
        let open =
            "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 2\n\
                    # HELP a_open Open.\n# TYPE a_open gauge\na_open 1\n# EOF\n";
        assert_eq!(
            prometheus_text(open),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 2\n\
             # HELP a_open Open.\n# TYPE a_open gauge\na_open 1\n"
        );
    }
}
