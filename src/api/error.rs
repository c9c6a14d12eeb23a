//! Errors as the API returns them: `{"error": {"code", "message"}}` with the status that says whose fault it is
//! (400 bad input, 401 no or wrong token, 404 unknown, 409 the node's or the swarm's state refuses it (no subscribed
//! peer yet, --max-topics reached, a perf run under way), 413 too large, 422 a dial that failed or a peer without the
//! protocol asked for, 500 gossipsub itself failed, 502 a perf stream the peer broke off, 503 the node has stopped or
//! its send queues are full, 504 a wait or a run that ran out of time). `From<NodeError>` is the one mapping of node errors to statuses and
//! codes. Extractor rejections (malformed JSON, unknown fields, bad query strings) come out in the same shape, and
//! `json_errors` reshapes whatever error still leaves in another (a bad path, a timeout), so a client parses one
//! error format. Input echoed in a message is shortened, and so is every message.

use axum::{
    Json,
    extract::{
        FromRequest, Request,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use super::bodies::{ErrorBody, ErrorDetail};
use crate::node::NodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable name (`invalid_peer_id`, `too_large`, ...).
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

/// Longest piece of a request echoed in an error message, in bytes.
const MAX_ECHO: usize = 80;
/// Longest error message, in bytes.
const MAX_MESSAGE: usize = 512;
/// Most bytes of a non-JSON error body read to reshape it.
const MAX_FOREIGN_BODY: usize = 4096;

/// `text`, cut to at most `max` bytes (at a character boundary) with a note of how much was left out.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// A piece of the request to echo in a message: quoted, escaped and at most `MAX_ECHO` bytes of it.
pub fn shorten(input: &str) -> String {
    format!("{:?}", cut(input, MAX_ECHO))
}

/// Another library's description of bad input (a parser's error, a rejection), which may quote the input: at most
/// twice `MAX_ECHO` bytes of it.
pub fn limit_quoted(description: &str) -> String {
    cut(description, 2 * MAX_ECHO)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: cut(&self.message, MAX_MESSAGE),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// The code of an error status that none of ours set (axum's and tower-http's own answers).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "no_such_route",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        status if status.is_client_error() => "bad_request",
        _ => "internal_error",
    }
}

/// Reshapes an error answer that is not JSON (a path that does not decode, a request timeout) into the one error
/// shape, keeping its status and its text as the message.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let headers = parts.headers;
    let text = axum::body::to_bytes(body, MAX_FOREIGN_BODY)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        limit_quoted(&text)
    };
    let mut reshaped = ApiError::new(status, code_of(status), message).into_response();
    for (name, value) in &headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            reshaped.headers_mut().insert(name, value.clone());
        }
    }
    reshaped
}

/// Whether an error was a body that stopped arriving (`--api-body-timeout`).
fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The status and code of each node error: the one place they are decided.
fn status_and_code(error: &NodeError) -> (StatusCode, &'static str) {
    match error {
        NodeError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "node_stopped"),
        NodeError::InvalidTopic { .. } => (StatusCode::BAD_REQUEST, "invalid_topic"),
        // The node's own state refuses it until a topic is left.
        NodeError::TooManyTopics { .. } => (StatusCode::CONFLICT, "too_many_topics"),
        NodeError::NotSubscribed { .. } => (StatusCode::NOT_FOUND, "not_subscribed"),
        NodeError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        NodeError::InvalidMessage { .. } => (StatusCode::BAD_REQUEST, "invalid_message"),
        // The swarm's state, not the server's fault: nobody to send to yet.
        NodeError::NoPeersSubscribed { .. } => (StatusCode::CONFLICT, "no_peers"),
        NodeError::DuplicateMessage => (StatusCode::CONFLICT, "duplicate_message"),
        NodeError::QueuesFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "queues_full"),
        NodeError::Gossip { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "gossip_failed"),
        NodeError::InvalidAddress { .. } => (StatusCode::BAD_REQUEST, "invalid_address"),
        NodeError::ConnectionRefused { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "connection_refused"),
        NodeError::PeerNotFound { .. } => (StatusCode::NOT_FOUND, "peer_not_found"),
        NodeError::DialFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "dial_failed"),
        NodeError::NotConnected { .. } => (StatusCode::NOT_FOUND, "not_connected"),
        NodeError::ServiceNotFound { .. } => (StatusCode::NOT_FOUND, "service_not_found"),
        NodeError::InvalidService { .. } => (StatusCode::BAD_REQUEST, "invalid_service"),
        NodeError::ServiceConflict { .. } => (StatusCode::CONFLICT, "service_conflict"),
        NodeError::InvalidRoute { .. } => (StatusCode::BAD_REQUEST, "invalid_route"),
        NodeError::Storage { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "storage_failed"),
        NodeError::InvalidKey { .. } => (StatusCode::BAD_REQUEST, "invalid_key"),
        NodeError::InvalidStateRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_state_request"),
        NodeError::ValueTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"),
        NodeError::KeyNotFound { .. } => (StatusCode::NOT_FOUND, "key_not_found"),
        NodeError::StateFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "state_full"),
        NodeError::VersionNotVisible { .. } => (StatusCode::GATEWAY_TIMEOUT, "version_not_visible"),
        NodeError::InvalidPerfRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_perf_request"),
        // This node's own state: one run at a time.
        NodeError::PerfBusy => (StatusCode::CONFLICT, "perf_busy"),
        // Like a failed dial: the peer cannot do what was asked of it.
        NodeError::PerfUnsupported { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "perf_unsupported"),
        // The remote side broke off: the node in between (us) is fine.
        NodeError::PerfFailed { .. } => (StatusCode::BAD_GATEWAY, "perf_failed"),
        NodeError::PerfTimedOut { .. } => (StatusCode::GATEWAY_TIMEOUT, "perf_timed_out"),
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> Self {
        let (status, code) = status_and_code(&error);
        ApiError::new(status, code, error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // axum answers 422 for JSON of the wrong shape; to a caller that is bad input like malformed JSON: 400.
        if is_body_timeout(&rejection) {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body stopped arriving (--api-body-timeout)",
            );
        }
        let (status, code) = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            _ => (StatusCode::BAD_REQUEST, "invalid_json"),
        };
        ApiError::new(status, code, limit_quoted(&rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", limit_quoted(&rejection.body_text()))
    }
}

/// `Json<T>` whose rejections are `ApiError`s.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use libp2p::PeerId;
    use strum::EnumCount;

    use super::*;

    #[test]
    fn every_node_error_has_its_own_status_and_code() {
        let peer = PeerId::random();
        let text = || "why".to_owned();
        let cases = [
            (NodeError::Stopped, 503, "node_stopped"),
            (NodeError::InvalidTopic { reason: text() }, 400, "invalid_topic"),
            (NodeError::TooManyTopics { limit: 2 }, 409, "too_many_topics"),
            (NodeError::NotSubscribed { topic: text() }, 404, "not_subscribed"),
            (NodeError::PayloadTooLarge { size: 2, limit: 1 }, 413, "too_large"),
            (NodeError::InvalidMessage { reason: text() }, 400, "invalid_message"),
            (NodeError::NoPeersSubscribed { topic: text() }, 409, "no_peers"),
            (NodeError::DuplicateMessage, 409, "duplicate_message"),
            (NodeError::QueuesFull { peers: 3 }, 503, "queues_full"),
            (NodeError::Gossip { reason: text() }, 500, "gossip_failed"),
            (NodeError::InvalidAddress { reason: text() }, 400, "invalid_address"),
            (
                NodeError::ConnectionRefused { reason: text() },
                422,
                "connection_refused",
            ),
            (NodeError::PeerNotFound { peer }, 404, "peer_not_found"),
            (NodeError::DialFailed { reason: text() }, 422, "dial_failed"),
            (NodeError::NotConnected { peer }, 404, "not_connected"),
            (NodeError::ServiceNotFound { id: text() }, 404, "service_not_found"),
            (NodeError::InvalidService { reason: text() }, 400, "invalid_service"),
            (NodeError::ServiceConflict { reason: text() }, 409, "service_conflict"),
            (NodeError::InvalidRoute { reason: text() }, 400, "invalid_route"),
            (NodeError::Storage { reason: text() }, 500, "storage_failed"),
            (NodeError::InvalidKey { reason: text() }, 400, "invalid_key"),
            (
                NodeError::InvalidStateRequest { reason: text() },
                400,
                "invalid_state_request",
            ),
            (NodeError::ValueTooLarge { size: 2, limit: 1 }, 413, "value_too_large"),
            (NodeError::KeyNotFound { key: text() }, 404, "key_not_found"),
            (NodeError::StateFull { reason: text() }, 507, "state_full"),
            (
                NodeError::VersionNotVisible {
                    key: text(),
                    version: 1,
                    waited_ms: 5,
                },
                504,
                "version_not_visible",
            ),
            (
                NodeError::InvalidPerfRequest { reason: text() },
                400,
                "invalid_perf_request",
            ),
            (NodeError::PerfBusy, 409, "perf_busy"),
            (NodeError::PerfUnsupported { peer }, 422, "perf_unsupported"),
            (NodeError::PerfFailed { peer, reason: text() }, 502, "perf_failed"),
            (NodeError::PerfTimedOut { peer, seconds: 1 }, 504, "perf_timed_out"),
        ];
        let variants: HashSet<_> = cases.iter().map(|(error, ..)| std::mem::discriminant(error)).collect();
        assert_eq!(variants.len(), NodeError::COUNT, "a case for every variant");
        let codes: HashSet<_> = cases.iter().map(|(_, _, code)| *code).collect();
        assert_eq!(codes.len(), cases.len(), "every code names one variant");
        for (error, status, code) in cases {
            let message = error.to_string();
            let api = ApiError::from(error);
            assert_eq!((api.status.as_u16(), api.code), (status, code), "{message}");
            assert_eq!(api.message, message);
        }
    }

    #[test]
    fn messages_say_what_to_do_in_our_words() {
        let limit = NodeError::TooManyTopics { limit: 2 }.to_string();
        assert!(limit.contains("--max-topics") && limit.contains("leave one"), "{limit}");
        let nobody = NodeError::from_publish(libp2p::gossipsub::PublishError::NoPeersSubscribedToTopic, "t");
        assert_eq!(nobody, NodeError::NoPeersSubscribed { topic: "t".into() });
        let full = NodeError::from_publish(libp2p::gossipsub::PublishError::AllQueuesFull(3), "t").to_string();
        assert!(
            full.contains("3 subscribed peer(s)") && full.contains("retry"),
            "{full}"
        );
        let duplicate = NodeError::from_publish(libp2p::gossipsub::PublishError::Duplicate, "t").to_string();
        assert!(!duplicate.contains("Duplicate"), "no Debug form: {duplicate}");
    }
}
