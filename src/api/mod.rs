//! The local control API: HTTP/JSON under `/v1` (plus Prometheus `/metrics`), served by `swarmnode run` beside the node and
//! speaking to it only through a `NodeHandle`, like the CLI and the tests. It listens on loopback by default; on any
//! other address it refuses to start without a bearer token, which it then requires on every request (compared in
//! constant time). The route table below is the one place routes are declared: the router and the OpenAPI document
//! are both built from it.

mod bodies;
mod error;
mod events;
pub mod openapi;
mod routes;

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;
use tokio::{net::TcpListener, task::JoinHandle};
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use self::{
    bodies::{ConnectBody, Connected, Disconnected, ErrorBody, ErrorDetail, PublishBody, TopicChange, TopicName},
    error::ApiError,
};
use crate::{metrics::ApiRequestLabels, node::NodeHandle};

/// Where the API listens and the token it requires, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
}

impl ApiConfig {
    /// From `--api ADDR|off` and `--api-token-file`: `None` when the API is off. A non-loopback address without a
    /// token file is refused, as is an empty or unreadable token file.
    pub fn from_flags(api: &str, token_file: Option<&Path>) -> anyhow::Result<Option<ApiConfig>> {
        if api.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let listen: SocketAddr = api.parse().map_err(|e| {
            anyhow::anyhow!("invalid --api {api:?}: {e} (expected HOST:PORT such as 127.0.0.1:5100, or off)")
        })?;
        let token = token_file.map(read_token).transpose()?;
        if !listen.ip().is_loopback() && token.is_none() {
            anyhow::bail!(
                "invalid --api {listen}: an API on a non-loopback address needs --api-token-file, so that only holders \
                 of the token can control the node"
            );
        }
        Ok(Some(ApiConfig { listen, token }))
    }
}

/// The bearer token in `path` (`--api-token-file`): a regular file of at most 4 KiB, surrounding whitespace ignored.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    /// A token is a line of text; 4 KiB leaves room for any format.
    const MAX_TOKEN_FILE: usize = 4096;
    let text = crate::files::read_text(path, "--api-token-file", MAX_TOKEN_FILE)?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("--api-token-file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) handle: NodeHandle,
    token: Option<Arc<str>>,
    /// What `GET /v1/openapi.json` serves: the document built with this router.
    openapi: Arc<utoipa::openapi::OpenApi>,
}

/// Every route: each handler with its `#[utoipa::path]` (method, path, parameters, answers), the handlers of one path
/// together. Registering a handler here adds it to the router and its operation (and the schemas it uses) to the
/// OpenAPI document at once.
fn route_table() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::node))
        .routes(routes!(routes::peers, routes::connect))
        .routes(routes!(routes::disconnect))
        .routes(routes!(routes::topics))
        .routes(routes!(routes::subscribe, routes::unsubscribe))
        .routes(routes!(routes::publish))
        .routes(routes!(events::events))
        .routes(routes!(routes::diagnose))
        .routes(routes!(routes::openapi))
        .routes(routes!(routes::metrics))
}

/// The API's router for `handle`. `max_message_size` bounds request bodies (a base64 payload of the largest
/// message, with room for the JSON around it).
pub fn router(handle: NodeHandle, token: Option<String>, max_message_size: usize) -> Router {
    let (routes, mut document) = route_table().split_for_parts();
    openapi::finish(&mut document);
    let state = ApiState {
        handle,
        token: token.map(Arc::from),
        openapi: Arc::new(document),
    };
    routes
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_message_size / 3 * 4 + 64 * 1024))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .with_state(state)
}

async fn no_such_route() -> ApiError {
    ApiError::not_found("no_such_route", "no such route; GET /v1/openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; GET /v1/openapi.json lists them",
    )
}

/// With a token configured, every request must carry `Authorization: Bearer <token>`.
async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs Authorization: Bearer <token> (the token in --api-token-file)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Counts every request by route (as declared, so ids do not explode the label set), method and status.
async fn count_request(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    state
        .handle
        .metrics()
        .api_requests
        .get_or_create(&ApiRequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// A running API server.
pub struct RunningApi {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningApi {
    /// Stops serving; open event streams are cut.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Binds `config.listen` and serves the API for `handle` until stopped. Binding errors (address in use) surface
/// here, before the node is reported as running.
pub async fn start(config: &ApiConfig, handle: NodeHandle, max_message_size: usize) -> anyhow::Result<RunningApi> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot serve the API on {} (--api)", config.listen))?;
    let address = listener.local_addr()?;
    let app = router(handle, config.token.clone(), max_message_size);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    tracing::info!(%address, "API listening");
    Ok(RunningApi { address, task })
}
