//! What one request through the fleet left behind, gathered from every place
//! that saw it: the apps' report (the response body), each sidecar's access-log
//! line per direction, and each sidecar's per-format counters.
//!
//! Access-log lines are how a test learns a sidecar's span id for a hop even when
//! nothing is exported; they are found by the request's unique path, never by
//! trace id, so a broken chain (a new trace id mid-way) is still observed.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::headers::normalise_trace_id;
use crate::process::Output;

/// One request sent through the chain, and what every participant saw of it.
#[derive(Clone, Debug, Default)]
pub struct Trip {
    /// The request's path, `/chain/<tag>`: how lines and spans are matched.
    pub path: String,
    /// The status the client got from sidecar1.
    pub status: u16,
    /// The body, for a failure message when the chain broke.
    pub body: String,
    /// The apps' report, app1 first; empty unless the status was 200.
    pub hops: Vec<Hop>,
    /// Each sidecar's inbound access-log line (sidecar1 first); `None` when the
    /// line did not appear.
    pub inbound: [Option<Access>; 3],
    /// sidecar1's and sidecar2's outbound access-log lines.
    pub outbound: [Option<Access>; 2],
    /// Legacy-format contexts sidecar2 and sidecar3 counted on their inbound
    /// listener during this request: `(sidecar, format, count)`, non-zero only.
    pub mesh_legacy: Vec<(String, String, u64)>,
}

/// One app's report of a request.
#[derive(Clone, Debug, Default)]
pub struct Hop {
    /// `app1` …
    pub app: String,
    /// The library flag it ran with.
    pub lib: String,
    /// The library's configuration as it reported it (ddtrace's styles).
    pub lib_config: Value,
    /// The trace-related request headers, lower case.
    pub received_headers: BTreeMap<String, String>,
    /// The context the library extracted from them.
    pub extracted: Ctx,
    /// The app's own span.
    pub span: Ctx,
    /// What the library injected toward the next hop.
    pub sent_headers: BTreeMap<String, String>,
}

/// A context as a library described it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ctx {
    /// Whether the library found a context (always true for an own span).
    pub valid: bool,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits: the parent for an extracted context, the span's own id
    /// for a span.
    pub span_id: String,
    /// The decision; `None` when the library has none (ddtrace without priority).
    pub sampled: Option<bool>,
    /// ddtrace's sampling priority.
    pub priority: Option<i64>,
}

/// A sidecar's access-log line for one request and direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// 32 hex digits.
    pub trace_id: String,
    /// The sidecar's span id for this request, 16 hex digits.
    pub span_id: String,
    /// The caller's span id (the sidecar span's parent), `-` for a new trace.
    pub parent_id: String,
    /// The sidecar's decision.
    pub sampled: bool,
}

// === impl Trip ===

impl Trip {
    /// Why the chain did not complete (status, body), or `None` when all three
    /// apps reported.
    pub fn broken(&self) -> Option<String> {
        (self.status != 200 || self.hops.len() != 3).then(|| {
            format!(
                "chain broke: sidecar1 answered {} with {} hop(s): {}",
                self.status,
                self.hops.len(),
                self.body.trim()
            )
        })
    }
}

impl fmt::Display for Trip {
    /// Every id the request produced, in hop order: what a reader needs to see
    /// which link broke.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = |a: &Option<Access>| match a {
            Some(a) => format!(
                "trace={} span={} sampled={}",
                a.trace_id, a.span_id, a.sampled
            ),
            None => "(no access-log line)".to_string(),
        };
        writeln!(f, "  {} -> {}", self.path, self.status)?;
        for i in 0..3 {
            writeln!(f, "    sidecar{} in   {}", i + 1, access(&self.inbound[i]))?;
            if let Some(hop) = self.hops.get(i) {
                writeln!(
                    f,
                    "    {} [{}] received {:?}",
                    hop.app, hop.lib, hop.received_headers
                )?;
                writeln!(f, "      extracted {}", hop.extracted)?;
                writeln!(f, "      own span  {}", hop.span)?;
                writeln!(f, "      sent      {:?}", hop.sent_headers)?;
            }
            if let Some(out) = self.outbound.get(i) {
                writeln!(f, "    sidecar{} out  {}", i + 1, access(out))?;
            }
        }
        if !self.mesh_legacy.is_empty() {
            writeln!(f, "    legacy contexts on the mesh: {:?}", self.mesh_legacy)?;
        }
        if let Some(broken) = self.broken() {
            writeln!(f, "    {broken}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace={} span={} sampled={}",
            self.trace_id, self.span_id, self.sampled
        )
    }
}

impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "valid={} trace={} span={} sampled={:?}",
            self.valid, self.trace_id, self.span_id, self.sampled
        )?;
        if let Some(priority) = self.priority {
            write!(f, " priority={priority}")?;
        }
        Ok(())
    }
}

/// The hops of a 200 response's body; an error names what is wrong.
pub(super) fn parse_hops(body: &str) -> Result<Vec<Hop>, String> {
    let json: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let hops = json["hops"].as_array().ok_or("no \"hops\" array")?;
    Ok(hops.iter().map(hop).collect())
}

fn hop(value: &Value) -> Hop {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let headers = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect()
    };
    Hop {
        app: text(&value["app"]),
        lib: text(&value["lib"]),
        lib_config: value["lib_config"].clone(),
        received_headers: headers(&value["received_headers"]),
        extracted: ctx(&value["extracted"], false),
        span: ctx(&value["span"], true),
        sent_headers: headers(&value["sent_headers"]),
    }
}

fn ctx(value: &Value, own_span: bool) -> Ctx {
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
    Ctx {
        valid: own_span || value["valid"].as_bool() == Some(true),
        trace_id: normalise_trace_id(&text("trace_id")).unwrap_or_else(|| text("trace_id")),
        span_id: text("span_id"),
        sampled: value["sampled"].as_bool(),
        priority: value["priority"].as_i64(),
    }
}

/// Waits (at most `limit`) for `output`'s access-log line for `path` in
/// `direction`; `None` if none appears.
pub(super) async fn access_line(
    output: &Output,
    path: &str,
    direction: &str,
    limit: std::time::Duration,
) -> Option<Access> {
    let matches = |line: &str| {
        access_fields(line).is_some_and(|json| {
            field(&json, "path") == Some(path) && field(&json, "direction") == Some(direction)
        })
    };
    let line = tokio::time::timeout(limit, output.first(&matches))
        .await
        .ok()
        .flatten()?;
    let json = access_fields(&line)?;
    let sampled = json
        .get("sampled")
        .or_else(|| json["fields"].get("sampled"));
    Some(Access {
        trace_id: field(&json, "trace_id").unwrap_or("-").to_string(),
        span_id: field(&json, "span_id").unwrap_or("-").to_string(),
        parent_id: field(&json, "parent_id").unwrap_or("-").to_string(),
        sampled: sampled.and_then(Value::as_bool).unwrap_or(false),
    })
}

/// A JSON log line on the `access` target.
fn access_fields(line: &str) -> Option<Value> {
    if !line.contains("\"access\"") {
        return None;
    }
    let json: Value = serde_json::from_str(line).ok()?;
    (json["target"] == "access").then_some(json)
}

/// A field of a JSON log line, flattened or under `fields`.
fn field<'a>(json: &'a Value, key: &str) -> Option<&'a str> {
    json.get(key)
        .or_else(|| json["fields"].get(key))
        .and_then(Value::as_str)
}

/// `meshtrace_trace_context_total{direction="inbound"}` per legacy format,
/// summed over outcomes, from a `/metrics` text.
pub(super) fn inbound_legacy_counts(metrics: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("meshtrace_trace_context_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
        };
        let legacy = matches!(
            label("format"),
            Some("b3multi" | "b3single" | "datadog" | "jaeger")
        );
        if label("direction") == Some("inbound") && legacy {
            let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            *counts
                .entry(label("format").unwrap_or_default().to_string())
                .or_insert(0) += value;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_inbound_counts_are_summed_over_outcomes() {
        let text = "\
# TYPE meshtrace_trace_context counter
meshtrace_trace_context_total{direction=\"inbound\",format=\"datadog\",outcome=\"valid\"} 2
meshtrace_trace_context_total{direction=\"inbound\",format=\"datadog\",outcome=\"invalid\"} 1
meshtrace_trace_context_total{direction=\"inbound\",format=\"tracecontext\",outcome=\"valid\"} 5
meshtrace_trace_context_total{direction=\"outbound\",format=\"b3multi\",outcome=\"valid\"} 7
";
        let counts = inbound_legacy_counts(text);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [("datadog".to_string(), 3)]
        );
    }

    #[test]
    fn access_lines_are_read_flattened_or_nested() {
        let flat = r#"{"target":"access","path":"/chain/x","direction":"inbound","sampled":true}"#;
        let json = access_fields(flat).expect("an access line");
        assert_eq!(field(&json, "path"), Some("/chain/x"));
        assert!(access_fields(r#"{"target":"meshtrace_proxy","message":"access"}"#).is_none());
    }
}
