use std::collections::HashMap;

use super::*;

fn load_with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(text, "test.yaml", &|name| env.get(name).cloned())
}

fn problems(text: &str) -> Vec<String> {
    match Config::from_yaml_str(text, "test.yaml") {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn embedded_default_yaml_is_the_code_default() {
    let parsed = Config::from_yaml_str(DEFAULT_YAML, "default.yaml").unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn idle_connections_outlast_the_common_client_pools_by_default() {
    // Go's http.Transport keeps idle connections 90 s (IdleConnTimeout): a
    // sidecar closing first races the client's next request on them.
    let go_pool = std::time::Duration::from_secs(90);
    assert!(Timeouts::default().idle.get() > go_pool);
}

#[test]
fn empty_document_means_all_defaults() {
    for text in ["# nothing here\n", "", "~\n", "null\n"] {
        let parsed = Config::from_yaml_str(text, "empty.yaml").unwrap();
        assert_eq!(parsed, Config::default(), "{text:?}");
    }
}

#[test]
fn partial_document_keeps_other_defaults() {
    let parsed = Config::from_yaml_str("timeouts:\n  connect: 250ms\n", "t.yaml").unwrap();
    assert_eq!(parsed.timeouts.connect, Duration::from_millis(250));
    assert_eq!(parsed.timeouts.request, Duration::from_secs(15));
}

#[test]
fn rendered_config_reads_back_identically() {
    let config = Config::from_yaml_str(
        "outbound:\n  mode: explicit\n  routes:\n  - host: reviews\n    target: 127.0.0.1:9080\n",
        "r.yaml",
    )
    .unwrap();
    assert_eq!(
        Config::from_yaml_str(&config.to_yaml(), "rendered").unwrap(),
        config
    );
}

#[test]
fn a_rendered_default_config_has_no_key_an_older_sidecar_would_reject() {
    // The control plane renders configs for every sidecar, old ones included:
    // a new key left unset must not appear (as `null`) in what it sends.
    let rendered = Config::default().to_yaml();
    assert!(!rendered.contains("max_bytes"), "{rendered}");
}

#[test]
fn parse_error_names_line_column_and_path() {
    let err =
        Config::from_yaml_str("inbound:\n  listen: not-an-address\n", "bad.yaml").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("bad.yaml:2:"), "{text}");
    assert!(text.contains("inbound.listen"), "{text}");
}

#[test]
fn unknown_key_is_an_error_not_ignored() {
    let err = Config::from_yaml_str("timeouts:\n  conect: 1s\n", "typo.yaml").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("typo.yaml:2:3"), "{text}");
    assert!(text.contains("conect"), "{text}");
}

#[test]
fn syntax_error_names_line_and_column() {
    let err = Config::from_yaml_str("inbound: [\n", "syntax.yaml").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Parse {
                line: Some(_),
                column: Some(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let found = problems(
        "timeouts: {connect: 0s}\nlimits: {max_connections: 0, max_header_bytes: 10, max_header_count: 0}\nopaque_ports: [0]\n",
    );
    for path in [
        "timeouts.connect",
        "limits.max_connections",
        "limits.max_header_bytes",
        "limits.max_header_count",
        "opaque_ports",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{path} missing in {found:?}"
        );
    }
}

#[test]
fn listeners_on_the_same_port_clash() {
    let found = problems("inbound: {listen: 0.0.0.0:7000}\noutbound: {listen: 127.0.0.1:7000}\n");
    assert!(found[0].contains("outbound.listen"), "{found:?}");
}

#[test]
fn admin_must_stay_on_loopback_unless_allowed() {
    let found = problems("admin: {listen: 0.0.0.0:15000}\n");
    assert!(found[0].contains("admin.listen"), "{found:?}");
    Config::from_yaml_str(
        "admin: {listen: 0.0.0.0:15000, allow_non_loopback: true}\n",
        "ok",
    )
    .unwrap();
}

#[test]
fn explicit_mode_needs_routes_with_exactly_one_match() {
    assert!(problems("outbound: {mode: explicit}\n")[0].contains("outbound.routes"));
    let found = problems(
        "outbound:\n  mode: explicit\n  routes:\n  - {target: 127.0.0.1:1}\n  - {host: a, target: 127.0.0.1:1}\n  - {host: A, target: 127.0.0.1:2}\n",
    );
    assert!(
        found.iter().any(|p| p.contains("outbound.routes[0]:")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("outbound.routes[2].host")),
        "{found:?}"
    );
}

#[test]
fn routes_in_transparent_mode_are_rejected() {
    let found = problems("outbound:\n  routes:\n  - {host: a, target: 127.0.0.1:1}\n");
    assert!(found[0].contains("explicit"), "{found:?}");
}

#[test]
fn app_port_is_a_number_or_original() {
    let c = Config::from_yaml_str("inbound: {app_port: original}\n", "t").unwrap();
    assert_eq!(c.inbound.app_port, AppPort::Original);
    assert!(Config::from_yaml_str("inbound: {app_port: 70000}\n", "t").is_err());
    assert!(Config::from_yaml_str("inbound: {app_port: later}\n", "t").is_err());
}

#[test]
fn kubernetes_environment_overrides_the_file() {
    let c = load_with_env(
        "inbound: {app_port: 8080}\n",
        &[
            ("POD_NAME", "checkout-7d9"),
            ("POD_NAMESPACE", "shop"),
            ("POD_IP", "10.1.2.3"),
            ("MESHTRACE_APP_PORT", "9090"),
            ("MESHTRACE_OPAQUE_PORTS", "3306, 5432"),
            ("MESHTRACE_LOG_FORMAT", "json"),
        ],
    )
    .unwrap();
    assert_eq!(c.workload.pod_name.as_deref(), Some("checkout-7d9"));
    assert_eq!(c.workload.namespace.as_deref(), Some("shop"));
    assert_eq!(c.workload.pod_ip, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(c.inbound.app_port, AppPort::Fixed(9090));
    assert_eq!(c.opaque_ports, vec![3306, 5432]);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn bad_environment_values_are_reported_with_the_variable_name() {
    let err = load_with_env("", &[("MESHTRACE_APP_PORT", "http"), ("POD_IP", "nope")]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("env MESHTRACE_APP_PORT"), "{text}");
    assert!(text.contains("env POD_IP"), "{text}");
}

#[test]
fn health_port_is_on_by_default_and_set_or_turned_off_by_the_environment() {
    let c = load_with_env("", &[]).unwrap();
    assert_eq!(
        c.admin.health_listen,
        Some("0.0.0.0:15021".parse().unwrap())
    );
    let c = load_with_env("", &[("MESHTRACE_HEALTH_LISTEN", "10.0.0.5:16021")]).unwrap();
    assert_eq!(
        c.admin.health_listen,
        Some("10.0.0.5:16021".parse().unwrap())
    );
    let c = load_with_env("", &[("MESHTRACE_HEALTH_LISTEN", "none")]).unwrap();
    assert_eq!(c.admin.health_listen, None);
    let err = load_with_env("", &[("MESHTRACE_HEALTH_LISTEN", "15021")]).unwrap_err();
    assert!(
        err.to_string().contains("env MESHTRACE_HEALTH_LISTEN"),
        "{err}"
    );
}

#[test]
fn health_port_must_not_clash_with_another_listener() {
    let found = problems("admin: {health_listen: 0.0.0.0:15006}\n");
    assert!(found[0].contains("admin.health_listen"), "{found:?}");
    Config::from_yaml_str("admin: {health_listen: null}\n", "ok").unwrap();
}

#[test]
fn metrics_port_is_on_by_default_and_set_or_turned_off_by_the_environment() {
    let c = load_with_env("", &[]).unwrap();
    assert_eq!(
        c.admin.metrics_listen,
        Some("0.0.0.0:15020".parse().unwrap())
    );
    let var = "MESHTRACE_METRICS_LISTEN";
    let c = load_with_env("", &[(var, "10.0.0.5:16020")]).unwrap();
    assert_eq!(
        c.admin.metrics_listen,
        Some("10.0.0.5:16020".parse().unwrap())
    );
    let c = load_with_env("", &[(var, "none")]).unwrap();
    assert_eq!(c.admin.metrics_listen, None);
    let c = load_with_env("admin: {metrics_listen: null}\n", &[]).unwrap();
    assert_eq!(c.admin.metrics_listen, None);
    let err = load_with_env("", &[(var, "15020")]).unwrap_err();
    assert!(
        err.to_string().contains("env MESHTRACE_METRICS_LISTEN"),
        "{err}"
    );
}

#[test]
fn metrics_port_must_not_clash_with_another_listener() {
    let found = problems("admin: {metrics_listen: 0.0.0.0:15021}\n");
    assert!(found[0].contains("admin.metrics_listen"), "{found:?}");
    let found = problems("admin: {metrics_listen: 127.0.0.1:15000}\n");
    assert!(found[0].contains("admin.metrics_listen"), "{found:?}");
    Config::from_yaml_str("admin: {metrics_listen: null}\n", "ok").unwrap();
}

#[test]
fn inline_config_variable_replaces_the_embedded_default() {
    let env = |name: &str| match name {
        "MESHTRACE_CONFIG_YAML" => Some("log: {level: debug}\n".to_string()),
        "MESHTRACE_LOG_FORMAT" => Some("json".to_string()),
        _ => None,
    };
    let c = Config::without_file(&env).unwrap();
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json, "the environment still wins");
    assert_eq!(
        c.inbound.app_port,
        AppPort::Fixed(8080),
        "defaults fill the rest"
    );
}

#[test]
fn inline_config_problems_name_the_variable_line_and_column() {
    let env = |name: &str| {
        (name == "MESHTRACE_CONFIG_YAML").then(|| "log:\n  levle: debug\n".to_string())
    };
    let err = Config::without_file(&env).unwrap_err().to_string();
    assert!(err.contains("MESHTRACE_CONFIG_YAML:2:3"), "{err}");
}

#[test]
fn empty_environment_values_are_ignored() {
    let c = load_with_env("", &[("MESHTRACE_APP_PORT", "")]).unwrap();
    assert_eq!(c.inbound.app_port, AppPort::Fixed(8080));
}

#[test]
fn sampling_rates_budgets_and_header_names_are_validated() {
    let found = problems(
        "sampling:\n  default_rate: 1.5\n  force_header: X-Force\n  forced_tenants:\n  - {tenant: acme, traces_per_second: 0}\n  rules:\n  - {rate: -0.1, reservoir_per_second: 0}\n",
    );
    for path in [
        "sampling.default_rate",
        "sampling.force_header",
        "sampling.forced_tenants[0].traces_per_second",
        "sampling.rules[0].rate",
        "sampling.rules[0].reservoir_per_second",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{path} missing in {found:?}"
        );
    }
}

#[test]
fn propagation_stages_rules_and_app_formats_are_validated() {
    let found = problems(
        "propagation:\n  app_formats: [b3multi, b3multi]\n  learn_for: 0s\n  upstreams:\n  - {name: 'bad name', match: {host: a}, inject: [b3multi]}\n  - {match: {host: b}}\n  - {match: {host: c}, external: true, inject: [tracecontext]}\n  - {name: x, match: {host: d}, inject: [datadog]}\n  - {name: x, match: {host: e}, inject: [datadog]}\nsampling:\n  forced_workload: {rate: 2, traces_per_second: 0}\ncontrol:\n  report_interval: 0s\n",
    );
    for path in [
        "propagation.app_formats[1]",
        "propagation.learn_for",
        "propagation.upstreams[0].name",
        "propagation.upstreams[1].inject",
        "propagation.upstreams[2].inject",
        "propagation.upstreams[4].name",
        "sampling.forced_workload.rate",
        "sampling.forced_workload.traces_per_second",
        "control.report_interval",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{path} missing in {found:?}"
        );
    }
}

#[test]
fn a_migration_stage_is_one_word_and_moves_one_step() {
    use crate::MigrationStage;
    let c = Config::from_yaml_str("propagation: {stage: dual}", "t").unwrap();
    assert_eq!(c.propagation.stage, MigrationStage::Dual);
    assert_eq!(MigrationStage::Legacy.next(), Some(MigrationStage::Dual));
    assert_eq!(MigrationStage::W3c.next(), None);
    assert_eq!(MigrationStage::Legacy.previous(), None);
    assert_eq!("w3c".parse::<MigrationStage>(), Ok(MigrationStage::W3c));
    let error = Config::from_yaml_str("propagation: {stage: w3}", "t").unwrap_err();
    assert!(error.to_string().contains("t:1:"), "{error}");
}

#[test]
fn the_removed_strip_legacy_setting_is_an_error_not_ignored() {
    let error = Config::from_yaml_str("propagation: {inbound: {strip_legacy: true}}", "t")
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown key `inbound`"), "{error}");
}

fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn export_settings_come_from_the_file_then_otel_variables_then_defaults() {
    use crate::{Compression, OtlpProtocol};
    let config = Config::default();
    let (r, problems) = config.export.resolve(&vars(&[]));
    assert!(problems.is_empty());
    assert_eq!(r.endpoint, None, "no endpoint anywhere: spans off");
    assert_eq!((r.queue_size, r.batch_size), (65_536, 512));
    assert_eq!(r.queue_bytes, 16 << 20);
    assert_eq!(r.delay, std::time::Duration::from_secs(5));
    assert_eq!(r.timeout, std::time::Duration::from_secs(10));
    assert_eq!(r.protocol, OtlpProtocol::Grpc);

    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
        ("OTEL_BSP_SCHEDULE_DELAY", "250"),
    ];
    let (r, problems) = config.export.resolve(&vars(&env));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        r.endpoint.as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(r.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(r.timeout, std::time::Duration::from_millis(2500));
    assert_eq!(r.compression, Compression::Gzip);
    assert_eq!(
        (r.queue_size, r.batch_size),
        (100, 100),
        "a batch never exceeds the queue"
    );
    assert_eq!(r.delay, std::time::Duration::from_millis(250));

    let file = Config::from_yaml_str(
        "export: {endpoint: 'http://file:4317', protocol: grpc, timeout: 1s, queue: {max_size: 10}}",
        "t",
    )
    .unwrap();
    let (r, _) = file.export.resolve(&vars(&env));
    assert_eq!(
        r.endpoint.as_deref(),
        Some("http://file:4317"),
        "the file wins"
    );
    assert_eq!(r.protocol, OtlpProtocol::Grpc);
    assert_eq!(r.timeout, std::time::Duration::from_secs(1));
    assert_eq!(r.queue_size, 10);

    let (r, problems) = config.export.resolve(&vars(&[
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:4318/custom",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
    ]));
    assert_eq!(
        r.endpoint.as_deref(),
        Some("http://traces:4318/custom"),
        "used as is"
    );
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "env OTEL_BSP_MAX_QUEUE_SIZE");
}

#[test]
fn spans_and_export_are_validated() {
    let err = Config::from_yaml_str(
        "spans: {routes: [users, '/a/{p*}/b'], tags: [{name: x}, {name: y, value: a, header: b}]}\n\
         export: {endpoint: 'collector:4317', queue: {batch_size: 0}, tls: {cert_file: /c.pem}}\n\
         sampling: {tail: {slow: 0s}}",
        "t.yaml",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "spans.routes[0]",
        "spans.routes[1]",
        "spans.tags[0]: needs exactly one of value, env, header",
        "spans.tags[1]: needs exactly one",
        "export.endpoint",
        "export.queue.batch_size",
        "export.tls: cert_file and key_file go together",
        "sampling.tail.slow",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}
