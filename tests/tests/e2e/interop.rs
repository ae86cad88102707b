//! Interop with real tracer libraries: a context made and injected by
//! OpenTelemetry Python or ddtrace goes through the sidecar, and the same library
//! reads what the app received. The trace must stay continuous: same trace id,
//! same sampling decision, and the sidecar's own span as the app's parent, named
//! alike in every format the sidecar writes.
//!
//! The libraries run in `tests/python/interop.py` (one process per test, one JSON
//! line per case and variant) with the venv `scripts/test-all.sh` creates from
//! `tests/python/requirements.txt`. A missing venv fails the test: it never skips.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use meshtrace_config::PropagationFormat::{B3Multi, B3Single, Datadog, Jaeger, TraceContext};
use meshtrace_tests::apps::HttpApp;
use meshtrace_tests::bound::within_for;
use meshtrace_tests::sidecar;
use serde_json::{Map, Value};

/// How long one run of the script may take (imports included).
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

// === OpenTelemetry ===

#[tokio::test]
async fn otel_b3_single_context_survives_the_sidecar_with_its_sampling_decision() {
    for run in interop("otel", "b3single").await {
        assert_continues_the_callers_trace(&run);
    }
}

#[tokio::test]
async fn otel_b3_multi_context_survives_the_sidecar_with_its_sampling_decision() {
    for run in interop("otel", "b3multi").await {
        assert_continues_the_callers_trace(&run);
    }
}

#[tokio::test]
async fn otel_jaeger_context_survives_the_sidecar_with_its_sampling_decision() {
    for run in interop("otel", "jaeger").await {
        assert_continues_the_callers_trace(&run);
    }
}

#[tokio::test]
async fn otel_tracecontext_survives_the_sidecar_with_its_sampling_decision() {
    for run in interop("otel", "tracecontext").await {
        assert_continues_the_callers_trace(&run);
    }
}

/// Level 2: a participant that keeps the incoming trace id keeps its
/// random-trace-id flag as received (and sets none that was not).
#[tokio::test]
async fn otel_w3c_trace_flags_including_level2_random_survive_the_sidecar() {
    let runs = interop("otel", "tracecontext").await;
    assert!(runs.iter().any(|run| run.variant == "sampled-random"));
    for run in runs {
        assert_eq!(
            run.received.field("trace_flags"),
            run.sent.field("trace_flags"),
            "trace-flags changed\n{run}"
        );
    }
}

#[tokio::test]
async fn otel_every_format_the_app_receives_names_the_sidecar_span_as_parent() {
    for run in interop("otel", "b3single,b3multi,jaeger,tracecontext").await {
        assert_every_format_names_the_received_parent(&run);
    }
}

// === ddtrace ===

#[tokio::test]
async fn ddtrace_datadog_context_survives_the_sidecar_with_its_sampling_decision() {
    let runs = interop("ddtrace", "datadog").await;
    assert!(runs.iter().any(|run| run.variant == "auto-keep-64bit"));
    for run in runs {
        assert_continues_the_callers_trace(&run);
    }
}

#[tokio::test]
async fn ddtrace_tracecontext_survives_the_sidecar_with_its_sampling_decision() {
    for run in interop("ddtrace", "tracecontext").await {
        assert_continues_the_callers_trace(&run);
    }
}

#[tokio::test]
async fn ddtrace_b3_multi_context_survives_the_sidecar_with_its_sampling_decision() {
    for run in interop("ddtrace", "b3multi").await {
        assert_continues_the_callers_trace(&run);
    }
}

/// `x-datadog-sampling-priority: 2` (a user's keep) is not downgraded to 1.
#[tokio::test]
async fn ddtrace_user_keep_priority_survives_the_sidecar() {
    let runs = interop("ddtrace", "datadog,tracecontext").await;
    let user_keep: Vec<_> = runs
        .iter()
        .filter(|run| run.variant == "user-keep")
        .collect();
    assert_eq!(user_keep.len(), 2, "one user-keep run per format");
    for run in user_keep {
        assert_eq!(run.received.field("priority"), &Value::from(2), "{run}");
    }
}

/// `x-datadog-sampling-priority: -1` (a user's drop) is not turned into 0.
#[tokio::test]
async fn ddtrace_user_reject_priority_survives_the_sidecar() {
    let runs = interop("ddtrace", "datadog,tracecontext").await;
    let user_reject: Vec<_> = runs
        .iter()
        .filter(|run| run.variant == "user-reject")
        .collect();
    assert_eq!(user_reject.len(), 2, "one user-reject run per format");
    for run in user_reject {
        assert_eq!(run.received.field("priority"), &Value::from(-1), "{run}");
    }
}

#[tokio::test]
async fn ddtrace_every_format_the_app_receives_names_the_sidecar_span_as_parent() {
    for run in interop("ddtrace", "datadog,tracecontext,b3multi").await {
        assert_every_format_names_the_received_parent(&run);
    }
}

// === assertions ===

/// Same trace, same decision, and a new parent: the sidecar's span sits between
/// the caller's and the app's.
fn assert_continues_the_callers_trace(run: &Run) {
    assert_eq!(
        run.received.field("valid"),
        &Value::Bool(true),
        "the library extracted no context\n{run}"
    );
    assert_eq!(
        run.received.field("trace_id"),
        run.sent.field("trace_id"),
        "trace id changed\n{run}"
    );
    assert_eq!(
        run.received.field("sampled"),
        run.sent.field("sampled"),
        "sampling decision changed\n{run}"
    );
    assert_ne!(
        run.received.field("span_id"),
        run.sent.field("span_id"),
        "the app's parent is the caller's span: the sidecar inserted none\n{run}"
    );
}

/// The parent the library read is the one every trace header the app got names.
fn assert_every_format_names_the_received_parent(run: &Run) {
    let received = run.received.field("span_id").as_str().unwrap_or_default();
    for (header, parent) in parents_in(&run.app_headers) {
        let parent = parent.unwrap_or_else(|| {
            panic!("the app got no readable {header}, though the sidecar writes all five formats\n{run}")
        });
        assert_eq!(
            parent, received,
            "{header} names another parent than the one the library read\n{run}"
        );
    }
}

/// The parent span id (16 lower-case hex digits) each of the five formats the
/// sidecar writes toward the app carries; `None` when absent or unreadable.
fn parents_in(headers: &Map<String, Value>) -> [(&'static str, Option<String>); 5] {
    let header = |name: &str| headers.get(name).and_then(Value::as_str);
    let field =
        |name: &str, sep: char, index: usize| header(name).and_then(|v| v.split(sep).nth(index));
    let hex = |id: Option<&str>| id.and_then(|id| u64::from_str_radix(id, 16).ok());
    let decimal = |id: Option<&str>| id.and_then(|id| id.parse::<u64>().ok());
    let padded = |id: Option<u64>| id.map(|id| format!("{id:016x}"));
    [
        ("traceparent", padded(hex(field("traceparent", '-', 2)))),
        ("x-b3-spanid", padded(hex(header("x-b3-spanid")))),
        ("b3", padded(hex(field("b3", '-', 1)))),
        (
            "x-datadog-parent-id",
            padded(decimal(header("x-datadog-parent-id"))),
        ),
        ("uber-trace-id", padded(hex(field("uber-trace-id", ':', 1)))),
    ]
}

// === the script ===

/// One case and variant, as `interop.py` reported it.
struct Run {
    lib: String,
    case: String,
    variant: String,
    sent: Ids,
    received: Ids,
    sent_headers: Map<String, Value>,
    app_headers: Map<String, Value>,
}

/// A context as the library described it (`trace_id`, `span_id`, `sampled`, …).
struct Ids(Map<String, Value>);

impl Ids {
    /// The field, or `null` when the script did not report it.
    fn field(&self, name: &str) -> &Value {
        self.0.get(name).unwrap_or(&Value::Null)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trace_headers = |headers: &Map<String, Value>| {
            let mut owned = headers.clone();
            owned.retain(|name, _| is_trace_header(name));
            Value::Object(owned)
        };
        writeln!(f, "{} {} ({}):", self.lib, self.case, self.variant)?;
        writeln!(f, "  sent      {}", Value::Object(self.sent.0.clone()))?;
        writeln!(f, "  received  {}", Value::Object(self.received.0.clone()))?;
        writeln!(
            f,
            "  headers sent         {}",
            trace_headers(&self.sent_headers)
        )?;
        write!(
            f,
            "  headers the app got  {}",
            trace_headers(&self.app_headers)
        )
    }
}

fn is_trace_header(name: &str) -> bool {
    ["traceparent", "tracestate", "b3", "uber-trace-id"].contains(&name)
        || ["x-b3-", "x-datadog-", "uberctx-"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// Starts the echo app behind a sidecar that writes every format toward it, runs
/// `interop.py --lib <lib> --cases <cases>` against the sidecar's inbound
/// listener and returns what it reported, at least one run per case.
async fn interop(lib: &str, cases: &str) -> Vec<Run> {
    let app = HttpApp::start().await;
    let proxy = sidecar::new()
        .inbound_to(app.addr())
        .configure(|c| {
            c.propagation.app_formats =
                Some(vec![TraceContext, B3Multi, B3Single, Datadog, Jaeger]);
        })
        .start()
        .await;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = venv_python(&repo);
    let output = tokio::process::Command::new(&python)
        .arg(repo.join("tests/python/interop.py"))
        .args(["--lib", lib, "--cases", cases])
        .arg("--proxy")
        .arg(proxy.inbound_addr().to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let what = format!("interop.py --lib {lib} --cases {cases}");
    let output = within_for(SCRIPT_LIMIT, &what, output)
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let runs: Vec<Run> = stdout.lines().map(|line| parse(&what, line)).collect();
    for case in cases.split(',') {
        assert!(
            runs.iter().any(|run| run.case == case),
            "{what} reported nothing for {case}:\n{stdout}"
        );
    }
    runs
}

/// `<repo>/.venv/bin/python`; fails the test, with the fix, when it is missing.
fn venv_python(repo: &Path) -> PathBuf {
    let python = repo.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: the interop tests need the tracer libraries of tests/python/requirements.txt; \
         run `bash scripts/test-all.sh` once (it creates the venv)",
        python.display()
    );
    python
}

fn parse(what: &str, line: &str) -> Run {
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{what} printed a line that is not JSON ({e}): {line}"));
    let field = |key: &str| {
        value
            .get(key)
            .unwrap_or_else(|| panic!("{what} printed a line without {key:?}: {line}"))
    };
    let text = |key: &str| field(key).as_str().unwrap_or_default().to_string();
    let object = |key: &str| field(key).as_object().cloned().unwrap_or_default();
    Run {
        lib: text("lib"),
        case: text("case"),
        variant: text("variant"),
        sent: Ids(object("sent")),
        received: Ids(object("received")),
        sent_headers: object("sent_headers"),
        app_headers: object("app_headers"),
    }
}
