//! Errors as the API returns them: `{"error": {"code", "message"}}` with the status that says whose fault it is
//! (400 bad input, 401 no or wrong token, 404 unknown, 409 the swarm's state refuses it (no subscribed peer yet),
//! 413 too large, 422 a dial that failed, 503 the node has stopped). Extractor rejections (malformed JSON, unknown fields, bad query strings) come out in the same shape, so a
//! client parses one error format.

use axum::{
    Json,
    extract::{
        FromRequest, Request,
        rejection::{JsonRejection, QueryRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::node::PublishError;

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

    /// The node's event loop has stopped (the process is shutting down).
    pub fn stopped() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "node_stopped", "the node has stopped")
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        let (status, code) = match &error {
            PublishError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            PublishError::InvalidTopic(_) => (StatusCode::BAD_REQUEST, "invalid_topic"),
            PublishError::InvalidEnvelope(_) => (StatusCode::BAD_REQUEST, "invalid_message"),
            // The swarm's state, not the server's fault: nobody to send to yet.
            PublishError::NoPeers(_) => (StatusCode::CONFLICT, "no_peers"),
            PublishError::Gossip(_) => (StatusCode::CONFLICT, "not_published"),
            PublishError::NodeStopped => (StatusCode::SERVICE_UNAVAILABLE, "node_stopped"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // axum answers 422 for JSON of the wrong shape; to a caller that is bad input like malformed JSON: 400.
        let (status, code) = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            _ => (StatusCode::BAD_REQUEST, "invalid_json"),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
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
