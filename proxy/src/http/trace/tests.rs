//! Header ownership as a property of the whole trace layer: for every
//! combination of incoming formats (each absent, valid, valid with another trace
//! id, or malformed) × configured formats (stage, what the app speaks, upstream
//! rules, trust, sampling) × direction, every trace header of the forwarded
//! request was written by the sidecar for this hop — same trace id, the
//! sidecar's span as parent, its decision — or is absent; exactly the formats
//! the stage calls for are written; `baggage` and other headers pass untouched.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::{HeaderMap, Request};
use meshtrace_config::{Config, MigrationStage, UpstreamInjection, UpstreamMatch};
use tower::{Service, ServiceExt};

use super::{SpanInfo, TraceLayer};
use crate::http::Attachments;
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::propagation::extract::Formats;
use crate::propagation::{b3, datadog, jaeger, w3c, Extracted, Format, Sampling};
use crate::sampling::Sampler;
use crate::stack::PolicyParts;
use crate::target::Direction;

use Format::{B3Multi, B3Single, Datadog, Jaeger, TraceContext as W3c};

const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";

/// What a format's headers look like in one incoming request.
#[derive(Clone, Copy, Debug)]
enum State {
    Absent,
    Valid(&'static str),
    Malformed,
    /// B3 single only: `b3: 0`, a decision without ids.
    DecisionOnly,
}

const STATES: [State; 4] = [
    State::Absent,
    State::Valid(TRACE_A),
    State::Valid(TRACE_B),
    State::Malformed,
];

/// The headers `format` contributes in `state`.
fn format_headers(format: Format, state: State) -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = match (format, state) {
        (_, State::Absent) => vec![],
        (W3c, State::Valid(t)) => vec![
            ("traceparent", format!("00-{t}-00f067aa0ba902b7-01")),
            ("tracestate", "rojo=00f067aa0ba902b7".into()),
        ],
        (W3c, _) => vec![
            ("traceparent", "00-zz".into()),
            ("tracestate", "x=1".into()),
        ],
        (B3Multi, State::Valid(t)) => vec![
            ("x-b3-traceid", t.into()),
            ("x-b3-spanid", "e457b5a2e4d86bd1".into()),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90".into()),
            ("x-b3-sampled", "0".into()),
        ],
        (B3Multi, _) => vec![
            ("x-b3-traceid", "nothex".into()),
            ("x-b3-flags", "1".into()),
        ],
        (B3Single, State::Valid(t)) => vec![("b3", format!("{t}-e457b5a2e4d86bd1-1"))],
        (B3Single, State::DecisionOnly) => vec![("b3", "0".into())],
        (B3Single, _) => vec![("b3", "garbage".into())],
        (Datadog, State::Valid(t)) => {
            let id = u128::from_str_radix(t, 16).unwrap_or(1);
            vec![
                ("x-datadog-trace-id", (id as u64).to_string()),
                ("x-datadog-parent-id", "1234".into()),
                ("x-datadog-sampling-priority", "0".into()),
                (
                    "x-datadog-tags",
                    format!("_dd.p.tid={:016x}", (id >> 64) as u64),
                ),
            ]
        }
        (Datadog, _) => vec![("x-datadog-trace-id", "abc".into())],
        (Jaeger, State::Valid(t)) => vec![("uber-trace-id", format!("{t}:e457b5a2e4d86bd1:0:1"))],
        (Jaeger, _) => vec![("uber-trace-id", "x:y".into())],
    };
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Every incoming combination: four states per format, five for B3 single.
fn incoming() -> impl Iterator<Item = [State; 5]> {
    let b3_single = [STATES.as_slice(), &[State::DecisionOnly]].concat();
    let mut all = Vec::new();
    for w in STATES {
        for m in STATES {
            for s in b3_single.iter().copied() {
                for d in STATES {
                    for j in STATES {
                        all.push([w, m, s, d, j]);
                    }
                }
            }
        }
    }
    all.into_iter()
}

/// One configuration under test.
#[derive(Clone, Debug)]
struct Setup {
    direction: Direction,
    stage: MigrationStage,
    trusted: bool,
    app_formats: Option<Vec<Format>>,
    /// Formats the app was seen sending before the request.
    learned: Option<Vec<Format>>,
    /// Outbound: `None` no rule, else the rule's `inject` (empty: external).
    rule: Option<Vec<Format>>,
    default_rate: f64,
}

fn setups() -> Vec<Setup> {
    let mut all = Vec::new();
    for stage in MigrationStage::ALL {
        for default_rate in [1.0, 0.0] {
            let base = Setup {
                direction: Direction::Inbound,
                stage,
                trusted: true,
                app_formats: None,
                learned: None,
                rule: None,
                default_rate,
            };
            for trusted in [true, false] {
                for (app_formats, learned) in [
                    (None, None),
                    (None, Some(vec![B3Multi])),
                    (Some(vec![Datadog]), None),
                    (Some(vec![]), Some(vec![Jaeger])),
                ] {
                    all.push(Setup {
                        trusted,
                        app_formats,
                        learned,
                        ..base.clone()
                    });
                }
            }
            for rule in [None, Some(vec![B3Single]), Some(vec![])] {
                for app_formats in [None, Some(vec![Jaeger])] {
                    all.push(Setup {
                        direction: Direction::Outbound,
                        rule: rule.clone(),
                        app_formats,
                        ..base.clone()
                    });
                }
            }
        }
    }
    all
}

/// The spec's table, restated: which formats must leave the sidecar.
fn expected(setup: &Setup, present: Formats) -> Formats {
    let set = |list: &[Format]| list.iter().copied().collect::<Formats>();
    let w3c = Formats::only(W3c);
    if let Some(rule) = &setup.rule {
        return set(rule);
    }
    let app = setup.app_formats.as_deref().map(set);
    match (setup.direction, setup.stage) {
        (_, MigrationStage::W3c) | (Direction::Outbound, MigrationStage::Dual) => w3c,
        (Direction::Inbound, _) => {
            let learned = setup.learned.as_deref().map(set);
            w3c.union(present)
                .union(app.or(learned).unwrap_or_else(Formats::all))
        }
        (Direction::Outbound, MigrationStage::Legacy) => {
            w3c.union(present).union(app.unwrap_or_default())
        }
    }
}

/// A trace layer for `setup` in front of a service that keeps what it got.
struct Harness {
    service:
        super::Trace<tower::util::BoxCloneSyncService<Request<()>, (), std::convert::Infallible>>,
    seen: Arc<Mutex<Option<(HeaderMap, SpanInfo)>>>,
}

fn harness(setup: &Setup) -> Harness {
    let mut config = Config::default();
    config.inbound.trusted = setup.trusted;
    config.workload.service = Some("me".into());
    config.workload.namespace = Some("ns".into());
    config.propagation.stage = setup.stage;
    config.propagation.app_formats = setup.app_formats.clone();
    config.sampling.default_rate = setup.default_rate;
    if let Some(inject) = &setup.rule {
        config.propagation.upstreams.push(UpstreamInjection {
            name: None,
            matches: UpstreamMatch {
                host: Some("upstream".into()),
                ..UpstreamMatch::default()
            },
            external: inject.is_empty(),
            inject: inject.clone(),
            id_width: None,
        });
    }
    let metrics = Metrics::new();
    let migration = Arc::new(Migration::new(&metrics));
    if let Some(learned) = &setup.learned {
        let now = tokio::time::Instant::now();
        migration
            .app
            .observe(learned.iter().copied().collect(), now);
    }
    let parts = PolicyParts {
        direction: setup.direction,
        trace_context: &metrics.trace_context(setup.direction),
        sampling: &metrics.sampling(setup.direction),
        metrics: &metrics,
        migration: &migration,
    };
    let policy = parts.policy(&config, Sampler::new(&config.sampling), None);
    let layer = TraceLayer::new(
        Arc::new(ArcSwap::from_pointee(policy)),
        Some(80),
        Attachments::for_access_log(true),
    );
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    let inner = tower::service_fn(move |mut req: Request<()>| {
        // The head as the next hop receives it.
        crate::propagation::settle(&mut req);
        let info = req.extensions().get::<SpanInfo>().cloned();
        if let (Some(info), Ok(mut slot)) = (info, sink.lock()) {
            *slot = Some((req.headers().clone(), info));
        }
        std::future::ready(Ok::<(), std::convert::Infallible>(()))
    });
    Harness {
        service: tower::Layer::layer(&layer, tower::util::BoxCloneSyncService::new(inner)),
        seen,
    }
}

/// Checks one forwarded request; returns a description of the first violation.
fn violation(setup: &Setup, present: Formats, out: &HeaderMap, info: &SpanInfo) -> Option<String> {
    let sampled = info.sampled();
    let mut written = Formats::default();
    for format in Format::ALL {
        let extracted = match format {
            W3c => w3c::extract(out),
            B3Multi => b3::extract_multi(out),
            B3Single => b3::extract_single(out),
            Datadog => datadog::extract(out),
            Jaeger => jaeger::extract(out),
        };
        let context = match extracted {
            Extracted::Absent => continue,
            Extracted::Context(context) => context,
            other => return Some(format!("{format:?} left as {other:?}")),
        };
        written.insert(format);
        if context.trace_id != info.trace_id {
            return Some(format!("{format:?} names trace {:?}", context.trace_id));
        }
        if context.parent_id != info.span_id {
            return Some(format!("{format:?} parent is not the sidecar's span"));
        }
        let says_sampled = match format {
            Datadog => context
                .datadog
                .as_ref()
                .and_then(|m| m.priority)
                .is_some_and(|p| p > 0),
            _ => context.sampling == Sampling::Sampled || context.debug,
        };
        if says_sampled != sampled {
            return Some(format!(
                "{format:?} says sampled={says_sampled}, decided {sampled}"
            ));
        }
    }
    if out.contains_key("tracestate") && !out.contains_key("traceparent") {
        return Some("tracestate without traceparent".into());
    }
    let want = expected(setup, present);
    if written != want {
        return Some(format!("wrote {written:?}, the stage says {want:?}"));
    }
    for name in [
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-spanid",
        "uber-trace-id",
        "x-datadog-parent-id",
    ] {
        if out.get_all(name).iter().count() > 1 {
            return Some(format!("{name} appears twice"));
        }
    }
    if out.get("baggage").is_none_or(|v| v != "tenant=acme") || out.get("x-unrelated").is_none() {
        return Some("baggage or an unrelated header changed".into());
    }
    let caller = out.get("x-meshtrace-caller");
    let want_caller =
        setup.direction == Direction::Outbound && setup.rule.as_ref().is_none_or(|r| !r.is_empty());
    match (caller, want_caller) {
        (Some(v), true) if v == "me.ns" => None,
        (None, false) => None,
        (v, _) => Some(format!("x-meshtrace-caller is {v:?}")),
    }
}

#[tokio::test]
async fn every_trace_header_leaving_the_sidecar_is_written_for_this_hop_or_removed() {
    let mut checked = 0;
    for setup in setups() {
        let mut harness = harness(&setup);
        for states in incoming() {
            let mut req = Request::builder()
                .uri("/")
                .header("host", "upstream:80")
                .header("baggage", "tenant=acme")
                .header("x-unrelated", "1")
                .header("x-meshtrace-caller", "evil.ns");
            let mut present = Formats::default();
            for (format, state) in Format::ALL.into_iter().zip(states) {
                let pairs = format_headers(format, state);
                if !pairs.is_empty() {
                    present.insert(format);
                }
                for (k, v) in pairs {
                    req = req.header(k, v);
                }
            }
            let Ok(req) = req.body(()) else {
                panic!("test request for {states:?}");
            };
            let service = harness.service.ready().await.unwrap_or_else(|e| match e {});
            service.call(req).await.unwrap_or_else(|e| match e {});
            let Some((out, info)) = harness.seen.lock().ok().and_then(|mut s| s.take()) else {
                panic!("the inner service saw no request");
            };
            if let Some(why) = violation(&setup, present, &out, &info) {
                panic!("{why}\nsetup: {setup:?}\nincoming: {states:?}\nforwarded: {out:#?}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, setups().len() * 1280);
}
