//! The per-address connection gate: a `NetworkBehaviour` that asks `policy::inbound` about every inbound connection
//! at accept (pending) and after its handshake (established), and tells it when the connection ends. A refusal
//! denies the connection with `inbound::Refusal`, which `swarm_events` reports; the swarm then drops the socket, so a
//! host over its limit sees its connection closed at once.
//!
//! It sits before libp2p's `connection_limits` in the composed behaviour, so a host over its own limit is refused
//! for that, and never takes one of the node-wide handshake slots.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, behaviour::ListenFailure, dummy,
    },
};

use crate::policy::inbound::{InboundAccounts, InboundLimits, source_of};

pub struct Behaviour {
    accounts: InboundAccounts,
}

impl Behaviour {
    pub fn new(limits: InboundLimits) -> Self {
        Behaviour {
            accounts: InboundAccounts::new(limits),
        }
    }

    /// Source addresses with a live inbound connection (the size of the table).
    pub fn sources(&self) -> usize {
        self.accounts.len()
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        match source_of(remote_addr) {
            Some(source) => self
                .accounts
                .admit_pending(connection_id, source)
                .map_err(ConnectionDenied::new),
            None => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.accounts.promote(connection_id).map_err(ConnectionDenied::new)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // A handshake that failed or timed out, a connection another gate refused, or one that closed.
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.accounts.release(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _peer: PeerId, _connection: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use libp2p::{core::ConnectedPoint, swarm::ListenError};

    use super::*;
    use crate::policy::inbound::{Limit, Refusal};

    fn behaviour() -> Behaviour {
        Behaviour::new(InboundLimits {
            max_pending_per_ip: 2,
            max_established_per_ip: 1,
        })
    }

    fn address(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/40000").parse().unwrap()
    }

    fn local() -> Multiaddr {
        address("127.0.0.1")
    }

    fn pending(behaviour: &mut Behaviour, id: usize, ip: &str) -> Result<(), ConnectionDenied> {
        behaviour.handle_pending_inbound_connection(ConnectionId::new_unchecked(id), &local(), &address(ip))
    }

    fn established(behaviour: &mut Behaviour, id: usize, ip: &str) -> Result<(), ConnectionDenied> {
        behaviour
            .handle_established_inbound_connection(
                ConnectionId::new_unchecked(id),
                PeerId::random(),
                &local(),
                &address(ip),
            )
            .map(|_| ())
    }

    fn listen_failure(behaviour: &mut Behaviour, id: usize, ip: &str) {
        behaviour.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
            local_addr: &local(),
            send_back_addr: &address(ip),
            error: &ListenError::Aborted,
            connection_id: ConnectionId::new_unchecked(id),
            peer_id: None,
        }));
    }

    #[test]
    fn a_host_over_its_limit_is_denied_with_the_refusal_and_freed_slots_are_reused() {
        let mut behaviour = behaviour();
        assert!(pending(&mut behaviour, 1, "10.0.0.2").is_ok());
        assert!(pending(&mut behaviour, 2, "10.0.0.2").is_ok());
        let denied = pending(&mut behaviour, 3, "10.0.0.2").unwrap_err();
        let refusal = denied.downcast_ref::<Refusal>().expect("the per-address refusal");
        assert_eq!(refusal.limit, Limit::PendingPerIp);
        assert!(
            pending(&mut behaviour, 4, "10.0.0.3").is_ok(),
            "another host has its own slots"
        );

        // The denied connection's failure is reported too, and changes nothing; a timed-out one frees its slot.
        listen_failure(&mut behaviour, 3, "10.0.0.2");
        assert!(pending(&mut behaviour, 5, "10.0.0.2").is_err());
        listen_failure(&mut behaviour, 1, "10.0.0.2");
        assert!(pending(&mut behaviour, 6, "10.0.0.2").is_ok());

        assert!(established(&mut behaviour, 2, "10.0.0.2").is_ok());
        let denied = established(&mut behaviour, 6, "10.0.0.2").unwrap_err();
        assert_eq!(
            denied.downcast_ref::<Refusal>().map(|r| r.limit),
            Some(Limit::EstablishedPerIp)
        );
        listen_failure(&mut behaviour, 6, "10.0.0.2");
        listen_failure(&mut behaviour, 4, "10.0.0.3");
        behaviour.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: PeerId::random(),
            connection_id: ConnectionId::new_unchecked(2),
            endpoint: &ConnectedPoint::Listener {
                local_addr: local(),
                send_back_addr: address("10.0.0.2"),
            },
            cause: None,
            remaining_established: 0,
        }));
        assert_eq!(behaviour.sources(), 0, "nothing is kept once the connections are gone");
    }

    #[test]
    fn connections_without_an_ip_address_are_not_counted() {
        let mut behaviour = behaviour();
        let memory: Multiaddr = "/memory/7".parse().unwrap();
        for id in 0..10 {
            let id = ConnectionId::new_unchecked(id);
            assert!(
                behaviour
                    .handle_pending_inbound_connection(id, &memory, &memory)
                    .is_ok()
            );
        }
        assert_eq!(behaviour.sources(), 0);
    }
}
