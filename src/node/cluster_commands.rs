//! The event loop's answers to membership commands: the member list, the swarm-wide service catalog, route lookups
//! (`policy::route` over the alive members of our view) and this node's service registrations and TTL updates.

use std::time::Instant;

use libp2p::multiaddr::Protocol;

use super::{
    EventLoop,
    cluster_views::{
        MAX_ROUTE_OWNERS, MemberFilter, MemberInfo, RouteAnswer, RouteOwner, RouteRequest, ServiceFilter,
        ServiceInstance,
    },
    error::NodeError,
    members::effective_health,
};
use crate::{
    config::services::ServiceDefinition,
    policy::{
        checks::ServiceError,
        members::{Member, MemberStatus},
        route::{Candidate, owners},
    },
    wire::members::{Health, MemberRecord},
};

impl EventLoop {
    pub(super) fn member_infos(&self, filter: &MemberFilter) -> Vec<MemberInfo> {
        let now = Instant::now();
        let timers = self.cluster.members.timers();
        let local = *self.swarm.local_peer_id();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut infos: Vec<MemberInfo> = self
            .cluster
            .members
            .iter()
            .filter(|member| filter.status.is_none_or(|status| member.status == status))
            .filter(|member| has_tag(&member.record, filter.tag.as_ref()))
            .map(|member| MemberInfo {
                peer: member.peer,
                name: member.record.name.clone(),
                status: member.status,
                local: member.peer == local,
                incarnation: member.record.incarnation,
                seq: member.record.seq,
                tags: member.record.tags.clone(),
                weight: member.record.weight,
                cpu: member.record.load.cpu,
                rss: member.record.load.rss,
                connections: member.record.load.connections,
                addresses: member.record.addrs.clone(),
                services: instances(member),
                flaps: member.flaps,
                flapping: member.is_flapping(now, timers),
                age_ms: ms(member.age(now)),
                status_age_ms: ms(now.saturating_duration_since(member.changed_at)),
            })
            .collect();
        infos.sort_by(|a, b| (!a.local, &a.name, a.peer.to_bytes()).cmp(&(!b.local, &b.name, b.peer.to_bytes())));
        infos
    }

    pub(super) fn catalog(&self, filter: &ServiceFilter) -> Vec<ServiceInstance> {
        let mut listed: Vec<ServiceInstance> = self
            .cluster
            .members
            .iter()
            .flat_map(instances)
            .filter(|instance| filter.name.as_ref().is_none_or(|name| instance.name == *name))
            .filter(|instance| filter.status.is_none_or(|status| instance.status == status))
            .collect();
        listed.sort_by(|a, b| {
            (&a.name, &a.member, a.peer.to_bytes(), &a.id).cmp(&(&b.name, &b.member, b.peer.to_bytes(), &b.id))
        });
        listed
    }

    /// The owners of a key among the alive members (with a passing instance of the service, and the tag, when
    /// asked): weighted rendezvous hashing, so every node with the same view answers the same.
    pub(super) fn route(&self, request: &RouteRequest) -> Result<RouteAnswer, NodeError> {
        if request.n == 0 || request.n > MAX_ROUTE_OWNERS {
            return Err(NodeError::InvalidRoute {
                reason: format!("n must be 1 to {MAX_ROUTE_OWNERS}"),
            });
        }
        let eligible: Vec<(&Member, Vec<u8>, Option<u16>)> = self
            .cluster
            .members
            .iter()
            .filter(|member| member.status == MemberStatus::Alive && !member.record.left)
            .filter(|member| has_tag(&member.record, request.tag.as_ref()))
            .filter_map(|member| {
                let port = match &request.service {
                    None => None,
                    Some(name) => Some(
                        member
                            .record
                            .services
                            .iter()
                            .find(|s| s.name == *name && s.status == Health::Passing)?
                            .port,
                    ),
                };
                Some((member, member.peer.to_bytes(), port))
            })
            .collect();
        let candidates: Vec<Candidate<'_>> = eligible
            .iter()
            .map(|(member, peer, _)| Candidate {
                peer,
                weight: member.record.weight,
            })
            .collect();
        let chosen = owners(&candidates, request.key.as_bytes(), request.n);
        Ok(RouteAnswer {
            key: request.key.clone(),
            candidates: eligible.len(),
            owners: chosen
                .into_iter()
                .map(|i| {
                    let (member, _, port) = &eligible[i];
                    RouteOwner {
                        peer: member.peer,
                        name: member.record.name.clone(),
                        address: host(&member.record),
                        port: *port,
                        weight: member.record.weight,
                    }
                })
                .collect(),
        })
    }

    /// Registers (or replaces) one of our services through the API; it is kept in the data directory.
    pub(super) fn register_service(&mut self, definition: ServiceDefinition) -> Result<(), NodeError> {
        let id = definition.id.clone();
        let previous = self.cluster.services.definitions().find(|d| d.id == id).cloned();
        self.cluster
            .services
            .register(definition, Instant::now())
            .map_err(service_error)?;
        if let Err(e) = self.cluster.record_fits() {
            // Put back what was there: the registry never holds more than a record can carry.
            let _ = self.cluster.services.deregister(&id);
            if let Some(previous) = previous {
                let _ = self.cluster.services.register(previous, Instant::now());
            }
            return Err(NodeError::ServiceConflict {
                reason: format!("with this service the node's member record would not fit: {e}"),
            });
        }
        self.cluster.set_api_service(&id, true);
        // Announced at once, so every view (ours included) shows it from now on.
        self.announce_record(false);
        self.cluster.persist_services().map_err(|e| NodeError::Storage {
            reason: format!("{e:#}"),
        })
    }

    pub(super) fn deregister_service(&mut self, id: &str) -> Result<(), NodeError> {
        self.cluster.services.deregister(id).map_err(service_error)?;
        let persisted = self.cluster.is_api_service(id);
        self.cluster.set_api_service(id, false);
        self.announce_record(false);
        if persisted {
            self.cluster.persist_services().map_err(|e| NodeError::Storage {
                reason: format!("{e:#}"),
            })?;
        }
        Ok(())
    }

    /// `pass`, `warn` or `fail` of a service with a TTL check, which also restarts its TTL.
    pub(super) fn update_ttl(&mut self, id: &str, health: Health, note: Option<String>) -> Result<(), NodeError> {
        if let Some(change) = self
            .cluster
            .services
            .update_ttl(id, health, note, Instant::now())
            .map_err(service_error)?
        {
            self.on_local_health(change);
        }
        // Also with the same status: a changed note reaches the others, and our own view shows it at once.
        self.announce_record(false);
        Ok(())
    }
}

fn service_error(error: ServiceError) -> NodeError {
    match error {
        ServiceError::NotFound { id } => NodeError::ServiceNotFound { id },
        other => NodeError::ServiceConflict {
            reason: other.to_string(),
        },
    }
}

fn has_tag(record: &MemberRecord, tag: Option<&(String, String)>) -> bool {
    tag.is_none_or(|(key, value)| record.tags.get(key) == Some(value))
}

/// A member's services as catalog entries.
fn instances(member: &Member) -> Vec<ServiceInstance> {
    let address = host(&member.record);
    member
        .record
        .services
        .iter()
        .map(|service| {
            let status = effective_health(member.status, service.status);
            let output = if status == service.status {
                service.output.clone()
            } else {
                format!("member {}", member.status)
            };
            ServiceInstance {
                peer: member.peer,
                member: member.record.name.clone(),
                member_status: member.status,
                id: service.id.clone(),
                name: service.name.clone(),
                address: address.clone(),
                port: service.port,
                tags: service.tags.clone(),
                status,
                output,
            }
        })
        .collect()
}

/// The host part of a member's first announced address.
fn host(record: &MemberRecord) -> Option<String> {
    record.addrs.iter().find_map(|text| {
        let address: libp2p::Multiaddr = text.parse().ok()?;
        address.iter().find_map(|protocol| match protocol {
            Protocol::Ip4(ip) => Some(ip.to_string()),
            Protocol::Ip6(ip) => Some(ip.to_string()),
            Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => Some(name.to_string()),
            _ => None,
        })
    })
}
