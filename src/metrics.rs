//! Prometheus metrics, all in one registry per node: libp2p's own (every swarm event, Kademlia, gossipsub, identify
//! and ping events, bytes in and out per transport protocol; prefix `libp2p_`) and ours (prefix `swarmnode_`). The
//! event loop and the API record into the handles below, which are cheap to clone and need no lock; `GET /metrics`
//! encodes the registry. The event loop sets the peers-by-state gauge whenever a peer changes state and the table-size
//! gauges on every housekeeping tick (100 ms), from counts the tables keep, so a scrape costs the loop nothing.

mod cluster;
mod state;

use std::sync::Arc;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{node::Buffered, policy::liveness::PeerState};
pub use cluster::{CheckLabel, ClusterMetrics};
pub use state::{SourceLabel as StateSourceLabel, StateMetrics};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: StateValue,
}

/// A peer state as a label value.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
pub enum StateValue {
    new,
    active,
    disconnected,
    reconnecting,
    removed,
    left,
}

impl From<PeerState> for StateValue {
    fn from(state: PeerState) -> Self {
        match state {
            PeerState::New => StateValue::new,
            PeerState::Active => StateValue::active,
            PeerState::Disconnected => StateValue::disconnected,
            PeerState::Reconnecting => StateValue::reconnecting,
            PeerState::Removed => StateValue::removed,
            PeerState::Left => StateValue::left,
        }
    }
}

impl StateValue {
    pub const ALL: [StateValue; 6] = [
        StateValue::new,
        StateValue::active,
        StateValue::disconnected,
        StateValue::reconnecting,
        StateValue::removed,
        StateValue::left,
    ];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// The route as declared in the route table (`/v1/peers/{peer}`), or `unmatched`: never the request's path.
    pub route: String,
    /// One of the methods the API knows, or `other`: never the request's own text.
    pub method: &'static str,
    /// The status class: `2xx` … `5xx`.
    pub status: &'static str,
}

/// Our metrics, and the registry that also holds libp2p's.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Messages this node published (first publishes; repeats of an id are `publish_repeats`).
    pub published: Counter,
    /// Publishes answered from the idempotency window without sending.
    pub publish_repeats: Counter,
    /// Messages delivered (a `message` event).
    pub delivered: Counter,
    /// Envelopes dropped because their publisher's id was already delivered within the dedup window.
    pub duplicates: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    /// From the envelope's `sent_at` to delivery here, in seconds (clocks of two machines: skew shows up here).
    pub delivery_latency: Histogram,
    pub peers: Family<StateLabel, Gauge>,
    /// Entries in each per-peer or per-message table the node keeps (`peers`, `discoveries`, `dials`, …).
    pub table_sizes: Family<TableLabel, Gauge>,
    /// Redials started by the liveness policy.
    pub reconnect_attempts: Counter,
    pub ping_rtt: Histogram,
    pub api_requests: Family<ApiRequestLabels, Counter>,
    /// API requests and connections refused before reaching a route, by reason (a fixed set).
    pub api_refused: Family<ReasonLabel, Counter>,
    /// Peers that showed a valid membership certificate.
    pub admitted: Counter,
    /// Certificates we refused, by reason (`expired`, `wrong_ca`, `timeout`, …).
    pub admission_refused: Family<ReasonLabel, Counter>,
    /// Peers banned, by cause (`admission`, `gossip_score`).
    pub bans: Family<ReasonLabel, Counter>,
    /// Connections refused before they were up, by cause (`limit`, `deny_list`, `not_allowed`, `banned`).
    pub connections_refused: Family<ReasonLabel, Counter>,
    /// What the event channel keeps for its subscribers: bytes (payloads plus a fixed overhead each) and events.
    pub event_buffer_bytes: Gauge,
    pub event_buffer_events: Gauge,
    /// Perf streams peers opened to us, by outcome (`served`, `busy`, `not_member`, `too_large`, `timed_out`, `idle`,
    /// `failed`).
    pub perf_streams: Family<OutcomeLabel, Counter>,
    /// Perf streams being served now.
    pub perf_streams_active: Gauge,
    /// Members, services, checks and the bytes membership costs.
    pub cluster: ClusterMetrics,
    /// The replicated map.
    pub state: StateMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers our metrics in `registry`, which already holds libp2p's, and keeps the registry for encoding.
    pub fn new(mut registry: Registry) -> Self {
        let ours = registry.sub_registry_with_prefix("swarmnode");
        let published = Counter::default();
        ours.register(
            "messages_published",
            "Messages published by this node",
            published.clone(),
        );
        let publish_repeats = Counter::default();
        ours.register(
            "publish_repeats",
            "Publishes of an id already published within the dedup window (answered, not sent)",
            publish_repeats.clone(),
        );
        let delivered = Counter::default();
        ours.register(
            "messages_delivered",
            "Messages delivered to this node",
            delivered.clone(),
        );
        let duplicates = Counter::default();
        ours.register(
            "messages_duplicate",
            "Envelopes dropped because their (origin, id) was already delivered within the dedup window",
            duplicates.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        ours.register(
            "messages_rejected",
            "Envelopes rejected in validation, by reason",
            rejected.clone(),
        );
        // 1 ms to about 33 s.
        let delivery_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        ours.register(
            "delivery_latency_seconds",
            "Publish to delivery time, from the envelope's sent_at",
            delivery_latency.clone(),
        );
        let peers = Family::<StateLabel, Gauge>::default();
        ours.register("peers", "Peers in the peer table, by state", peers.clone());
        let table_sizes = Family::<TableLabel, Gauge>::default();
        ours.register(
            "table_entries",
            "Entries in each table the node keeps about peers and messages",
            table_sizes.clone(),
        );
        let reconnect_attempts = Counter::default();
        ours.register(
            "reconnect_attempts",
            "Redials started by the liveness policy",
            reconnect_attempts.clone(),
        );
        // 50 µs to about 1.6 s.
        let ping_rtt = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        ours.register("ping_rtt_seconds", "Ping round-trip times", ping_rtt.clone());
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        ours.register(
            "api_requests",
            "Control API requests that passed authentication, by route, method and status class",
            api_requests.clone(),
        );
        let api_refused = Family::<ReasonLabel, Counter>::default();
        ours.register(
            "api_refused",
            "Control API requests and connections refused before reaching a route, by reason",
            api_refused.clone(),
        );
        let admitted = Counter::default();
        ours.register(
            "peers_admitted",
            "Peers that showed a valid membership certificate",
            admitted.clone(),
        );
        let admission_refused = Family::<ReasonLabel, Counter>::default();
        ours.register(
            "admissions_refused",
            "Membership certificates refused, by reason",
            admission_refused.clone(),
        );
        let bans = Family::<ReasonLabel, Counter>::default();
        ours.register("peers_banned", "Peers banned, by cause", bans.clone());
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        ours.register(
            "connections_refused",
            "Connections refused before they were up, by cause",
            connections_refused.clone(),
        );
        let event_buffer_bytes = Gauge::default();
        ours.register(
            "event_buffer_bytes",
            "Bytes of the events kept for event subscribers (payloads plus a fixed overhead per event)",
            event_buffer_bytes.clone(),
        );
        let event_buffer_events = Gauge::default();
        ours.register(
            "event_buffer_events",
            "Events kept for event subscribers",
            event_buffer_events.clone(),
        );
        let perf_streams = Family::<OutcomeLabel, Counter>::default();
        ours.register(
            "perf_streams",
            "Perf streams peers opened to this node, by outcome",
            perf_streams.clone(),
        );
        let perf_streams_active = Gauge::default();
        ours.register(
            "perf_streams_active",
            "Perf streams this node is serving now",
            perf_streams_active.clone(),
        );
        let cluster = ClusterMetrics::register(ours);
        let state = StateMetrics::register(ours);
        Metrics {
            cluster,
            state,
            registry: Arc::new(registry),
            event_buffer_bytes,
            event_buffer_events,
            perf_streams,
            perf_streams_active,
            admitted,
            admission_refused,
            bans,
            connections_refused,
            published,
            publish_repeats,
            delivered,
            duplicates,
            rejected,
            delivery_latency,
            peers,
            table_sizes,
            reconnect_attempts,
            ping_rtt,
            api_requests,
            api_refused,
        }
    }

    /// Sets the peers-by-state gauge from a count of the table's states (every state, zero included).
    pub fn set_peer_states(&self, states: impl IntoIterator<Item = PeerState>) {
        let mut counts = [0i64; StateValue::ALL.len()];
        for state in states {
            let value = StateValue::from(state);
            if let Some(index) = StateValue::ALL.iter().position(|s| *s == value) {
                counts[index] += 1;
            }
        }
        for (state, count) in StateValue::ALL.into_iter().zip(counts) {
            self.peers.get_or_create(&StateLabel { state }).set(count);
        }
    }

    /// Sets the size gauge of each named table.
    pub fn set_table_sizes(&self, sizes: impl IntoIterator<Item = (&'static str, usize)>) {
        for (table, size) in sizes {
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            self.table_sizes.get_or_create(&TableLabel { table }).set(size);
        }
    }

    /// Sets the event-buffer gauges to what the event channel holds.
    pub fn set_event_buffer(&self, buffered: Buffered) {
        self.event_buffer_bytes
            .set(i64::try_from(buffered.bytes).unwrap_or(i64::MAX));
        self.event_buffer_events
            .set(i64::try_from(buffered.events).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_metrics_are_exposed_with_their_labels() {
        let metrics = Metrics::new(Registry::default());
        metrics.published.inc();
        metrics
            .rejected
            .get_or_create(&ReasonLabel { reason: "malformed" })
            .inc();
        metrics.set_peer_states([PeerState::Active, PeerState::Active, PeerState::Left]);
        metrics.set_event_buffer(Buffered {
            events: 3,
            bytes: 5000,
            peak_bytes: 6000,
        });
        let text = metrics.encode();
        assert!(text.contains("swarmnode_messages_published_total 1"), "{text}");
        assert!(
            text.contains("swarmnode_messages_rejected_total{reason=\"malformed\"} 1"),
            "{text}"
        );
        assert!(text.contains("swarmnode_peers{state=\"active\"} 2"), "{text}");
        assert!(text.contains("swarmnode_peers{state=\"left\"} 1"), "{text}");
        assert!(text.contains("swarmnode_peers{state=\"removed\"} 0"), "{text}");
        assert!(text.contains("swarmnode_event_buffer_bytes 5000"), "{text}");
        assert!(text.contains("swarmnode_event_buffer_events 3"), "{text}");
    }
}
