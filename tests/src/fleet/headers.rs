//! What each trace header an app received says: trace id, parent span id and
//! sampling decision, per wire format, read independently of the proxy's codecs.
//!
//! The header-ownership rule (`shared/DESIGN.md`) is that every trace header
//! leaving a sidecar was written by it for this hop, so every format an app
//! receives must name the same trace, the same parent (the sidecar's span) and
//! the same decision. Reading each format separately is how a test sees a header
//! that passed through stale, even when the app's own library reads another one.
//!
//! Ids are normalised to lower-case hex, trace ids left-padded to 32 digits and
//! span ids to 16, so a 64-bit id compares equal to its 128-bit form.

use std::collections::BTreeMap;

/// One format's context in a set of request headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderContext {
    /// The format: `traceparent`, `b3`, `x-b3-*`, `x-datadog-*` or `uber-trace-id`.
    pub format: &'static str,
    /// The trace id, 32 hex digits; `None` when absent or unreadable.
    pub trace_id: Option<String>,
    /// The parent (the sender's span) id, 16 hex digits; `None` when absent or
    /// unreadable.
    pub parent_id: Option<String>,
    /// The decision; `None` when deferred, absent or unreadable.
    pub sampled: Option<bool>,
}

/// The formats that carry a trace context (not `tracestate`, `baggage`).
pub const CONTEXT_FORMATS: [&str; 5] = [
    "traceparent",
    "b3",
    "x-b3-*",
    "x-datadog-*",
    "uber-trace-id",
];

/// Whether `name` (lower case) is one of the W3C headers a fully migrated
/// workload sees: `traceparent`, `tracestate`, `baggage`.
pub fn is_w3c_header(name: &str) -> bool {
    matches!(name, "traceparent" | "tracestate" | "baggage")
}

/// Every trace-context format present in `headers` (lower-case names), in
/// [`CONTEXT_FORMATS`] order.
pub fn contexts_in(headers: &BTreeMap<String, String>) -> Vec<HeaderContext> {
    let get = |name: &str| headers.get(name).map(String::as_str);
    let mut found = Vec::new();
    if let Some(value) = get("traceparent") {
        found.push(traceparent(value));
    }
    if let Some(value) = get("b3") {
        found.push(b3_single(value));
    }
    if headers.keys().any(|name| name.starts_with("x-b3-")) {
        found.push(b3_multi(get));
    }
    if headers.keys().any(|name| name.starts_with("x-datadog-")) {
        found.push(datadog(get));
    }
    if let Some(value) = get("uber-trace-id") {
        found.push(jaeger(value));
    }
    found
}

/// A hex trace id of 1–32 digits as 32 lower-case digits; `None` if not hex,
/// too long, or zero.
pub fn normalise_trace_id(id: &str) -> Option<String> {
    let id = hex_digits(id, 32)?;
    let value = u128::from_str_radix(id, 16).ok().filter(|v| *v != 0)?;
    Some(format!("{value:032x}"))
}

/// A hex span id of 1–16 digits as 16 lower-case digits; `None` if not hex, too
/// long, or zero.
pub fn normalise_span_id(id: &str) -> Option<String> {
    let id = hex_digits(id, 16)?;
    let value = u64::from_str_radix(id, 16).ok().filter(|v| *v != 0)?;
    Some(format!("{value:016x}"))
}

/// `id` when it is 1 to `max` hex digits and nothing else (no sign, no spaces).
fn hex_digits(id: &str, max: usize) -> Option<&str> {
    let ok = !id.is_empty() && id.len() <= max && id.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then_some(id)
}

/// `00-{32 hex}-{16 hex}-{2 hex flags}`.
fn traceparent(value: &str) -> HeaderContext {
    let fields: Vec<&str> = value.trim().split('-').collect();
    let ok = fields.len() == 4 && fields[1].len() == 32 && fields[2].len() == 16;
    let flags = fields.get(3).and_then(|f| u8::from_str_radix(f, 16).ok());
    HeaderContext {
        format: "traceparent",
        trace_id: ok.then(|| normalise_trace_id(fields[1])).flatten(),
        parent_id: ok.then(|| normalise_span_id(fields[2])).flatten(),
        sampled: ok.then_some(flags).flatten().map(|f| f & 1 == 1),
    }
}

/// `{trace}-{span}[-{1|0|d}[-{parent}]]`, or a lone decision.
fn b3_single(value: &str) -> HeaderContext {
    let fields: Vec<&str> = value.trim().split('-').collect();
    let ids = fields.len() >= 2;
    let state = if ids { fields.get(2) } else { fields.first() };
    HeaderContext {
        format: "b3",
        trace_id: ids.then(|| normalise_trace_id(fields[0])).flatten(),
        parent_id: ids.then(|| normalise_span_id(fields[1])).flatten(),
        sampled: state.and_then(|s| b3_sampled(s)),
    }
}

/// `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags`.
fn b3_multi<'a>(get: impl Fn(&str) -> Option<&'a str>) -> HeaderContext {
    let debug = get("x-b3-flags").map(str::trim) == Some("1");
    HeaderContext {
        format: "x-b3-*",
        trace_id: get("x-b3-traceid").and_then(normalise_trace_id),
        parent_id: get("x-b3-spanid").and_then(normalise_span_id),
        sampled: if debug {
            Some(true)
        } else {
            get("x-b3-sampled").and_then(b3_sampled)
        },
    }
}

fn b3_sampled(state: &str) -> Option<bool> {
    match state.trim() {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Decimal ids (the trace id's low 64 bits), the high 64 bits in `_dd.p.tid` of
/// `x-datadog-tags`, and the sampling priority (above 0 keeps).
fn datadog<'a>(get: impl Fn(&str) -> Option<&'a str>) -> HeaderContext {
    let decimal = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
    let high = get("x-datadog-tags")
        .into_iter()
        .flat_map(|tags| tags.split(','))
        .find_map(|tag| tag.trim().strip_prefix("_dd.p.tid="))
        .map_or(Some(0), |tid| u64::from_str_radix(tid, 16).ok());
    let trace_id = match (decimal("x-datadog-trace-id"), high) {
        (Some(low), Some(high)) if low != 0 => Some(format!(
            "{:032x}",
            (u128::from(high) << 64) | u128::from(low)
        )),
        _ => None,
    };
    HeaderContext {
        format: "x-datadog-*",
        trace_id,
        parent_id: decimal("x-datadog-parent-id")
            .filter(|id| *id != 0)
            .map(|id| format!("{id:016x}")),
        sampled: get("x-datadog-sampling-priority")
            .and_then(|p| p.trim().parse::<i64>().ok())
            .map(|p| p > 0),
    }
}

/// `{trace}:{span}:{parent}:{flags}`, hex, possibly URL-encoded.
fn jaeger(value: &str) -> HeaderContext {
    let decoded = value.trim().replace("%3A", ":").replace("%3a", ":");
    let fields: Vec<&str> = decoded.split(':').collect();
    let ok = fields.len() == 4;
    let flags = fields.get(3).and_then(|f| u8::from_str_radix(f, 16).ok());
    HeaderContext {
        format: "uber-trace-id",
        trace_id: ok.then(|| normalise_trace_id(fields[0])).flatten(),
        parent_id: ok.then(|| normalise_span_id(fields[1])).flatten(),
        sampled: ok.then_some(flags).flatten().map(|f| f & 0b11 != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_format_is_read_to_the_same_ids() {
        let trace = "0000000000000000000000000000000a";
        let parent = "000000000000000b";
        let all = headers(&[
            (
                "traceparent",
                "00-0000000000000000000000000000000a-000000000000000b-01",
            ),
            ("b3", "000000000000000a-000000000000000b-1"),
            ("x-b3-traceid", "a"),
            ("x-b3-spanid", "b"),
            ("x-b3-sampled", "1"),
            ("x-datadog-trace-id", "10"),
            ("x-datadog-parent-id", "11"),
            ("x-datadog-sampling-priority", "2"),
            ("uber-trace-id", "a%3Ab:0:1"),
        ]);
        let found = contexts_in(&all);
        assert_eq!(found.len(), 5, "{found:?}");
        for context in found {
            assert_eq!(context.trace_id.as_deref(), Some(trace), "{context:?}");
            assert_eq!(context.parent_id.as_deref(), Some(parent), "{context:?}");
            assert_eq!(context.sampled, Some(true), "{context:?}");
        }
    }

    #[test]
    fn datadog_high_bits_come_from_dd_p_tid() {
        let found = contexts_in(&headers(&[
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "2"),
            ("x-datadog-tags", "_dd.p.dm=-0,_dd.p.tid=640cfd8d00000000"),
        ]));
        assert_eq!(
            found[0].trace_id.as_deref(),
            Some("640cfd8d000000000000000000000001")
        );
        assert_eq!(found[0].sampled, None);
    }

    #[test]
    fn unreadable_values_read_as_none() {
        let found = contexts_in(&headers(&[("traceparent", "00-abc-def-01"), ("b3", "0")]));
        assert_eq!(found[0].trace_id, None);
        assert_eq!(found[1].trace_id, None);
        assert_eq!(found[1].sampled, Some(false));
    }
}
