use meshtrace_config::MigrationStage;

use super::{ErrorKind, Metrics, ReloadSource};
use crate::target::{Direction, Protocol};

/// Every family's exposition name (`_total` on counters), from `# TYPE` lines.
fn exported_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| match kind {
            "counter" => format!("{name}_total"),
            _ => name.to_string(),
        })
        .collect()
}

/// The sample lines of `text` (no comments).
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

/// Resolves every handle a sidecar's two listeners resolve when they start.
fn resolve_like_a_sidecar(metrics: &Metrics) {
    for direction in Direction::ALL {
        for protocol in [Protocol::Http1, Protocol::Http2, Protocol::Grpc] {
            metrics.http(direction, protocol);
        }
        metrics.conns(direction);
        metrics.trace_context(direction);
        metrics.sampling(direction);
        metrics.written(direction, &["default".to_string()]);
    }
    metrics.by_caller().get("unknown");
}

/// Dashboards and alerts read these names: splitting the families across
/// modules must not rename, drop or reorder one.
#[test]
fn every_family_renders_in_registration_order() {
    let text = Metrics::new().render();
    let families = [
        "meshtrace_requests_total",
        "meshtrace_request_duration_seconds",
        "meshtrace_open_connections",
        "meshtrace_connections_total",
        "meshtrace_upstream_errors_total",
        "meshtrace_trace_context_total",
        "meshtrace_trace_context_by_caller_total",
        "meshtrace_trace_context_written_total",
        "meshtrace_sampling_decisions_total",
        "meshtrace_sampling_boost_active",
        "meshtrace_sampling_route_rate",
        "meshtrace_spans_exported_total",
        "meshtrace_spans_dropped_total",
        "meshtrace_config_reloads_total",
        "meshtrace_config_version",
        "meshtrace_config_last_reload_timestamp_seconds",
        "meshtrace_control_plane_connected",
        "meshtrace_migration_stage",
        "meshtrace_memory_trims_total",
    ];
    assert_eq!(exported_names(&text), families, "{text}");
}

/// The README's metrics reference has a row for every family, so the docs
/// cannot drift from what a scrape shows.
#[test]
fn every_family_is_documented_in_the_readme() {
    let readme = include_str!("../../../README.md");
    for name in exported_names(&Metrics::new().render()) {
        let row = format!("| `{name}`");
        assert!(
            readme.lines().any(|l| l.starts_with(&row)),
            "README.md's metrics table has no row for {name}"
        );
    }
}

/// A handle resolved at listener start counts into the labelled series.
#[test]
fn handles_count_into_their_labelled_series() {
    let metrics = Metrics::new();
    let conns = metrics.conns(Direction::Inbound);
    conns.error(ErrorKind::ConnectTimeout);
    metrics
        .http(Direction::Outbound, Protocol::Http1)
        .record(http::StatusCode::NOT_FOUND, std::time::Duration::ZERO);
    let text = metrics.render();
    for line in [
        r#"meshtrace_upstream_errors_total{direction="inbound",kind="connect_timeout"} 1"#,
        r#"meshtrace_requests_total{direction="outbound",protocol="http1",status_class="4xx"} 1"#,
        r#"meshtrace_request_duration_seconds_count{direction="outbound",protocol="http1"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

/// An idle sidecar's scrape holds only what alerts need from the start: the
/// open-connection gauges, the span counters, the config gauges, the memory
/// trims — no zero line per status class, protocol, format or reason.
#[test]
fn an_idle_sidecar_shows_only_the_series_alerts_need() {
    let metrics = Metrics::new();
    resolve_like_a_sidecar(&metrics);
    metrics.config_in_force(MigrationStage::Dual, 0, true);
    let text = metrics.render();
    let names: Vec<&str> = samples(&text)
        .iter()
        .map(|l| l.split(['{', ' ']).next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "meshtrace_open_connections",
            "meshtrace_open_connections",
            "meshtrace_spans_exported_total",
            "meshtrace_spans_dropped_total",
            "meshtrace_spans_dropped_total",
            "meshtrace_spans_dropped_total",
            "meshtrace_config_version",
            "meshtrace_config_last_reload_timestamp_seconds",
            "meshtrace_migration_stage",
            "meshtrace_migration_stage",
            "meshtrace_migration_stage",
            "meshtrace_memory_trims_total",
        ],
        "{text}"
    );
}

/// Series render sorted by their labels whatever order they were created and
/// counted in, so two scrapes (and two sidecars) list the same lines in the
/// same order.
#[test]
fn series_render_in_label_order_whatever_order_they_were_created_in() {
    let count_all = |order: &[(Direction, Protocol, u16)]| {
        let metrics = Metrics::new();
        for &(direction, protocol, status) in order {
            let status = http::StatusCode::from_u16(status).unwrap();
            metrics
                .http(direction, protocol)
                .record(status, std::time::Duration::ZERO);
            metrics.by_caller().get(&format!("caller-{status}"))[0].inc();
        }
        metrics.render()
    };
    let mut order = Vec::new();
    for direction in Direction::ALL {
        for protocol in [Protocol::Http1, Protocol::Http2, Protocol::Grpc] {
            for status in [200, 302, 404, 503] {
                order.push((direction, protocol, status));
            }
        }
    }
    let forward = count_all(&order);
    order.reverse();
    let backward = count_all(&order);
    assert_eq!(forward, backward);
    let requests: Vec<&str> = samples(&forward)
        .into_iter()
        .filter(|l| l.starts_with("meshtrace_requests_total"))
        .collect();
    assert_eq!(requests.len(), 24);
    assert!(requests[0].contains(r#"{direction="inbound",protocol="http1",status_class="2xx"}"#));
    assert!(requests[23].contains(r#"{direction="outbound",protocol="grpc",status_class="5xx"}"#));
}

/// Routes exist only outbound and only the inbound listener closes
/// unidentified connections: the other direction has no such series.
#[test]
fn upstream_errors_have_series_only_for_kinds_their_direction_can_produce() {
    let metrics = Metrics::new();
    for direction in Direction::ALL {
        let conns = metrics.conns(direction);
        for kind in ErrorKind::ALL {
            if kind.happens(direction) {
                conns.error(kind);
            }
        }
    }
    let text = metrics.render();
    let errors = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("meshtrace_upstream_errors_total"))
        .count();
    assert_eq!(errors, 2 * ErrorKind::ALL.len() - 2, "{text}");
    assert!(!text.contains(r#"direction="inbound",kind="no_route""#));
    assert!(!text.contains(r#"direction="outbound",kind="unidentified_closed""#));
}

/// A source's reload counters exist at zero once it starts (an alert's
/// `rate()` needs them before the first rejection); control-plane pushes count
/// under their own source.
#[test]
fn reload_counts_exist_from_the_start_of_their_source() {
    let metrics = Metrics::new();
    assert!(!metrics.render().contains("meshtrace_config_reloads_total{"));
    metrics.reload_source_started(ReloadSource::Control);
    metrics.config_reload(ReloadSource::Control, false);
    let text = metrics.render();
    for line in [
        r#"meshtrace_config_reloads_total{source="control",result="applied"} 0"#,
        r#"meshtrace_config_reloads_total{source="control",result="rejected"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    assert!(!text.contains(r#"source="file""#), "{text}");
}

/// The config in force: its version exact, the stage it sets, and a reload
/// time only when it replaced the running config.
#[test]
fn the_config_in_force_sets_version_stage_and_reload_time() {
    let metrics = Metrics::new();
    let version = (1u64 << 53) - 1;
    metrics.config_in_force(MigrationStage::W3c, version, true);
    let applied = metrics.last_reload_unix();
    assert!(applied > 1.6e9, "{applied}");
    metrics.config_in_force(MigrationStage::W3c, version, false);
    assert_eq!(metrics.last_reload_unix(), applied);
    assert_eq!(metrics.config_version(), version);
    let text = metrics.render();
    for line in [
        format!("meshtrace_config_version {version}"),
        r#"meshtrace_migration_stage{stage="dual"} 0"#.to_string(),
        r#"meshtrace_migration_stage{stage="w3c"} 1"#.to_string(),
    ] {
        assert!(text.contains(&line), "{line} not in\n{text}");
    }
}

/// The control-plane gauge exists only once a control-plane watch made it.
#[test]
fn the_control_plane_gauge_exists_only_with_a_control_plane() {
    let metrics = Metrics::new();
    let sample = |text: &str| {
        samples(text)
            .into_iter()
            .find(|l| l.starts_with("meshtrace_control_plane_connected "))
            .map(str::to_string)
    };
    assert_eq!(sample(&metrics.render()), None);
    metrics.control_plane();
    let at_start = sample(&metrics.render());
    assert_eq!(
        at_start.as_deref(),
        Some("meshtrace_control_plane_connected 0")
    );
    metrics.control_plane().set(1);
    let up = sample(&metrics.render());
    assert_eq!(up.as_deref(), Some("meshtrace_control_plane_connected 1"));
}
