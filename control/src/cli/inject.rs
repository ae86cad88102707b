//! `meshtrace-control inject` (offline, like `istioctl kube-inject` or
//! `linkerd inject`) and `meshtrace-control injector` (the webhook server).
//!
//! The offline command reads YAML or JSON (a file, or `-` for stdin; several
//! `---` documents are fine) and prints each document as YAML, injected the way
//! the webhook would inject it: Pods directly, and the pod template of
//! Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs. Other
//! kinds, opted-out and already-injected pods are printed unchanged (with a note
//! on stderr); a pod the webhook would refuse is an error.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize as _;
use serde_json::Value;

use crate::inject::server::{self, InjectorServe};
use crate::inject::{inject, InjectorConfig, Outcome};

/// `inject` options.
#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The injector config file (YAML); without it, the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The manifest to inject (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename", default_value = "-")]
    pub file: PathBuf,
}

/// `injector` options.
#[derive(Debug, Args)]
pub struct InjectorArgs {
    /// Where to serve HTTPS.
    #[arg(long, default_value = "0.0.0.0:15017")]
    pub listen: SocketAddr,
    /// The PEM certificate chain (reloaded when it changes).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// The PEM private key (reloaded when it changes).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// The injector config file (YAML); without it, the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs the webhook until SIGTERM or Ctrl-C.
pub async fn injector(args: InjectorArgs) -> Result<(), String> {
    let config = InjectorConfig::load(args.config.as_deref())?;
    let running = server::start(InjectorServe {
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        config,
    })
    .await?;
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown.cancel();
    running.task.await.map_err(|e| e.to_string())
}

/// Prints the injected manifest; notes go to stderr.
pub fn inject_offline(args: &InjectArgs) -> Result<(), String> {
    let config = InjectorConfig::load(args.config.as_deref())?;
    let (name, text) = read_input(&args.file)?;
    let (out, notes) = inject_documents(&config, &text, &name)?;
    for note in notes {
        eprintln!("{note}");
    }
    print!("{out}");
    Ok(())
}

/// Injects every document of `text`; returns the YAML and the notes.
pub fn inject_documents(
    config: &InjectorConfig,
    text: &str,
    source_name: &str,
) -> Result<(String, Vec<String>), String> {
    let mut docs = Vec::new();
    let mut notes = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut doc = Value::deserialize(de).map_err(|e| {
            meshtrace_config::ConfigError::yaml(source_name, String::new(), &e).to_string()
        })?;
        if doc.is_null() {
            continue;
        }
        let label = describe(&doc, i);
        if let Some(note) =
            inject_document(config, &mut doc).map_err(|e| format!("{label}: {e}"))?
        {
            notes.push(format!("{label}: {note}"));
        }
        docs.push(serde_yaml::to_string(&doc).map_err(|e| e.to_string())?);
    }
    Ok((docs.join("---\n"), notes))
}

/// Injects one document in place; `Some(note)` when it was left unchanged.
fn inject_document(config: &InjectorConfig, doc: &mut Value) -> Result<Option<String>, String> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let pointer = match kind {
        "Pod" => "",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => "/spec/template",
        "CronJob" => "/spec/jobTemplate/spec/template",
        other => return Ok(Some(format!("kind {other:?} has no pod: unchanged"))),
    };
    let Some(target) = doc.pointer_mut(pointer) else {
        return Err(format!("no pod template at {pointer}"));
    };
    let pod: Pod =
        serde_json::from_value(target.clone()).map_err(|e| format!("not a valid pod: {e}"))?;
    match inject(config, &pod) {
        Outcome::Skip { reason, warnings } => Ok(Some(skipped(&reason, &warnings))),
        Outcome::Deny { message } => Err(format!("refused: {message}")),
        Outcome::Patch { patch, warnings } => {
            json_patch::patch(target, &patch)
                .map_err(|e| format!("cannot apply the patch: {e}"))?;
            Ok((!warnings.is_empty()).then(|| format!("warning: {}", warnings.join("; "))))
        }
    }
}

fn skipped(reason: &str, warnings: &[String]) -> String {
    let mut note = format!("not injected: {reason}");
    for w in warnings {
        note.push_str(&format!("; warning: {w}"));
    }
    note
}

fn describe(doc: &Value, index: usize) -> String {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("document");
    match doc.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => format!("{kind}/{name}"),
        None => format!("{kind} #{}", index + 1),
    }
}

fn read_input(file: &PathBuf) -> Result<(String, String), String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("stdin: cannot read: {e}"))?;
        return Ok(("<stdin>".into(), text));
    }
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: cannot read: {e}"))?;
    Ok((name, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: nginx
";

    #[test]
    fn a_deployments_pod_template_is_injected() {
        let (out, notes) =
            inject_documents(&InjectorConfig::default(), DEPLOYMENT, "d.yaml").unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let doc: Value = serde_yaml::from_str(&out).unwrap();
        let template = &doc["spec"]["template"];
        assert_eq!(
            template["metadata"]["annotations"]["meshtrace.io/status"],
            "injected"
        );
        assert_eq!(
            template["spec"]["initContainers"][1]["name"],
            "meshtrace-proxy"
        );
    }

    #[test]
    fn other_kinds_and_opted_out_pods_are_printed_unchanged_with_a_note() {
        let text = "kind: ConfigMap\nmetadata: {name: c}\n---\nkind: Pod\nmetadata:\n  name: p\n  \
annotations: {meshtrace.io/inject: \"false\"}\nspec: {containers: [{name: a}]}\n";
        let (out, notes) = inject_documents(&InjectorConfig::default(), text, "m.yaml").unwrap();
        assert_eq!(out.matches("---").count(), 1, "{out}");
        assert!(!out.contains("meshtrace-proxy"), "{out}");
        assert!(notes[0].starts_with("ConfigMap/c: "), "{notes:?}");
        assert!(notes[1].contains("opted out"), "{notes:?}");
    }

    #[test]
    fn a_pod_the_webhook_would_refuse_is_an_error() {
        let text = "kind: Pod\nmetadata:\n  name: p\n  annotations: {meshtrace.io/exclude-inbound-ports: x}\n\
spec: {containers: [{name: a}]}\n";
        let err = inject_documents(&InjectorConfig::default(), text, "p.yaml").unwrap_err();
        assert!(err.starts_with("Pod/p: refused: "), "{err}");
    }

    #[test]
    fn invalid_yaml_names_the_file_and_line() {
        let err = inject_documents(&InjectorConfig::default(), "kind: Pod\n  bad: [", "p.yaml")
            .unwrap_err();
        assert!(err.starts_with("p.yaml:"), "{err}");
    }
}
