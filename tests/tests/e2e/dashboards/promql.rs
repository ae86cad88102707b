//! What a PromQL expression names, read without a parser of our own: metric
//! names and label names, enough to hold a dashboard or a rule against a real
//! scrape. Whether an expression is valid PromQL is Prometheus's answer (the
//! queries run against a real one), never this module's.

use std::collections::BTreeSet;

/// `expr` with the contents of its string literals blanked, so a label value
/// (`format=~"b3multi|..."`) is never read as a name.
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The identifiers of `expr` outside string literals (`[A-Za-z_:][A-Za-z0-9_:]*`),
/// each with the text that follows it.
fn identifiers(expr: &str) -> Vec<(String, String)> {
    let text = without_strings(expr);
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts = c.is_ascii_alphabetic() || c == '_' || c == ':';
        let after_word = i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_');
        if starts && !after_word {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect();
            found.push((word, rest));
        } else {
            i += 1;
        }
    }
    found
}

/// The meshtrace metric names `expr` selects (`meshtrace_…`; recording rules'
/// outputs, `level:meshtrace_…:op`, are not sidecar metrics and are left out).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    identifiers(expr)
        .into_iter()
        .map(|(word, _)| word)
        .filter(|w| w.starts_with("meshtrace_") && !w.contains(':'))
        .collect()
}

/// The label names `expr` uses: in matchers (`{name=~"…"}`) and in
/// `by (…)` / `without (…)` / `on (…)` / `ignoring (…)` clauses.
pub fn label_names(expr: &str) -> BTreeSet<String> {
    let text = without_strings(expr);
    let mut names = BTreeSet::new();
    for (open, close, grouping) in [('{', '}', false), ('(', ')', true)] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find(open) {
            let before = rest[..at].trim_end();
            let inner = &rest[at + 1..];
            let end = inner.find(close).unwrap_or(inner.len());
            let is_grouping = ["by", "without", "on", "ignoring"].iter().any(|k| {
                before.strip_suffix(k).is_some_and(|head| {
                    !head.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
            });
            if !grouping || is_grouping {
                names.extend(label_list(&inner[..end], grouping));
                rest = &inner[end..];
            } else {
                // A call's parentheses: what they hold is read on.
                rest = inner;
            }
        }
    }
    names
}

/// The names in a matcher list (`a="x", b=~"y"`) or a label list (`a, b`).
fn label_list(list: &str, grouping: bool) -> Vec<String> {
    list.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let name = if grouping {
                item
            } else {
                item.split(['=', '!']).next().unwrap_or("").trim()
            };
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The metric names of a Prometheus text exposition (`# TYPE`/`# HELP` lines
/// aside): histograms appear as their `_bucket`, `_sum` and `_count` series.
pub fn scraped_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// `text` percent-encoded for a URL query value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn names_come_from_selectors_and_clauses_not_from_strings() {
    let expr = r#"histogram_quantile(0.5, sum by (le, direction) (rate(x[1m]))) + sum by (direction, kind) (rate(meshtrace_upstream_errors_total{pod=~"meshtrace_x",format!="a,b"}[1m])) / on (pod) workload:meshtrace_share:rate5m"#;
    let metrics: Vec<_> = metric_names(expr).into_iter().collect();
    assert_eq!(metrics, ["meshtrace_upstream_errors_total"]);
    let labels: Vec<_> = label_names(expr).into_iter().collect();
    assert_eq!(labels, ["direction", "format", "kind", "le", "pod"]);
    let scrape = "# TYPE meshtrace_a counter\nmeshtrace_a_total{x=\"1\"} 2\nmeshtrace_b 1\n";
    let names: Vec<_> = scraped_names(scrape).into_iter().collect();
    assert_eq!(names, ["meshtrace_a_total", "meshtrace_b"]);
    assert_eq!(url_encode("a{b=\"c\"} 1"), "a%7Bb%3D%22c%22%7D%201");
}
