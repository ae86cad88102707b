use std::time::UNIX_EPOCH;

use meshtrace_config::report::{BoostReport, RouteReport};

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A report of pod `pod` (service checkout) whose `checkout` route, adaptive
/// to 8 traces a second, decided `roots` root requests so far.
fn report(pod: &str, boot: u64, roots: u64) -> Report {
    let route = RouteReport {
        roots,
        target_traces_per_second: Some(8.0),
        rate: 0.1,
        ..RouteReport::default()
    };
    Report {
        namespace: "shop".into(),
        pod: pod.into(),
        service: Some("checkout".into()),
        boot,
        routes: [("checkout".to_string(), route)].into(),
        ..Report::default()
    }
}

fn budget(reports: &Reports, pod: &str, now: SystemTime) -> f64 {
    reports.budgets("shop", pod, now)["checkout"]
}

#[test]
fn the_arithmetic() {
    let split = shares(8.0, &[Some(300.0), Some(100.0)]);
    assert!(close(split[0], 6.0) && close(split[1], 2.0), "{split:?}");
    // Without a rate yet: target / n; the rated ones share the rest.
    let split = shares(9.0, &[Some(300.0), Some(100.0), None]);
    assert!(close(split[2], 3.0), "{split:?}");
    assert!(close(split[0], 4.5) && close(split[1], 1.5), "{split:?}");
    // All zero: equal shares.
    assert_eq!(shares(8.0, &[Some(0.0), Some(0.0)]), [4.0, 4.0]);
    assert_eq!(shares(8.0, &[None]), [8.0]);
    assert!(shares(8.0, &[]).is_empty());
}

#[test]
fn two_sidecars_three_to_one_share_three_quarters_and_one_quarter() {
    let reports = Reports::default();
    for (i, t) in [0u64, 10, 20].into_iter().enumerate() {
        let i = i as u64;
        reports.record(report("c1", 1, 300 * i), at(t)).unwrap();
        reports.record(report("c2", 1, 100 * i), at(t)).unwrap();
    }
    assert!(close(budget(&reports, "c1", at(20)), 6.0));
    assert!(close(budget(&reports, "c2", at(20)), 2.0));
    // Another workload (another service) does not share the target.
    let other = Report {
        service: Some("cart".into()),
        ..report("k1", 1, 5_000)
    };
    reports.record(other, at(20)).unwrap();
    assert!(close(budget(&reports, "k1", at(20)), 8.0));
    assert!(close(budget(&reports, "c1", at(20)), 6.0));
}

#[test]
fn a_new_sidecar_gets_an_equal_share_until_it_has_a_rate() {
    let reports = Reports::default();
    reports.record(report("c1", 1, 0), at(0)).unwrap();
    reports.record(report("c1", 1, 400), at(10)).unwrap();
    // c2's first report is only a baseline (an old process): no rate yet.
    let old = Report {
        uptime_seconds: Some(3600),
        ..report("c2", 1, 9_000)
    };
    reports.record(old, at(10)).unwrap();
    assert!(close(budget(&reports, "c2", at(10)), 4.0));
    assert!(close(budget(&reports, "c1", at(10)), 4.0));
    // With a second report it has a rate: 40/s each.
    reports.record(report("c1", 1, 800), at(20)).unwrap();
    reports.record(report("c2", 1, 9_400), at(20)).unwrap();
    assert!(close(budget(&reports, "c2", at(20)), 4.0));
    reports.record(report("c2", 1, 10_600), at(30)).unwrap();
    reports.record(report("c1", 1, 1_200), at(30)).unwrap();
    // Over the last minute: c1 800 roots, c2 1600 roots (20 s each).
    assert!(close(budget(&reports, "c2", at(30)), 8.0 * 1600.0 / 2400.0));
}

#[test]
fn a_sidecar_silent_for_three_intervals_drops_out() {
    let reports = Reports::default();
    for (i, t) in [0u64, 10, 20].into_iter().enumerate() {
        let i = i as u64;
        reports.record(report("c1", 1, 100 * i), at(t)).unwrap();
        reports.record(report("c2", 1, 100 * i), at(t)).unwrap();
    }
    assert!(close(budget(&reports, "c1", at(20)), 4.0));
    // c2 reports every 10 s: at 50 s it is still live, after it is not.
    // (Both 10 roots a second: c1 500 in 50 s, c2 200 in 20 s.)
    reports.record(report("c1", 1, 500), at(50)).unwrap();
    assert!(close(budget(&reports, "c1", at(50)), 4.0));
    reports.record(report("c1", 1, 600), at(51)).unwrap();
    assert!(close(budget(&reports, "c1", at(51)), 8.0));
}

#[test]
fn a_restart_counts_the_new_process_from_zero() {
    let reports = Reports::default();
    reports.record(report("c1", 1, 0), at(0)).unwrap();
    reports.record(report("c2", 1, 0), at(0)).unwrap();
    reports.record(report("c1", 1, 3_000), at(10)).unwrap();
    reports.record(report("c2", 1, 1_000), at(10)).unwrap();
    // c1 restarted (new boot, lower count): its 100 new roots are its traffic,
    // not 3000 → 100 going backwards.
    reports.record(report("c1", 2, 100), at(20)).unwrap();
    reports.record(report("c2", 1, 2_000), at(20)).unwrap();
    // c1: 3100 in 20 s; c2: 2000 in 20 s.
    assert!(close(budget(&reports, "c1", at(20)), 8.0 * 3100.0 / 5100.0));
    // A count going backwards with the same boot is a restart too.
    reports.record(report("c2", 1, 500), at(30)).unwrap();
    reports.record(report("c1", 2, 1_100), at(30)).unwrap();
    // c1: 4100 in 30 s; c2: 2500 in 30 s.
    assert!(close(budget(&reports, "c2", at(30)), 8.0 * 2500.0 / 6600.0));
    // A new boot whose count is already past the old one's: all of it is new.
    reports.record(report("c1", 3, 2_000), at(40)).unwrap();
    reports.record(report("c2", 1, 1_500), at(40)).unwrap();
    // c1: 6100 in 40 s; c2: 3500 in 40 s.
    assert!(close(budget(&reports, "c1", at(40)), 8.0 * 6100.0 / 9600.0));
}

#[test]
fn fixed_routes_get_no_budget_and_boosts_are_listed_until_they_end() {
    let reports = Reports::default();
    let mut r = report("c1", 1, 10);
    r.routes.insert(
        "health".into(),
        RouteReport {
            roots: 5,
            rate: 0.01,
            boost: Some(BoostReport {
                trigger: "error ratio 0.2 > 0.05".into(),
                started_seconds_ago: 3,
                ends_in_seconds: 30,
                rate: 0.5,
            }),
            ..RouteReport::default()
        },
    );
    reports.record(r, at(0)).unwrap();
    let budgets = reports.budgets("shop", "c1", at(0));
    assert_eq!(budgets.keys().collect::<Vec<_>>(), ["checkout"]);
    let boosts = reports.boosts(at(10));
    assert_eq!(boosts.len(), 1);
    assert_eq!(boosts[0].route, "health");
    assert_eq!(boosts[0].started_seconds_ago, 13);
    assert_eq!(boosts[0].ends_in_seconds, 20);
    // Past its end, or once the sidecar is no longer live, it is not shown.
    assert!(reports.boosts(at(44)).is_empty());
}
