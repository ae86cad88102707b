//! The operator's writes: the base document, incident overrides and migration
//! stage moves. Each handler reads its body, changes the [`Store`](crate::store::Store)
//! and answers with what changed.

use http::{Request, Response, StatusCode};
use serde_json::json;

use super::{redact, Api};
use crate::document::Document;
use crate::overrides::{Created, NewOverride, OverrideChange};
use crate::reply::{self, ApiError, Body};
use crate::stages::{StageMove, StageRequest};
use crate::switches::BoostsRequest;

// === impl Api ===

impl Api {
    /// `PUT /v1/boosts`: turns incident boosts off on every sidecar, or back on.
    pub(super) async fn set_boosts<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let request: BoostsRequest = reply::read_json(req.into_body()).await?;
        let state = self.store.set_boosts(request.enabled).await?;
        Ok(reply::json(StatusCode::OK, &state))
    }

    /// `PUT /v1/config/base`: replaces the base document (YAML or JSON).
    pub(super) async fn put_base<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.check_if_match(&req)?;
        let text = reply::read_text(req.into_body()).await?;
        let doc = Document::parse(&text, "request body")
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        refuse_read_back(&doc.to_json())?;
        let version = self.store.put_base(doc).await?;
        Ok(reply::json(StatusCode::OK, &json!({ "version": version })))
    }

    /// `PATCH /v1/config/base`: merges an RFC 7386 patch into the base document.
    pub(super) async fn patch_base<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.check_if_match(&req)?;
        let patch: serde_json::Value = reply::read_json(req.into_body()).await?;
        refuse_read_back(&patch)?;
        let version = self.store.patch_base(&patch).await?;
        Ok(reply::json(StatusCode::OK, &json!({ "version": version })))
    }

    /// `POST /v1/overrides`: adds an incident override, with warnings when it
    /// looks wrong.
    pub(super) async fn add_override<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let new: NewOverride = reply::read_json(req.into_body()).await?;
        let created = self.store.add_override(new).await?;
        tracing::info!(id = %created.id, target = %created.target(), "incident override added");
        let warnings = self.warnings(&created);
        for w in &warnings {
            tracing::warn!(id = %created.id, "{w}");
        }
        let answer = Created { created, warnings };
        Ok(reply::json(StatusCode::CREATED, &answer))
    }

    /// `PATCH /v1/overrides/{id}`: changes an override in place.
    pub(super) async fn change_override<B>(
        &self,
        id: &str,
        req: Request<B>,
    ) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let change: OverrideChange = reply::read_json(req.into_body()).await?;
        let changed = self.store.update_override(id, &change).await?;
        tracing::info!(id = %changed.id, expires_at = %changed.expires_at, "incident override changed");
        Ok(reply::json(StatusCode::OK, &changed))
    }

    /// `DELETE /v1/overrides/{id}`: ends an override now.
    pub(super) async fn remove_override(&self, id: &str) -> Result<Response<Body>, ApiError> {
        let removed = self.store.remove_override(id).await?;
        tracing::info!(id = %removed.id, "incident override removed");
        Ok(reply::json(StatusCode::OK, &removed))
    }

    /// `POST /v1/migration/stage`: moves one workload's migration stage.
    pub(super) async fn move_stage<B>(&self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let request: StageRequest = reply::read_json(req.into_body()).await?;
        let moved: StageMove = self.store.move_stage(&request).await?;
        Ok(reply::json(StatusCode::OK, &moved))
    }
}

/// Refuses a write that would store `REDACTED` in place of a secret: reads show
/// secrets redacted, so a document read back and written again must not erase them.
fn refuse_read_back(document: &serde_json::Value) -> Result<(), ApiError> {
    let paths = redact::read_back(document);
    if paths.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "{} hold the placeholder `REDACTED` that reads show instead of secrets; \
         send the real values, or PATCH only the keys you change",
        paths.join(", ")
    )))
}
