//! Incident overrides felt on the wire: every active override is in force on the
//! sidecar at once (service + tenant + tenant), a service override samples a
//! service that is not the trace root even when its caller said "not sampled",
//! and expiry and extension reach the sidecar.
//!
//! Nothing sleeps: a test waits for an applied config on
//! [`Reloader::subscribe`](meshtrace_proxy::Reloader::subscribe); expiry is the
//! control plane's own timer, whose push the test waits for.

use meshtrace_config::Config;
use meshtrace_control::client::ControlClient;
use meshtrace_control::overrides::{NewOverride, OverrideChange};
use meshtrace_tests::apps::echoed;
use meshtrace_tests::client::http1_get_with;
use meshtrace_tests::sidecar::Proxy;

use crate::watched::{watched, SERVICE};

/// A caller's context that says "not sampled": `checkout` is not the root.
const NOT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

/// Nothing is sampled unless an override says so.
const DOCUMENT: &str = "defaults: {sampling: {default_rate: 0.0}}\n";

/// Whether the app got "sampled" for a request whose caller said "not sampled".
async fn sampled_for(proxy: &Proxy, tenant: Option<&str>) -> bool {
    let mut headers = vec![("traceparent", NOT_SAMPLED)];
    if let Some(tenant) = tenant {
        headers.push(("x-tenant-id", tenant));
    }
    let rsp = http1_get_with(proxy.inbound_addr(), "app", &headers).await;
    let traceparent = echoed(&rsp, "traceparent").expect("the app received a traceparent");
    traceparent.ends_with("-01")
}

async fn add(control: &ControlClient, new: NewOverride) -> String {
    let created = control.add_override(&new).await.expect("add the override");
    created.created.id
}

fn service(rate: f64, duration: &str) -> NewOverride {
    NewOverride {
        service: Some(SERVICE.into()),
        rate,
        duration: Some(duration.into()),
        ..NewOverride::default()
    }
}

fn tenant(name: &str) -> NewOverride {
    NewOverride {
        tenant: Some(name.into()),
        rate: 1.0,
        duration: Some("30m".into()),
        ..NewOverride::default()
    }
}

fn forced_tenants(c: &Config) -> Vec<&str> {
    let mut names: Vec<&str> = c
        .sampling
        .forced_tenants
        .iter()
        .map(|t| t.tenant.as_str())
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn service_and_two_tenant_overrides_are_all_in_force_on_the_sidecar() {
    let (_app, cp, proxy) = watched(DOCUMENT).await;
    let control = cp.client();
    proxy
        .applied("the document", |c| c.sampling.default_rate == 0.0)
        .await;
    assert!(!sampled_for(&proxy, None).await);

    // Two: the service and one tenant.
    add(&control, service(1.0, "30m")).await;
    add(&control, tenant("acme")).await;
    let two = proxy
        .applied("service + tenant", |c| {
            c.sampling.forced_workload.is_some() && forced_tenants(c) == ["acme"]
        })
        .await;
    assert_eq!(
        two.sampling.forced_workload.as_ref().map(|f| f.rate),
        Some(1.0)
    );
    assert!(
        sampled_for(&proxy, None).await,
        "the service override samples although the caller said no"
    );

    // Three: a second tenant joins; nothing is dropped.
    let globex = add(&control, tenant("globex")).await;
    proxy
        .applied("service + two tenants", |c| {
            c.sampling.forced_workload.is_some() && forced_tenants(c) == ["acme", "globex"]
        })
        .await;
    let list = control.overrides().await.expect("override list");
    assert_eq!(list.len(), 3, "`override list` and the sidecar agree");

    // Each tenant is forced on its own once the service override is gone.
    let service_id = list
        .iter()
        .find(|o| o.service.is_some())
        .map(|o| o.id.clone())
        .expect("the service override");
    control.remove_override(&service_id).await.expect("remove");
    proxy
        .applied("the tenants alone", |c| {
            c.sampling.forced_workload.is_none() && forced_tenants(c).len() == 2
        })
        .await;
    assert!(sampled_for(&proxy, Some("acme")).await);
    assert!(sampled_for(&proxy, Some("globex")).await);
    assert!(!sampled_for(&proxy, Some("initech")).await);
    assert!(!sampled_for(&proxy, None).await);
    control.remove_override(&globex).await.expect("remove");
    proxy
        .applied("acme alone", |c| forced_tenants(c) == ["acme"])
        .await;
}

#[tokio::test]
async fn an_override_expires_on_the_sidecar_and_an_extended_one_does_not() {
    let (_app, cp, proxy) = watched(DOCUMENT).await;
    let control = cp.client();
    proxy
        .applied("the document", |c| c.sampling.default_rate == 0.0)
        .await;

    // The service override would end in 1 s, but is extended by an hour; a
    // tenant override (the marker) ends in 1 s for real.
    let id = add(&control, service(1.0, "1s")).await;
    let extended = control
        .update_override(
            &id,
            &OverrideChange {
                extend: Some("1h".into()),
                ..OverrideChange::default()
            },
        )
        .await
        .expect("extend");
    assert!(extended.expires_at.unix_ms() > extended.created_at.unix_ms() + 3_000_000);
    add(
        &control,
        NewOverride {
            duration: Some("2s".into()),
            ..tenant("marker")
        },
    )
    .await;
    proxy
        .applied("both overrides", |c| {
            c.sampling.forced_workload.is_some() && forced_tenants(c) == ["marker"]
        })
        .await;

    // The marker's expiry is pushed; the extended override outlives it.
    let after = proxy
        .applied("the marker's expiry", |c| forced_tenants(c).is_empty())
        .await;
    assert!(
        after.sampling.forced_workload.is_some(),
        "the extended override is still in force"
    );
    assert!(sampled_for(&proxy, None).await);

    // A change in place reaches the sidecar too.
    control
        .update_override(
            &id,
            &OverrideChange {
                rate: Some(0.0),
                ..OverrideChange::default()
            },
        )
        .await
        .expect("change the rate");
    proxy
        .applied("the new rate", |c| {
            c.sampling
                .forced_workload
                .as_ref()
                .is_some_and(|f| f.rate == 0.0)
        })
        .await;
    assert!(!sampled_for(&proxy, None).await);
}
