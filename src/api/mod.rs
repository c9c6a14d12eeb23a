//! The local control API: HTTP/JSON under `/v1` (plus Prometheus `/metrics`), served by `swarmnode run` beside the node and
//! speaking to it only through a `NodeHandle`, like the CLI and the tests. It listens on loopback by default; on any
//! other address it refuses to start without a bearer token, which it then requires on every request (compared in
//! constant time). The route table below is the one place routes are declared: the router and the OpenAPI document
//! are both built from it.

mod bodies;
pub mod cluster;
mod error;
mod events;
mod guard;
pub mod limits;
pub mod openapi;
pub mod perf;
mod routes;
mod server;
pub mod state;

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tower_http::timeout::{TimeoutBody, TimeoutLayer};
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use self::{
    bodies::{ConnectBody, Connected, Disconnected, ErrorBody, ErrorDetail, PublishBody, TopicChange, TopicName},
    error::ApiError,
    limits::ApiLimits,
};
use crate::{
    metrics::{ApiRequestLabels, ReasonLabel},
    node::NodeHandle,
};

/// Where the API listens, the token it requires, if any, and what one client may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
    pub limits: ApiLimits,
}

impl ApiConfig {
    /// From `--api ADDR|off`, `--api-token-file` and the `--api-*` limits: `None` when the API is off. A non-loopback
    /// address without a token file is refused, as are an empty or unreadable token file and limits out of range.
    pub fn from_flags(api: &str, token_file: Option<&Path>, limits: ApiLimits) -> anyhow::Result<Option<ApiConfig>> {
        limits.validate()?;
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
        Ok(Some(ApiConfig { listen, token, limits }))
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
    limits: ApiLimits,
    /// One permit per open event stream (`--api-max-event-streams`).
    event_streams: Arc<Semaphore>,
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
        .routes(routes!(cluster::members))
        .routes(routes!(cluster::services))
        .routes(routes!(cluster::register, cluster::deregister))
        .routes(routes!(cluster::update_ttl))
        .routes(routes!(cluster::route))
        .routes(routes!(state::list))
        .routes(state::watch_routes())
        .routes(state::key_routes())
        .routes(routes!(perf::perf))
        .routes(routes!(routes::diagnose))
        .routes(routes!(routes::openapi))
        .routes(routes!(routes::metrics))
}

/// The API's router for `handle`. `max_message_size` bounds request bodies (a base64 payload of the largest
/// message, with room for the JSON around it). A request meets, from the outside in: the error shaper (every error
/// leaves as `{"error": …}`), the guard (token, `Host`, `Origin`; refusals are counted by reason only), the counter
/// (labels from the route table), the request timeout, then its route.
pub fn router(handle: NodeHandle, token: Option<String>, max_message_size: usize, limits: ApiLimits) -> Router {
    let (routes, mut document) = route_table().split_for_parts();
    openapi::finish(&mut document);
    let state = ApiState {
        handle,
        token: token.map(Arc::from),
        openapi: Arc::new(document),
        limits,
        event_streams: Arc::new(Semaphore::new(limits.max_event_streams)),
    };
    routes
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_message_size / 3 * 4 + 64 * 1024))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(middleware::from_fn_with_state(state.clone(), guard_request))
        .layer(middleware::from_fn(error::json_errors))
        .with_state(state)
}

async fn no_such_route() -> ApiError {
    ApiError::not_found("no_such_route", "no such route; GET /v1/openapi.json lists them")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; GET /v1/openapi.json lists them",
    )
}

/// Refuses, before any route runs, what `guard` refuses (no token, a foreign `Host`, a cross-origin change), counting
/// it by reason only; wraps the body in the body timeout.
async fn guard_request(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Err(refusal) = guard::check(request.headers(), state.token.as_deref()) {
        state
            .handle
            .metrics()
            .api_refused
            .get_or_create(&ReasonLabel { reason: refusal.code() })
            .inc();
        let (status, message) = match refusal {
            guard::Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "this API needs Authorization: Bearer <token> (the token in --api-token-file)",
            ),
            guard::Refusal::ForeignHost => (
                StatusCode::FORBIDDEN,
                "the Host header must name this machine (localhost or a loopback address) unless the API requires \
                 a token (--api-token-file)",
            ),
            guard::Refusal::CrossOrigin => (
                StatusCode::FORBIDDEN,
                "a page of another origin cannot use this API; send the request without that Origin",
            ),
        };
        let mut response = ApiError::new(status, refusal.code(), message).into_response();
        let headers = response.headers_mut();
        // A refused client gets no further use of its connection.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if refusal == guard::Refusal::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return response;
    }
    let body_timeout = state.limits.body_timeout;
    next.run(request.map(|body| Body::new(TimeoutBody::new(body_timeout, body))))
        .await
}

/// Counts each request that passed the guard by its route as declared (so ids do not explode the label set), a
/// known method and its status class: every label comes from a fixed set, whatever the request says.
async fn count_request(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = known_method(request.method());
    let response = next.run(request).await;
    state
        .handle
        .metrics()
        .api_requests
        .get_or_create(&ApiRequestLabels {
            route,
            method,
            status: status_class(response.status()),
        })
        .inc();
    response
}

fn known_method(method: &Method) -> &'static str {
    const KNOWN: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A running API server.
pub struct RunningApi {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningApi {
    /// Stops serving; every connection, open event streams too, is closed.
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
    let metrics = handle.metrics().clone();
    let app = router(handle, config.token.clone(), max_message_size, config.limits);
    let task = tokio::spawn(server::serve(listener, app, config.limits, metrics));
    tracing::info!(%address, "API listening");
    Ok(RunningApi { address, task })
}
