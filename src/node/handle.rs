//! The node's boundary: `NodeHandle` sends commands into the swarm task and awaits one-shot replies; events leave
//! on the event channel (`event_bus.rs`). The CLI, the HTTP API and the tests are all clients of exactly this surface,
//! so nothing outside the event loop ever touches the `Swarm`. Every call answers `Result<_, NodeError>`; once the
//! loop is gone, that is `NodeError::Stopped`.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::{
    cluster_views::{MemberFilter, MemberInfo, RouteAnswer, RouteRequest, ServiceFilter, ServiceInstance},
    error::NodeError,
    event_bus::{EventReceiver, EventSender},
    perf::PerfClient,
    publish_budget::PublishBudget,
    views::{Diagnosis, NodeStatus, PeerInfo, PublishRequest, Published, TopicInfo},
};
use crate::{
    config::{bare_peer_id, check_dialable, services::ServiceDefinition},
    metrics::Metrics,
    wire::members::Health,
};

/// Where the event loop sends the outcome of a command that can fail.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// Requests the event loop serves; each carries the sender for its reply.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        request: PublishRequest,
        reply: Reply<Published>,
    },
    Subscribe {
        topic: String,
        reply: Reply<()>,
    },
    Dial {
        address: Multiaddr,
        reply: Reply<PeerId>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    /// Closes every connection to `peer`, and refuses it for `block_for` (none when zero); answers whether it was
    /// connected.
    Disconnect {
        peer: PeerId,
        block_for: Duration,
        reply: Reply<bool>,
    },
    /// Leaves `topic`.
    Unsubscribe {
        topic: String,
        reply: Reply<()>,
    },
    Topics {
        reply: oneshot::Sender<Vec<TopicInfo>>,
    },
    Diagnose {
        reply: oneshot::Sender<Diagnosis>,
    },
    Members {
        filter: MemberFilter,
        reply: oneshot::Sender<Vec<MemberInfo>>,
    },
    Services {
        filter: ServiceFilter,
        reply: oneshot::Sender<Vec<ServiceInstance>>,
    },
    Route {
        request: RouteRequest,
        reply: Reply<RouteAnswer>,
    },
    RegisterService {
        definition: ServiceDefinition,
        reply: Reply<()>,
    },
    DeregisterService {
        id: String,
        reply: Reply<()>,
    },
    /// `pass`, `warn` or `fail` of a service with a TTL check.
    UpdateTtl {
        id: String,
        health: Health,
        note: Option<String>,
        reply: Reply<()>,
    },
    /// The replicated map (`state_handle.rs`).
    State(super::state_handle::StateCommand),
    /// Perf runs and the perf server (`perf.rs`).
    Perf(super::perf::PerfCommand),
    Shutdown,
}

/// A cheap, cloneable client of a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(crate) peer_id: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: EventSender,
    /// Bounds the bytes of publishes on their way into the loop.
    pub(crate) publish_budget: PublishBudget,
    pub(crate) metrics: Metrics,
    /// Opens perf streams; one run at a time.
    pub(crate) perf: PerfClient,
}

impl NodeHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's metrics (libp2p's and ours), for `GET /metrics` and for recording API requests.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A new receiver of every event from now on.
    pub fn subscribe_events(&self) -> EventReceiver {
        self.events.subscribe()
    }

    /// Publishes one envelope on `request.topic`, first waiting for room if too many bytes are being published.
    pub async fn publish(&self, request: PublishRequest) -> Result<Published, NodeError> {
        self.submit_publish(request).await?.await
    }

    /// Hands a publish to the node and returns at once with what will answer it: publishes submitted one after
    /// another go out in that order, while the caller goes on (`--stdin` keeps many in flight, so a batch window
    /// does not cap it at one line per window).
    pub async fn submit_publish(
        &self,
        mut request: PublishRequest,
    ) -> Result<impl Future<Output = Result<Published, NodeError>> + use<>, NodeError> {
        request.payload = self.publish_budget.reserve(request.payload).await;
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command::Publish { request, reply })
            .await
            .map_err(|_| NodeError::Stopped)?;
        Ok(async move { response.await.map_err(|_| NodeError::Stopped)? })
    }

    /// Joins a gossipsub topic; joining one we are in already succeeds.
    pub async fn subscribe(&self, topic: &str) -> Result<(), NodeError> {
        let topic = topic.to_owned();
        self.ask(|reply| Command::Subscribe { topic, reply }).await?
    }

    /// Dials an address (with or without `/p2p/<id>`) and waits for the outcome: the peer connected, or why not. An
    /// address that is only `/p2p/<id>` is looked up in the DHT first; any other must name a transport this node
    /// speaks.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, NodeError> {
        if bare_peer_id(&address).is_none() {
            check_dialable(&address).map_err(|reason| NodeError::InvalidAddress { reason })?;
        }
        self.ask(|reply| Command::Dial { address, reply }).await?
    }

    /// The node's current status.
    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Every peer in the peer table.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Closes every connection to `peer`. Our own decision, so the peer is `removed`, not redialled. With a
    /// nonzero `block_for` it is also banned that long: neither side may connect until then, so the disconnect
    /// sticks — also for a peer that is not connected but waiting to be (re)dialled. With zero, it may connect again
    /// at once (or be redialled when discovered again). Answers whether it was connected; `NotConnected` when there
    /// was nothing to do.
    pub async fn disconnect(&self, peer: PeerId, block_for: Duration) -> Result<bool, NodeError> {
        self.ask(|reply| Command::Disconnect { peer, block_for, reply }).await?
    }

    /// Leaves a topic; `NotSubscribed` when we were not in it.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), NodeError> {
        let topic = topic.to_owned();
        self.ask(|reply| Command::Unsubscribe { topic, reply }).await?
    }

    /// Our topics with their mesh and subscribed peers.
    pub async fn topics(&self) -> Result<Vec<TopicInfo>, NodeError> {
        self.ask(|reply| Command::Topics { reply }).await
    }

    /// Everything `GET /v1/diagnose` reports.
    pub async fn diagnose(&self) -> Result<Diagnosis, NodeError> {
        self.ask(|reply| Command::Diagnose { reply }).await
    }

    /// The members of the swarm as this node sees them (itself first), filtered.
    pub async fn members(&self, filter: MemberFilter) -> Result<Vec<MemberInfo>, NodeError> {
        self.ask(|reply| Command::Members { filter, reply }).await
    }

    /// Every service instance of every member, with its health, filtered.
    pub async fn services(&self, filter: ServiceFilter) -> Result<Vec<ServiceInstance>, NodeError> {
        self.ask(|reply| Command::Services { filter, reply }).await
    }

    /// The owners of a key, best first, by weighted rendezvous hashing over the alive members.
    pub async fn route(&self, request: RouteRequest) -> Result<RouteAnswer, NodeError> {
        self.ask(|reply| Command::Route { request, reply }).await?
    }

    /// Registers (or replaces) a service on this node; it is kept in the data directory across restarts.
    pub async fn register_service(&self, definition: ServiceDefinition) -> Result<(), NodeError> {
        self.ask(|reply| Command::RegisterService { definition, reply }).await?
    }

    /// Removes one of this node's services.
    pub async fn deregister_service(&self, id: &str) -> Result<(), NodeError> {
        let id = id.to_owned();
        self.ask(|reply| Command::DeregisterService { id, reply }).await?
    }

    /// Sets the health of a service with a TTL check and restarts its TTL.
    pub async fn update_ttl(&self, id: &str, health: Health, note: Option<String>) -> Result<(), NodeError> {
        let id = id.to_owned();
        self.ask(|reply| Command::UpdateTtl {
            id,
            health,
            note,
            reply,
        })
        .await?
    }

    /// Asks the node to stop; returns at once (await the node's task to know it has).
    pub async fn request_shutdown(&self) {
        // A closed channel means the node has already stopped, which is what was asked for.
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// Sends a command and awaits its reply; `Stopped` when the loop is gone before it could answer.
    pub(crate) async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| NodeError::Stopped)?;
        response.await.map_err(|_| NodeError::Stopped)
    }
}
