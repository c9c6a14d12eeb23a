//! The node's typed errors: what a `NodeHandle` call can fail with. Callers branch on the variant (the API maps each
//! to its HTTP status in one place, `api/error.rs`); the text says what happened and what to do, in our words: no
//! libp2p error is shown by its `Debug` form.

use libp2p::{
    PeerId, gossipsub,
    swarm::{DialError, dial_opts::PeerCondition},
};

use super::swarm_events::denial_reason;
use crate::{config::MAX_TOPIC_LEN, wire::perf::PERF_PROTOCOL};

/// Why a `NodeHandle` call failed. Whatever failed was not done: nothing was published, joined, left or dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(test, derive(strum::EnumCount))]
pub enum NodeError {
    /// The event loop is gone: the node has stopped or is stopping.
    #[error("the node has stopped; start it again with `swarmnode run`")]
    Stopped,
    #[error("invalid topic: {reason}; a topic is 1 to {MAX_TOPIC_LEN} bytes of UTF-8 without control characters")]
    InvalidTopic { reason: String },
    /// A subscription beyond `--max-topics`.
    #[error(
        "this node is in {limit} topic(s) already, the most its --max-topics allows: leave one first, or run the node \
         with a larger --max-topics"
    )]
    TooManyTopics { limit: usize },
    /// An unsubscribe from a topic we are not in.
    #[error("this node is not subscribed to topic {topic:?}, so there is nothing to leave")]
    NotSubscribed { topic: String },
    #[error("payload is {size} bytes; the largest this node publishes is {limit} bytes (--max-message-size)")]
    PayloadTooLarge { size: usize, limit: usize },
    /// The envelope the caller described breaks a rule of the wire format (its id or content type).
    #[error("invalid message: {reason}")]
    InvalidMessage { reason: String },
    #[error(
        "no connected peer is subscribed to topic {topic:?} yet, so the message would reach nobody: connect to a peer \
         that has joined it, or wait until its subscription arrives"
    )]
    NoPeersSubscribed { topic: String },
    /// Gossipsub already sent these exact bytes within its duplicate cache time.
    #[error(
        "an identical message was published moments ago and gossipsub sends each message once; give it another id \
         to send it again"
    )]
    DuplicateMessage,
    /// Every subscribed peer's send queue is full: the node is publishing faster than its peers take messages.
    #[error("the send queues to all {peers} subscribed peer(s) are full; retry in a moment")]
    QueuesFull { peers: usize },
    /// Gossipsub failed for a reason of its own (signing, encoding): not the caller's doing.
    #[error("gossipsub failed: {reason}")]
    Gossip { reason: String },
    #[error("invalid address: {reason}")]
    InvalidAddress { reason: String },
    /// One of this node's own gates refused the connection: a connection limit, the allow or deny list, a ban.
    #[error("connection refused by this node: {reason}")]
    ConnectionRefused { reason: String },
    /// A dial by peer id alone whose DHT lookup ended without the peer's addresses.
    #[error(
        "peer {peer} was not found in the DHT: give one of its addresses (…/tcp/PORT/p2p/{peer}), or connect to a \
         peer that knows it first"
    )]
    PeerNotFound { peer: PeerId },
    /// The dial went out and failed: nothing listening, a timeout, no common protocol, another peer at the address.
    #[error("could not connect: {reason}; check the address and that the peer is running")]
    DialFailed { reason: String },
    /// A disconnect of a peer we have no connection to.
    #[error("peer {peer} is not connected")]
    NotConnected { peer: PeerId },
    /// A service id this node has not registered.
    #[error("this node has no service {id:?}; `swarmnode services` lists the swarm's")]
    ServiceNotFound { id: String },
    /// A service definition that cannot be taken (a bad field).
    #[error("{reason}")]
    InvalidService { reason: String },
    /// A registration or health update the registry's state does not allow: pass/warn/fail on a service without a
    /// TTL check, more services than a record holds, a record that would no longer fit.
    #[error("{reason}")]
    ServiceConflict { reason: String },
    /// A route lookup that cannot be answered as asked.
    #[error("invalid route request: {reason}")]
    InvalidRoute { reason: String },
    /// The node could not write its own state (the services file in the data directory).
    #[error("cannot save: {reason}")]
    Storage { reason: String },
    #[error("invalid key: {reason}")]
    InvalidKey { reason: String },
    #[error("invalid state request: {reason}")]
    InvalidStateRequest { reason: String },
    #[error("the value is {size} bytes; the largest this node stores is {limit} bytes (--max-value-size)")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("no key {key:?} in the state")]
    KeyNotFound { key: String },
    #[error("{reason}; delete keys or run the node with a larger --max-state-bytes")]
    StateFull { reason: String },
    #[error("version {version} of key {key:?} is not visible on this node after waiting {waited_ms} ms")]
    VersionNotVisible { key: String, version: u64, waited_ms: u64 },
    /// A perf run that cannot be started as asked: a size over the bound, this node itself as the target.
    #[error("invalid perf request: {reason}")]
    InvalidPerfRequest { reason: String },
    /// Another perf run from this node is under way: runs go one at a time, so they do not measure each other.
    #[error("a perf run from this node is already under way; wait until it ends and try again")]
    PerfBusy,
    /// The peer does not accept `/perf/1.0.0` streams.
    #[error(
        "peer {peer} does not support {PERF_PROTOCOL}: it runs with --no-perf, or its implementation does not serve \
         the perf protocol"
    )]
    PerfUnsupported { peer: PeerId },
    /// The perf stream broke off, or the peer sent other than what was asked for.
    #[error("perf run with {peer} failed: {reason}")]
    PerfFailed { peer: PeerId, reason: String },
    /// The run did not end within its time bound.
    #[error("perf run with {peer} did not finish within {seconds} s: ask for fewer bytes, or check the connection")]
    PerfTimedOut { peer: PeerId, seconds: u64 },
}

impl NodeError {
    /// Why gossipsub did not publish a message on `topic`.
    pub(crate) fn from_publish(error: gossipsub::PublishError, topic: &str) -> Self {
        match error {
            gossipsub::PublishError::NoPeersSubscribedToTopic => NodeError::NoPeersSubscribed {
                topic: topic.to_owned(),
            },
            gossipsub::PublishError::Duplicate => NodeError::DuplicateMessage,
            gossipsub::PublishError::AllQueuesFull(peers) => NodeError::QueuesFull { peers },
            gossipsub::PublishError::MessageTooLarge => NodeError::Gossip {
                reason: "the message with its gossip framing is larger than the transmit limit".into(),
            },
            gossipsub::PublishError::SigningError(e) => NodeError::Gossip {
                reason: format!("cannot sign the message: {e}"),
            },
            gossipsub::PublishError::TransformFailed(e) => NodeError::Gossip {
                reason: format!("cannot encode the message: {e}"),
            },
        }
    }

    /// Why gossipsub did not join `topic`; its subscription filter allows `limit` topics.
    pub(crate) fn from_subscription(error: gossipsub::SubscriptionError, topic: &str, limit: usize) -> Self {
        match error {
            gossipsub::SubscriptionError::NotAllowed => NodeError::TooManyTopics { limit },
            gossipsub::SubscriptionError::PublishError(e) => NodeError::Gossip {
                reason: format!(
                    "cannot announce the subscription: {}",
                    NodeError::from_publish(e, topic)
                ),
            },
        }
    }

    /// Why a dial failed, as a caller should read it: `DialError`'s own text omits a denial's reason and shows
    /// addresses by their `Debug` form.
    pub(crate) fn from_dial(error: &DialError) -> Self {
        let failed = |reason: String| NodeError::DialFailed { reason };
        match error {
            DialError::Denied { cause } => NodeError::ConnectionRefused {
                reason: denial_reason(cause),
            },
            DialError::LocalPeerId { address } => NodeError::InvalidAddress {
                reason: format!("{address} is this node's own address"),
            },
            DialError::NoAddresses => failed("no address is known for the peer; give one with its id".into()),
            DialError::DialPeerConditionFalse(PeerCondition::Disconnected) => {
                failed("the peer is already connected".into())
            }
            DialError::DialPeerConditionFalse(_) => failed("a dial to the peer is already under way".into()),
            DialError::Aborted => failed("the dial was aborted (is the node shutting down?)".into()),
            DialError::WrongPeerId { obtained, address } => failed(format!(
                "the peer at {address} is {obtained}, not the peer the address names"
            )),
            DialError::Transport(attempts) => {
                let unsupported = attempts
                    .iter()
                    .all(|(_, e)| matches!(e, libp2p::TransportError::MultiaddrNotSupported(_)));
                let reasons = attempts
                    .iter()
                    .map(|(address, e)| format!("{address}: {}", error_chain(e)))
                    .collect::<Vec<_>>()
                    .join("; ");
                if unsupported && !attempts.is_empty() {
                    NodeError::InvalidAddress {
                        reason: format!("no transport of this node can dial it ({reasons})"),
                    }
                } else {
                    failed(reasons)
                }
            }
        }
    }

    /// An invalid topic, with the rule it broke.
    pub(crate) fn invalid_topic(reason: String) -> Self {
        NodeError::InvalidTopic { reason }
    }
}

/// An error and its sources on one line, outermost first, as libp2p's transports nest them (an outer error often
/// shows nothing of its own, or repeats its cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let cause_text = one_line(&cause.to_string());
        if !cause_text.is_empty() && !text.ends_with(&cause_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// A multi-line error text ("Multiple dial errors occurred:" and a ` - ` line per error) as one line.
fn one_line(text: &str) -> String {
    let mut parts = text
        .lines()
        .map(|line| line.trim().trim_start_matches("- "))
        .filter(|line| !line.is_empty());
    let mut out = parts.next().unwrap_or_default().to_owned();
    for part in parts {
        out.push_str(if out.ends_with(':') { " " } else { "; " });
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use libp2p::{Multiaddr, TransportError};

    use super::*;

    fn address() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/1".parse().unwrap()
    }

    #[test]
    fn a_dial_nothing_answers_names_the_address_and_the_cause() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let error = NodeError::from_dial(&DialError::Transport(vec![(address(), TransportError::Other(refused))]));
        assert_eq!(
            error,
            NodeError::DialFailed {
                reason: "/ip4/127.0.0.1/tcp/1: Connection refused (os error 111)".into()
            }
        );
    }

    #[test]
    fn an_address_no_transport_dials_is_an_invalid_address() {
        let unsupported = TransportError::MultiaddrNotSupported(address());
        let error = NodeError::from_dial(&DialError::Transport(vec![(address(), unsupported)]));
        assert!(matches!(error, NodeError::InvalidAddress { .. }), "{error}");
        let own = NodeError::from_dial(&DialError::LocalPeerId { address: address() });
        assert!(matches!(own, NodeError::InvalidAddress { .. }), "{own}");
    }

    #[test]
    fn another_peer_at_the_address_is_named() {
        let obtained = PeerId::random();
        let error = NodeError::from_dial(&DialError::WrongPeerId {
            obtained,
            address: address(),
        });
        let text = error.to_string();
        assert!(
            text.contains(&obtained.to_string()) && text.contains("/ip4/127.0.0.1/tcp/1"),
            "{text}"
        );
    }

    #[test]
    fn several_failed_attempts_read_as_one_line() {
        let text = "Multiple dial errors occurred:\n - Connection refused (os error 111)\n - Connection reset";
        assert_eq!(
            one_line(text),
            "Multiple dial errors occurred: Connection refused (os error 111); Connection reset"
        );
    }

    #[test]
    fn error_chains_skip_causes_their_outer_text_already_shows() {
        let inner = std::io::Error::other("Timeout has been reached");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "Timeout has been reached");
    }
}
