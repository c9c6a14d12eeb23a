//! The node's boundary: `NodeHandle` sends commands into the swarm task and awaits one-shot replies; events leave
//! on the event channel (`event_bus.rs`). The CLI, the HTTP API and the tests are all clients of exactly this surface,
//! so nothing outside the event loop ever touches the `Swarm`.

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::{
    error::PublishError,
    event_bus::{EventReceiver, EventSender},
    publish_budget::PublishBudget,
    views::{Diagnosis, NodeStatus, PeerInfo, PublishRequest, Published, TopicInfo},
};
use crate::metrics::Metrics;

/// Requests the event loop serves; each carries the sender for its reply.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        request: PublishRequest,
        reply: oneshot::Sender<Result<Published, PublishError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    /// Closes every connection to `peer`; the reply is whether it was connected.
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    /// Leaves `topic`; the reply is whether we were subscribed.
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    Topics {
        reply: oneshot::Sender<Vec<TopicInfo>>,
    },
    Diagnose {
        reply: oneshot::Sender<Diagnosis>,
    },
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
    pub async fn publish(&self, mut request: PublishRequest) -> Result<Published, PublishError> {
        request.payload = self.publish_budget.reserve(request.payload).await;
        self.ask(|reply| Command::Publish { request, reply })
            .await
            .unwrap_or(Err(PublishError::NodeStopped))
    }

    /// Joins a gossipsub topic.
    pub async fn subscribe(&self, topic: &str) -> Result<(), String> {
        let topic = topic.to_owned();
        self.ask(|reply| Command::Subscribe { topic, reply })
            .await
            .unwrap_or_else(|| Err(PublishError::NodeStopped.to_string()))
    }

    /// Dials an address (with or without `/p2p/<id>`) and waits for the outcome: the peer connected, or why not.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, String> {
        self.ask(|reply| Command::Dial { address, reply })
            .await
            .unwrap_or_else(|| Err(PublishError::NodeStopped.to_string()))
    }

    /// The node's current status; `None` once it has stopped.
    pub async fn status(&self) -> Option<NodeStatus> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Every peer in the peer table.
    pub async fn peers(&self) -> Option<Vec<PeerInfo>> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Closes every connection to `peer`. Our own decision, so the peer is `removed`, not redialled (until it is
    /// discovered again or connects); `Some(false)` when it was not connected.
    pub async fn disconnect(&self, peer: PeerId) -> Option<bool> {
        self.ask(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Leaves a topic; `Ok(false)` when we were not subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> Result<bool, String> {
        let topic = topic.to_owned();
        self.ask(|reply| Command::Unsubscribe { topic, reply })
            .await
            .unwrap_or_else(|| Err(PublishError::NodeStopped.to_string()))
    }

    /// Our topics with their mesh and subscribed peers.
    pub async fn topics(&self) -> Option<Vec<TopicInfo>> {
        self.ask(|reply| Command::Topics { reply }).await
    }

    /// Everything `GET /v1/diagnose` reports.
    pub async fn diagnose(&self) -> Option<Diagnosis> {
        self.ask(|reply| Command::Diagnose { reply }).await
    }

    /// Asks the node to stop; returns at once (await the node's task to know it has).
    pub async fn request_shutdown(&self) {
        // A closed channel means the node has already stopped, which is what was asked for.
        let _ = self.commands.send(Command::Shutdown).await;
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        response.await.ok()
    }
}
