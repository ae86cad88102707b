//! A small Kubernetes API server for the ConfigMap subset the control plane's
//! Kubernetes store uses, faithful to the API conventions it relies on:
//!
//! * `GET /api/v1/namespaces/{ns}/configmaps/{name}`: the object, or a 404
//!   `Status` (reason `NotFound`);
//! * `POST /api/v1/namespaces/{ns}/configmaps`: creates it with a new
//!   `resourceVersion` (201), or 409 `AlreadyExists`;
//! * `PUT /api/v1/namespaces/{ns}/configmaps/{name}`: replaces it when the body's
//!   `metadata.resourceVersion` is the current one (or absent), else 409
//!   `Conflict` ("the object has been modified"); 404 when missing;
//! * `GET /api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion=N`
//!   (`fieldSelector=metadata.name=…` honoured): every change after `N`, then
//!   live ones, as newline-delimited `{"type","object"}` events, until
//!   `timeoutSeconds` passes or the server stops.
//!
//! Resource versions are one counter over every object, as etcd's are. It speaks
//! plain HTTP on 127.0.0.1 and writes a kubeconfig pointing at itself.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Infallible>;

/// One stored change: (resourceVersion, namespace, event type, object).
type Change = (u64, String, &'static str, Value);

#[derive(Default)]
struct Objects {
    revision: u64,
    by_key: BTreeMap<(String, String), Value>,
    history: Vec<Change>,
    writes: u64,
    conflicts: u64,
}

struct Shared {
    objects: Mutex<Objects>,
    changes: broadcast::Sender<Change>,
    stop: CancellationToken,
}

/// The running server; stops when dropped.
pub struct FakeKubeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeKubeApi {
    /// Starts it on an ephemeral loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (changes, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            objects: Mutex::default(),
            changes,
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept(listener, shared.clone()));
        Self { addr, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for it to `path`, with `namespace` as the context's.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) {
        let url = self.url();
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {namespace}}}}}]\n"
        );
        std::fs::write(path, text).unwrap();
    }

    /// The stored object `namespace/name`.
    pub fn configmap(&self, namespace: &str, name: &str) -> Option<Value> {
        let objects = self.shared.objects.lock().unwrap();
        objects
            .by_key
            .get(&(namespace.into(), name.into()))
            .cloned()
    }

    /// (successful writes, writes refused with 409 Conflict).
    pub fn writes(&self) -> (u64, u64) {
        let objects = self.shared.objects.lock().unwrap();
        (objects.writes, objects.conflicts)
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = tokio::select! {
            _ = shared.stop.cancelled() => return,
            accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
    full(code, &body)
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path: Vec<String> = req.uri().path().split('/').map(str::to_string).collect();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    let method = req.method().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let body: Value = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match (&method, p.as_slice()) {
        (&Method::GET, ["", "api", "v1", "namespaces", ns, "configmaps"])
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") =>
        {
            watch(shared, ns, &query)
        }
        (&Method::GET, ["", "api", "v1", "namespaces", ns, "configmaps", name]) => {
            let objects = shared.objects.lock().unwrap();
            match objects.by_key.get(&(ns.to_string(), name.to_string())) {
                Some(object) => full(StatusCode::OK, object),
                None => not_found(name),
            }
        }
        (&Method::POST, ["", "api", "v1", "namespaces", ns, "configmaps"]) => {
            write(shared, ns, None, body)
        }
        (&Method::PUT, ["", "api", "v1", "namespaces", ns, "configmaps", name]) => {
            write(shared, ns, Some(name), body)
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the fake API does not serve {method} {}", path.join("/")),
        ),
    }
}

fn not_found(name: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("configmaps \"{name}\" not found"),
    )
}

/// POST (`name` None) or PUT.
fn write(shared: &Shared, ns: &str, name: Option<&str>, mut object: Value) -> Response<Body> {
    let Some(object_name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value".into(),
        );
    };
    let key = (ns.to_string(), object_name.clone());
    let mut objects = shared.objects.lock().unwrap();
    let current = objects
        .by_key
        .get(&key)
        .map(|o| o["metadata"]["resourceVersion"].clone());
    let kind = match (name, current) {
        (None, Some(_)) => {
            objects.conflicts += 1;
            let message = format!("configmaps \"{object_name}\" already exists");
            return status(StatusCode::CONFLICT, "AlreadyExists", message);
        }
        (None, None) => "ADDED",
        (Some(name), None) => return not_found(name),
        (Some(_), Some(current)) => {
            let wanted = &object["metadata"]["resourceVersion"];
            if !wanted.is_null() && *wanted != current {
                objects.conflicts += 1;
                let message = format!(
                    "Operation cannot be fulfilled on configmaps \"{object_name}\": the object \
                     has been modified; please apply your changes to the latest version and try again"
                );
                return status(StatusCode::CONFLICT, "Conflict", message);
            }
            "MODIFIED"
        }
    };
    objects.revision += 1;
    objects.writes += 1;
    let revision = objects.revision;
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("ConfigMap");
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["resourceVersion"] = json!(revision.to_string());
    objects.by_key.insert(key, object.clone());
    let change = (revision, ns.to_string(), kind, object.clone());
    objects.history.push(change.clone());
    let _ = shared.changes.send(change);
    let code = if kind == "ADDED" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    full(code, &object)
}

fn watch(shared: &Arc<Shared>, ns: &str, query: &BTreeMap<String, String>) -> Response<Body> {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let name = query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_string);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(300);
    let ns = ns.to_string();
    let wanted = move |change: &Change| {
        change.0 > from
            && change.1 == ns
            && name
                .as_deref()
                .is_none_or(|n| change.3["metadata"]["name"] == n)
    };
    // Subscribe before reading the history, so nothing falls in between.
    let live = shared.changes.subscribe();
    let past: Vec<Change> = {
        let objects = shared.objects.lock().unwrap();
        objects
            .history
            .iter()
            .filter(|c| wanted(c))
            .cloned()
            .collect()
    };
    let last = past.last().map_or(from, |c| c.0);
    let stop = shared.stop.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let live = stream::unfold(
        (live, stop, wanted),
        move |(mut live, stop, wanted)| async move {
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep_until(deadline) => return None,
                    next = live.recv() => next.ok()?,
                };
                if next.0 > last && wanted(&next) {
                    return Some((next, (live, stop, wanted)));
                }
            }
        },
    );
    let events = stream::iter(past).chain(live).map(|change| {
        let line = json!({"type": change.2, "object": change.3}).to_string() + "\n";
        Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(events)));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// Percent-decoding of a query value (`%3D` and friends).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&value[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
