//! The HTTP API: routing and handlers.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/v1/watch?service=S&namespace=N&pod=P&label=k=v…` | SSE config stream (see [`crate::watch`]) |
//! | POST | `/v1/ack` | `{"namespace","pod","version","status":"ack"\|"nack","error"?}` |
//! | POST | `/v1/report` | a sidecar's [`Report`] (see [`crate::reports`]) → [`ReportReply`]: `recorded`, and its `budgets` |
//! | GET | `/v1/sidecars` | connected sidecars, sent / acked versions, last rejection |
//! | GET | `/v1/config?service=S&namespace=N&label=k=v…` | a workload's resolved config |
//! | GET, PUT, PATCH | `/v1/config/base` | the base document (PUT: YAML or JSON; PATCH: RFC 7386) |
//! | GET, POST | `/v1/overrides` | incident overrides (POST: [`NewOverride`](crate::overrides::NewOverride) → 201) |
//! | PATCH, DELETE | `/v1/overrides/{id}` | change ([`OverrideChange`](crate::overrides::OverrideChange)) or remove one |
//! | GET | `/v1/migration` | the fleet-wide migration view ([`crate::migration`]) |
//! | POST | `/v1/migration/stage` | move a stage ([`StageRequest`](crate::stages::StageRequest) → [`StageMove`](crate::stages::StageMove)) |
//! | GET | `/v1/migration/stages` | stage assignments set through the API |
//! | GET, PUT | `/v1/boosts` | the fleet switch for incident boosts (PUT: [`BoostsRequest`](crate::switches::BoostsRequest) `{"enabled": false}` turns them off on every sidecar) → [`BoostsState`](crate::switches::BoostsState) |
//! | GET | `/v1/status`, `/healthz` | (`/v1/status` has the server's clock as `now`, `boosts_enabled`, and the active `boosts` sidecars reported, [`ActiveBoost`](crate::reports::ActiveBoost)) |
//! | GET | `/`, `/page.js`, `/page.css` | the read-only page ([`crate::page`]) |
//!
//! **Secrets.** Reads are open, so what they return is redacted (`api/redact.rs`):
//! `export.headers` values and URL userinfo become `REDACTED` in `GET /v1/config`,
//! `GET /v1/config/base` and the NACK messages of `GET /v1/sidecars`. Only the
//! watch stream carries the real values, to the sidecars that use them.
//!
//! Writes need the bearer token (see [`crate::auth`]), except the sidecars' own
//! `POST /v1/ack` and `POST /v1/report`. `PUT` and `PATCH /v1/config/base` accept
//! an optional `If-Match: <version>`; if the version moved on, they fail with 409.
//!
//! **Warnings.** `POST /v1/overrides` answers 201 with the created override's
//! fields, plus a `warnings` array of sentences when the server accepted it but
//! something looks wrong, e.g. a service that no document section names and no
//! sidecar (connected or reporting) has. The field is left out when empty, so a
//! client that reads the answer as an override keeps working.
//!
//! **Limits.** An override lasts at most `serve --max-override-duration` (24 h by
//! default), on creation and whenever its expiry changes; beyond is a 400 naming
//! the limit. Bodies are limited to 4 MiB ([`reply::MAX_BODY`]), reports to 64 KiB
//! (413 beyond). A report from a new sidecar when
//! [`MAX_SIDECARS`](crate::reports::MAX_SIDECARS) are kept is a 503.

mod redact;
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use meshtrace_config::report::{Report, ReportReply};

use crate::auth::{Denied, Token};
use crate::migration;
use crate::overrides::{Override, Timestamp};
use crate::page;
use crate::reply::{self, ApiError, Body};
use crate::reports::{self, Reports, MAX_REPORT_BODY};
use crate::resolve::Workload;
use crate::server::ConnectionStats;
use crate::sidecars::{Ack, Sidecars};
use crate::store::Store;
use crate::watch::{sse_stream, ConfigFeed};

/// Everything a request handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct Api {
    /// The state.
    pub store: Store,
    /// Connected sidecars.
    pub sidecars: Sidecars,
    /// What sidecars reported.
    pub reports: Reports,
    /// The write token.
    pub token: Arc<Token>,
    /// Ends watch streams on shutdown.
    pub shutdown: CancellationToken,
    /// What the server did with its connections (shown in `/v1/status`).
    pub connections: Arc<ConnectionStats>,
}

// === impl Api ===

impl Api {
    /// Handles one request; never fails (errors become JSON responses).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let result = self.route(req).await;
        let res = result.unwrap_or_else(|e| {
            if e.status.is_server_error() {
                tracing::error!(%method, %path, error = %e.message, "request failed");
            }
            let unauthorized = e.status == StatusCode::UNAUTHORIZED;
            let mut res = e.into_response();
            if unauthorized {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"meshtrace-control\""),
                );
            }
            res
        });
        tracing::debug!(%method, %path, status = res.status().as_u16(), "request");
        res
    }

    async fn route<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = req.method().clone();
        let path = req.uri().path().trim_end_matches('/').to_string();
        let is_write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if is_write && path != "/v1/ack" && path != "/v1/report" {
            self.authorize(&req)?;
        }
        let query = reply::query_pairs(req.uri().query())?;
        let ok = |v: serde_json::Value| Ok(reply::json(StatusCode::OK, &v));
        match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => ok(json!({ "status": "ok" })),
            (&Method::GET, p) if page::is_route(p) => page::asset(p)
                .map(page::Asset::response)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no route {path}"))),
            (&Method::GET, "/v1/status") => self.status().await,
            (&Method::GET, "/v1/watch") => self.watch(&query),
            (&Method::POST, "/v1/ack") => self.ack(req).await,
            (&Method::GET, "/v1/sidecars") => ok(json!(self.sidecars.list())),
            (&Method::GET, "/v1/config") => self.config(&query),
            (&Method::GET, "/v1/config/base") => {
                let snap = self.store.snapshot();
                Ok(reply::json(
                    StatusCode::OK,
                    &redact::document(&snap.document),
                ))
            }
            (&Method::PUT, "/v1/config/base") => self.put_base(req).await,
            (&Method::PATCH, "/v1/config/base") => self.patch_base(req).await,
            (&Method::GET, "/v1/overrides") => ok(json!(self.store.overrides().await)),
            (&Method::POST, "/v1/overrides") => self.add_override(req).await,
            (&Method::PATCH, p) if p.starts_with(OVERRIDE_PREFIX) => {
                self.change_override(&p[OVERRIDE_PREFIX.len()..], req).await
            }
            (&Method::DELETE, p) if p.starts_with(OVERRIDE_PREFIX) => {
                self.remove_override(&p[OVERRIDE_PREFIX.len()..]).await
            }
            (&Method::POST, "/v1/report") => self.report(req).await,
            (&Method::GET, "/v1/migration") => self.migration(),
            (&Method::GET, "/v1/migration/stages") => ok(json!(self.store.stages().await)),
            (&Method::POST, "/v1/migration/stage") => self.move_stage(req).await,
            (&Method::GET, "/v1/boosts") => ok(json!(self.store.boosts().await)),
            (&Method::PUT, "/v1/boosts") => self.set_boosts(req).await,
            (_, p) if is_route(p) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            )),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no route {path}"),
            )),
        }
    }

    /// What to tell the operator about an override that was accepted: a service
    /// nobody has heard of is most likely a typo, or a workload not deployed yet.
    fn warnings(&self, o: &Override) -> Vec<String> {
        let Some(service) = o.service.as_deref() else {
            return Vec::new();
        };
        let ns = o.namespace.as_deref();
        let snap = self.store.snapshot();
        let in_document = snap.document.workloads.iter().any(|s| {
            let m = &s.matches;
            m.service.as_deref() == Some(service)
                && (ns.is_none() || m.namespace.is_none() || m.namespace.as_deref() == ns)
        });
        let now = self.store.now();
        if in_document
            || self.sidecars.has_service(service, ns)
            || self.reports.has_service(service, ns, now)
        {
            return Vec::new();
        }
        let scope = ns
            .map(|n| format!(" (namespace {n:?})"))
            .unwrap_or_default();
        vec![format!(
            "no known workload or connected sidecar has service {service:?}{scope}; the override will apply when one connects"
        )]
    }

    fn authorize<B>(&self, req: &Request<B>) -> Result<(), ApiError> {
        self.token.check(req.headers()).map_err(|d| match d {
            Denied::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this request needs `Authorization: Bearer <token>`",
            ),
            Denied::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, why),
        })
    }

    fn check_if_match<B>(&self, req: &Request<B>) -> Result<(), ApiError> {
        let Some(value) = req.headers().get(header::IF_MATCH) else {
            return Ok(());
        };
        let wanted = value
            .to_str()
            .ok()
            .map(|v| v.trim().trim_matches('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("If-Match must be a version number"))?;
        let current = self.store.snapshot().version;
        if wanted != current {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("If-Match: version {wanted} is stale, the current version is {current}"),
            ));
        }
        Ok(())
    }

    async fn status(&self) -> Result<Response<Body>, ApiError> {
        let store = self.store.status().await;
        let mut v = serde_json::to_value(store)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if let Some(map) = v.as_object_mut() {
            map.insert("sidecar_count".into(), json!(self.sidecars.count()));
            let now = self.store.now();
            map.insert("reporting_sidecars".into(), json!(self.reports.count(now)));
            map.insert("boosts".into(), json!(self.reports.boosts(now)));
            map.insert("writes_enabled".into(), json!(self.token.is_configured()));
            map.insert("connections".into(), json!(self.connections.counts()));
            // The page counts overrides down from this clock, not the browser's.
            map.insert("now".into(), json!(Timestamp(self.store.now())));
        }
        Ok(reply::json(StatusCode::OK, &v))
    }

    fn config(&self, query: &[(String, String)]) -> Result<Response<Body>, ApiError> {
        let workload = workload(query)?;
        let snap = self.store.snapshot();
        let resolved = snap.resolve(&workload).map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("the matching sections do not resolve to a valid config: {e}"),
            )
        })?;
        Ok(reply::json(
            StatusCode::OK,
            &json!({
                "version": snap.version,
                "workload": workload,
                "config": resolved.config.redacted(),
            }),
        ))
    }

    fn watch(&self, query: &[(String, String)]) -> Result<Response<Body>, ApiError> {
        let workload = workload(query)?;
        let (namespace, pod) = match (one(query, "namespace")?, one(query, "pod")?) {
            (Some(n), Some(p)) => (n, p),
            _ => return Err(ApiError::bad_request("watch needs `namespace` and `pod`")),
        };
        let registration =
            self.sidecars
                .register(&namespace, &pod, &workload, Timestamp(self.store.now()));
        let feed = ConfigFeed::new(self.store.subscribe(), workload);
        let body = StreamBody::new(sse_stream(feed, registration, self.shutdown.clone()));
        let mut res = reply::with_type(StatusCode::OK, "text/event-stream", body.boxed_unsync());
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(res)
    }

    async fn ack<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let mut ack: Ack = reply::read_json(req.into_body()).await?;
        // A NACK message may quote a URL with its password; it is shown to readers.
        ack.error = ack.error.map(|e| meshtrace_config::redact::redact_urls(&e));
        if !self.sidecars.ack(&ack) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no sidecar {}/{} is watching", ack.namespace, ack.pod),
            ));
        }
        Ok(reply::json(StatusCode::OK, &json!({ "recorded": true })))
    }
}

// === impl Api: migration ===

impl Api {
    async fn report<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let report: Report = reply::read_json_limited(req.into_body(), MAX_REPORT_BODY).await?;
        let (namespace, pod) = (report.namespace.clone(), report.pod.clone());
        let now = self.store.now();
        self.reports.record(report, now).map_err(|e| match e {
            reports::Refused::Invalid(why) => ApiError::bad_request(why),
            full @ reports::Refused::Full(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, full.to_string())
            }
        })?;
        let answer = ReportReply {
            recorded: true,
            budgets: self.reports.budgets(&namespace, &pod, now),
        };
        Ok(reply::json(StatusCode::OK, &answer))
    }

    fn migration(&self) -> Result<Response<Body>, ApiError> {
        let windows = self.reports.windows(self.store.now());
        let snap = self.store.snapshot();
        let view = migration::view(&windows, |w| {
            snap.resolve(w).map(|r| r.config.propagation.stage)
        });
        Ok(reply::json(StatusCode::OK, &view))
    }
}

/// The single value of a query parameter (repeating it is an error).
fn one(query: &[(String, String)], key: &str) -> Result<Option<String>, ApiError> {
    let mut values = query.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!("`{key}` given twice"))),
        (v, _) => Ok(v.filter(|v| !v.is_empty()).cloned()),
    }
}

/// The workload named by `service`, `namespace` and repeated `label=k=v`.
fn workload(query: &[(String, String)]) -> Result<Workload, ApiError> {
    let mut labels = BTreeMap::new();
    for (_, v) in query.iter().filter(|(k, _)| k == "label") {
        let (k, v) = v
            .split_once('=')
            .ok_or_else(|| ApiError::bad_request(format!("label {v:?} is not `key=value`")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(Workload {
        service: one(query, "service")?,
        namespace: one(query, "namespace")?,
        labels,
    })
}

/// Where one override lives: `/v1/overrides/{id}`.
const OVERRIDE_PREFIX: &str = "/v1/overrides/";

/// Whether `path` is served (by some method): a known path with the wrong method
/// is a 405, anything else a 404.
fn is_route(path: &str) -> bool {
    const ROUTES: [&str; 13] = [
        "/healthz",
        "/v1/status",
        "/v1/watch",
        "/v1/ack",
        "/v1/sidecars",
        "/v1/config",
        "/v1/config/base",
        "/v1/overrides",
        "/v1/report",
        "/v1/migration",
        "/v1/migration/stage",
        "/v1/migration/stages",
        "/v1/boosts",
    ];
    ROUTES.contains(&path) || path.starts_with(OVERRIDE_PREFIX) || page::is_route(path)
}
