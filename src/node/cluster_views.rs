//! The read-only views of membership the CLI and the API show: members, the swarm-wide service catalog and route
//! answers, with the filters they take. Serialised as the API's JSON and read back by the CLI client (the same
//! types on both sides).

use std::collections::BTreeMap;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::event::{display, parse};
use crate::{policy::members::MemberStatus, wire::members::Health};

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberInfo {
    #[serde(serialize_with = "display", deserialize_with = "parse")]
    #[schema(value_type = String)]
    pub peer: PeerId,
    pub name: String,
    #[schema(value_type = String)]
    pub status: MemberStatus,
    /// This node itself.
    pub local: bool,
    pub incarnation: u64,
    pub seq: u64,
    pub tags: BTreeMap<String, String>,
    /// The routing weight it advertises.
    pub weight: f64,
    /// Busy share of its machine's CPU, 0 to 1.
    pub cpu: f64,
    /// Resident memory of its process, bytes.
    pub rss: u64,
    pub connections: u32,
    pub addresses: Vec<String>,
    pub services: Vec<ServiceInstance>,
    /// Status changes seen by this node.
    pub flaps: u64,
    pub flapping: bool,
    /// Milliseconds since its record was last renewed (a higher sequence number heard).
    pub age_ms: u64,
    /// Milliseconds since its status last changed.
    pub status_age_ms: u64,
}

/// One service instance in the swarm-wide catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceInstance {
    #[serde(serialize_with = "display", deserialize_with = "parse")]
    #[schema(value_type = String)]
    pub peer: PeerId,
    /// The member's name.
    pub member: String,
    #[schema(value_type = String)]
    pub member_status: MemberStatus,
    pub id: String,
    pub name: String,
    /// The member's host (the IP address or DNS name of its first announced address).
    pub address: Option<String>,
    pub port: u16,
    pub tags: Vec<String>,
    /// Its health: as its member last reported it, critical when the member failed or left.
    #[schema(value_type = String)]
    pub status: Health,
    /// What the last check said.
    pub output: String,
}

/// One owner of a key, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteOwner {
    #[serde(serialize_with = "display", deserialize_with = "parse")]
    #[schema(value_type = String)]
    pub peer: PeerId,
    pub name: String,
    pub address: Option<String>,
    /// The port of the requested service on that member.
    pub port: Option<u16>,
    pub weight: f64,
}

/// The owners of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteAnswer {
    pub key: String,
    /// Alive members that could own it (after the service and tag filters).
    pub candidates: usize,
    pub owners: Vec<RouteOwner>,
}

/// Which members a list or a route considers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    pub status: Option<MemberStatus>,
    /// A member tag `key=value` that must be present.
    pub tag: Option<(String, String)>,
}

/// Which service instances the catalog lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFilter {
    pub name: Option<String>,
    pub status: Option<Health>,
}

/// A route lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    pub key: String,
    /// How many owners, best first.
    pub n: usize,
    /// Only members with a passing instance of this service.
    pub service: Option<String>,
    /// Only members with this tag.
    pub tag: Option<(String, String)>,
}

/// Most owners one route lookup answers.
pub const MAX_ROUTE_OWNERS: usize = 64;
