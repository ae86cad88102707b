//! Why a codec rejected a format's headers, in words.
//!
//! The verdict (valid, invalid, decision only) is always the codec's own
//! ([`crate::propagation::extract::read`]); the codecs answer `Invalid` without
//! a reason (the request path needs none), so this module names the rule of the
//! format's spec that the values break, checking the rules in the order the
//! codec applies them. When no rule here explains it, it says so rather than
//! guessing.

use http::HeaderMap;

use crate::propagation::Format;

/// The rule the headers of `format` break, for a codec verdict of `Invalid`.
pub fn invalid(format: Format, headers: &HeaderMap) -> String {
    let found = match format {
        Format::TraceContext => traceparent(headers),
        Format::B3Multi => b3_multi(headers),
        Format::B3Single => check(one(headers, "b3"), b3_single),
        Format::Datadog => datadog(headers),
        Format::Jaeger => check(one(headers, "uber-trace-id"), jaeger),
    };
    found.unwrap_or_else(|| "rejected by the codec (no simpler rule names why)".into())
}

/// The one value of `name`; `Err` says why there is not exactly one readable value.
fn one<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, String> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => Err(format!("{name} is sent more than once (ambiguous)")),
        (Some(v), None) => v
            .to_str()
            .map_err(|_| format!("{name} is not visible ASCII")),
        (None, _) => Err(format!("{name} is missing")),
    }
}

/// The header's problem: its own (`Err`), or what `check` finds in its value.
fn check(
    value: Result<&str, String>,
    check: impl FnOnce(&str) -> Option<String>,
) -> Option<String> {
    match value {
        Ok(value) => check(value),
        Err(reason) => Some(reason),
    }
}

fn is_hex(s: &str, upper_ok: bool) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_digit()
                || (b'a'..=b'f').contains(&b)
                || (upper_ok && (b'A'..=b'F').contains(&b))
        })
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// A hex id field of `len` digits, non-zero.
fn id(field: &str, what: &str, lens: &[usize], upper_ok: bool) -> Option<String> {
    if !lens.contains(&field.len()) {
        let lens: Vec<String> = lens.iter().map(usize::to_string).collect();
        return Some(format!(
            "{what} {field:?} has {} digits, expected {}",
            field.len(),
            lens.join(" or ")
        ));
    }
    if !is_hex(field, upper_ok) {
        let case = if upper_ok { "" } else { "lower-case " };
        return Some(format!("{what} {field:?} is not {case}hex"));
    }
    is_zero(field).then(|| format!("{what} is all zeros"))
}

fn traceparent(headers: &HeaderMap) -> Option<String> {
    check(one(headers, "traceparent"), |v| {
        let fields: Vec<&str> = v.split('-').collect();
        if v.len() < 55 || fields.len() < 4 {
            return Some(format!(
                "traceparent {v:?} is not version-traceid-parentid-flags (55 characters for version 00, got {})",
                v.len()
            ));
        }
        if fields[0] == "ff" {
            return Some("traceparent version ff is invalid".into());
        }
        if fields[0] == "00" && (v.len() != 55 || fields.len() != 4) {
            return Some(format!(
                "traceparent version 00 must be exactly 55 characters, got {}",
                v.len()
            ));
        }
        if fields[0].len() != 2 || !is_hex(fields[0], false) {
            return Some(format!(
                "version {:?} is not 2 lower-case hex digits",
                fields[0]
            ));
        }
        id(fields[1], "trace-id", &[32], false)
            .or_else(|| id(fields[2], "parent-id", &[16], false))
            .or_else(|| {
                (!is_hex(fields[3], false) || fields[3].len() != 2).then(|| {
                    format!(
                        "trace-flags {:?} are not 2 lower-case hex digits",
                        fields[3]
                    )
                })
            })
    })
}

fn b3_multi(headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(flags) = get("x-b3-flags").filter(|f| !matches!(*f, "0" | "1")) {
        return Some(format!("X-B3-Flags {flags:?} is neither 0 nor 1"));
    }
    if let Some(s) = get("x-b3-sampled") {
        if !matches!(
            s.to_ascii_lowercase().as_str(),
            "0" | "1" | "true" | "false"
        ) {
            return Some(format!("X-B3-Sampled {s:?} is none of 0, 1, true, false"));
        }
    }
    match (get("x-b3-traceid"), get("x-b3-spanid")) {
        (Some(trace), Some(span)) => id(trace, "X-B3-TraceId", &[16, 32], true)
            .or_else(|| id(span, "X-B3-SpanId", &[16], true))
            .or_else(|| {
                get("x-b3-parentspanid").and_then(|p| id(p, "X-B3-ParentSpanId", &[16], true))
            }),
        (Some(_), None) => Some("X-B3-TraceId without X-B3-SpanId".into()),
        (None, Some(_)) => Some("X-B3-SpanId without X-B3-TraceId".into()),
        (None, None) => Some("X-B3-ParentSpanId without X-B3-TraceId and X-B3-SpanId".into()),
    }
}

fn b3_single(v: &str) -> Option<String> {
    let fields: Vec<&str> = v.split('-').collect();
    let state_ok = |s: &str| matches!(s, "0" | "1" | "d");
    match fields.as_slice() {
        [state] => (!state_ok(state)).then(|| format!("b3 {v:?}: a lone field must be 0, 1 or d")),
        [trace, span, rest @ ..] if rest.len() <= 2 => id(trace, "b3 trace id", &[16, 32], true)
            .or_else(|| id(span, "b3 span id", &[16], true))
            .or_else(|| {
                let state = rest.first()?;
                (!state_ok(state)).then(|| format!("b3 sampling state {state:?} is not 0, 1 or d"))
            })
            .or_else(|| id(rest.get(1)?, "b3 parent span id", &[16], true)),
        _ => Some(format!("b3 {v:?} has more than 4 fields")),
    }
}

fn datadog(headers: &HeaderMap) -> Option<String> {
    for name in [
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
    ] {
        if headers.get_all(name).iter().count() > 1 {
            return Some(format!("{name} is sent more than once (ambiguous)"));
        }
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(p) = get("x-datadog-sampling-priority") {
        if p.parse::<i8>().is_err() {
            return Some(format!(
                "x-datadog-sampling-priority {p:?} is not a small integer"
            ));
        }
    }
    let decimal = |name: &str, v: &str| match v.parse::<u64>() {
        Ok(0) => Some(format!("{name} is 0")),
        Ok(_) => None,
        Err(_) => Some(format!("{name} {v:?} is not a decimal 64-bit id")),
    };
    match (get("x-datadog-trace-id"), get("x-datadog-parent-id")) {
        (Some(t), Some(p)) => {
            decimal("x-datadog-trace-id", t).or_else(|| decimal("x-datadog-parent-id", p))
        }
        (Some(_), None) => Some("x-datadog-trace-id without x-datadog-parent-id".into()),
        (None, Some(_)) => Some("x-datadog-parent-id without x-datadog-trace-id".into()),
        (None, None) => None,
    }
}

fn jaeger(v: &str) -> Option<String> {
    let decoded = v.replace("%3A", ":").replace("%3a", ":");
    let fields: Vec<&str> = decoded.split(':').collect();
    let [trace, span, parent, flags] = fields.as_slice() else {
        return Some(format!(
            "uber-trace-id {v:?} is not trace:span:parent:flags ({} fields)",
            fields.len()
        ));
    };
    let width = |f: &str, what: &str, max: usize| {
        (f.is_empty() || f.len() > max || !is_hex(f, true))
            .then(|| format!("{what} {f:?} is not 1 to {max} hex digits"))
    };
    width(trace, "trace id", 32)
        .or_else(|| is_zero(trace).then(|| "trace id is all zeros".into()))
        .or_else(|| width(span, "span id", 16))
        .or_else(|| is_zero(span).then(|| "span id is all zeros".into()))
        .or_else(|| width(parent, "parent span id", 16))
        .or_else(|| width(flags, "flags", 2))
}
