use meshtrace_config::{RuleMatch, SamplingRule};

use super::*;

const DAY: Duration = DEFAULT_MAX_DURATION;

fn new(service: Option<&str>, tenant: Option<&str>) -> NewOverride {
    NewOverride {
        service: service.map(Into::into),
        tenant: tenant.map(Into::into),
        rate: 1.0,
        duration: Some("30m".into()),
        ..NewOverride::default()
    }
}

fn built(new: NewOverride) -> Override {
    new.build(SystemTime::now(), DAY).unwrap()
}

fn workload(service: &str, namespace: &str) -> Workload {
    Workload {
        service: Some(service.into()),
        namespace: Some(namespace.into()),
        ..Workload::default()
    }
}

#[test]
fn a_service_override_forces_the_workload_and_leaves_rates_alone() {
    let o = built(NewOverride {
        rate: 0.5,
        ..new(Some("checkout"), None)
    });
    let mut c = Config::default();
    c.sampling.default_rate = 0.1;
    c.sampling.rules.push(SamplingRule {
        matches: RuleMatch::default(),
        rate: Some(0.2),
        reservoir_per_second: Some(5),
        ..SamplingRule::default()
    });
    let before = c.clone();
    assert!(o.apply(&mut c, &workload("checkout", "shop")));
    assert_eq!(
        c.sampling.forced_workload,
        Some(ForcedWorkload {
            rate: 0.5,
            traces_per_second: DEFAULT_TRACES_PER_SECOND
        })
    );
    c.sampling.forced_workload = None;
    assert_eq!(c, before, "nothing else changed");
    assert!(!o.apply(&mut Config::default(), &workload("cart", "shop")));
}

#[test]
fn a_service_override_takes_a_budget() {
    let o = built(NewOverride {
        traces_per_second: Some(5.0),
        ..new(Some("checkout"), None)
    });
    let mut c = Config::default();
    o.apply(&mut c, &workload("checkout", "shop"));
    assert_eq!(
        c.sampling.forced_workload.map(|f| f.traces_per_second),
        Some(5.0)
    );
}

#[test]
fn tenant_override_replaces_the_forced_tenant_entry() {
    let o = built(new(None, Some("acme")));
    let mut c = Config::default();
    c.sampling.forced_tenants.push(ForcedTenant {
        tenant: "acme".into(),
        rate: 0.1,
        override_parent: false,
        traces_per_second: 1.0,
    });
    assert!(o.apply(&mut c, &Workload::default()));
    assert_eq!(c.sampling.forced_tenants.len(), 1);
    let t = &c.sampling.forced_tenants[0];
    assert_eq!(
        (t.rate, t.override_parent, t.traces_per_second),
        (1.0, true, 100.0)
    );
}

#[test]
fn a_namespaced_override_applies_in_its_namespace_only() {
    let service = built(NewOverride {
        namespace: Some("shop".into()),
        ..new(Some("checkout"), None)
    });
    let tenant = built(NewOverride {
        namespace: Some("shop".into()),
        ..new(None, Some("acme"))
    });
    for o in [&service, &tenant] {
        assert!(o.apply(&mut Config::default(), &workload("checkout", "shop")));
        assert!(!o.apply(&mut Config::default(), &workload("checkout", "staging")));
    }
}

#[test]
fn the_same_name_in_another_namespace_is_another_target() {
    let everywhere = built(new(Some("checkout"), None));
    let in_shop = built(NewOverride {
        namespace: Some("shop".into()),
        ..new(Some("checkout"), None)
    });
    assert!(!everywhere.same_target(&in_shop));
    assert!(in_shop.same_target(&in_shop.clone()));
    assert!(!everywhere.same_target(&built(new(None, Some("checkout")))));
}

#[test]
fn unscoped_overrides_apply_before_namespaced_ones() {
    let in_shop = built(NewOverride {
        namespace: Some("shop".into()),
        ..new(Some("checkout"), None)
    });
    let everywhere = built(new(Some("checkout"), None));
    let list = [in_shop.clone(), everywhere.clone()];
    let order: Vec<&str> = in_order(&list).map(|o| o.id.as_str()).collect();
    assert_eq!(order, [everywhere.id.as_str(), in_shop.id.as_str()]);
}

#[test]
fn bad_requests_are_refused() {
    let now = SystemTime::now();
    let refused = |n: NewOverride| n.build(now, DAY).is_err();
    assert!(refused(new(Some("a"), Some("b"))));
    assert!(refused(new(None, None)));
    assert!(refused(NewOverride {
        rate: 1.5,
        ..new(Some("a"), None)
    }));
    assert!(refused(NewOverride {
        duration: Some("soon".into()),
        ..new(Some("a"), None)
    }));
    assert!(refused(NewOverride {
        duration: None,
        ..new(Some("a"), None)
    }));
    assert!(refused(NewOverride {
        traces_per_second: Some(0.0),
        ..new(Some("a"), None)
    }));
    assert!(refused(NewOverride {
        namespace: Some(" ".into()),
        ..new(Some("a"), None)
    }));
}

#[test]
fn an_override_longer_than_the_maximum_is_refused_naming_the_limit() {
    let err = NewOverride {
        duration: Some("25h".into()),
        ..new(Some("a"), None)
    }
    .build(SystemTime::now(), DAY)
    .unwrap_err();
    assert!(err.contains("at most 24h"), "{err}");
    assert!(err.contains("--max-override-duration"), "{err}");
}

#[test]
fn extend_adds_to_the_current_expiry() {
    let now = SystemTime::now();
    let o = built(new(Some("a"), None));
    let change = OverrideChange {
        extend: Some("1h".into()),
        ..OverrideChange::default()
    };
    let next = change.apply_to(&o, now, DAY).unwrap();
    assert_eq!(
        next.expires_at.0,
        o.expires_at.0 + Duration::from_secs(3600)
    );
    assert_eq!((&next.id, next.created_at), (&o.id, o.created_at));
}

#[test]
fn an_extension_beyond_the_maximum_is_refused() {
    let o = built(new(Some("a"), None));
    let change = OverrideChange {
        extend: Some("24h".into()),
        ..OverrideChange::default()
    };
    let err = change.apply_to(&o, SystemTime::now(), DAY).unwrap_err();
    assert!(err.contains("at most 24h"), "{err}");
}

#[test]
fn a_change_needs_something_to_change_and_one_expiry_at_most() {
    let o = built(new(Some("a"), None));
    let now = SystemTime::now();
    assert!(OverrideChange::default().apply_to(&o, now, DAY).is_err());
    let both = OverrideChange {
        duration: Some("1h".into()),
        extend: Some("1h".into()),
        ..OverrideChange::default()
    };
    assert!(both.apply_to(&o, now, DAY).is_err());
    let bad_rate = OverrideChange {
        rate: Some(-0.1),
        ..OverrideChange::default()
    };
    assert!(bad_rate.apply_to(&o, now, DAY).is_err());
}

#[test]
fn a_rate_change_keeps_the_expiry_even_above_a_lowered_maximum() {
    let o = built(new(Some("a"), None));
    let change = OverrideChange {
        rate: Some(0.25),
        reason: Some("".into()),
        ..OverrideChange::default()
    };
    let next = change
        .apply_to(&o, SystemTime::now(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        (next.rate, next.expires_at, next.reason),
        (0.25, o.expires_at, None)
    );
}

#[test]
fn the_created_answer_reads_as_a_plain_override() {
    // Timestamps travel with millisecond precision.
    let now = std::time::UNIX_EPOCH + Duration::from_millis(Timestamp(SystemTime::now()).unix_ms());
    let o = new(Some("a"), None).build(now, DAY).unwrap();
    let answer = Created {
        created: o.clone(),
        warnings: vec!["careful".into()],
    };
    let json = serde_json::to_string(&answer).unwrap();
    assert_eq!(serde_json::from_str::<Override>(&json).unwrap(), o);
    assert_eq!(serde_json::from_str::<Created>(&json).unwrap(), answer);
    let quiet = serde_json::to_value(Created {
        created: o,
        warnings: vec![],
    })
    .unwrap();
    assert!(quiet.get("warnings").is_none(), "{quiet}");
}
