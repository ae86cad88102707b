//! The JSON patch (RFC 6902) that turns a pod into an injected one, computed
//! from the typed pod. Paths must work on any valid pod: a list or map the pod
//! does not have yet is added whole (`add /spec/volumes [...]`), since adding
//! `/spec/volumes/-` to a missing array fails on the API server; annotation
//! keys are escaped (`meshtrace.io~1status`).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde_json::{json, Value};

use super::annotations::{scrape, INJECTED_LABEL, STATUS, STATUS_INJECTED};
use super::containers::{METRICS_PATH, METRICS_PORT};

/// What is added to a pod.
#[derive(Debug)]
pub struct Additions {
    /// `meshtrace-init`.
    pub init: Container,
    /// `meshtrace-proxy`.
    pub sidecar: Container,
    /// `meshtrace-run`.
    pub volume: Volume,
    /// Native: the sidecar goes into `initContainers` right after
    /// `meshtrace-init`, before the pod's own init containers (which may need
    /// the network). Classic: first in `containers`.
    pub native: bool,
}

/// The patch adding `additions`, the status annotation, the
/// [`INJECTED_LABEL`] and (unless the pod has its own) the scrape annotations
/// to `pod`.
pub fn build(pod: &Pod, additions: Additions) -> Result<Patch, serde_json::Error> {
    let mut ops = Vec::new();
    let spec = pod.spec.as_ref();
    let mut annotations = vec![(STATUS.to_string(), STATUS_INJECTED.to_string())];
    annotations.extend(scrape(
        pod.metadata.annotations.as_ref(),
        METRICS_PORT,
        METRICS_PATH,
    ));
    let labels = [(INJECTED_LABEL.to_string(), "true".to_string())];
    let metadata = &pod.metadata;
    put(
        &mut ops,
        "annotations",
        metadata.annotations.is_some(),
        annotations,
    );
    put(&mut ops, "labels", metadata.labels.is_some(), labels);
    let init = serde_json::to_value(&additions.init)?;
    let sidecar = serde_json::to_value(&additions.sidecar)?;
    let mut first_inits = vec![init];
    if additions.native {
        first_inits.push(sidecar.clone());
    }
    match spec.and_then(|s| s.init_containers.as_ref()) {
        None => ops.push(add(&["spec", "initContainers"], Value::Array(first_inits))),
        Some(_) => {
            for (i, c) in first_inits.into_iter().enumerate() {
                ops.push(add(&["spec", "initContainers", &i.to_string()], c));
            }
        }
    }
    if !additions.native {
        ops.push(add(&["spec", "containers", "0"], sidecar));
    }
    let volume = serde_json::to_value(&additions.volume)?;
    match spec.and_then(|s| s.volumes.as_ref()) {
        None => ops.push(add(&["spec", "volumes"], Value::Array(vec![volume]))),
        Some(_) => ops.push(add(&["spec", "volumes", "-"], volume)),
    }
    Ok(Patch(ops))
}

/// Adds `entries` to the metadata map `map`: the whole map when the pod has
/// none, else one key at a time.
fn put(
    ops: &mut Vec<PatchOperation>,
    map: &str,
    exists: bool,
    entries: impl IntoIterator<Item = (String, String)>,
) {
    let entries = entries.into_iter();
    if exists {
        for (key, value) in entries {
            ops.push(add(&["metadata", map, &key], json!(value)));
        }
    } else {
        let whole: serde_json::Map<String, Value> =
            entries.map(|(key, value)| (key, json!(value))).collect();
        ops.push(add(&["metadata", map], Value::Object(whole)));
    }
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;

    fn additions(native: bool) -> Additions {
        let named = |n: &str| Container {
            name: n.into(),
            ..Container::default()
        };
        Additions {
            init: named("i"),
            sidecar: named("s"),
            volume: Volume {
                name: "v".into(),
                ..Volume::default()
            },
            native,
        }
    }

    fn paths(patch: &Patch) -> Vec<String> {
        patch.0.iter().map(|op| op.path().to_string()).collect()
    }

    #[test]
    fn missing_lists_and_maps_are_added_whole() {
        let pod = Pod {
            spec: Some(PodSpec::default()),
            ..Pod::default()
        };
        let patch = build(&pod, additions(true)).unwrap();
        assert_eq!(
            paths(&patch),
            [
                "/metadata/annotations",
                "/metadata/labels",
                "/spec/initContainers",
                "/spec/volumes"
            ]
        );
    }

    #[test]
    fn annotation_keys_are_escaped_and_existing_lists_are_inserted_into() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![]),
                volumes: Some(vec![]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        pod.metadata.annotations = Some(Default::default());
        pod.metadata.labels = Some(Default::default());
        let patch = build(&pod, additions(false)).unwrap();
        assert_eq!(
            paths(&patch),
            [
                "/metadata/annotations/meshtrace.io~1status",
                "/metadata/annotations/prometheus.io~1scrape",
                "/metadata/annotations/prometheus.io~1port",
                "/metadata/annotations/prometheus.io~1path",
                "/metadata/labels/meshtrace.io~1injected",
                "/spec/initContainers/0",
                "/spec/containers/0",
                "/spec/volumes/-"
            ]
        );
    }

    #[test]
    fn a_pod_with_its_own_scrape_annotations_keeps_them() {
        let mut pod = Pod {
            spec: Some(PodSpec::default()),
            ..Pod::default()
        };
        let own = [("prometheus.io/port".to_string(), "9090".to_string())];
        pod.metadata.annotations = Some(own.into_iter().collect());
        let patch = build(&pod, additions(true)).unwrap();
        let paths = paths(&patch);
        assert!(
            paths.iter().all(|p| !p.contains("prometheus.io")),
            "{paths:?}"
        );
        assert!(paths.contains(&"/metadata/labels".to_string()), "{paths:?}");
    }
}
