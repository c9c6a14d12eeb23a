//! `POST /v1/perf`: one perf run (`/perf/1.0.0`) from this node to a peer, answered with its report. The body names
//! the peer (an id, or a multiaddr ending in `/p2p/<id>`) and the bytes each way, as integers or as sizes with a
//! binary unit (`"100MiB"`, `"1GiB"`); the run is cut a little before the API's own request timeout, so a long run
//! ends with this route's `perf_timed_out` rather than the server's bare 408.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, OneOfBuilder, RefOr, Schema, Type},
};

use super::{
    ApiState,
    bodies::ErrorBody,
    error::{ApiError, ApiJson, shorten},
};
use crate::{
    config::perf::parse_byte_count,
    node::{PerfReport, PerfTarget},
    wire::perf::{MAX_RUN_BYTES, RUN_TIMEOUT},
};

/// Bytes each way when the body does not say.
pub const DEFAULT_RUN_BYTES: u64 = 100 << 20;
/// How much sooner than `--api-request-timeout` a run is cut, so its answer still gets out.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// `POST /v1/perf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerfBody {
    /// The peer to measure against: its id (connected, or found in the DHT), or a multiaddr ending in
    /// `/p2p/<id>` (dialled unless the peer is connected already). The pattern shows the ids; the addresses are
    /// taken too.
    #[schema(pattern = "^(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45})$")]
    pub peer: String,
    /// Bytes to upload (default 100 MiB, at most 64 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub upload: Option<ByteCount>,
    /// Bytes to download (default 100 MiB, at most 64 GiB; a swarmnode serves at most 16 GiB per stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub download: Option<ByteCount>,
}

/// A number of bytes: an integer, or a string with a binary unit (`512KiB`, `100MiB`, `1GiB`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ByteCount {
    Bytes(u64),
    Text(String),
}

impl ByteCount {
    /// The bytes meant; `direction` names the field in the error.
    fn bytes(&self, direction: &str) -> Result<u64, ApiError> {
        match self {
            ByteCount::Bytes(bytes) => Ok(*bytes),
            ByteCount::Text(text) => parse_byte_count(text).map_err(|reason| {
                ApiError::bad_request("invalid_perf_request", format!("invalid {direction}: {reason}"))
            }),
        }
    }
}

impl PartialSchema for ByteCount {
    fn schema() -> RefOr<Schema> {
        let integer = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(MAX_RUN_BYTES));
        // Each unit with as many digits as always stay within 64 GiB; larger sizes in range are taken too.
        let text = ObjectBuilder::new().schema_type(Type::String).pattern(Some(
            "^([0-9]{1,10}( ?[Bb])?|[0-9]{1,7} ?[Kk]([Ii]?[Bb])?|[0-9]{1,4} ?[Mm]([Ii]?[Bb])?|[0-9] ?[Gg]([Ii]?[Bb])?)$",
        ));
        OneOfBuilder::new()
            .item(integer)
            .item(text)
            .description(Some(
                "bytes: an integer, or a size with a binary unit such as 100MiB or 1GiB",
            ))
            .into()
    }
}

impl ToSchema for ByteCount {}

/// Measure throughput to a peer with the libp2p perf protocol: upload, then download.
#[utoipa::path(post, path = "/v1/perf", operation_id = "runPerf", request_body = PerfBody, responses(
    (status = 200, description = "the run's report", body = PerfReport),
    (status = 400, description = "invalid_json, invalid_perf_request: the body is malformed, the peer is not a peer \
        id or an address ending in /p2p/<id>, a size is not one or is over 64 GiB, or the peer is this node; \
        invalid_address: no transport of this node dials the address", body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 404, description = "peer_not_found: a peer given by id alone is not connected and was not found in \
        the DHT", body = ErrorBody),
    (status = 409, description = "perf_busy: another perf run from this node is under way", body = ErrorBody),
    (status = 413, description = "too_large: the body is too large", body = ErrorBody),
    (status = 415, description = "unsupported_media_type: the body is not sent as application/json", body = ErrorBody),
    (status = 422, description = "dial_failed, connection_refused: the peer could not be reached; perf_unsupported: \
        the peer does not serve /perf/1.0.0 (it runs with --no-perf, or its implementation lacks it)", body = ErrorBody),
    (status = 502, description = "perf_failed: the peer reset or ended the stream early (a swarmnode resets a run \
        over its per-stream cap, or beyond the runs it serves at once)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    (status = 504, description = "perf_timed_out: the run did not finish in time (120 s, or just under \
        --api-request-timeout when that is shorter)", body = ErrorBody),
))]
pub async fn perf(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PerfBody>,
) -> Result<Json<PerfReport>, ApiError> {
    let target: PerfTarget = body.peer.parse().map_err(|reason| {
        ApiError::bad_request(
            "invalid_perf_request",
            format!("invalid peer {}: {reason}", shorten(&body.peer)),
        )
    })?;
    let size = |count: &Option<ByteCount>, direction| {
        count
            .as_ref()
            .map_or(Ok(DEFAULT_RUN_BYTES), |count| count.bytes(direction))
    };
    let upload = size(&body.upload, "upload")?;
    let download = size(&body.download, "download")?;
    let limit = state
        .limits
        .request_timeout
        .saturating_sub(ANSWER_MARGIN)
        .min(RUN_TIMEOUT);
    Ok(Json(state.handle.perf_within(target, upload, download, limit).await?))
}
