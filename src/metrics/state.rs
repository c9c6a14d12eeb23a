//! The replicated map's metrics: what it holds (keys, tombstones, bytes, writers; gauges set from the map's own
//! counts), writes by source, changes refused by reason, anti-entropy rounds and bytes, and how long the database
//! takes to commit.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `local` (through this node's API) or `remote` (from gossip or sync).
    pub source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabel {
    /// `drift`, `size`, `invalid`, `full`, `writers`, `forged`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabel {
    /// `pull` (changes for a digest) or `resync` (a full resync page).
    pub kind: &'static str,
    /// `sent` or `received`.
    pub direction: &'static str,
}

/// Handles to the state metrics.
#[derive(Clone)]
pub struct StateMetrics {
    pub keys: Gauge,
    pub tombstones: Gauge,
    pub bytes: Gauge,
    pub writers: Gauge,
    pub writes: Family<SourceLabel, Counter>,
    pub refused: Family<RefusedLabel, Counter>,
    pub sync_rounds: Family<SyncLabel, Counter>,
    pub sync_bytes: Family<SyncLabel, Counter>,
    pub delta_bytes: Family<SourceLabel, Counter>,
    pub commit_seconds: Histogram,
    pub commit_writes: Histogram,
}

impl StateMetrics {
    /// Registers the state metrics under `ours` (the `swarmnode_` prefix).
    pub fn register(ours: &mut Registry) -> Self {
        let gauge = |ours: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            ours.register(name, help, gauge.clone());
            gauge
        };
        let keys = gauge(ours, "state_keys", "Live keys in the replicated map");
        let tombstones = gauge(
            ours,
            "state_tombstones",
            "Tombstones of deleted and expired keys not yet collected",
        );
        let bytes = gauge(ours, "state_bytes", "Bytes the map holds: keys, values and bookkeeping");
        let writers = gauge(ours, "state_writers", "Writers whose versions the map tracks");
        let writes = Family::<SourceLabel, Counter>::default();
        ours.register(
            "state_writes",
            "Writes that became a key's value, by source",
            writes.clone(),
        );
        let refused = Family::<RefusedLabel, Counter>::default();
        ours.register("state_refused", "Changes refused, by reason", refused.clone());
        let sync_rounds = Family::<SyncLabel, Counter>::default();
        ours.register(
            "state_sync_rounds",
            "Anti-entropy responses sent and received",
            sync_rounds.clone(),
        );
        let sync_bytes = Family::<SyncLabel, Counter>::default();
        ours.register(
            "state_sync_bytes",
            "Bytes of changes in anti-entropy responses",
            sync_bytes.clone(),
        );
        let delta_bytes = Family::<SourceLabel, Counter>::default();
        ours.register(
            "state_delta_bytes",
            "Bytes of deltas published (local) and received (remote)",
            delta_bytes.clone(),
        );
        // 0.1 ms to about 3 s.
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        ours.register(
            "state_commit_seconds",
            "How long each database commit took",
            commit_seconds.clone(),
        );
        let commit_writes = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        ours.register(
            "state_commit_writes",
            "Local writes acknowledged by each commit",
            commit_writes.clone(),
        );
        StateMetrics {
            keys,
            tombstones,
            bytes,
            writers,
            writes,
            refused,
            sync_rounds,
            sync_bytes,
            delta_bytes,
            commit_seconds,
            commit_writes,
        }
    }

    pub fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusedLabel { reason }).inc();
    }

    pub fn wrote(&self, source: &'static str) {
        self.writes.get_or_create(&SourceLabel { source }).inc();
    }

    pub fn synced(&self, kind: &'static str, direction: &'static str, bytes: usize) {
        let label = SyncLabel { kind, direction };
        self.sync_rounds.get_or_create(&label).inc();
        self.sync_bytes.get_or_create(&label).inc_by(bytes as u64);
    }
}
