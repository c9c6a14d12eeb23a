//! The running node. `spawn` checks the configuration, takes the data-directory lock, loads and locks the identity,
//! builds the swarm, starts listening and hands the swarm to one tokio task, the event loop, which is the only code
//! that touches it. The loop selects over swarm events, commands from `NodeHandle`s and a housekeeping timer, and
//! glues each to the decision it needs: event → decision (a pure call into `crate::policy`) → effects. On shutdown it
//! announces the departure to every peer before the swarm is dropped.

mod admission;
mod behaviour;
mod cluster;
mod cluster_commands;
mod cluster_views;
mod commands;
mod error;
mod event;
mod event_bus;
mod handle;
mod inbound_limits;
mod load;
mod members;
mod perf;
mod perf_server;
mod probe;
mod publish_budget;
mod state;
mod state_handle;
mod state_sync;
mod state_views;
mod swarm_events;
mod transport;
mod views;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    multiaddr::Protocol,
    request_response::OutboundRequestId,
    swarm::{
        ConnectionId, DialError,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use prometheus_client::registry::Registry;
use tokio::{sync::mpsc, task::JoinHandle};

pub use behaviour::{agent_version, message_id};
pub use cluster_views::{
    MAX_ROUTE_OWNERS, MemberFilter, MemberInfo, RouteAnswer, RouteOwner, RouteRequest, ServiceFilter, ServiceInstance,
};
pub use error::NodeError;
pub use event::{Direction, DiscoverySource, Event, EventKind, MessageData, RefusedBy, StateOp};
pub use event_bus::{Behind, Buffered, EVENT_OVERHEAD, EventReceiver, RecvError, TryRecvError};
pub(crate) use event_bus::{EventBufferLimits, event_channel};
pub use handle::NodeHandle;
pub use perf::PerfTarget;
pub use state_handle::{MAX_PAGE, MAX_TTL, MAX_WAIT, MIN_TTL, watch_matches};
pub use state_views::{StateEntry, StatePage, StateSummary, StateWrite, rfc3339};
pub use transport::SecurityUpgrade;
pub use views::{
    BootstrapStatus, ConnectionCounts, Diagnosis, InterfaceStatus, NodeStatus, PeerInfo, PerfReport, PublishRequest,
    Published, TopicInfo,
};

use self::{
    admission::Membership,
    behaviour::{Behaviour, LEAVE_TIMEOUT},
    cluster::Cluster,
    commands::PendingPublish,
    event_bus::EventSender,
    handle::{Command, Reply},
    members::ProbeDone,
    perf::PerfClient,
    perf_server::PerfServer,
    publish_budget::PublishBudget,
    state::Replica,
};
use crate::{
    config::NodeConfig,
    metrics::Metrics,
    policy::admission::{Admissions, Bans, GraylistChecks},
    policy::dials::Dials,
    policy::discovery::{BootstrapPeers, Discoveries},
    policy::gossip::GossipGate,
    policy::liveness::{Action, Decisions, PeerTable},
    policy::publish::{Batcher, Publisher},
    security::certificate,
    security::identity::{self, DataDirLock, KeyLock},
    security::swarm_key,
    time::now_unix_ms,
    wire::leave::LeaveNotice,
};

/// Most events kept for subscribers, however small (the bytes are bounded by `--event-buffer-bytes`); a slow
/// subscriber misses the oldest and is told how many.
const EVENT_BUFFER_EVENTS: usize = 4096;
/// Longest an event is kept for subscribers.
const EVENT_MAX_AGE: Duration = Duration::from_secs(60);
/// Most payload bytes of publishes on their way into the loop at once; more publishes wait for room.
const PUBLISH_IN_FLIGHT_BYTES: u32 = 64 << 20;
/// Most bytes of publishes waiting for their batch, across topics (`--batch-window`); past it the oldest batch goes.
const BATCH_PENDING_BYTES: usize = 16 << 20;
/// Commands buffered before callers wait.
const COMMAND_BUFFER: usize = 256;
/// How long a stopping node waits for its connections to close cleanly.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
/// Ids remembered per dedup window at most (each way); beyond it the oldest are forgotten early.
const DEDUP_CAPACITY: usize = 100_000;
/// A node whose own certificate ends sooner than this says so at start.
const CERTIFICATE_RENEWAL_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often members' gossip scores are compared with the graylist (a score report per connected peer).
const GRAYLIST_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Finished health checks waiting for the loop.
const PROBE_RESULTS: usize = 64;
/// How often the loop asks the peer table, the bootstrap schedule, the members, the services and the map what is
/// due: a twentieth of the heartbeat, so timers keep the same relative precision at any heartbeat, within these
/// bounds. Each tick wakes the node, idle or not: at the default 10 s heartbeat, 4 a second.
const HOUSEKEEPING_MIN: Duration = Duration::from_millis(10);
const HOUSEKEEPING_MAX: Duration = Duration::from_millis(250);

/// The housekeeping period for this heartbeat.
fn housekeeping_period(heartbeat: Duration) -> Duration {
    (heartbeat / 20).clamp(HOUSEKEEPING_MIN, HOUSEKEEPING_MAX)
}

/// A node whose event loop is running.
pub struct RunningNode {
    pub handle: NodeHandle,
    /// Receives every event from the very first one (the listen addresses), so no caller misses the start.
    pub events: EventReceiver,
    task: JoinHandle<()>,
}

impl RunningNode {
    /// Asks the node to stop and waits until its connections are closed and its data directory is unlocked.
    pub async fn shutdown(self) {
        self.handle.request_shutdown().await;
        if let Err(e) = self.task.await {
            tracing::error!("node task ended abnormally: {e}");
        }
    }

    /// Waits until the node's task ends by itself (it does not, short of a panic).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Starts a node: everything that can fail on bad configuration fails here, before this returns.
pub async fn spawn(config: NodeConfig) -> anyhow::Result<RunningNode> {
    config.validate()?;
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let (keypair, key_lock) = identity::load_or_create(&config.key_path)?;
    let peer_id = keypair.public().to_peer_id();
    let mut registry = Registry::default();
    let swarm_key = config.swarm_key.as_deref().map(swarm_key::load).transpose()?;
    if let Some(key) = &swarm_key {
        let tcp = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::Tcp(_)));
        if !config.listen.iter().any(tcp) {
            anyhow::bail!("with --swarm-key the node needs a TCP --listen address: QUIC cannot carry the swarm key");
        }
        tracing::info!(fingerprint = %key.fingerprint(), "private swarm: only nodes with this swarm key can connect");
    }
    let membership = load_membership(&config, &peer_id)?;
    let cluster = Cluster::start(&config, keypair.clone(), Instant::now())?;
    let replica = Replica::open(&config.state, &config.data_dir, peer_id, Instant::now())?;
    let mut behaviour = Behaviour::new(&keypair, &config, &mut registry)?;
    behaviour.join_internal_topics()?;
    let mut swarm = transport::build_swarm(keypair, &config, swarm_key, &mut registry, behaviour)?;
    let libp2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
    let metrics = Metrics::new(registry);
    for address in &config.listen {
        if swarm_key.is_some() && address.iter().any(|p| p == Protocol::QuicV1) {
            tracing::warn!(%address, "not listening on QUIC: QUIC cannot carry the swarm key's pnet handshake");
            continue;
        }
        swarm
            .listen_on(address.clone())
            .with_context(|| format!("cannot listen on {address}"))?;
    }
    for topic in &config.topics {
        swarm
            .behaviour_mut()
            .join(topic, config.max_topics)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to topic {topic:?}: {e}"))?;
    }
    tracing::info!(%peer_id, agent = %agent_version(), "node starting");

    let (commands_tx, commands) = mpsc::channel(COMMAND_BUFFER);
    let (events_tx, events) = event_channel(EventBufferLimits {
        bytes: config.event_buffer_bytes,
        events: EVENT_BUFFER_EVENTS,
        max_age: EVENT_MAX_AGE,
    });
    let dedup_window = config.dedup_window;
    let max_message_size = config.max_message_size;
    let batcher = config
        .batch_window
        .map(|window| Batcher::new(window, config.max_message_size, BATCH_PENDING_BYTES));
    let gossip_gate = GossipGate::new(
        config.max_message_size,
        config.peer_message_rate,
        dedup_window,
        DEDUP_CAPACITY,
    );
    let (probe_results, probe_done) = mpsc::channel(PROBE_RESULTS);
    let housekeeping = housekeeping_period(config.heartbeat);
    let mut stream_control = swarm.behaviour().stream.new_control();
    let perf_server = perf_server::start_for(&config, &mut stream_control, &commands_tx, &events_tx, &metrics)?;
    let event_loop = EventLoop {
        cluster,
        replica,
        probe_results,
        probe_done,
        membership,
        bans: Bans::new(config.ban_duration),
        gossip_gate,
        graylist_checks: GraylistChecks::new(GRAYLIST_CHECK_INTERVAL),
        bootstrap: BootstrapPeers::new(&config.bootstrap, Instant::now()),
        peers: PeerTable::new(config.liveness, rand::random()),
        swarm,
        config,
        commands,
        events: events_tx.clone(),
        discoveries: Discoveries::default(),
        rejected: BTreeMap::new(),
        dials: Dials::default(),
        directions: HashMap::new(),
        identified: HashMap::new(),
        publisher: Publisher::new(max_message_size, dedup_window, DEDUP_CAPACITY),
        libp2p_metrics,
        metrics: metrics.clone(),
        batcher,
        started: Instant::now(),
        housekeeping,
        _perf_server: perf_server,
        _locks: (lock, key_lock),
    };
    let task = tokio::spawn(event_loop.run());
    Ok(RunningNode {
        handle: NodeHandle {
            peer_id,
            commands: commands_tx,
            events: events_tx,
            publish_budget: PublishBudget::new(PUBLISH_IN_FLIGHT_BYTES),
            metrics,
            perf: PerfClient::new(stream_control),
        },
        events,
        task,
    })
}

/// With `--ca-cert`: the CA's key and our own certificate, which must admit us now (a node that could not be
/// admitted anywhere refuses to start rather than be refused by everyone).
fn load_membership(config: &NodeConfig, peer_id: &PeerId) -> anyhow::Result<Option<Membership>> {
    let (Some(ca_path), Some(cert_path)) = (&config.ca_cert, &config.cert) else {
        return Ok(None);
    };
    let ca = certificate::load_ca_public_key(ca_path)?;
    let certificate = certificate::load_certificate(cert_path)?;
    let now = now_unix_ms() / 1000;
    certificate.verify(&ca, peer_id, now).with_context(|| {
        format!(
            "this node's certificate {} does not admit it (peer {peer_id}, CA {})",
            cert_path.display(),
            certificate::ca_id(&ca)
        )
    })?;
    let remaining = Duration::from_secs(certificate.not_after.saturating_sub(now));
    if remaining < CERTIFICATE_RENEWAL_WARNING {
        tracing::warn!(
            "this node's certificate expires in {}: issue a new one with `swarmnode ca sign`",
            humantime::format_duration(remaining)
        );
    }
    tracing::info!(ca = %certificate::ca_id(&ca), name = ?certificate.name, "admission on: peers must show a certificate from this CA");
    Ok(Some(Membership {
        ca,
        certificate: certificate.encode(),
        admissions: Admissions::new(config.admission_timeout),
    }))
}

/// What a connected peer says about itself through identify.
struct Identified {
    agent_version: String,
    protocols: Vec<String>,
}

/// The state the event loop owns.
struct EventLoop {
    /// Members, our services and our record.
    cluster: Cluster,
    /// The replicated map, its database and its sync sessions.
    replica: Replica,
    /// Where health-check tasks send their results, and where the loop reads them.
    probe_results: mpsc::Sender<ProbeDone>,
    probe_done: mpsc::Receiver<ProbeDone>,
    /// With a CA: our certificate and who is admitted.
    membership: Option<Membership>,
    /// Peers refused for a while.
    bans: Bans,
    /// The inbound gossip verdict and its state (rate limits, delivered ids).
    gossip_gate: GossipGate,
    /// When to next look for members whose gossip score fell below the graylist.
    graylist_checks: GraylistChecks,
    swarm: Swarm<Behaviour>,
    config: NodeConfig,
    commands: mpsc::Receiver<Command>,
    events: EventSender,
    bootstrap: BootstrapPeers,
    discoveries: Discoveries,
    /// The liveness policy: decides when to disconnect, redial and give up on peers.
    peers: PeerTable,
    /// Envelopes rejected in gossipsub validation, by reason.
    rejected: BTreeMap<&'static str, u64>,
    /// Dials this loop started, and the callers waiting for a dial or a lookup's outcome.
    dials: Dials<Reply<PeerId>, libp2p::kad::QueryId>,
    /// Who opened the first connection to each connected peer.
    directions: HashMap<PeerId, Direction>,
    /// What each connected peer told identify about itself.
    identified: HashMap<PeerId, Identified>,
    /// Publish checks, and the caller-chosen ids we published within the dedup window with their first result.
    publisher: Publisher<Published>,
    /// libp2p's metrics of swarm and protocol events.
    libp2p_metrics: libp2p::metrics::Metrics,
    metrics: Metrics,
    /// Publishes waiting for their batch, when `--batch-window` is on.
    batcher: Option<Batcher<PendingPublish>>,
    started: Instant,
    /// The housekeeping period (`housekeeping_period`).
    housekeeping: Duration,
    /// Serves `/perf/1.0.0` (unless `--no-perf`) until the loop ends.
    _perf_server: Option<PerfServer>,
    /// Held until the loop ends, so the data directory and the identity key are ours while the swarm runs.
    _locks: (DataDirLock, KeyLock),
}

impl EventLoop {
    async fn run(mut self) {
        self.start_bootstrap();
        let mut housekeeping = tokio::time::interval(self.housekeeping);
        loop {
            let batch_deadline = self.batcher.as_ref().and_then(Batcher::next_deadline);
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => {
                    // Every handle gone means nobody can ask anything of the node any more: stop, as on Shutdown.
                    let Some(command) = command else { break };
                    if self.on_command(command).is_break() {
                        break;
                    }
                }
                () = batch_due(batch_deadline) => self.send_due_batches(),
                Some(done) = self.probe_done.recv() => self.on_probe_done(done),
                Some(done) = self.replica.commit_done.recv() => self.on_commit_done(done),
                _ = housekeeping.tick() => {
                    let due = self.peers.tick(Instant::now());
                    self.apply(due);
                    self.on_bootstrap_check();
                    self.on_membership_tick();
                    self.on_cluster_tick();
                    self.on_state_tick(Instant::now());
                    self.set_gauges();
                    self.metrics.set_event_buffer(self.events.expire(Instant::now()));
                }
            }
        }
        // Publishes already accepted still go out.
        for flush in self.batcher.as_mut().map(Batcher::drain).unwrap_or_default() {
            self.send(flush);
        }
        self.announce_leave().await;
        self.finish_commits().await;
        tracing::info!("node stopped");
    }

    /// Waits for the commit in flight, then commits what is left, so every write merged is on disk when the node
    /// stops.
    async fn finish_commits(&mut self) {
        let deadline = tokio::time::Instant::now() + state_sync::FINAL_COMMIT_WAIT;
        while self.replica.committing() {
            match tokio::time::timeout_at(deadline, self.replica.commit_done.recv()).await {
                Ok(Some(done)) => self.on_commit_done(done),
                _ => break,
            }
        }
        self.replica.flush();
    }

    /// Tells every connected peer that we are leaving, so they mark us `left` rather than redial us, and waits (at
    /// most `LEAVE_TIMEOUT`) until each has acknowledged or failed. Swarm events keep being served meanwhile: a peer
    /// leaving at the same moment is still answered.
    async fn announce_leave(&mut self) {
        // Our last record says `left`: it reaches members we have no connection to as well.
        self.announce_record(true);
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut waiting: HashSet<OutboundRequestId> = peers
            .iter()
            .map(|peer| {
                self.swarm
                    .behaviour_mut()
                    .leave
                    .send_request(peer, LeaveNotice::CURRENT)
            })
            .collect();
        let deadline = tokio::time::sleep(LEAVE_TIMEOUT);
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    if let Some(request) = swarm_events::leave_outcome(&event) {
                        waiting.remove(&request);
                    }
                    self.on_swarm_event(event);
                }
                _ = &mut deadline => {
                    tracing::debug!(unanswered = waiting.len(), "leave notices not acknowledged in time");
                    break;
                }
            }
        }
        tracing::debug!(peers = peers.len(), "leave announced");
        self.close_connections().await;
    }

    /// Closes every connection properly (TLS close_notify, Yamux GoAway), so peers see a clean close rather than a
    /// broken pipe. Events are no longer acted on: the node is stopping and must not redial anyone.
    async fn close_connections(&mut self) {
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let deadline = tokio::time::sleep(CLOSE_TIMEOUT);
        tokio::pin!(deadline);
        while self.swarm.connected_peers().next().is_some() {
            tokio::select! {
                _ = self.swarm.select_next_some() => {}
                _ = &mut deadline => break,
            }
        }
    }

    fn emit(&self, kind: EventKind) {
        let buffered = self.events.send(Event::now(kind), Instant::now());
        self.metrics.set_event_buffer(buffered);
    }

    /// Seeds the routing table with bootstrap peers whose ids we know and dials every bootstrap address.
    fn start_bootstrap(&mut self) {
        for (peer, address) in self.bootstrap.known() {
            self.add_to_routing(peer, address);
        }
        self.dial_bootstrap_peers();
    }

    fn dial_bootstrap_peers(&mut self) {
        for (peer, address) in self.bootstrap.dial_targets() {
            let opts = match peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![address.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(address.clone()).build(),
            };
            if let Err(e) = self.start_dial(opts) {
                tracing::debug!(%address, "bootstrap dial not started: {e}");
            }
        }
    }

    fn on_bootstrap_check(&mut self) {
        let empty = self.swarm.behaviour_mut().routing_table_peers().is_empty();
        if self.bootstrap.retry_due(Instant::now(), empty) {
            tracing::info!("routing table still empty: retrying the bootstrap peers");
            self.dial_bootstrap_peers();
            self.kad_bootstrap();
        }
    }

    /// Carries out what the peer table decided and reports its state changes.
    fn apply(&mut self, decisions: Decisions) {
        if !decisions.transitions.is_empty() {
            // At once, so a scrape right after a change sees it (the table sizes follow at the next tick).
            self.metrics.set_peer_states(self.peers.states());
        }
        for transition in decisions.transitions {
            tracing::info!(peer = %transition.peer, from = ?transition.from, to = ?transition.to, reason = transition.reason,
                attempt = transition.attempt, "peer state");
            self.emit(EventKind::PeerState {
                peer: transition.peer,
                from: transition.from,
                to: transition.to,
                reason: transition.reason,
                attempt: transition.attempt,
                next_retry_ms: transition
                    .next_retry
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            });
        }
        for action in decisions.actions {
            match action {
                Action::Dial { peer, addresses } => {
                    self.metrics.reconnect_attempts.inc();
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addresses)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.start_dial(opts) {
                        tracing::debug!(%peer, "redial not started: {e}");
                        let failed = self.peers.dial_failed(peer, Instant::now());
                        self.apply(failed);
                    }
                }
                Action::Disconnect { peer } => {
                    // Err only means it is already gone, which is what we want.
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                Action::Unroute { peer } => {
                    self.swarm.behaviour_mut().kad.remove_peer(&peer);
                }
                Action::Forget { peer } => self.forget(peer),
            }
        }
    }

    /// The table-size gauges, from counts the tables keep (nothing is built or copied); peers by state are set
    /// whenever a state changes (`apply`), and here for peers the table forgot.
    fn set_gauges(&self) {
        self.metrics.set_peer_states(self.peers.states());
        self.set_state_gauges();
        let admissions = self.membership.as_ref().map_or(0, |m| m.admissions.len());
        self.metrics.set_table_sizes([
            ("peers", self.peers.len()),
            ("discoveries", self.discoveries.len()),
            ("dials", self.dials.len()),
            ("identified", self.identified.len()),
            ("directions", self.directions.len()),
            ("admissions", admissions),
            ("bans", self.bans.len()),
            ("inbound_sources", self.swarm.behaviour().inbound.sources()),
            ("rate_limits", self.gossip_gate.rate_limited_peers()),
            ("delivered_ids", self.gossip_gate.delivered_ids()),
            ("published_ids", self.publisher.remembered()),
            ("members", self.cluster.members.len()),
            ("services", self.cluster.services.len()),
        ]);
    }

    /// The peer table forgot `peer` (removed or left long enough ago, or past `--max-known-peers`): so does every
    /// other per-peer record, so a node's memory follows the peers it knows now, not every peer it ever saw.
    fn forget(&mut self, peer: PeerId) {
        self.discoveries.forget(&peer);
        self.gossip_gate.forget(&peer);
        self.identified.remove(&peer);
        self.directions.remove(&peer);
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        tracing::debug!(%peer, "forgotten");
    }

    fn kad_bootstrap(&mut self) {
        if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!("kademlia bootstrap not started: {e}");
        }
    }

    /// Dials, remembering that this loop (not a behaviour) asked for the connection. A dial refused at once by a
    /// connection limit is reported like any refused connection.
    fn start_dial(&mut self, opts: DialOpts) -> Result<ConnectionId, DialError> {
        let connection = opts.connection_id();
        let peer = opts.get_peer_id();
        if let Err(error) = self.swarm.dial(opts) {
            if let DialError::Denied { cause } = &error {
                self.refused(Direction::Outbound, peer, None, cause);
            }
            return Err(error);
        }
        self.dials.started(connection);
        Ok(connection)
    }
}

/// Completes when the batch due at `deadline` must go out; never, when no batch is waiting.
async fn batch_due(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn housekeeping_follows_the_heartbeat_within_its_bounds() {
        assert_eq!(housekeeping_period(Duration::from_secs(10)), HOUSEKEEPING_MAX);
        assert_eq!(housekeeping_period(Duration::from_secs(1)), Duration::from_millis(50));
        assert_eq!(housekeeping_period(Duration::from_millis(10)), HOUSEKEEPING_MIN);
        assert_eq!(housekeeping_period(Duration::from_secs(3600)), HOUSEKEEPING_MAX);
    }
}
