//! The two workloads as the control plane and their sidecars see them: each
//! sidecar's local config and environment, and the control plane's source
//! document that configures both.

use std::net::SocketAddr;
use std::path::Path;

use crate::procs::Processes;
use crate::{write, Result};

/// One sidecar: its ports and the app behind it.
pub(crate) struct Sidecar {
    pub(crate) label: &'static str,
    pub(crate) service: &'static str,
    pub(crate) inbound: SocketAddr,
    pub(crate) outbound: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) app: SocketAddr,
}

// === impl Sidecar ===

impl Sidecar {
    /// Its pod name.
    fn pod(&self) -> String {
        format!("{}-1", self.service)
    }

    /// `namespace/pod`, as the control plane lists it.
    pub(crate) fn identity(&self) -> String {
        format!("demo/{}", self.pod())
    }

    /// Writes its local config and starts it. The file holds what is local to
    /// the pod; identity and per-pod ports also come from the environment, as
    /// the downward API and the injector set them in Kubernetes, because a
    /// pushed config replaces every section but `control`, `admin`, `runtime`
    /// and `log` (and the environment applies on top of it).
    pub(crate) fn spawn(
        &self,
        procs: &Processes,
        proxy: &Path,
        dir: &Path,
        control: SocketAddr,
    ) -> Result<()> {
        let (service, pod) = (self.service, self.pod());
        let file = dir.join(format!("{service}.yaml"));
        let local = format!(
            r#"# {label} (written by the demo); the control plane pushes the rest.
workload: {{service: {service}, namespace: demo, pod_name: {pod}}}
admin: {{listen: "{admin}", health_listen: null, metrics_listen: null}}
control: {{url: "http://{control}"}}
"#,
            label = self.label,
            admin = self.admin,
        );
        write(&file, &local)?;
        let env = [
            ("MESHTRACE_SERVICE_NAME", service.to_string()),
            ("POD_NAMESPACE", "demo".to_string()),
            ("POD_NAME", pod),
            ("MESHTRACE_INBOUND_LISTEN", self.inbound.to_string()),
            ("MESHTRACE_OUTBOUND_LISTEN", self.outbound.to_string()),
            ("MESHTRACE_APP_PORT", self.app.port().to_string()),
        ];
        let args = ["run".to_string(), format!("--config={}", file.display())];
        procs.spawn(self.label, proxy, dir, &env, &args)
    }
}

/// The control plane's source document: defaults for everyone, then one
/// section per workload (the propagation its app needs, sidecar A's route).
pub(crate) fn source_document(collector: &str, backend_sidecar: SocketAddr) -> String {
    format!(
        r#"# meshtrace-control source document (written by the demo)
defaults:
  sampling: {{default_rate: 0.0}}     # nothing is traced until an override says so
  export: {{endpoint: "{collector}", queue: {{delay: 50ms}}}}
  spans: {{routes: [/checkout, /inventory]}}
workloads:
  - match: {{service: frontend, namespace: demo}}
    config:
      propagation:
        stage: dual              # B3 stays inside the pod: only W3C between sidecars
        app_formats: [b3multi]   # the app reads B3 only (without this: learned)
      outbound:
        mode: explicit
        routes: [{{host: backend, target: "{backend_sidecar}"}}]   # sidecar B
  - match: {{service: backend, namespace: demo}}
    config:
      propagation:
        app_formats: [datadog]   # the app reads Datadog only (without this: learned)
"#
    )
}
