//! The running node. `spawn` checks the configuration, takes the data-directory lock, loads the identity, builds the
//! swarm, starts listening and hands the swarm to one tokio task, the event loop, which is the only code that touches
//! it. The loop selects over swarm events, commands from `NodeHandle`s and a bootstrap timer, and glues each to the
//! decision it needs (the decisions themselves live in the pure modules: `discovery`, `envelope`).

mod behaviour;
mod discovery;
mod handle;
mod swarm_events;
mod transport;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::ControlFlow,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    gossipsub::{self, IdentTopic},
    swarm::{
        ConnectionId, DialError,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    task::JoinHandle,
};

pub use behaviour::{agent_version, message_id};
pub use handle::{
    Direction, DiscoverySource, Event, EventKind, MessageData, NodeHandle, NodeStatus, PublishError, PublishRequest,
    Published,
};
pub use transport::SecurityUpgrade;

use self::{
    behaviour::Behaviour,
    discovery::{BootstrapPeers, Discoveries},
    handle::Command,
};
use crate::{
    config::{NodeConfig, check_topic},
    envelope::{DEFAULT_CONTENT_TYPE, Envelope},
    identity::{self, DataDirLock},
    peers::{Action, Decisions, PeerTable},
    time::now_unix_ms,
};

/// Events buffered per subscriber before a slow one starts missing them (it is told how many it missed).
const EVENT_BUFFER: usize = 4096;
/// Commands buffered before callers wait.
const COMMAND_BUFFER: usize = 256;
/// How often the loop asks the peer table and the bootstrap schedule what is due.
const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// A node whose event loop is running.
pub struct RunningNode {
    pub handle: NodeHandle,
    /// Receives every event from the very first one (the listen addresses), so no caller misses the start.
    pub events: broadcast::Receiver<Event>,
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
    let keypair = identity::load_or_create(&config.key_path)?;
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = transport::build_swarm(keypair, &config, |key| Behaviour::new(key, &config))?;
    for address in &config.listen {
        swarm
            .listen_on(address.clone())
            .with_context(|| format!("cannot listen on {address}"))?;
    }
    for topic in &config.topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(topic))
            .with_context(|| format!("cannot subscribe to topic {topic:?}"))?;
    }
    tracing::info!(%peer_id, agent = %agent_version(), "node starting");

    let (commands_tx, commands) = mpsc::channel(COMMAND_BUFFER);
    let (events_tx, events) = broadcast::channel(EVENT_BUFFER);
    let event_loop = EventLoop {
        bootstrap: BootstrapPeers::new(&config.bootstrap, Instant::now()),
        peers: PeerTable::new(config.liveness, rand::random()),
        swarm,
        config,
        commands,
        events: events_tx.clone(),
        discoveries: Discoveries::default(),
        rejected: BTreeMap::new(),
        pending_dials: HashMap::new(),
        own_dials: HashSet::new(),
        _lock: lock,
    };
    let task = tokio::spawn(event_loop.run());
    Ok(RunningNode {
        handle: NodeHandle {
            peer_id,
            commands: commands_tx,
            events: events_tx,
        },
        events,
        task,
    })
}

/// The state the event loop owns.
struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: NodeConfig,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    bootstrap: BootstrapPeers,
    discoveries: Discoveries,
    /// The liveness policy: decides when to disconnect, redial and give up on peers.
    peers: PeerTable,
    /// Envelopes rejected in gossipsub validation, by reason.
    rejected: BTreeMap<&'static str, u64>,
    /// Dials requested through a handle, answered when the connection is established or fails.
    pending_dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
    /// Dials this loop started (bootstrap, mDNS, handle). Any other outbound connection was dialled by Kademlia, the
    /// only behaviour here that dials on its own, which is how a peer found by a lookup is told apart.
    own_dials: HashSet<ConnectionId>,
    /// Held until the loop ends, so the data directory is ours while the swarm runs.
    _lock: DataDirLock,
}

impl EventLoop {
    async fn run(mut self) {
        self.start_bootstrap();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => {
                    // Every handle gone means nobody can ask anything of the node any more: stop, as on Shutdown.
                    let Some(command) = command else { break };
                    if self.on_command(command).is_break() {
                        break;
                    }
                }
                _ = housekeeping.tick() => {
                    let due = self.peers.tick(Instant::now());
                    self.apply(due);
                    self.on_bootstrap_check();
                }
            }
        }
        tracing::info!("node stopped");
    }

    fn emit(&self, kind: EventKind) {
        // No subscriber is not an error: a node may run with nobody watching.
        let _ = self.events.send(Event::now(kind));
    }

    /// Seeds the routing table with bootstrap peers whose ids we know and dials every bootstrap address.
    fn start_bootstrap(&mut self) {
        for (peer, address) in self.bootstrap.known() {
            self.swarm.behaviour_mut().kad.add_address(&peer, address);
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
                Action::Forget { peer } => {
                    self.swarm.behaviour_mut().kad.remove_peer(&peer);
                }
            }
        }
    }

    fn kad_bootstrap(&mut self) {
        if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!("kademlia bootstrap not started: {e}");
        }
    }

    /// Serves one command; `Break` means stop the node.
    fn on_command(&mut self, command: Command) -> ControlFlow<()> {
        // A caller that stopped waiting dropped its receiver; there is nobody left to tell.
        match command {
            Command::Publish { request, reply } => {
                let _ = reply.send(self.publish(request));
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(&topic));
            }
            Command::Dial { address, reply } => self.dial(address, reply),
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Shutdown => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    fn publish(&mut self, request: PublishRequest) -> Result<Published, PublishError> {
        check_topic(&request.topic).map_err(PublishError::InvalidTopic)?;
        let limit = self.config.max_payload_size();
        if request.payload.len() > limit {
            return Err(PublishError::TooLarge {
                size: request.payload.len(),
                limit,
            });
        }
        let content_type = request.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE);
        let mut envelope = Envelope::new(
            *self.swarm.local_peer_id(),
            content_type,
            request.payload.to_vec(),
            now_unix_ms(),
        );
        if let Some(id) = request.id {
            envelope.id = id;
        }
        let bytes = envelope
            .encode(self.config.max_message_size)
            .map_err(|e| PublishError::InvalidEnvelope(e.to_string()))?;
        let message_id = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(&request.topic), bytes)
            .map_err(|e| match e {
                gossipsub::PublishError::NoPeersSubscribedToTopic => PublishError::NoPeers(request.topic.clone()),
                gossipsub::PublishError::Duplicate => {
                    PublishError::Gossip("this exact envelope was already published".into())
                }
                other => PublishError::Gossip(format!("{other:?}")),
            })?;
        Ok(Published {
            id: envelope.id,
            message_id: hex::encode(message_id.0),
        })
    }

    fn subscribe(&mut self, topic: &str) -> Result<(), String> {
        check_topic(topic)?;
        self.swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(topic))
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    /// Dials, remembering that this loop (not a behaviour) asked for the connection.
    fn start_dial(&mut self, opts: DialOpts) -> Result<(), DialError> {
        let connection = opts.connection_id();
        self.swarm.dial(opts)?;
        self.own_dials.insert(connection);
        Ok(())
    }

    fn dial(&mut self, address: Multiaddr, reply: oneshot::Sender<Result<PeerId, String>>) {
        let opts = DialOpts::from(address);
        let connection = opts.connection_id();
        match self.start_dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    fn status(&mut self) -> NodeStatus {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let topics = gossipsub
            .topics()
            .map(|topic| {
                let subscribers = gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&topic))
                    .count();
                (topic.to_string(), subscribers)
            })
            .collect();
        NodeStatus {
            peer_id: *self.swarm.local_peer_id(),
            listen_addresses: self.swarm.listeners().cloned().collect(),
            connected_peers: self.swarm.connected_peers().copied().collect(),
            routing_table: self.swarm.behaviour_mut().routing_table_peers(),
            topics,
            rejected_messages: self.rejected.clone(),
        }
    }
}
