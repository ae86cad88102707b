//! `meshtrace-control check FILE`: validates a source document offline.
//!
//! It reads and parses the file through the very functions the server uses when
//! it loads the file ([`source::read`], [`source::parse`]), so the problems are
//! word for word what `/v1/status` would show as `last_load_error` — parse errors
//! with `file:line:column`, semantic ones with the section index and path. A
//! valid file prints its warnings (settings that cannot do what they seem to),
//! then `OK` and, per `workloads` section, what it matches and the
//! stage and default rate it resolves to (with `defaults`).

use std::fmt::Write as _;
use std::path::Path;

use crate::document::{Document, Match};
use crate::resolve::{self, Workload};
use crate::source;

/// The report for a valid file, or every problem (one per line) for an invalid one.
pub fn check(path: &Path) -> Result<String, String> {
    let read = source::read(path);
    let text = read.as_ref().map(|r| r.text.clone()).unwrap_or_default();
    let (doc, _) = source::parse(read, path)?;
    let mut out = String::new();
    for warning in doc.warnings(&text, &path.display().to_string()) {
        let _ = writeln!(out, "{warning}");
    }
    out.push_str(&summary(path, &doc));
    Ok(out)
}

fn summary(path: &Path, doc: &Document) -> String {
    let mut out = format!(
        "OK {}: defaults and {} workload section(s)\n",
        path.display(),
        doc.workloads.len()
    );
    for (i, section) in doc.workloads.iter().enumerate() {
        let workload = Workload {
            service: section.matches.service.clone(),
            namespace: section.matches.namespace.clone(),
            labels: section.matches.labels.clone(),
        };
        // Every section is known to resolve with `defaults` (the parse checked
        // it); earlier sections that match too are merged here as in the server.
        let resolved = match resolve::resolve(doc, &[], &[], &workload) {
            Ok(c) => format!(
                "stage {}, default_rate {}",
                c.propagation.stage, c.sampling.default_rate
            ),
            Err(e) => format!("does not resolve: {e}"),
        };
        let _ = writeln!(
            out,
            "workloads[{i}] {}: {resolved}",
            describe(&section.matches)
        );
    }
    out
}

fn describe(m: &Match) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &m.service {
        parts.push(format!("service={s}"));
    }
    if let Some(ns) = &m.namespace {
        parts.push(format!("namespace={ns}"));
    }
    for (k, v) in &m.labels {
        parts.push(format!("label {k}={v}"));
    }
    if parts.is_empty() {
        "(every workload)".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateFile;
    use crate::store::Store;

    /// What the server keeps as `last_load_error` when its source file changes to
    /// `text`, and what `check` says about the same file.
    async fn server_and_check(text: &str) -> (Option<String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        std::fs::write(&path, "defaults: {}\n").unwrap();
        let store = Store::open(&path, StateFile::new(dir.path().join("state.json"))).unwrap();
        std::fs::write(&path, text).unwrap();
        store.source_changed(source::read(&path)).await;
        let server = store.status().await.last_load_error;
        (server, check(&path).unwrap_err())
    }

    #[tokio::test]
    async fn check_says_what_the_server_says_about_a_parse_error() {
        let text = "defaults:\n  sampling: {default_rate: 0.1}\n  bogus: 1\n";
        let (server, checked) = server_and_check(text).await;
        assert!(checked.contains("mesh.yaml:3:"), "{checked}");
        assert_eq!(server, Some(checked));
    }

    #[tokio::test]
    async fn check_lists_every_invalid_section_like_the_server() {
        let text = "workloads:\n  - config: {sampling: {default_rate: 2}}\n  - config: {limits: {max_header_bytes: 1}}\n";
        let (server, checked) = server_and_check(text).await;
        assert_eq!(checked.lines().count(), 2, "{checked}");
        assert!(checked.contains("workloads[0]") && checked.contains("workloads[1]"));
        assert_eq!(server, Some(checked));
    }

    #[test]
    fn a_valid_file_is_ok_with_one_line_per_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        let text = "defaults: {sampling: {default_rate: 0.1}}\nworkloads:\n  - match: {service: checkout, namespace: shop}\n    config: {propagation: {stage: dual}}\n";
        std::fs::write(&path, text).unwrap();
        let out = check(&path).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("OK "), "{out}");
        assert_eq!(
            lines[1],
            "workloads[0] service=checkout namespace=shop: stage dual, default_rate 0.1"
        );
    }

    #[test]
    fn warnings_are_printed_before_ok_once_where_they_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        let text = "defaults:\n  propagation: {extract: []}\nworkloads:\n  - match: {service: a}\n    config:\n      sampling:\n        rules:\n        - {rate: 0.5}\n        - {match: {method: GET}, rate: 1}\n";
        std::fs::write(&path, text).unwrap();
        let out = check(&path).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let file = path.display().to_string();
        assert_eq!(
            lines[..2],
            [
                format!("{file}:2:17: warning: defaults.propagation.extract: no format is read: incoming trace context is dropped and every request starts a new trace"),
                format!("{file}:9:11: warning: workloads[0].config.sampling.rules[1]: never applies: sampling.rules[0] comes first and matches every request this rule matches"),
            ],
            "{out}"
        );
        assert!(lines[2].starts_with("OK "), "{out}");
    }

    #[test]
    fn an_unreadable_file_is_reported_like_the_server_does() {
        let path = Path::new("/nonexistent/mesh.yaml");
        let checked = check(path).unwrap_err();
        assert_eq!(Err(checked), source::read(path).map(drop));
    }
}
