//! The `/v1` handlers: each turns a request into one `NodeHandle` call and its answer into JSON. Input is checked
//! here (peer ids, addresses, topics, the publish body) so the node only ever sees well-formed commands.

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use base64::Engine;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use super::{
    ApiState,
    error::{ApiError, ApiJson},
};
use crate::{
    config::check_topic,
    node::{Diagnosis, NodeStatus, PeerInfo, PublishRequest, Published, TopicInfo},
};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub async fn node(State(state): State<ApiState>) -> ApiResult<NodeStatus> {
    state.handle.status().await.map(Json).ok_or_else(ApiError::stopped)
}

pub async fn peers(State(state): State<ApiState>) -> ApiResult<Vec<PeerInfo>> {
    state.handle.peers().await.map(Json).ok_or_else(ApiError::stopped)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    address: String,
}

#[derive(Serialize)]
pub struct Connected {
    peer: String,
}

pub async fn connect(State(state): State<ApiState>, ApiJson(body): ApiJson<ConnectBody>) -> ApiResult<Connected> {
    let address: Multiaddr = body
        .address
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_address", format!("{:?} is not a multiaddr: {e}", body.address)))?;
    // Only addresses the node can dial (a UDP-only address would only fail later), or a bare `/p2p/<id>`, which the
    // node looks up in the DHT.
    if crate::config::bare_peer_id(&address).is_none() {
        crate::config::check_dialable(&address).map_err(|why| ApiError::bad_request("invalid_address", why))?;
    }
    match state.handle.dial(address).await {
        Ok(peer) => Ok(Json(Connected { peer: peer.to_string() })),
        Err(why) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "dial_failed", why)),
    }
}

#[derive(Serialize)]
pub struct Disconnected {
    peer: String,
    disconnected: bool,
}

pub async fn disconnect(State(state): State<ApiState>, Path(peer): Path<String>) -> ApiResult<Disconnected> {
    let id: PeerId = peer
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_peer_id", format!("{peer:?} is not a peer id: {e}")))?;
    match state.handle.disconnect(id).await {
        Some(true) => Ok(Json(Disconnected {
            peer,
            disconnected: true,
        })),
        Some(false) => Err(ApiError::not_found("not_connected", format!("{peer} is not connected"))),
        None => Err(ApiError::stopped()),
    }
}

pub async fn topics(State(state): State<ApiState>) -> ApiResult<Vec<TopicInfo>> {
    state.handle.topics().await.map(Json).ok_or_else(ApiError::stopped)
}

#[derive(Serialize)]
pub struct TopicChange {
    topic: String,
    subscribed: bool,
}

pub async fn subscribe(State(state): State<ApiState>, Path(topic): Path<String>) -> ApiResult<TopicChange> {
    check_topic(&topic).map_err(|why| ApiError::bad_request("invalid_topic", why))?;
    state
        .handle
        .subscribe(&topic)
        .await
        .map_err(|why| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_subscribed", why))?;
    Ok(Json(TopicChange {
        topic,
        subscribed: true,
    }))
}

pub async fn unsubscribe(State(state): State<ApiState>, Path(topic): Path<String>) -> ApiResult<TopicChange> {
    check_topic(&topic).map_err(|why| ApiError::bad_request("invalid_topic", why))?;
    match state.handle.unsubscribe(&topic).await {
        Ok(true) => Ok(Json(TopicChange {
            topic,
            subscribed: false,
        })),
        Ok(false) => Err(ApiError::not_found(
            "not_subscribed",
            format!("not subscribed to {topic:?}"),
        )),
        Err(why) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node_stopped", why)),
    }
}

/// `POST /v1/publish`: exactly one of `data` (text) and `data_base64` (bytes).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    topic: String,
    data: Option<String>,
    data_base64: Option<String>,
    content_type: Option<String>,
    id: Option<String>,
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
    state.handle.diagnose().await.map(Json).ok_or_else(ApiError::stopped)
}

/// Prometheus text: libp2p's metrics and ours (the event loop keeps the gauges current; a scrape asks it nothing).
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.handle.metrics().encode(),
    )
}

pub async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}
