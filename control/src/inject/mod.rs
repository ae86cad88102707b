//! The sidecar injector: a mutating admission webhook (`meshtrace-control
//! injector`) and its offline twin (`meshtrace-control inject`), sharing one
//! decision, [`inject`].
//!
//! # What a pod gets
//!
//! * `meshtrace-init` ([`containers::init_container`]): `meshtrace-proxy init`
//!   as root with NET_ADMIN and NET_RAW, writing the redirect rules (outbound →
//!   15001 except the sidecar's uid, inbound → 15006, exclusions from the config
//!   and the pod's annotations, the health port 15021 and the metrics port 15020
//!   always excluded inbound).
//! * `meshtrace-proxy` ([`containers::sidecar`]): `run` as uid/gid 1337 on a
//!   read-only root, configured through its environment (downward API, labels,
//!   control-plane URL, cache on the `meshtrace-run` emptyDir), with readiness and
//!   startup probes on the health port. Native by default: an init container with
//!   `restartPolicy: Always` placed right after `meshtrace-init`, so it is ready
//!   before any other container starts and does not keep a Job alive.
//!   It declares the metrics port `http-metrics` (15020, `GET /metrics`).
//! * The annotation `meshtrace.io/status: injected` and the label
//!   `meshtrace.io/injected: "true"` (what a `PodMonitor` selects).
//! * The scrape annotations `prometheus.io/scrape: "true"`, `prometheus.io/port:
//!   "15020"`, `prometheus.io/path: /metrics`, unless the pod already has a
//!   `prometheus.io/*` annotation: the app's own metrics win, and the sidecar's
//!   are scraped through the chart's `PodMonitor` instead.
//!
//! # Which pods
//!
//! The webhook's namespaceSelector sends pods of labelled namespaces; of those,
//! a pod is left alone when it opted out (`meshtrace.io/inject: "false"`), is
//! already injected (status annotation, or a container named `meshtrace-proxy`),
//! or uses the host's network (the rules would be written into the node's
//! namespace). A pod whose annotations are invalid is refused, with the reason.

pub mod annotations;
pub mod config;
pub mod containers;
pub mod patch;
pub mod review;
pub mod server;
pub mod tls;

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;

pub use self::config::InjectorConfig;

/// What the injector does with a pod.
#[derive(Debug)]
pub enum Outcome {
    /// Admit unchanged.
    Skip {
        /// Why (for logs and the offline command).
        reason: String,
        /// For the API client (`kubectl` prints them).
        warnings: Vec<String>,
    },
    /// Admit with this patch.
    Patch {
        /// The JSON patch.
        patch: Patch,
        /// For the API client.
        warnings: Vec<String>,
    },
    /// Refuse the pod.
    Deny {
        /// Why, for whoever created it.
        message: String,
    },
}

/// Decides what `pod` gets under `config`.
pub fn inject(config: &InjectorConfig, pod: &Pod) -> Outcome {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let skip = |reason: &str, warnings: Vec<String>| Outcome::Skip {
        reason: reason.into(),
        warnings,
    };
    let Some(spec) = &pod.spec else {
        return Outcome::Deny {
            message: "the pod has no spec".into(),
        };
    };
    if annotations.contains_key(annotations::STATUS) {
        return skip("already injected (meshtrace.io/status is set)", Vec::new());
    }
    let mut all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if all.any(|c| c.name == containers::SIDECAR_NAME) {
        return skip(
            "already injected (it has a meshtrace-proxy container)",
            Vec::new(),
        );
    }
    let (opted_out, warning) = annotations::opted_out(&annotations);
    let mut warnings: Vec<String> = warning.into_iter().collect();
    if opted_out {
        return skip("opted out (meshtrace.io/inject: \"false\")", warnings);
    }
    if spec.host_network == Some(true) {
        let why = "the pod uses the host's network: not injected (the init step would redirect the node's traffic)";
        warnings.push(why.into());
        return skip("hostNetwork", warnings);
    }
    let options = match annotations::read(&annotations) {
        Ok(options) => options,
        Err(message) => return Outcome::Deny { message },
    };
    let additions = patch::Additions {
        init: containers::init_container(config, &options),
        sidecar: containers::sidecar(config, pod, &options),
        volume: containers::run_volume(),
        native: config.native_sidecar,
    };
    match patch::build(pod, additions) {
        Ok(patch) => Outcome::Patch { patch, warnings },
        Err(e) => Outcome::Deny {
            message: format!("cannot build the patch: {e}"),
        },
    }
}
