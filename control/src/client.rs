//! A small HTTP client for the API: used by the CLI and by tests, and a model for
//! the sidecar's side of the watch protocol and of `POST /v1/report`.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use meshtrace_config::report::{Report, ReportReply};
use meshtrace_config::wire::{encode, CONFIG_EVENT};

use crate::migration::MigrationView;
use crate::overrides::{Created, NewOverride, Override, OverrideChange};
use crate::stages::{StageAssignment, StageMove, StageRequest};
use crate::switches::{BoostsRequest, BoostsState};
use meshtrace_config::wire::sse::{SseError, SseEvent, SseParser};
use meshtrace_config::wire::ConfigPush;
use meshtrace_config::Config;

/// How long a plain (non-watch) request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or request could not be built.
    #[error("invalid request: {0}")]
    Request(String),
    /// Connecting or talking to the server failed.
    #[error("cannot reach {url}: {error}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        error: String,
    },
    /// The server answered with an error.
    #[error("{status}: {message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The `error` field of the body (or the body).
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected response: {0}")]
    Decode(String),
}

/// A client of one control-plane server.
#[derive(Clone, Debug)]
pub struct ControlClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The open watch stream of one sidecar.
#[derive(Debug)]
pub struct WatchStream {
    body: Incoming,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
    /// Why the stream broke, reported once the events before it are read.
    broken: Option<SseError>,
}

// === impl ControlClient ===

impl ControlClient {
    /// A client of `base` (`http://host:port`), sending `token` on writes.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Request(format!(
                "server URL {base:?} must start with http://"
            )));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            token: token.filter(|t| !t.trim().is_empty()),
            client,
        })
    }

    /// Sends a request; returns the status and body of any response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let res = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let res = self.start(method, path, body).await?;
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport(path, e))?
                .to_bytes();
            Ok((status, bytes))
        })
        .await;
        res.map_err(|_| self.transport(path, "timed out"))?
    }

    async fn start(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let req = match body {
            Some((content_type, bytes)) => req
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(bytes)),
            None => req.body(Full::default()),
        }
        .map_err(|e| ClientError::Request(e.to_string()))?;
        self.client
            .request(req)
            .await
            .map_err(|e| self.transport(path, e))
    }

    /// Sends a request and decodes a 2xx JSON answer; other statuses are errors.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.send(method, path, body).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Status { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET` a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// Sends a JSON body.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Request(e.to_string()))?;
        self.call(method, path, Some(("application/json", bytes.into())))
            .await
    }

    /// Opens `GET /v1/watch?{query}`; fails unless the answer is a 200 event stream.
    pub async fn watch(&self, query: &str) -> Result<WatchStream, ClientError> {
        let path = format!("/v1/watch?{query}");
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.start(Method::GET, &path, None))
            .await
            .map_err(|_| self.transport(&path, "timed out"))??;
        if res.status() != StatusCode::OK {
            let status = res.status();
            let body = res.into_body().collect().await.map(|b| b.to_bytes());
            let message = body
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(ClientError::Status { status, message });
        }
        Ok(WatchStream {
            body: res.into_body(),
            parser: SseParser::default(),
            ready: Default::default(),
            broken: None,
        })
    }

    fn transport(&self, path: &str, error: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            url: format!("{}{path}", self.base),
            error: error.to_string(),
        }
    }
}

// === impl ControlClient: typed calls ===

impl ControlClient {
    /// `GET /v1/overrides`.
    pub async fn overrides(&self) -> Result<Vec<Override>, ClientError> {
        self.get("/v1/overrides").await
    }

    /// `POST /v1/overrides`: the override, with the server's warnings.
    pub async fn add_override(&self, new: &NewOverride) -> Result<Created, ClientError> {
        self.send_json(Method::POST, "/v1/overrides", new).await
    }

    /// `PATCH /v1/overrides/{id}`.
    pub async fn update_override(
        &self,
        id: &str,
        change: &OverrideChange,
    ) -> Result<Override, ClientError> {
        let path = format!("/v1/overrides/{}", encode(id));
        self.send_json(Method::PATCH, &path, change).await
    }

    /// `DELETE /v1/overrides/{id}`.
    pub async fn remove_override(&self, id: &str) -> Result<Override, ClientError> {
        let path = format!("/v1/overrides/{}", encode(id));
        self.call(Method::DELETE, &path, None).await
    }

    /// `GET /v1/migration`.
    pub async fn migration(&self) -> Result<MigrationView, ClientError> {
        self.get("/v1/migration").await
    }

    /// `GET /v1/migration/stages`.
    pub async fn stages(&self) -> Result<Vec<StageAssignment>, ClientError> {
        self.get("/v1/migration/stages").await
    }

    /// `POST /v1/migration/stage`.
    pub async fn move_stage(&self, request: &StageRequest) -> Result<StageMove, ClientError> {
        self.send_json(Method::POST, "/v1/migration/stage", request)
            .await
    }

    /// `GET /v1/boosts`.
    pub async fn boosts(&self) -> Result<BoostsState, ClientError> {
        self.get("/v1/boosts").await
    }

    /// `PUT /v1/boosts`.
    pub async fn set_boosts(&self, enabled: bool) -> Result<BoostsState, ClientError> {
        self.send_json(Method::PUT, "/v1/boosts", &BoostsRequest { enabled })
            .await
    }

    /// `POST /v1/report`, as a sidecar sends it.
    pub async fn report(&self, report: &Report) -> Result<ReportReply, ClientError> {
        self.send_json(Method::POST, "/v1/report", report).await
    }
}

// === impl WatchStream ===

impl WatchStream {
    /// The next event (comments skipped); `None` when the server ended the stream.
    /// Not bounded in time: wrap it in a timeout.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if let Some(error) = &self.broken {
                return Err(ClientError::Decode(error.to_string()));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| ClientError::Transport {
                url: "watch stream".into(),
                error: e.to_string(),
            })?;
            if let Ok(data) = frame.into_data() {
                self.broken = self.parser.feed(&data, &mut self.ready).err();
            }
        }
    }

    /// The next `config` event, decoded (other events skipped).
    pub async fn next_config(&mut self) -> Result<Option<ConfigPush<Config>>, ClientError> {
        while let Some(event) = self.next_event().await? {
            if event.event == CONFIG_EVENT {
                return serde_json::from_str(&event.data)
                    .map(Some)
                    .map_err(|e| ClientError::Decode(format!("config event: {e}")));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use hyper_util::rt::TokioIo;
    use meshtrace_config::wire::sse::MAX_EVENT;

    use super::*;

    /// A server whose every answer is `body`.
    async fn serve(body: Bytes) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let body = body.clone();
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(body))) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        url
    }

    /// The sidecar reads the stream with the same parser: an event one byte over
    /// the limit is the same error on both sides, after the events before it.
    #[tokio::test]
    async fn an_oversized_event_is_the_shared_parser_error() {
        let mut stream = b"data: ok\n\ndata: ok too\n\nevent: config\ndata: ".to_vec();
        stream.resize(stream.len() + MAX_EVENT - "config".len() + 1, b'x');
        stream.extend_from_slice(b"\n\n");
        let url = serve(Bytes::from(stream)).await;
        let client = ControlClient::new(&url, None).unwrap();
        let mut watch = client.watch("namespace=n&pod=p").await.unwrap();
        let first = tokio::time::timeout(REQUEST_TIMEOUT, watch.next_event()).await;
        assert_eq!(first.unwrap().unwrap().unwrap().data, "ok");
        let second = watch.next_event().await.unwrap().unwrap();
        assert_eq!(second.data, "ok too", "events before the error come first");
        let error = tokio::time::timeout(REQUEST_TIMEOUT, watch.next_event())
            .await
            .unwrap()
            .unwrap_err();
        let expected = SseError::EventTooLarge { limit: MAX_EVENT }.to_string();
        assert_eq!(
            error.to_string(),
            format!("unexpected response: {expected}")
        );
    }
}
