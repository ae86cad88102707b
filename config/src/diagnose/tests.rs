use crate::{Config, ConfigError};

fn report(text: &str) -> Vec<String> {
    match Config::from_yaml_str(text, "t.yaml") {
        Err(ConfigError::Invalid {
            problems,
            source_name,
        }) => problems.iter().map(|p| p.in_source(&source_name)).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

/// Every line once, and no line says its path or location twice.
fn assert_said_once(lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        assert!(!lines[..i].contains(line), "repeated: {line}");
        assert!(!line.contains(" at line "), "location repeated: {line}");
        let path = line.split(": ").nth(1).unwrap_or_default();
        assert_eq!(line.matches(path).count(), 1, "path repeated: {line}");
    }
}

#[test]
fn two_misspelt_keys_are_both_reported_with_suggestions() {
    let lines = report(
        "inbound:\n  listen: 0.0.0.0:15006\n  app_prot: 8080\nlimits:\n  max_conections: 10\n",
    );
    assert_eq!(
        lines,
        [
            "t.yaml:3:3: inbound.app_prot: unknown key `app_prot`; did you mean `app_port`?",
            "t.yaml:5:3: limits.max_conections: unknown key `max_conections`; did you mean `max_connections`?",
        ]
    );
    assert_said_once(&lines);
}

#[test]
fn a_route_missing_its_target_hides_no_other_problem() {
    let text = "outbound:
  mode: explicit
  routes:
  - host: reviews
  - authority: ratings
    target: 127.0.0.1:9080
timeouts: {connect: 0s}
limits: {max_connections: 0}
sampling: {default_rate: 2}
";
    let lines = report(text);
    assert_eq!(
        lines,
        [
            "t.yaml:4:5: outbound.routes[0]: missing required key `target` (the rest of this entry is not checked)",
            "t.yaml:5:5: outbound.routes[1].authority: \"ratings\" has no port; use `host:` to match any port",
            "t.yaml:7:12: timeouts.connect: must be greater than 0s",
            "t.yaml:8:10: limits.max_connections: must be at least 1",
            "t.yaml:9:12: sampling.default_rate: 2 is not a rate in [0, 1]",
        ]
    );
    assert_said_once(&lines);
}

#[test]
fn an_over_indented_line_shows_the_value_it_ended_up_in() {
    let lines = report("inbound:\n  listen: 0.0.0.0:15006\n    app_port: 8080\n");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        "t.yaml:2:11: inbound.listen: invalid socket address syntax: \"0.0.0.0:15006 app_port\""
    );
    assert!(lines[1].starts_with("t.yaml:3:"), "{lines:?}");
    assert!(lines[1].contains("indented deeper"), "{lines:?}");
    assert_said_once(&lines);
}

#[test]
fn a_bad_value_is_quoted_and_an_enum_value_gets_a_suggestion() {
    let lines = report("inbound: {listen: nowhere}\npropagation:\n  stage: dule\n  extract: [tracecontext, b3mutli, b3single, b3single]\n");
    assert_eq!(
        lines,
        [
            "t.yaml:1:19: inbound.listen: invalid socket address syntax: \"nowhere\"",
            "t.yaml:3:10: propagation.stage: unknown value `dule`; did you mean `dual`?",
            "t.yaml:4:27: propagation.extract[1]: unknown value `b3mutli`; did you mean `b3multi`?",
            // The index is the file's, though element 1 was left out to go on.
            "t.yaml:4:46: propagation.extract[3]: B3Single is listed twice",
        ]
    );
}

#[test]
fn a_wrong_type_says_what_was_found() {
    let lines = report("limits: {max_connections: many}\nlog: {access_log: 3}\n");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("t.yaml:1:27: limits.max_connections: invalid type: string \"many\""),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("t.yaml:2:19: log.access_log: invalid type: integer `3`"),
        "{lines:?}"
    );
}

#[test]
fn semantic_problems_of_a_document_that_parsed_have_lines() {
    let lines = report("limits:\n  backlog: 0\n");
    assert_eq!(lines, ["t.yaml:2:3: limits.backlog: must be at least 1"]);
}

fn warnings(text: &str) -> Vec<String> {
    let config = Config::from_yaml_str(text, "w.yaml").unwrap();
    config.warnings().iter().map(ToString::to_string).collect()
}

#[test]
fn an_empty_extract_list_is_a_warning() {
    assert_eq!(
        warnings("propagation: {extract: []}\n"),
        ["propagation.extract: no format is read: incoming trace context is dropped and every request starts a new trace"]
    );
    assert!(warnings("{}\n").is_empty());
}

#[test]
fn an_upstream_rule_behind_a_wider_one_is_a_warning() {
    let text = "propagation:
  upstreams:
  - {match: {host: payments}, external: true}
  - {match: {authority: 'Payments:443'}, inject: [b3multi]}
  - {match: {port: 443}, inject: [tracecontext]}
  - {match: {authority: 'api:443'}, inject: [tracecontext]}
";
    assert_eq!(
        warnings(text),
        [
            "propagation.upstreams[1]: never applies: propagation.upstreams[0] comes first and matches every upstream this rule matches",
            "propagation.upstreams[3]: never applies: propagation.upstreams[2] comes first and matches every upstream this rule matches",
        ]
    );
}

#[test]
fn a_sampling_rule_behind_a_wider_one_is_a_warning() {
    let text = "sampling:
  rules:
  - {match: {path_prefix: /api/}, rate: 0.5}
  - {match: {path_prefix: /api/v1/, method: GET}, rate: 1}
  - {match: {method: GET}, rate: 0.1}
  - {rate: 0.01}
  - {match: {host: x}, rate: 1}
";
    assert_eq!(
        warnings(text),
        [
            "sampling.rules[1]: never applies: sampling.rules[0] comes first and matches every request this rule matches",
            "sampling.rules[4]: never applies: sampling.rules[3] comes first and matches every request this rule matches",
        ]
    );
}

#[test]
fn an_external_rule_that_also_injects_is_an_error() {
    let lines = report(
        "propagation:\n  upstreams:\n  - {match: {host: x}, external: true, inject: [b3multi]}\n",
    );
    assert_eq!(
        lines,
        ["t.yaml:3:40: propagation.upstreams[0].inject: an external rule writes no trace header; remove `inject` or `external`"]
    );
}

#[test]
fn forced_tenants_without_a_tenant_source_are_a_warning() {
    let text = "sampling:\n  tenant: {headers: []}\n  forced_tenants: [{tenant: a, traces_per_second: 1}]\n";
    assert_eq!(warnings(text).len(), 1);
}

#[test]
fn warnings_of_a_file_have_lines() {
    let dir = std::env::temp_dir().join(format!("meshtrace-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.yaml");
    std::fs::write(&path, "log: {level: info}\npropagation:\n  extract: []\n").unwrap();
    let (_, warnings) = Config::check_file(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((warnings[0].line, warnings[0].column), (Some(3), Some(3)));
}

#[test]
fn a_misspelt_key_does_not_also_report_what_it_meant_to_set() {
    let lines = report(
        "outbound:\n  mode: explicit\n  routes:\n  - {hots: reviews, target: 10.0.0.1:80}\n",
    );
    assert_eq!(
        lines,
        ["t.yaml:4:6: outbound.routes[0].hots: unknown key `hots`; did you mean `host`?"]
    );
}

#[test]
fn a_syntax_error_says_its_location_once() {
    let err = Config::from_yaml_str("inbound: [\n", "s.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(err.matches("2:1").count(), 1, "{err}");
    assert!(!err.contains(" at line "), "{err}");
}

#[test]
fn adaptive_routes_tiers_and_boosts_report_every_mistake() {
    let text = "sampling:
  tier: gold
  rules:
  - {name: pay, match: {path_prefix: /pay}, rate: 0.5, target_traces_per_second: 5}
  - {name: pay, match: {path_prefix: /p}, rate: 0.5, min_rate: 0.1}
  - {match: {path_prefix: /q}, target_traces_per_second: 5, min_rate: 0.5, max_rate: 0.1}
  - {name: default, match: {path_prefix: /r}, target_traces_per_second: 0}
  - match: {path_prefix: /s}
    target_traces_per_second: 1
    boost: {window: 1s, rate: 0}
  default: {match: {host: x}, rate: 1}
  adaptive: {period: 2s}
";
    let lines = report(text);
    let paths: Vec<&str> = lines
        .iter()
        .map(|l| l.splitn(4, ':').nth(3).unwrap_or("").trim())
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        paths,
        [
            "sampling.rules[0].target_traces_per_second",
            "sampling.rules[1].min_rate",
            "sampling.rules[1].name",
            "sampling.rules[2].min_rate",
            "sampling.rules[3].target_traces_per_second",
            "sampling.rules[3].name",
            "sampling.rules[4].boost",
            "sampling.rules[4].boost.window",
            "sampling.rules[4].boost.rate",
            "sampling.default.match",
            "sampling.tier",
        ],
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("unknown tier \"gold\"; known: background, critical, standard")),
        "{lines:#?}"
    );
}

#[test]
fn a_default_rate_a_tier_overrides_is_a_warning() {
    assert_eq!(
        warnings("sampling: {default_rate: 0.1, tier: critical}\n"),
        ["sampling.default_rate: never applies: the default route's rate comes from sampling.default or the tier"]
    );
    assert!(
        warnings("sampling: {default_rate: 0.1, default: {tier: critical, rate: 0.1}}\n")
            .is_empty()
    );
}
