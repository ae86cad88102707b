//! The trace the collector received, printed as a tree: who made each span,
//! which context it read, why it was sampled.

use std::collections::HashSet;

use meshtrace_tests::otlp::ReceivedSpan;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::{Result, SIDECAR_SCOPE, SPANS_PER_TRACE};

/// Prints every trace among `spans` as a tree, then checks that they are one
/// trace of [`SPANS_PER_TRACE`] spans with a single root; returns its id.
pub(crate) fn print_and_check_trace(spans: &[ReceivedSpan]) -> Result<String> {
    let mut traces: Vec<String> = spans.iter().map(ReceivedSpan::trace_id_hex).collect();
    traces.sort();
    traces.dedup();
    let mut roots = 0;
    for trace in &traces {
        let members: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| &s.trace_id_hex() == trace)
            .collect();
        roots += print_tree(trace, &members);
    }
    match (traces.as_slice(), roots, spans.len()) {
        ([one], 1, SPANS_PER_TRACE) => Ok(one.clone()),
        _ => Err(format!(
            "expected one trace of {SPANS_PER_TRACE} spans with one root; got {} trace(s), {roots} root(s), {} span(s)",
            traces.len(),
            spans.len()
        )),
    }
}

/// Prints one trace: children under their parent, in start order. Returns how
/// many roots (spans whose parent is not in the trace) it has.
fn print_tree(trace: &str, spans: &[&ReceivedSpan]) -> usize {
    let ids: HashSet<String> = spans.iter().map(|s| s.span_id_hex()).collect();
    let children = |parent: Option<&str>| {
        let mut found: Vec<&ReceivedSpan> = spans
            .iter()
            .copied()
            .filter(|s| match (s.parent_span_id_hex(), parent) {
                (Some(p), Some(want)) => p == want,
                (p, None) => p.is_none_or(|p| !ids.contains(&p)),
                (None, Some(_)) => false,
            })
            .collect();
        found.sort_by_key(|s| s.span.start_time_unix_nano);
        found
    };
    let roots = children(None);
    let mut rows = vec![[
        "".to_string(),
        "SERVICE".into(),
        "ROLE".into(),
        "KIND".into(),
        "NAME".into(),
        "SPAN ID".into(),
        "CONTEXT READ".into(),
        "SAMPLED BY".into(),
    ]];
    let mut stack: Vec<(&ReceivedSpan, String, String)> = roots
        .iter()
        .rev()
        .map(|s| (*s, String::new(), String::new()))
        .collect();
    // Spans print once, so a parent cycle (a broken sender) cannot loop.
    let mut printed = HashSet::new();
    while let Some((span, branch, indent)) = stack.pop() {
        if !printed.insert(span.span_id_hex()) {
            continue;
        }
        rows.push(row(span, branch));
        let kids = children(Some(&span.span_id_hex()));
        for (i, kid) in kids.iter().enumerate().rev() {
            let last = i + 1 == kids.len();
            let branch = format!("{indent}{}", if last { "└─ " } else { "├─ " });
            let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
            stack.push((kid, branch, deeper));
        }
    }
    let root_span = roots
        .first()
        .map_or("0000000000000000".into(), |s| s.span_id_hex());
    println!("\n  trace {trace}   (W3C traceparent: 00-{trace}-{root_span}-01)");
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count() + if col == 0 { 0 } else { 2 })
            .max()
    };
    let widths: Vec<usize> = (0..8).map(|c| width(c).unwrap_or(0)).collect();
    for r in &rows {
        let lead = format!("{}{}", r[0], r[1]);
        let mut line = format!("  {lead:<w$}", w = widths[0] + widths[1]);
        for (cell, w) in r.iter().zip(&widths).skip(2) {
            line.push_str(&format!("{cell:<w$}"));
        }
        println!("{}", line.trim_end());
    }
    roots.len()
}

/// One tree line: who, kind, name, span id, the context it read, why sampled.
fn row(span: &ReceivedSpan, branch: String) -> [String; 8] {
    let sidecar = span.scope_name == SIDECAR_SCOPE;
    let read = if sidecar {
        match span
            .attr("meshtrace.propagation.formats")
            .and_then(|v| v.value.as_ref())
        {
            Some(any_value::Value::ArrayValue(list)) => list
                .values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => "none: new trace".into(),
        }
    } else {
        span.attr_str("demo.propagation.format").unwrap_or_default()
    };
    let kind = match span.kind() {
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
        _ => "OTHER",
    };
    let role = if sidecar {
        format!(
            "sidecar {}",
            span.resource_attr_str("k8s.pod.name").unwrap_or_default()
        )
    } else {
        "app".into()
    };
    [
        branch,
        span.resource_attr_str("service.name")
            .unwrap_or_else(|| "?".into()),
        role.trim_end().to_string(),
        kind.into(),
        span.name().to_string(),
        span.span_id_hex(),
        format!("[{read}]"),
        span.attr_str("meshtrace.sampling.reason")
            .unwrap_or_else(|| "-".into()),
    ]
}
