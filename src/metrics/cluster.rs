//! The membership metrics: members and service instances by status (gauges set on every housekeeping tick from the
//! view's own counts), health-check durations, member flaps and the bytes membership costs on the wire.

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
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabel {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WireLabel {
    /// `sent` or `received`.
    pub direction: &'static str,
    /// `gossip` (record announcements) or `exchange` (views swapped on a new connection).
    pub channel: &'static str,
}

/// Handles to the membership metrics.
#[derive(Clone)]
pub struct ClusterMetrics {
    pub members: Family<StatusLabel, Gauge>,
    pub services: Family<StatusLabel, Gauge>,
    pub check_duration: Family<CheckLabel, Histogram>,
    pub member_flaps: Counter,
    pub member_bytes: Family<WireLabel, Counter>,
}

impl ClusterMetrics {
    /// Registers the membership metrics under `ours` (the `swarmnode_` prefix).
    pub fn register(ours: &mut Registry) -> Self {
        let members = Family::<StatusLabel, Gauge>::default();
        ours.register(
            "members",
            "Members in this node's view, by status (the node itself included)",
            members.clone(),
        );
        let services = Family::<StatusLabel, Gauge>::default();
        ours.register(
            "services",
            "Service instances in the swarm-wide catalog, by health (a failed or left member's count as critical)",
            services.clone(),
        );
        // 1 ms to about 32 s.
        let check_duration = Family::<CheckLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        ours.register(
            "check_duration_seconds",
            "How long this node's health checks of its services took, by kind",
            check_duration.clone(),
        );
        let member_flaps = Counter::default();
        ours.register(
            "member_flaps",
            "Status changes of other members (alive, suspect, failed, left) seen by this node",
            member_flaps.clone(),
        );
        let member_bytes = Family::<WireLabel, Counter>::default();
        ours.register(
            "member_bytes",
            "Bytes of member records sent and received, by channel",
            member_bytes.clone(),
        );
        ClusterMetrics {
            members,
            services,
            check_duration,
            member_flaps,
            member_bytes,
        }
    }

    /// Sets a by-status gauge family from counts covering every status.
    pub fn set_counts(family: &Family<StatusLabel, Gauge>, counts: impl IntoIterator<Item = (&'static str, usize)>) {
        for (status, count) in counts {
            family
                .get_or_create(&StatusLabel { status })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Counts `bytes` of member records on `channel` in `direction`.
    pub fn count_bytes(&self, direction: &'static str, channel: &'static str, bytes: usize) {
        self.member_bytes
            .get_or_create(&WireLabel { direction, channel })
            .inc_by(bytes as u64);
    }
}
