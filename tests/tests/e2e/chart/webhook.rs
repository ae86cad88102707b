//! The webhook: it reaches the injector (Service, port, path, a CA that
//! verifies its serving certificate, or cert-manager's), and the API server
//! sends it each pod creation it should see, once.

use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use tokio_rustls::rustls;

use super::render::{labels, manifests, selects, Manifests, NAMESPACE, RELEASE, VALUES_SETS};
use super::{container_port, flag, mounted_volume, only_container, INJECTOR_SERVICE};

#[tokio::test]
async fn the_webhook_calls_the_injectors_service_port_and_path() {
    for values in VALUES_SETS {
        let m = manifests(values.set).await;
        let service: Service = m.get("Service", INJECTOR_SERVICE);
        let ports = service.spec.unwrap().ports.unwrap();
        let [port] = &ports[..] else {
            panic!("one injector port")
        };
        let injector: Deployment = m.get("Deployment", &format!("{RELEASE}-injector"));
        let container = only_container(&injector);
        let listen = flag(container, "--listen").expect("injector --listen");
        let target = container_port(container, port.target_port.as_ref().unwrap());
        assert_eq!(listen, format!("0.0.0.0:{target}"), "{}", values.name);
        assert_eq!(
            target, 15017,
            "the contract's injector port ({})",
            values.name
        );
        for hook in webhooks(&m) {
            let called = hook.client_config.service.as_ref().expect("a service");
            assert_eq!(called.name, INJECTOR_SERVICE);
            assert_eq!(called.namespace, NAMESPACE);
            assert_eq!(called.path.as_deref(), Some("/inject"));
            assert_eq!(
                called.port,
                Some(port.port),
                "{}: {}",
                values.name,
                hook.name
            );
            assert_eq!(port.port, 443);
        }
    }
}

#[tokio::test]
async fn the_chart_ca_in_the_webhook_verifies_the_injectors_serving_certificate() {
    let m = manifests(&[]).await;
    let secret_name = tls_secret_of_injector(&m);
    let secret: Secret = m.get("Secret", &secret_name);
    let data = secret.data.unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(data.contains_key(key), "the TLS Secret lacks {key}");
    }
    for hook in webhooks(&m) {
        let bundle = hook.client_config.ca_bundle.expect("caBundle set").0;
        assert_eq!(bundle, data["ca.crt"].0, "caBundle is the Secret's CA");
        // The API server dials meshtrace-injector.<ns>.svc and checks the chain.
        verify_server_cert(
            &bundle,
            &data["tls.crt"].0,
            &format!("{INJECTOR_SERVICE}.{NAMESPACE}.svc"),
        );
    }
}

#[tokio::test]
async fn cert_manager_fills_the_ca_bundle_from_the_injectors_certificate() {
    let m = manifests(&["injector.tls.mode=certManager"]).await;
    let config: MutatingWebhookConfiguration = m.all("MutatingWebhookConfiguration").remove(0);
    let annotations = config.metadata.annotations.unwrap_or_default();
    let from = &annotations["cert-manager.io/inject-ca-from"];
    let (namespace, name) = from.split_once('/').unwrap();
    assert_eq!(namespace, NAMESPACE);
    for hook in webhooks(&m) {
        assert!(
            hook.client_config.ca_bundle.is_none(),
            "cainjector writes caBundle"
        );
    }
    assert!(
        m.of_kind("Secret").next().is_none(),
        "no chart-generated Secret"
    );
    let cert = m
        .of_kind("Certificate")
        .find(|c| c["metadata"]["name"].as_str() == Some(name))
        .expect("the annotation names a Certificate of the chart");
    assert_eq!(
        cert["spec"]["secretName"].as_str(),
        Some(&*tls_secret_of_injector(&m))
    );
    let dns: Vec<&str> = cert["spec"]["dnsNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        dns.contains(&format!("{INJECTOR_SERVICE}.{NAMESPACE}.svc").as_str()),
        "{dns:?}"
    );
    let issuer = cert["spec"]["issuerRef"]["name"].as_str().unwrap();
    assert!(m
        .of_kind("Issuer")
        .any(|i| i["metadata"]["name"].as_str() == Some(issuer)));
}

#[tokio::test]
async fn the_webhook_admits_pod_creations_once_with_the_contracts_settings() {
    let m = manifests(&[]).await;
    let hooks = webhooks(&m);
    assert!(!hooks.is_empty());
    for hook in &hooks {
        assert_eq!(hook.admission_review_versions, vec!["v1".to_string()]);
        assert_eq!(hook.side_effects, "None");
        assert_eq!(hook.reinvocation_policy.as_deref(), Some("Never"));
        assert_eq!(
            hook.failure_policy.as_deref(),
            Some("Ignore"),
            "the documented default"
        );
        assert!(hook.timeout_seconds.is_some_and(|t| (1..=30).contains(&t)));
        let rules = hook.rules.clone().unwrap();
        let [rule] = &rules[..] else {
            panic!("one rule")
        };
        assert_eq!(rule.operations, Some(vec!["CREATE".to_string()]));
        assert_eq!(rule.resources, Some(vec!["pods".to_string()]));
        assert_eq!(rule.api_groups, Some(vec![String::new()]));
    }
    let fail = manifests(&["injector.failurePolicy=Fail"]).await;
    for hook in webhooks(&fail) {
        assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    }
}

/// Which webhooks a pod would be sent to, by its namespace's and its own labels.
fn sent_to(hooks: &[MutatingWebhook], ns: &[(&str, &str)], pod: &[(&str, &str)]) -> usize {
    let ns = labels(ns);
    let pod = labels(pod);
    let matches = |hook: &&MutatingWebhook| {
        hook.namespace_selector
            .as_ref()
            .is_none_or(|s| selects(s, &ns))
            && hook
                .object_selector
                .as_ref()
                .is_none_or(|s| selects(s, &pod))
    };
    hooks.iter().filter(matches).count()
}

#[tokio::test]
async fn the_webhook_selects_labelled_namespaces_but_not_its_own_or_opted_out_pods() {
    let hooks = webhooks(&manifests(&[]).await);
    let name = "kubernetes.io/metadata.name";
    let enabled = [(name, "shop"), ("meshtrace.io/injection", "enabled")];
    assert_eq!(sent_to(&hooks, &enabled, &[("app", "cart")]), 1);
    assert_eq!(
        sent_to(&hooks, &enabled, &[("meshtrace.io/inject", "false")]),
        0
    );
    assert_eq!(
        sent_to(&hooks, &enabled, &[("meshtrace.io/inject", "true")]),
        1,
        "once"
    );
    let own = [(name, NAMESPACE), ("meshtrace.io/injection", "enabled")];
    assert_eq!(
        sent_to(&hooks, &own, &[("meshtrace.io/inject", "true")]),
        0,
        "not itself"
    );
    let plain = [(name, "batch")];
    assert_eq!(sent_to(&hooks, &plain, &[("app", "x")]), 0);
    assert_eq!(
        sent_to(&hooks, &plain, &[("meshtrace.io/inject", "true")]),
        1,
        "opt-in"
    );
    let disabled = [(name, "legacy"), ("meshtrace.io/injection", "disabled")];
    assert_eq!(
        sent_to(&hooks, &disabled, &[("meshtrace.io/inject", "true")]),
        0
    );
    let system = [(name, "kube-system")];
    assert_eq!(
        sent_to(&hooks, &system, &[("meshtrace.io/inject", "true")]),
        0
    );
    // The NetworkPolicy lets opted-in pods of any namespace reach the control plane.
    let m = manifests(&[]).await;
    let policy: NetworkPolicy = m.get("NetworkPolicy", RELEASE);
    let peers = policy.spec.unwrap().ingress.unwrap()[0]
        .from
        .clone()
        .unwrap();
    assert!(peers.iter().any(|p| p
        .namespace_selector
        .as_ref()
        .is_some_and(|s| selects(s, &labels(&enabled)))));
    assert!(peers.iter().any(|p| p
        .pod_selector
        .as_ref()
        .is_some_and(|s| selects(s, &labels(&[("meshtrace.io/inject", "true")])))
        && p.namespace_selector.is_some()));
}

// === helpers ===

fn webhooks(m: &Manifests) -> Vec<MutatingWebhook> {
    let configs: Vec<MutatingWebhookConfiguration> = m.all("MutatingWebhookConfiguration");
    assert_eq!(configs.len(), 1, "one MutatingWebhookConfiguration");
    configs
        .into_iter()
        .flat_map(|c| c.webhooks.unwrap_or_default())
        .collect()
}

/// The Secret the injector's `--tls-cert` is mounted from.
fn tls_secret_of_injector(m: &Manifests) -> String {
    let injector: Deployment = m.get("Deployment", &format!("{RELEASE}-injector"));
    let c = only_container(&injector);
    let cert = flag(c, "--tls-cert").unwrap();
    let under = |mount: &str| cert.starts_with(&format!("{mount}/"));
    let volume = mounted_volume(&injector, under).expect("--tls-cert is mounted");
    volume.secret.unwrap().secret_name.unwrap()
}

/// Verifies `cert_pem` for `name` with `ca_pem` as the only root, as the API server would.
fn verify_server_cert(ca_pem: &[u8], cert_pem: &[u8], name: &str) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let cert = CertificateDer::from_pem_slice(cert_pem).unwrap();
    let server = ServerName::try_from(name.to_string()).unwrap();
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &*verifier,
        &cert,
        &[],
        &server,
        &[],
        UnixTime::now(),
    )
    .unwrap_or_else(|e| panic!("the injector's certificate does not verify for {name}: {e}"));
}
