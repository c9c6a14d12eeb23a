//! The `/v1` handlers: each turns a request into one `NodeHandle` call and its answer into JSON, or its `NodeError`
//! into the API's error (`error.rs` maps them). What only HTTP can get wrong is checked here (peer ids and addresses
//! that do not parse, the publish body); the node checks the rest (topics, dialable addresses, sizes) for every
//! caller alike. Each handler's `#[utoipa::path]` is its entry in the OpenAPI document: method, path, parameters and
//! every status it answers with, the error codes named in each status's description.

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::header,
    response::IntoResponse,
};
use base64::Engine;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    ApiState,
    bodies::{ConnectBody, Connected, Disconnected, ErrorBody, PublishBody, TopicChange, TopicName},
    error::{ApiError, ApiJson, limit_quoted, shorten},
};
use crate::config;
use crate::node::{Diagnosis, NodeStatus, PeerInfo, PublishRequest, Published, TopicInfo};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// How long `DELETE /v1/peers/{peer}` blocks the peer when `for` is not given, and the longest it may.
const DEFAULT_BLOCK: Duration = Duration::from_secs(600);
const MAX_BLOCK: Duration = Duration::from_secs(30 * 24 * 3600);

/// `DELETE /v1/peers/{peer}?for=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DisconnectQuery {
    /// How long the peer may not connect, either way, e.g. `30s`, `10m` (at most `30days`; `0s`: it may reconnect
    /// at once). Default `10m`. The pattern lists the simple forms, each within the bound; the node also takes
    /// compound ones such as `1h 30m`.
    #[serde(rename = "for")]
    #[param(
        rename = "for",
        pattern = "^([0-9]{1,6}(ms|s)|[0-9]{1,4}m|[0-9]{1,2}h|([0-9]|[12][0-9]|30)(d|days?))$"
    )]
    block_for: Option<String>,
}

/// The node: peer id, agent, addresses, protocols, uptime, topics.
#[utoipa::path(get, path = "/v1/node", operation_id = "getNode", responses(
    (status = 200, description = "OK", body = NodeStatus),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn node(State(state): State<ApiState>) -> ApiResult<NodeStatus> {
    Ok(Json(state.handle.status().await?))
}

/// Every peer in the peer table.
#[utoipa::path(get, path = "/v1/peers", operation_id = "listPeers", responses(
    (status = 200, description = "OK", body = Vec<PeerInfo>),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn peers(State(state): State<ApiState>) -> ApiResult<Vec<PeerInfo>> {
    Ok(Json(state.handle.peers().await?))
}

/// Dial an address (or a bare /p2p/<id>, looked up in the DHT first) and wait for the outcome.
#[utoipa::path(post, path = "/v1/peers", operation_id = "connectPeer", request_body = ConnectBody, responses(
    (status = 200, description = "connected", body = Connected),
    (status = 400, description = "invalid_json, invalid_address: the body or the address is malformed, or no \
        transport of this node dials the address", body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 404, description = "peer_not_found: a peer given by id alone was not found in the DHT", body = ErrorBody),
    (status = 413, description = "too_large: the body is too large", body = ErrorBody),
    (status = 415, description = "unsupported_media_type: the body is not sent as application/json", body = ErrorBody),
    (status = 422, description = "dial_failed: the dial failed; connection_refused: a limit, the allow or deny list \
        or a ban of this node refused it", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn connect(State(state): State<ApiState>, ApiJson(body): ApiJson<ConnectBody>) -> ApiResult<Connected> {
    let address: Multiaddr = body.address.parse().map_err(|e: libp2p::multiaddr::Error| {
        ApiError::bad_request(
            "invalid_address",
            format!(
                "{} is not a multiaddr: {}",
                shorten(&body.address),
                limit_quoted(&e.to_string())
            ),
        )
    })?;
    let peer = state.handle.dial(address).await?;
    Ok(Json(Connected { peer: peer.to_string() }))
}

/// Close every connection to a peer: it is removed, not redialled, and may not connect either way for `for`.
#[utoipa::path(delete, path = "/v1/peers/{peer}", operation_id = "disconnectPeer",
    params(("peer" = String, Path, description = "peer id (ed25519 or secp256k1 keys)",
        pattern = "^(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45})$"),
        DisconnectQuery),
    responses(
        (status = 200, description = "disconnected (and blocked for blocked_for_ms)", body = Disconnected),
        (status = 400, description = "invalid_peer_id, invalid_query: not a peer id, or a `for` that is not a \
            duration of at most 30days", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 404, description = "not_connected: the peer is not connected (and, with a block, not waiting to \
            be redialled either)", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    ))]
pub async fn disconnect(
    State(state): State<ApiState>,
    Path(peer): Path<String>,
    query: Result<Query<DisconnectQuery>, QueryRejection>,
) -> ApiResult<Disconnected> {
    let Query(query) = query?;
    let block_for = match query.block_for.as_deref() {
        None => DEFAULT_BLOCK,
        Some(text) => config::parse_duration(text)
            .ok()
            .filter(|duration| *duration <= MAX_BLOCK)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "for={} is not a duration of at most 30days (examples: 0s, 30s, 10m)",
                        shorten(text)
                    ),
                )
            })?,
    };
    let id: PeerId = peer
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_peer_id", format!("{} is not a peer id: {e}", shorten(&peer))))?;
    let was_connected = state.handle.disconnect(id, block_for).await?;
    Ok(Json(Disconnected {
        peer,
        disconnected: was_connected,
        blocked_for_ms: u64::try_from(block_for.as_millis()).unwrap_or(u64::MAX),
    }))
}

/// Our topics with their mesh and subscribed peers.
#[utoipa::path(get, path = "/v1/topics", operation_id = "listTopics", responses(
    (status = 200, description = "OK", body = Vec<TopicInfo>),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn topics(State(state): State<ApiState>) -> ApiResult<Vec<TopicInfo>> {
    Ok(Json(state.handle.topics().await?))
}

/// Subscribe.
#[utoipa::path(post, path = "/v1/topics/{topic}", operation_id = "subscribeTopic",
    params(("topic" = TopicName, Path, description = "topic name")),
    responses(
        (status = 200, description = "subscribed (also when it already was)", body = TopicChange),
        (status = 400, description = "invalid_topic: not a topic name", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 409, description = "too_many_topics: the node is in --max-topics topics already", body = ErrorBody),
        (status = 500, description = "gossip_failed: gossipsub could not join the topic", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    ))]
pub async fn subscribe(State(state): State<ApiState>, Path(topic): Path<String>) -> ApiResult<TopicChange> {
    state.handle.subscribe(&topic).await?;
    Ok(Json(TopicChange {
        topic,
        subscribed: true,
    }))
}

/// Unsubscribe.
#[utoipa::path(delete, path = "/v1/topics/{topic}", operation_id = "unsubscribeTopic",
    params(("topic" = TopicName, Path, description = "topic name")),
    responses(
        (status = 200, description = "unsubscribed", body = TopicChange),
        (status = 400, description = "invalid_topic: not a topic name", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 404, description = "not_subscribed: the node is not in this topic", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    ))]
pub async fn unsubscribe(State(state): State<ApiState>, Path(topic): Path<String>) -> ApiResult<TopicChange> {
    state.handle.unsubscribe(&topic).await?;
    Ok(Json(TopicChange {
        topic,
        subscribed: false,
    }))
}

/// Publish one message.
#[utoipa::path(post, path = "/v1/publish", operation_id = "publish", request_body = PublishBody, responses(
    (status = 200, description = "published, or a repeat of an id within the dedup window (duplicate)", body = Published),
    (status = 400, description = "invalid_json, invalid_data, invalid_base64, invalid_topic, invalid_message: the \
        body, its payload, topic, id or content type is malformed", body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 409, description = "no_peers: no connected peer is subscribed to the topic yet; duplicate_message: the \
        same message went out moments ago", body = ErrorBody),
    (status = 413, description = "too_large: the payload is larger than --max-message-size allows", body = ErrorBody),
    (status = 415, description = "unsupported_media_type: the body is not sent as application/json", body = ErrorBody),
    (status = 500, description = "gossip_failed: gossipsub could not sign or encode the message", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped; queues_full: the send queues to every \
        subscribed peer are full", body = ErrorBody),
))]
pub async fn publish(State(state): State<ApiState>, ApiJson(body): ApiJson<PublishBody>) -> ApiResult<Published> {
    let payload = match (body.data, body.data_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map(Bytes::from)
            .map_err(|e| ApiError::bad_request("invalid_base64", format!("data_base64 is not base64: {e}")))?,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_data",
                "give exactly one of data (text) and data_base64",
            ));
        }
    };
    let request = PublishRequest {
        topic: body.topic.0,
        payload,
        content_type: body.content_type,
        id: body.id,
    };
    Ok(Json(state.handle.publish(request).await?))
}

/// What to check when discovery fails.
#[utoipa::path(get, path = "/v1/diagnose", operation_id = "diagnose", responses(
    (status = 200, description = "OK", body = Diagnosis),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn diagnose(State(state): State<ApiState>) -> ApiResult<Diagnosis> {
    Ok(Json(state.handle.diagnose().await?))
}

/// Prometheus metrics (OpenMetrics text): libp2p's and swarmnode's.
///
/// The event loop keeps the gauges current (peers by state, table sizes), so a scrape asks the node nothing.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", responses(
    (status = 200, description = "OK", content_type = "application/openmetrics-text", body = String),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
))]
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.handle.metrics().encode(),
    )
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "openapi", responses(
    (status = 200, description = "OK", body = Object),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
))]
pub async fn openapi(State(state): State<ApiState>) -> Json<utoipa::openapi::OpenApi> {
    Json(state.openapi.as_ref().clone())
}
