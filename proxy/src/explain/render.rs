//! An [`Explanation`] as text for a terminal.

use std::fmt::Write;

use super::model::{ContextView, Explanation, HeaderView};

/// The explanation as text, one section per step of the request path.
pub fn text(e: &Explanation) -> String {
    let mut out = String::new();
    let r = &e.request;
    let _ = writeln!(
        out,
        "{} {} {} (Host: {})",
        e.direction, r.method, r.path, r.authority
    );
    read(&mut out, e);
    sampling(&mut out, e);
    next_hop(&mut out, e);
    let _ = writeln!(out, "\nassumed:");
    for line in &e.assumptions {
        let _ = writeln!(out, "  - {line}");
    }
    out
}

fn read(out: &mut String, e: &Explanation) {
    let trust = if e.trusted {
        ""
    } else {
        " — untrusted listener"
    };
    let _ = writeln!(out, "\nread (on_conflict: {}){trust}:", e.on_conflict);
    if e.read.is_empty() {
        let _ = writeln!(out, "  no trace headers");
    }
    for f in &e.read {
        let mut status = f.status.to_string();
        if f.primary {
            status.push_str(", primary");
        } else if f.used {
            status.push_str(", merged");
        }
        let _ = writeln!(out, "  {:<13} {status}", f.format);
        for h in &f.headers {
            let _ = writeln!(out, "      {}: {}", h.name, h.value);
        }
        if let Some(why) = &f.why {
            let _ = writeln!(out, "      why: {why}");
        }
    }
    match (&e.incoming, &e.incoming_decision) {
        (Some(c), _) => {
            let _ = writeln!(out, "context read:");
            context(out, c);
        }
        (None, Some(d)) => {
            let debug = if d.debug { ", debug" } else { "" };
            let _ = writeln!(out, "decision only: {}{debug}", d.sampling);
        }
        (None, None) => {
            let _ = writeln!(out, "context read: none — a new trace starts");
        }
    }
}

fn context(out: &mut String, c: &ContextView) {
    let generated = |field: &str| {
        if c.generated.contains(&field) {
            " (generated)"
        } else {
            ""
        }
    };
    let _ = writeln!(out, "  trace id:   {}{}", c.trace_id, generated("trace_id"));
    let _ = writeln!(out, "  span id:    {}{}", c.span_id, generated("span_id"));
    if let Some(parent) = &c.parent_span_id {
        let _ = writeln!(out, "  parent:     {parent}");
    }
    let debug = if c.debug { ", debug" } else { "" };
    let _ = writeln!(out, "  sampling:   {}{debug}", c.sampling);
    if let Some(ts) = &c.tracestate {
        let _ = writeln!(out, "  tracestate: {ts}");
    }
    if let Some(p) = c.datadog_priority {
        let _ = writeln!(out, "  datadog priority: {p}");
    }
    let _ = writeln!(out, "  formats:    {}", list(&c.formats));
}

fn sampling(out: &mut String, e: &Explanation) {
    let s = &e.sampling;
    let verdict = if s.sampled { "sampled" } else { "not sampled" };
    let _ = writeln!(out, "\nsampling: {verdict} (reason {})", s.reason);
    let _ = writeln!(out, "  decided by: {}", s.decided_by);
    let _ = writeln!(out, "  route:      {} ({})", s.route, s.route_policy);
    if let Some(tenant) = &s.tenant {
        let _ = writeln!(out, "  tenant:     {tenant}");
    }
    if let Some(rate) = s.rate {
        let _ = writeln!(out, "  rate:       {rate}");
    }
    if let Some(th) = &s.threshold {
        let _ = writeln!(out, "  threshold:  th:{th}");
    }
}

fn next_hop(out: &mut String, e: &Explanation) {
    let n = &e.next_hop;
    let rule = n
        .rule
        .as_deref()
        .map(|r| format!(", by {r}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\nnext hop: {} (target {}{rule}; stage {})",
        n.toward, n.target, n.stage
    );
    if n.external {
        let _ = writeln!(
            out,
            "  external: a trust boundary, no trace header is written"
        );
    }
    let _ = writeln!(out, "  formats:    {}", list(&n.formats));
    if let Some(app) = &n.app_formats {
        let _ = writeln!(out, "  app speaks: {app}");
    }
    let _ = writeln!(out, "forwarded context:");
    context(out, &e.forwarded);
    let _ = writeln!(out, "write:");
    headers(out, &e.write);
    let _ = writeln!(out, "remove:");
    if e.remove.is_empty() {
        let _ = writeln!(out, "  (nothing)");
    }
    for name in &e.remove {
        let _ = writeln!(out, "  {name}");
    }
}

fn headers(out: &mut String, headers: &[HeaderView]) {
    if headers.is_empty() {
        let _ = writeln!(out, "  (nothing)");
    }
    for h in headers {
        let _ = writeln!(out, "  {}: {}", h.name, h.value);
    }
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
