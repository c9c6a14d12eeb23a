//! The node's typed errors: what a `NodeHandle` call can fail with. Callers branch on the variant (the API maps each
//! to its HTTP status); the text says what happened and what to do.

/// Why a publish was refused. Nothing was sent in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("payload is {size} bytes; the largest this node publishes is {limit} bytes (--max-message-size)")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(String),
    #[error("no connected peer is subscribed to topic {0:?} yet")]
    NoPeers(String),
    #[error("gossipsub refused the message: {0}")]
    Gossip(String),
    #[error("the node has stopped")]
    NodeStopped,
}
