use std::time::UNIX_EPOCH;

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// A report of pod `pod` with `requests` inbound requests so far, `legacy` of them B3.
fn report(pod: &str, boot: u64, requests: u64, legacy: u64) -> Report {
    let counts = FormatCounts {
        requests,
        legacy,
        none: 0,
        formats: [(PropagationFormat::B3Multi, legacy)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect(),
    };
    Report {
        namespace: "shop".into(),
        pod: pod.into(),
        service: Some("checkout".into()),
        boot,
        inbound: counts.clone(),
        callers: [("web.shop".to_string(), counts)].into(),
        ..Report::default()
    }
}

fn inbound(reports: &Reports, now: SystemTime) -> Vec<u64> {
    let windows = reports.windows(now);
    windows.iter().map(|w| w.traffic.inbound.requests).collect()
}

#[test]
fn the_window_is_the_last_five_minutes_of_reports() {
    let reports = Reports::default();
    for minute in 0..=7 {
        let r = report("c1", 1, 10 * minute, 0);
        reports.record(r, at(60 * minute)).unwrap();
    }
    // 70 requests at 7 min, 20 at 2 min: the five minutes between saw 50.
    assert_eq!(inbound(&reports, at(420)), [50]);
}

#[test]
fn a_first_report_of_a_young_process_counts_in_full() {
    let reports = Reports::default();
    let young = Report {
        uptime_seconds: Some(20),
        ..report("c1", 1, 500, 0)
    };
    reports.record(young, at(0)).unwrap();
    assert_eq!(inbound(&reports, at(0)), [500]);
    let old = Report {
        uptime_seconds: Some(3600),
        ..report("c2", 1, 500, 0)
    };
    reports.record(old, at(0)).unwrap();
    assert_eq!(
        inbound(&reports, at(0)),
        [500, 0],
        "an hour-old process: only a baseline"
    );
}

#[test]
fn a_first_report_gives_no_traffic_yet() {
    let reports = Reports::default();
    reports.record(report("c1", 1, 500, 0), at(0)).unwrap();
    assert_eq!(inbound(&reports, at(0)), [0]);
}

#[test]
fn a_restart_counts_the_new_process_from_zero() {
    let reports = Reports::default();
    reports.record(report("c1", 1, 100, 0), at(0)).unwrap();
    reports.record(report("c1", 1, 150, 0), at(15)).unwrap();
    reports.record(report("c1", 2, 30, 0), at(30)).unwrap();
    assert_eq!(inbound(&reports, at(30)), [50 + 30]);
}

#[test]
fn a_counter_going_backwards_is_a_restart_even_with_the_same_boot() {
    let reports = Reports::default();
    reports.record(report("c1", 1, 100, 0), at(0)).unwrap();
    reports.record(report("c1", 1, 40, 0), at(15)).unwrap();
    assert_eq!(inbound(&reports, at(15)), [40]);
}

#[test]
fn callers_are_counted_per_caller_over_the_window() {
    let reports = Reports::default();
    reports.record(report("c1", 1, 10, 4), at(0)).unwrap();
    reports.record(report("c1", 1, 25, 9), at(15)).unwrap();
    let w = &reports.windows(at(15))[0];
    let web = &w.traffic.callers["web.shop"];
    assert_eq!((web.requests, web.legacy), (15, 5));
    assert_eq!(w.traffic.inbound.formats[&PropagationFormat::B3Multi], 5);
}

#[test]
fn merging_steps_of_a_fast_reporter_keeps_the_sums_exact() {
    let reports = Reports::default();
    for s in 0..200 {
        // A restart at 100 s: the new process starts from zero.
        let (boot, requests) = if s < 100 {
            (1, 3 * s)
        } else {
            (2, 2 * (s - 99))
        };
        reports
            .record(report("c1", boot, requests, 0), at(s))
            .unwrap();
    }
    let kept = reports.lock()["shop/c1"].steps.len();
    assert!(kept <= MAX_STEPS, "{kept} steps kept");
    // 0..99 s: 3 per second, 297 in all; then 2 per second from 100 s to 199 s.
    assert_eq!(inbound(&reports, at(199)), [297 + 200]);
}

#[test]
fn old_steps_are_dropped_but_a_baseline_five_minutes_back_is_kept() {
    let reports = Reports::default();
    for s in (0..=3600).step_by(15) {
        reports.record(report("c1", 1, s, 0), at(s)).unwrap();
    }
    let oldest = age(at(3600), reports.lock()["shop/c1"].steps[0].at);
    assert!(oldest >= WINDOW && oldest <= KEEP, "{oldest:?}");
    assert_eq!(inbound(&reports, at(3600)), [300]);
}

#[test]
fn a_silent_sidecar_is_forgotten_after_ten_minutes() {
    let reports = Reports::default();
    reports.record(report("c1", 1, 1, 0), at(0)).unwrap();
    reports.record(report("c2", 1, 1, 0), at(300)).unwrap();
    assert_eq!(reports.windows(at(599)).len(), 2);
    let left = reports.windows(at(600));
    assert_eq!(
        left.iter().map(|w| w.pod.as_str()).collect::<Vec<_>>(),
        ["c2"]
    );
}

#[test]
fn a_new_sidecar_beyond_the_bound_is_refused_and_known_ones_still_report() {
    let reports = Reports::new(2);
    reports.record(report("c1", 1, 1, 0), at(0)).unwrap();
    reports.record(report("c2", 1, 1, 0), at(0)).unwrap();
    assert_eq!(
        reports.record(report("c3", 1, 1, 0), at(1)),
        Err(Refused::Full(2))
    );
    reports.record(report("c1", 1, 2, 0), at(1)).unwrap();
    // Once one is forgotten, there is room again.
    reports.record(report("c1", 1, 3, 0), at(700)).unwrap();
    reports.record(report("c3", 1, 1, 0), at(700)).unwrap();
}

#[test]
fn a_report_with_too_many_callers_is_refused() {
    let mut r = report("c1", 1, 1, 0);
    for i in 0..=MAX_CALLERS {
        r.callers
            .insert(format!("caller-{i}"), FormatCounts::default());
    }
    let refused = Reports::default().record(r, at(0));
    assert!(matches!(refused, Err(Refused::Invalid(_))), "{refused:?}");
}

#[test]
fn app_formats_age_with_the_report() {
    let reports = Reports::default();
    let mut r = report("c1", 1, 1, 0);
    r.app_formats = Some([(PropagationFormat::Datadog, 5)].into());
    reports.record(r, at(0)).unwrap();
    let w = &reports.windows(at(20))[0];
    assert_eq!(
        w.app_formats,
        Some([(PropagationFormat::Datadog, 25)].into())
    );
}
