//! The replicated map's handlers: `GET`, `PUT` and `DELETE /v1/state/{key}`, the prefix listing `GET /v1/state` and
//! the watch stream `GET /v1/state/watch`. Each is one `NodeHandle` call; what only HTTP can get wrong (a version
//! or a duration that does not parse, a body with both or neither value) is checked here, the rest (keys, TTL range,
//! value size, page size) by the node for every caller alike. A key is the rest of the path, so `a/b/c` works as
//! it is, and any character may be percent-encoded.
//!
//! `/v1/state/watch` is a static route, which the router matches before the `{*key}` wildcard: `GET` there is the
//! watch stream, while `PUT` and `DELETE` still reach the key named `watch` (the route's method fallback). That one
//! key is read as `GET /v1/state/%77atch` (the router matches the path as sent, the handler gets the key decoded),
//! or through `GET /v1/state?prefix=watch`.

use std::time::Duration;

use axum::{
    Json,
    extract::{DefaultBodyLimit, Path, Query, State, rejection::QueryRejection},
    http::{Method, StatusCode},
    response::Response,
};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::UtoipaMethodRouter, routes};

use super::{
    ApiState,
    bodies::ErrorBody,
    error::{ApiError, ApiJson, shorten},
    events::{EventFilter, open_stream},
};
use crate::{
    config,
    node::{MAX_WAIT, StateEntry, StatePage, StateWrite},
    wire::state::{MAX_KEY, MAX_VALUE_LIMIT},
};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// How long a get with `min_version` waits when `wait` is not given.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Entries per page of a listing when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// The key a `GET` of the watch route's path cannot read (see the module comment).
const WATCH: &str = "watch";
/// Largest body of a put: the largest value any node stores, in base64, with room for the JSON around it. The node
/// then refuses a value over its own `--max-value-size` with a message naming the flag.
const MAX_PUT_BODY: usize = MAX_VALUE_LIMIT.div_ceil(3) * 4 + 64 * 1024;

/// `GET /v1/state/{key}?min_version=&wait=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Wait until this version of the key, or a later one, is visible on this node (the `version` a write
    /// answered, a decimal number); 504 if it is not within `wait`.
    #[param(pattern = "^[0-9]{1,19}$")]
    min_version: Option<String>,
    /// How long to wait for `min_version`, e.g. `500ms`, `5s` (default `10s`, at most `60s`).
    #[param(pattern = "^(([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|60000)ms|([0-9]|[1-5][0-9]|60)s|[01]m)$")]
    wait: Option<String>,
}

/// `GET /v1/state?prefix=&limit=&cursor=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this (at most 512 bytes; the schema promises the 128 characters that always fit).
    #[param(max_length = 128)]
    prefix: Option<String>,
    /// Entries per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page (a key).
    #[param(max_length = 512)]
    cursor: Option<String>,
}

/// `GET /v1/state/watch?prefix=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Only changes of keys starting with this (all keys when absent; at most 512 bytes, the schema promises the
    /// 128 characters that always fit).
    #[param(max_length = 128)]
    prefix: Option<String>,
}

/// `PUT /v1/state/{key}`: exactly one of `value` (text) and `value_base64` (bytes), and an optional TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatePut {
    /// The value as text (stored as its UTF-8 bytes); at most `--max-value-size` bytes (the schema promises the
    /// characters that always fit the default 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 16384)]
    pub value: Option<String>,
    /// The value as base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = Byte, max_length = 87380,
        pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$")]
    pub value_base64: Option<String>,
    /// The value expires this long after the write, e.g. `30s`, `12h` (`100ms` to `365days`); never when absent.
    /// The pattern lists the simple forms, each within the bounds; the node also takes compound ones such as
    /// `1h 30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        pattern = "^([1-9][0-9]{2,5}ms|[1-9][0-9]{0,6}s|[1-9][0-9]{0,4}m|[1-9][0-9]{0,2}h|([1-9]|[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-5])(d|days?))$"
    )]
    pub ttl: Option<String>,
}

/// `GET`, `PUT` and `DELETE` of one key, with room in the body for the largest value any node stores.
pub(super) fn key_routes() -> UtoipaMethodRouter<ApiState> {
    let (schemas, paths, router) = routes!(get, put, delete);
    (schemas, paths, router.layer(DefaultBodyLimit::max(MAX_PUT_BODY)))
}

/// The watch stream, and the key named `watch` for the other methods.
pub(super) fn watch_routes() -> UtoipaMethodRouter<ApiState> {
    let (schemas, paths, router) = routes!(watch);
    let router = router
        .fallback(key_named_watch)
        .layer(DefaultBodyLimit::max(MAX_PUT_BODY));
    (schemas, paths, router)
}

/// The live value of a key; with `min_version`, once that version (or a later one) is visible here.
#[utoipa::path(get, path = "/v1/state/{*key}", operation_id = "getState",
    params(("key" = String, Path, description = "the key: 1 to 512 bytes of UTF-8 without control characters (the \
        schema promises the 128 characters that always fit); `watch` itself is read as `%77atch`",
        min_length = 1, max_length = 128, pattern = "^(?!(watch|\\.{1,2})$)[^\\u0000-\\u001F\\u007F-\\u009F]+$"),
        GetQuery),
    responses(
        (status = 200, description = "OK", body = StateEntry),
        (status = 400, description = "invalid_key, invalid_query: a key that is empty, too long or holds control \
            characters, a min_version that is not a number, a wait that is not a duration of at most 60s", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 404, description = "key_not_found: the key has no live value on this node", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
        (status = 504, description = "version_not_visible: min_version of the key did not reach this node within \
            wait", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> ApiResult<StateEntry> {
    let Query(query) = query?;
    let min_version = query.min_version.as_deref().map(parse_version).transpose()?;
    let wait = query
        .wait
        .as_deref()
        .map(parse_wait)
        .transpose()?
        .unwrap_or(DEFAULT_WAIT);
    Ok(Json(state.handle.state_get(&key, min_version, wait).await?))
}

/// Write a key: committed on this node when this answers, then replicated to the swarm.
#[utoipa::path(put, path = "/v1/state/{*key}", operation_id = "putState", request_body = StatePut,
    params(("key" = String, Path, description = "the key: 1 to 512 bytes of UTF-8 without control characters (the \
        schema promises the 128 characters that always fit)",
        min_length = 1, max_length = 128, pattern = "^(?!\\.{1,2}$)[^\\u0000-\\u001F\\u007F-\\u009F]+$")),
    responses(
        (status = 200, description = "written", body = StateWrite),
        (status = 400, description = "invalid_json, invalid_key, invalid_value, invalid_base64, \
            invalid_state_request: the body, the key or the value is malformed, or the ttl is not a duration from \
            100ms to 365days", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 413, description = "value_too_large: the value is larger than --max-value-size; too_large: the \
            body is larger than the largest value of any node (512 KiB, in base64) needs", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: the body is not sent as application/json", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
        (status = 507, description = "state_full: the map holds --max-state-bytes already", body = ErrorBody),
    ))]
pub async fn put(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    body: Result<ApiJson<StatePut>, ApiError>,
) -> ApiResult<StateWrite> {
    let ApiJson(body) = body.map_err(explain_too_large)?;
    let value = match (body.value, body.value_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map(Bytes::from)
            .map_err(|e| ApiError::bad_request("invalid_base64", format!("value_base64 is not base64: {e}")))?,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "give exactly one of value (text) and value_base64",
            ));
        }
    };
    let ttl = body.ttl.as_deref().map(parse_ttl).transpose()?;
    Ok(Json(state.handle.state_put(&key, value, ttl).await?))
}

/// Delete a key: a tombstone that replicates like a write (deleting a missing key is no error).
#[utoipa::path(delete, path = "/v1/state/{*key}", operation_id = "deleteState",
    params(("key" = String, Path, description = "the key: 1 to 512 bytes of UTF-8 without control characters (the \
        schema promises the 128 characters that always fit)",
        min_length = 1, max_length = 128, pattern = "^(?!\\.{1,2}$)[^\\u0000-\\u001F\\u007F-\\u009F]+$")),
    responses(
        (status = 200, description = "deleted", body = StateWrite),
        (status = 400, description = "invalid_key: a key that is empty, too long or holds control characters", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
        (status = 507, description = "state_full: the map holds --max-state-bytes already", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<ApiState>, Path(key): Path<String>) -> ApiResult<StateWrite> {
    Ok(Json(state.handle.state_delete(&key).await?))
}

/// The live keys under a prefix, in key order, a page at a time.
#[utoipa::path(get, path = "/v1/state", operation_id = "listState", params(ListQuery), responses(
    (status = 200, description = "OK (next_cursor is absent on the last page)", body = StatePage),
    (status = 400, description = "invalid_key, invalid_query, invalid_state_request: a prefix longer than 512 bytes, \
        a limit out of 1 to 1000, a malformed query", body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<StatePage> {
    let Query(query) = query?;
    let page = state
        .handle
        .state_list(
            query.prefix.as_deref().unwrap_or_default(),
            query.cursor.as_deref(),
            query.limit.unwrap_or(DEFAULT_PAGE),
        )
        .await?;
    Ok(Json(page))
}

/// The changes of keys under a prefix as Server-Sent Events, like `/v1/events?types=state_changed`: a reader that
/// falls behind gets a final `lagged` event.
#[utoipa::path(get, path = "/v1/state/watch", operation_id = "watchState", params(WatchQuery), responses(
    (status = 200, description = "one SSE event per change: event = state_changed, data = its JSON (as in \
        /v1/events); a final lagged event when the reader fell behind", content_type = "text/event-stream", body = String),
    (status = 400, description = "invalid_key, invalid_query: a prefix longer than 512 bytes, a malformed query", body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "too_many_event_streams: --api-max-event-streams streams are open; retry after \
        the Retry-After seconds", body = ErrorBody),
))]
pub async fn watch(
    State(state): State<ApiState>,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let prefix = query.prefix.unwrap_or_default();
    if prefix.len() > MAX_KEY {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!("a prefix is at most {MAX_KEY} bytes, this one has {}", prefix.len()),
        ));
    }
    Ok(open_stream(&state, EventFilter::state_watch(prefix)))
}

/// `PUT` and `DELETE /v1/state/watch`: the key named `watch`, whose path the watch stream's route shadows.
async fn key_named_watch(
    State(state): State<ApiState>,
    method: Method,
    body: Result<ApiJson<StatePut>, ApiError>,
) -> ApiResult<StateWrite> {
    let key = Path(WATCH.to_owned());
    match method {
        Method::PUT => put(State(state), key, body).await,
        Method::DELETE => delete(State(state), key).await,
        _ => Err(super::method_not_allowed().await),
    }
}

/// A body over `MAX_PUT_BODY` says why values have a limit, and which.
fn explain_too_large(error: ApiError) -> ApiError {
    if error.status != StatusCode::PAYLOAD_TOO_LARGE {
        return error;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the body is larger than {MAX_PUT_BODY} bytes: a value is at most --max-value-size bytes on this node, \
             and {} KiB on any",
            MAX_VALUE_LIMIT >> 10
        ),
    )
}

fn parse_version(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("min_version={} is not a version (a decimal number)", shorten(text)),
        )
    })
}

fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    config::parse_duration(text)
        .ok()
        .filter(|wait| *wait <= MAX_WAIT)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "wait={} is not a duration of at most 60s (examples: 500ms, 5s)",
                    shorten(text)
                ),
            )
        })
}

/// The TTL as a duration; its range is the node's to check.
fn parse_ttl(text: &str) -> Result<Duration, ApiError> {
    config::parse_duration(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_state_request",
            format!("ttl {} is not a duration: {e}", shorten(text)),
        )
    })
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use serde_json::Value;

    use super::*;
    use crate::api::openapi::tests::{send, stopped_node};

    /// A router whose node has stopped, with the smallest body limit of other routes: an answer of 503 node_stopped
    /// shows the request passed every check of the API and reached the node.
    async fn router() -> Router {
        crate::api::router(stopped_node().await, None, config::MIN_MESSAGE_SIZE, Default::default())
    }

    fn code(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
        (answer.0, answer.1["error"]["code"].as_str().unwrap_or("none"))
    }

    const STOPPED: (StatusCode, &str) = (StatusCode::SERVICE_UNAVAILABLE, "node_stopped");

    #[tokio::test]
    async fn keys_span_segments_and_the_key_named_watch_stays_writable() {
        let router = router().await;
        for path in [
            "/v1/state/a/b/c",
            "/v1/state/a%2Fb",
            "/v1/state/%77atch",
            "/v1/state/watch/x",
        ] {
            assert_eq!(code(&send(&router, "GET", path, "").await), STOPPED, "{path}");
        }
        let put = send(&router, "PUT", "/v1/state/watch", r#"{"value": "x"}"#).await;
        assert_eq!(code(&put), STOPPED, "PUT reaches the key, not the stream");
        assert_eq!(code(&send(&router, "DELETE", "/v1/state/watch", "").await), STOPPED);
        let patch = send(&router, "PATCH", "/v1/state/watch", "").await;
        assert_eq!(code(&patch), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
        let (status, _) = send(&router, "GET", "/v1/state/watch?prefix=a", "").await;
        assert_eq!(status, StatusCode::OK, "the stream");
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_it_reaches_the_node() {
        let router = router().await;
        let cases = [
            ("GET", "/v1/state/a%01b", "", "invalid_key"),
            (
                "DELETE",
                &format!("/v1/state/{}", "k".repeat(MAX_KEY + 1)),
                "",
                "invalid_key",
            ),
            ("GET", "/v1/state/k?min_version=-1", "", "invalid_query"),
            ("GET", "/v1/state/k?min_version=1&wait=61s", "", "invalid_query"),
            ("GET", "/v1/state/k?colour=red", "", "invalid_query"),
            (
                "PUT",
                "/v1/state/k",
                r#"{"value": "x", "value_base64": "eA=="}"#,
                "invalid_value",
            ),
            ("PUT", "/v1/state/k", r#"{"ttl": "1s"}"#, "invalid_value"),
            ("PUT", "/v1/state/k", r#"{"value_base64": "e"}"#, "invalid_base64"),
            (
                "PUT",
                "/v1/state/k",
                r#"{"value": "x", "ttl": "soon"}"#,
                "invalid_state_request",
            ),
            (
                "PUT",
                "/v1/state/k",
                r#"{"value": "x", "ttl": "10ms"}"#,
                "invalid_state_request",
            ),
            (
                "PUT",
                "/v1/state/k",
                r#"{"value": "x", "ttl": "400days"}"#,
                "invalid_state_request",
            ),
            (
                "PUT",
                "/v1/state/k",
                r#"{"value": "x", "colour": "red"}"#,
                "invalid_json",
            ),
            ("GET", "/v1/state?limit=0", "", "invalid_state_request"),
            ("GET", "/v1/state?limit=1001", "", "invalid_state_request"),
            (
                "GET",
                &format!("/v1/state/watch?prefix={}", "p".repeat(MAX_KEY + 1)),
                "",
                "invalid_key",
            ),
        ];
        for (method, path, body, expected) in cases {
            let answer = send(&router, method, path, body.to_owned()).await;
            assert_eq!(
                code(&answer),
                (StatusCode::BAD_REQUEST, expected),
                "{method} {path} {body}"
            );
        }
        let fine = send(
            &router,
            "GET",
            "/v1/state/k?min_version=18446744073709551615&wait=500ms",
            "",
        )
        .await;
        assert_eq!(code(&fine), STOPPED);
        let fine = send(&router, "PUT", "/v1/state/k", r#"{"value": "x", "ttl": "1h 30m"}"#).await;
        assert_eq!(code(&fine), STOPPED);
    }

    #[tokio::test]
    async fn the_largest_value_fits_whatever_the_message_size_and_a_larger_body_is_told_why_not() {
        let router = router().await;
        let encoded = base64::engine::general_purpose::STANDARD.encode(vec![7u8; MAX_VALUE_LIMIT]);
        let body = serde_json::json!({ "value_base64": encoded }).to_string();
        assert_eq!(code(&send(&router, "PUT", "/v1/state/big", body).await), STOPPED);
        let body = serde_json::json!({ "value": "x".repeat(MAX_PUT_BODY) }).to_string();
        let answer = send(&router, "PUT", "/v1/state/big", body).await;
        assert_eq!(code(&answer), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("--max-value-size"), "{message}");
    }
}
