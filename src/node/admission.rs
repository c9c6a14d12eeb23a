//! The event loop's side of membership and bans. With a CA (`--ca-cert`), every new peer starts unadmitted: gossipsub
//! scores it far below the graylist (so it gets nothing from us and what it sends is dropped), its addresses are held
//! out of the Kademlia routing table, and the peer table does not count it as active. Each side sends its certificate
//! over `/swarmnode/admission/1.0.0`; a valid one admits the sender, anything else (or nothing within
//! `--admission-timeout`) gets it disconnected and banned. Bans, also used for peers whose gossip score falls below
//! the graylist, block the peer in the swarm until they expire. The decisions are in `policy::admission`; this file
//! carries them out.

use std::time::{Duration, Instant};

use libp2p::{
    Multiaddr, PeerId,
    identity::PublicKey,
    request_response::{self, OutboundFailure},
};

use super::{
    EventLoop,
    behaviour::{GRAYLIST_THRESHOLD, UNADMITTED_SCORE},
    event::{EventKind, RefusedBy},
};
use crate::{
    metrics::ReasonLabel,
    policy::admission::{Admissions, Member, below_graylist, check_certificate},
    security::certificate::{CLOCK_SKEW, Certificate},
    time::now_unix_ms,
    wire::admission::{ADMISSION_PROTOCOL, ADMISSION_VERSION, AdmissionRequest, AdmissionResponse},
};

/// What a node with a CA knows about membership.
pub(super) struct Membership {
    pub ca: PublicKey,
    /// Our own certificate, encoded, as sent to every peer.
    pub certificate: Vec<u8>,
    pub admissions: Admissions,
}

fn now_unix_seconds() -> u64 {
    now_unix_ms() / 1000
}

impl EventLoop {
    /// A first connection to `peer` is up. Without a CA it is a member at once (active in the peer table); with
    /// one, it is held at arm's length and sent our certificate.
    pub(super) fn start_admission(&mut self, peer: PeerId, address: &Multiaddr) {
        let Some(membership) = self.membership.as_mut() else {
            let decisions = self.peers.connected(peer, address, Instant::now());
            self.apply(decisions);
            return;
        };
        if !membership.admissions.connected(peer, address, Instant::now()) {
            return;
        }
        let request = AdmissionRequest {
            v: ADMISSION_VERSION,
            certificate: membership.certificate.clone(),
        };
        let behaviour = self.swarm.behaviour_mut();
        behaviour.gossipsub.set_application_score(&peer, UNADMITTED_SCORE);
        if let Some(admission) = behaviour.admission.as_mut() {
            admission.send_request(&peer, request);
        }
    }

    /// Whether `peer` may take part (gossip, routing): always without a CA, once admitted with one.
    pub(super) fn is_member(&self, peer: &PeerId) -> bool {
        self.membership
            .as_ref()
            .is_none_or(|membership| membership.admissions.is_member(peer))
    }

    /// Puts `address` of `peer` in the Kademlia routing table, or holds it back until the peer is admitted.
    /// True when it went in now.
    pub(super) fn add_to_routing(&mut self, peer: PeerId, address: Multiaddr) -> bool {
        if let Some(membership) = self.membership.as_mut()
            && !membership
                .admissions
                .route_or_hold(peer, address.clone(), Instant::now())
        {
            return false;
        }
        self.swarm.behaviour_mut().kad.add_address(&peer, address);
        true
    }

    pub(super) fn on_admission(&mut self, event: request_response::Event<AdmissionRequest, AdmissionResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => {
                let verdict = self.check_certificate(&peer, &request);
                let response = match &verdict {
                    Ok(_) => AdmissionResponse::admitted(),
                    Err((_, detail)) => AdmissionResponse::refused(detail.clone()),
                };
                if let Some(admission) = self.swarm.behaviour_mut().admission.as_mut() {
                    // A peer already gone cannot be told; the verdict stands either way.
                    let _ = admission.send_response(channel, response);
                }
                match verdict {
                    Ok(certificate) => self.admit(peer, certificate),
                    // The ban, which closes the connection, waits until the answer has had time to arrive.
                    Err((reason, detail)) => {
                        if let Some(membership) = self.membership.as_mut() {
                            membership.admissions.refuse_later(peer, reason, detail, Instant::now());
                        }
                    }
                }
            }
            request_response::Event::ResponseSent { .. } => {}
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "admission request from peer failed: {error}");
            }
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            } => {
                if response.admitted {
                    tracing::debug!(%peer, "peer admitted us");
                    return;
                }
                let reason = response.reason.unwrap_or_else(|| "no reason given".to_owned());
                tracing::warn!(%peer, "peer refused our certificate: {reason}");
                // It will close the connection; redialling it would only be refused again.
                let decisions = self.peers.dismissed(peer, "refused our certificate");
                self.apply(decisions);
                self.emit(EventKind::PeerRefused {
                    peer,
                    by: RefusedBy::Peer,
                    reason,
                });
            }
            request_response::Event::OutboundFailure {
                peer,
                error: OutboundFailure::UnsupportedProtocols,
                ..
            } => self.refuse(peer, "unsupported", format!("peer does not speak {ADMISSION_PROTOCOL}")),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "our admission request failed: {error}");
            }
        }
    }

    /// Whether `request` carries a certificate that admits `peer` now; on refusal, a metrics label and the reason.
    fn check_certificate(
        &self,
        peer: &PeerId,
        request: &AdmissionRequest,
    ) -> Result<Certificate, (&'static str, String)> {
        let Some(membership) = self.membership.as_ref() else {
            return Err(("no_ca", "this node runs without a CA".to_owned()));
        };
        check_certificate(&membership.ca, peer, request, now_unix_seconds())
    }

    fn admit(&mut self, peer: PeerId, certificate: Certificate) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        let member = Member {
            name: certificate.name.clone(),
            valid_until: certificate.not_after.saturating_add(CLOCK_SKEW.as_secs()),
        };
        let Some(admitted) = membership.admissions.admit(peer, member) else {
            return;
        };
        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, 0.0);
        let is_bootstrap = self.bootstrap.known().iter().any(|(known, _)| *known == peer);
        for address in admitted.held_addresses {
            self.swarm.behaviour_mut().kad.add_address(&peer, address);
        }
        if is_bootstrap {
            self.kad_bootstrap();
        }
        if let Some(address) = admitted.connected_at {
            let decisions = self.peers.connected(peer, &address, Instant::now());
            self.apply(decisions);
        }
        // Each side asks for the other's view once it admitted it: whichever admits last is answered in full (the
        // other answers an unadmitted peer with an empty view), so both learn every member at once.
        self.exchange_views(peer);
        self.start_sync(peer);
        self.metrics.admitted.inc();
        tracing::info!(%peer, name = ?certificate.name, "peer admitted");
        self.emit(EventKind::PeerAdmitted {
            peer,
            name: certificate.name,
            valid_until: certificate.not_after,
        });
    }

    /// We refuse `peer` as a member: counted, reported, and banned.
    fn refuse(&mut self, peer: PeerId, reason: &'static str, detail: String) {
        self.metrics
            .admission_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::warn!(%peer, reason, "refused admission: {detail}");
        self.emit(EventKind::PeerRefused {
            peer,
            by: RefusedBy::Us,
            reason: detail.clone(),
        });
        self.ban(peer, "admission", format!("admission refused: {detail}"));
    }

    /// Disconnects `peer` and blocks it until the ban expires (`--ban-duration`).
    pub(super) fn ban(&mut self, peer: PeerId, cause: &'static str, reason: String) {
        self.ban_for(peer, cause, reason, self.config.ban_duration);
    }

    /// Disconnects `peer` and blocks it, both ways, for `duration` (or longer, if it is already banned for longer).
    pub(super) fn ban_for(&mut self, peer: PeerId, cause: &'static str, reason: String, duration: Duration) {
        if let Some(lifted) = self.bans.make_room_for(&peer) {
            self.swarm.behaviour_mut().bans.unblock_peer(lifted);
            tracing::debug!(%lifted, "ban lifted early: the ban table is full");
        }
        let duration = self.bans.ban_for(peer, reason.clone(), Instant::now(), duration);
        self.metrics.bans.get_or_create(&ReasonLabel { reason: cause }).inc();
        if let Some(membership) = self.membership.as_mut() {
            membership.admissions.banned(&peer);
        }
        let behaviour = self.swarm.behaviour_mut();
        // Blocking closes every connection to the peer and refuses new ones either way.
        behaviour.bans.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        let decisions = self.peers.dismissed(peer, "banned");
        self.apply(decisions);
        tracing::warn!(%peer, ?duration, "banned: {reason}");
        self.emit(EventKind::PeerBanned {
            peer,
            reason,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Time passes: lift expired bans, refuse peers whose time to be admitted is up or whose certificate ended,
    /// and ban members whose gossip score fell below the graylist.
    pub(super) fn on_membership_tick(&mut self) {
        let now = Instant::now();
        for peer in self.bans.expire(now) {
            self.swarm.behaviour_mut().bans.unblock_peer(peer);
            tracing::info!(%peer, "ban lifted");
        }
        if let Some(membership) = self.membership.as_mut() {
            let due = membership.admissions.tick(now, now_unix_seconds());
            let timeout = self.config.admission_timeout;
            for peer in due.timed_out {
                self.refuse(
                    peer,
                    "timeout",
                    format!("no valid certificate within {}", humantime::format_duration(timeout)),
                );
            }
            for peer in due.expired {
                self.refuse(peer, "expired", "its certificate expired".to_owned());
            }
            for (peer, reason, detail) in due.refused {
                self.refuse(peer, reason, detail);
            }
        }
        if !self.graylist_checks.due(now) {
            return;
        }
        let scores: Vec<(PeerId, f64)> = self
            .swarm
            .connected_peers()
            .filter(|peer| self.is_member(peer))
            .filter_map(|peer| Some((*peer, self.swarm.behaviour().gossipsub.peer_score(peer)?)))
            .collect();
        let graylisted = below_graylist(scores, GRAYLIST_THRESHOLD);
        for (peer, score) in graylisted {
            self.ban(
                peer,
                "gossip_score",
                format!("gossip score {score:.1} is below the graylist threshold {GRAYLIST_THRESHOLD}"),
            );
        }
    }
}
