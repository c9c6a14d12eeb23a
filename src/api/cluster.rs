//! The membership handlers: `/v1/members`, the swarm-wide service catalog `/v1/services`, this node's service
//! registrations and TTL updates under `/v1/services/{id}`, and `/v1/route/{key}`. Each is one `NodeHandle` call;
//! query values that only HTTP can get wrong (a status, a tag, `n`) are parsed here, with patterns in the OpenAPI
//! document that match exactly what is accepted.

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiState,
    bodies::ErrorBody,
    error::{ApiError, ApiJson, shorten},
};
use crate::{
    config::services::ServiceBody,
    node::{MAX_ROUTE_OWNERS, MemberFilter, MemberInfo, RouteAnswer, RouteRequest, ServiceFilter, ServiceInstance},
    policy::members::MemberStatus,
    wire::members::Health,
};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Longest key `/v1/route/{key}` takes, in bytes.
pub const MAX_ROUTE_KEY: usize = 1024;

/// `GET /v1/members?status=&tag=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// Only members in this status.
    #[param(pattern = "^(alive|suspect|failed|left)$")]
    status: Option<String>,
    /// Only members with this tag, `key=value`.
    #[param(pattern = "^[^=]+=.*$")]
    tag: Option<String>,
}

/// `GET /v1/services?name=&status=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServicesQuery {
    /// Only instances of this service.
    name: Option<String>,
    /// Only instances in this health.
    #[param(pattern = "^(passing|warning|critical)$")]
    status: Option<String>,
}

/// `GET /v1/route/{key}?n=&service=&tag=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RouteQuery {
    /// How many owners, best first (default 1, at most 64).
    #[param(minimum = 1, maximum = 64)]
    n: Option<usize>,
    /// Only members with a passing instance of this service; the answer carries its port.
    service: Option<String>,
    /// Only members with this tag, `key=value`.
    #[param(pattern = "^[^=]+=.*$")]
    tag: Option<String>,
}

/// `PUT /v1/services/{id}/{check}?note=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TtlQuery {
    /// Shown as the check's output (at most 512 bytes are kept).
    note: Option<String>,
}

/// The answer to a registration, deregistration or TTL update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceChange {
    pub id: String,
    /// `registered`, `deregistered`, `passing`, `warning` or `critical`.
    pub result: String,
}

/// The members of the swarm as this node sees them, itself first.
#[utoipa::path(get, path = "/v1/members", operation_id = "listMembers", params(MembersQuery), responses(
    (status = 200, description = "OK", body = Vec<MemberInfo>),
    (status = 400, description = "invalid_query: an unknown status or a tag that is not key=value", body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn members(
    State(state): State<ApiState>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> ApiResult<Vec<MemberInfo>> {
    let Query(query) = query?;
    let filter = MemberFilter {
        status: query.status.as_deref().map(parse_status).transpose()?,
        tag: query.tag.as_deref().map(parse_tag).transpose()?,
    };
    Ok(Json(state.handle.members(filter).await?))
}

/// Every service instance of every member, with its health: the swarm-wide catalog.
#[utoipa::path(get, path = "/v1/services", operation_id = "listServices", params(ServicesQuery), responses(
    (status = 200, description = "OK", body = Vec<ServiceInstance>),
    (status = 400, description = "invalid_query: an unknown status", body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
    (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
))]
pub async fn services(
    State(state): State<ApiState>,
    query: Result<Query<ServicesQuery>, QueryRejection>,
) -> ApiResult<Vec<ServiceInstance>> {
    let Query(query) = query?;
    let filter = ServiceFilter {
        name: query.name,
        status: query.status.as_deref().map(parse_health).transpose()?,
    };
    Ok(Json(state.handle.services(filter).await?))
}

/// The owners of a key, best first: weighted rendezvous hashing over the alive members, the same on every node
/// with the same view.
#[utoipa::path(get, path = "/v1/route/{key}", operation_id = "route",
    params(("key" = String, Path, description = "the key: 1 to 1024 bytes (the schema promises the 256 characters that always fit)", min_length = 1, max_length = 256),
        RouteQuery),
    responses(
        (status = 200, description = "OK (owners is empty when no member qualifies)", body = RouteAnswer),
        (status = 400, description = "invalid_query, invalid_route: n out of range, a tag that is not key=value, \
            a key too long", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    ))]
pub async fn route(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    query: Result<Query<RouteQuery>, QueryRejection>,
) -> ApiResult<RouteAnswer> {
    let Query(query) = query?;
    if key.len() > MAX_ROUTE_KEY {
        return Err(ApiError::bad_request(
            "invalid_route",
            format!("a key is at most {MAX_ROUTE_KEY} bytes, this one has {}", key.len()),
        ));
    }
    let n = query.n.unwrap_or(1);
    if !(1..=MAX_ROUTE_OWNERS).contains(&n) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("n must be 1 to {MAX_ROUTE_OWNERS}"),
        ));
    }
    let request = RouteRequest {
        key,
        n,
        service: query.service,
        tag: query.tag.as_deref().map(parse_tag).transpose()?,
    };
    Ok(Json(state.handle.route(request).await?))
}

/// Register (or replace) a service on this node; it is kept in the data directory across restarts.
#[utoipa::path(put, path = "/v1/services/{id}", operation_id = "registerService", request_body = ServiceBody,
    params(("id" = String, Path, description = "the service id on this node", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    responses(
        (status = 200, description = "registered", body = ServiceChange),
        (status = 400, description = "invalid_json, invalid_service: the body or a field is malformed", body = ErrorBody),
        (status = 409, description = "service_conflict: the node has as many services as a record holds, or the \
            record would not fit with this one", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 413, description = "too_large: the body is too large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: the body is not sent as application/json", body = ErrorBody),
        (status = 500, description = "storage_failed: the services file could not be written", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ServiceBody>,
) -> ApiResult<ServiceChange> {
    let definition = body
        .into_definition(id.clone())
        .map_err(|reason| ApiError::bad_request("invalid_service", reason))?;
    state.handle.register_service(definition).await?;
    Ok(Json(ServiceChange {
        id,
        result: "registered".into(),
    }))
}

/// Deregister one of this node's services.
#[utoipa::path(delete, path = "/v1/services/{id}", operation_id = "deregisterService",
    params(("id" = String, Path, description = "the service id on this node", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    responses(
        (status = 200, description = "deregistered", body = ServiceChange),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 404, description = "service_not_found: this node has no such service", body = ErrorBody),
        (status = 500, description = "storage_failed: the services file could not be written", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    ))]
pub async fn deregister(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<ServiceChange> {
    state.handle.deregister_service(&id).await?;
    Ok(Json(ServiceChange {
        id,
        result: "deregistered".into(),
    }))
}

/// Report a TTL-checked service passing, warning or failing (Consul's dead man's switch): it turns critical unless
/// reported again before its TTL runs out.
#[utoipa::path(put, path = "/v1/services/{id}/{check}", operation_id = "updateTtl",
    params(("id" = String, Path, description = "the service id on this node", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("check" = String, Path, description = "pass, warn or fail", pattern = "^(pass|warn|fail)$"),
        TtlQuery),
    responses(
        (status = 200, description = "updated", body = ServiceChange),
        (status = 400, description = "invalid_check: not pass, warn or fail", body = ErrorBody),
        (status = 409, description = "service_conflict: the service has no TTL check", body = ErrorBody),
        (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)", body = ErrorBody),
        (status = 404, description = "service_not_found: this node has no such service", body = ErrorBody),
        (status = 503, description = "node_stopped: the node has stopped", body = ErrorBody),
    ))]
pub async fn update_ttl(
    State(state): State<ApiState>,
    Path((id, check)): Path<(String, String)>,
    query: Result<Query<TtlQuery>, QueryRejection>,
) -> ApiResult<ServiceChange> {
    let Query(query) = query?;
    let health = match check.as_str() {
        "pass" => Health::Passing,
        "warn" => Health::Warning,
        "fail" => Health::Critical,
        other => {
            return Err(ApiError::bad_request(
                "invalid_check",
                format!("{} is not pass, warn or fail", shorten(other)),
            ));
        }
    };
    state.handle.update_ttl(&id, health, query.note).await?;
    Ok(Json(ServiceChange {
        id,
        result: health.to_string(),
    }))
}

fn parse_status(text: &str) -> Result<MemberStatus, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("status={} is not alive, suspect, failed or left", shorten(text)),
        )
    })
}

fn parse_health(text: &str) -> Result<Health, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!("status={} is not passing, warning or critical", shorten(text)),
        )
    })
}

fn parse_tag(text: &str) -> Result<(String, String), ApiError> {
    crate::config::members::parse_tag(text)
        .map_err(|reason| ApiError::bad_request("invalid_query", format!("tag: {reason}")))
}
