//! The `/v1` handlers: each turns a request into one `NodeHandle` call and its answer into JSON, or its `NodeError`
//! into the API's error (`error.rs` maps them). What only HTTP can get wrong is checked here (peer ids and addresses
//! that do not parse, the publish body); the node checks the rest (topics, dialable addresses, sizes) for every
//! caller alike.

use axum::{
    Json,
    extract::{Path, State},
    http::header,
    response::IntoResponse,
};
use base64::Engine;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};

use super::{
    ApiState,
    bodies::{ConnectBody, Connected, Disconnected, PublishBody, TopicChange},
    error::{ApiError, ApiJson},
};
use crate::node::{Diagnosis, NodeStatus, PeerInfo, PublishRequest, Published, TopicInfo};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub async fn node(State(state): State<ApiState>) -> ApiResult<NodeStatus> {
    Ok(Json(state.handle.status().await?))
}

pub async fn peers(State(state): State<ApiState>) -> ApiResult<Vec<PeerInfo>> {
    Ok(Json(state.handle.peers().await?))
}

pub async fn connect(State(state): State<ApiState>, ApiJson(body): ApiJson<ConnectBody>) -> ApiResult<Connected> {
    let address: Multiaddr = body
        .address
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_address", format!("{:?} is not a multiaddr: {e}", body.address)))?;
    let peer = state.handle.dial(address).await?;
    Ok(Json(Connected { peer: peer.to_string() }))
}

pub async fn disconnect(State(state): State<ApiState>, Path(peer): Path<String>) -> ApiResult<Disconnected> {
    let id: PeerId = peer
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_peer_id", format!("{peer:?} is not a peer id: {e}")))?;
    state.handle.disconnect(id).await?;
    Ok(Json(Disconnected {
        peer,
        disconnected: true,
    }))
}

pub async fn topics(State(state): State<ApiState>) -> ApiResult<Vec<TopicInfo>> {
    Ok(Json(state.handle.topics().await?))
}

pub async fn subscribe(State(state): State<ApiState>, Path(topic): Path<String>) -> ApiResult<TopicChange> {
    state.handle.subscribe(&topic).await?;
    Ok(Json(TopicChange {
        topic,
        subscribed: true,
    }))
}

pub async fn unsubscribe(State(state): State<ApiState>, Path(topic): Path<String>) -> ApiResult<TopicChange> {
    state.handle.unsubscribe(&topic).await?;
    Ok(Json(TopicChange {
        topic,
        subscribed: false,
    }))
}

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
        topic: body.topic,
        payload,
        content_type: body.content_type,
        id: body.id,
    };
    Ok(Json(state.handle.publish(request).await?))
}

pub async fn diagnose(State(state): State<ApiState>) -> ApiResult<Diagnosis> {
    Ok(Json(state.handle.diagnose().await?))
}

/// Prometheus text: libp2p's metrics and ours, with the peers-by-state gauge taken from the peer table now.
pub async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let peers = state.handle.peers().await?;
    let metrics = state.handle.metrics();
    metrics.set_peer_states(peers.iter().map(|peer| peer.state));
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    ))
}

pub async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}
