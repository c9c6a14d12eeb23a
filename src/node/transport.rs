//! Building the `Swarm`: TCP with both TLS 1.3 and Noise offered in the operator's order of preference, Yamux on
//! top, QUIC v1 beside it, DNS resolution for `/dns*` addresses, and our behaviour.
//!
//! libp2p's `SwarmBuilder` fixes the order of security protocols in the type of a tuple, so a preference chosen at
//! run time needs an upgrade of our own: `SecurityUpgrade` advertises the configured protocols in order through
//! multistream-select and hands the connection to whichever one the remote picked.

use prometheus_client::registry::Registry;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, FutureExt, TryFutureExt, future::BoxFuture, future::Either};
use libp2p::{
    PeerId, Swarm, SwarmBuilder, Transport,
    core::{
        UpgradeInfo,
        muxing::StreamMuxerBox,
        transport::{OptionalTransport, timeout::TransportTimeout},
        upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, Version},
    },
    identity::Keypair,
    noise,
    pnet::{PnetConfig, PreSharedKey},
    quic, tcp, tls, yamux,
};

use super::behaviour::Behaviour;
use crate::config::{NodeConfig, SecurityProtocol};

const NOISE_PROTOCOL: &str = "/noise";
const TLS_PROTOCOL: &str = "/tls/1.0.0";

/// The security protocols we offer on a TCP connection, most preferred first.
#[derive(Clone)]
pub struct SecurityUpgrade {
    order: Vec<SecurityProtocol>,
    noise: noise::Config,
    tls: tls::Config,
}

impl SecurityUpgrade {
    pub fn new(keypair: &Keypair, order: Vec<SecurityProtocol>) -> Result<Self, SecurityError> {
        Ok(SecurityUpgrade {
            order,
            noise: noise::Config::new(keypair).map_err(SecurityError::Noise)?,
            tls: tls::Config::new(keypair).map_err(|e| SecurityError::Certificate(e.to_string()))?,
        })
    }
}

/// A security handshake that failed, or a key that cannot make a TLS certificate.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("noise handshake failed: {0}")]
    Noise(#[source] noise::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] tls::UpgradeError),
    #[error("cannot create a TLS certificate for this key: {0}")]
    Certificate(String),
}

/// The encrypted stream of whichever protocol was negotiated.
pub type SecureStream<C> = Either<noise::Output<C>, tls::TlsStream<C>>;

type SecureFuture<C> = BoxFuture<'static, Result<(PeerId, SecureStream<C>), SecurityError>>;

impl UpgradeInfo for SecurityUpgrade {
    type Info = &'static str;
    type InfoIter = Vec<&'static str>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.order
            .iter()
            .map(|protocol| match protocol {
                SecurityProtocol::Noise => NOISE_PROTOCOL,
                SecurityProtocol::Tls => TLS_PROTOCOL,
            })
            .collect()
    }
}

impl<C> InboundConnectionUpgrade<C> for SecurityUpgrade
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, SecureStream<C>);
    type Error = SecurityError;
    type Future = SecureFuture<C>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        if info == NOISE_PROTOCOL {
            self.noise
                .upgrade_inbound(socket, info)
                .map_ok(|(peer, stream)| (peer, Either::Left(stream)))
                .map_err(SecurityError::Noise)
                .boxed()
        } else {
            self.tls
                .upgrade_inbound(socket, info)
                .map_ok(|(peer, stream)| (peer, Either::Right(stream)))
                .map_err(SecurityError::Tls)
                .boxed()
        }
    }
}

impl<C> OutboundConnectionUpgrade<C> for SecurityUpgrade
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, SecureStream<C>);
    type Error = SecurityError;
    type Future = SecureFuture<C>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        if info == NOISE_PROTOCOL {
            self.noise
                .upgrade_outbound(socket, info)
                .map_ok(|(peer, stream)| (peer, Either::Left(stream)))
                .map_err(SecurityError::Noise)
                .boxed()
        } else {
            self.tls
                .upgrade_outbound(socket, info)
                .map_ok(|(peer, stream)| (peer, Either::Right(stream)))
                .map_err(SecurityError::Tls)
                .boxed()
        }
    }
}

/// Builds the swarm with all transports (counting their bytes in `registry`) and the given behaviour. With a swarm
/// key, TCP connections run the pnet handshake (XSalsa20 with the pre-shared key) before anything else, and QUIC,
/// which cannot carry pnet, is left out.
///
/// Two limits on setting a connection up, on both transports: our dials get `--dial-timeout` (connect, security
/// and multiplexer negotiation together: a dial to an address nobody answers — a vanished container, a frozen
/// process — fails after this, so each redial of the liveness policy ends in bounded time); an inbound connection
/// gets the shorter handshake timeout from accept to upgraded, so a socket that never finishes its handshake gives
/// its slot (`--max-pending-incoming`, `--max-pending-per-ip`) back sooner than an honest dialler gives up.
pub fn build_swarm(
    keypair: Keypair,
    config: &NodeConfig,
    swarm_key: Option<PreSharedKey>,
    registry: &mut Registry,
    behaviour: Behaviour,
) -> anyhow::Result<Swarm<Behaviour>> {
    let security = SecurityUpgrade::new(&keypair, config.security.clone())?;
    let handshake_timeout = config.inbound_handshake_timeout();
    let quic = swarm_key.is_none().then(|| {
        let mut quic = quic::Config::new(&keypair);
        // A QUIC connection to a dead peer ends after its idle timeout (libp2p's default: 10 s), there being no FIN
        // to tell. Past our peer timeout, so that the liveness policy, not the transport, decides when a peer is
        // gone, and does so after the configured silence on QUIC as on TCP.
        let idle = config.liveness.peer_timeout.saturating_add(config.heartbeat);
        quic.max_idle_timeout = u32::try_from(idle.as_millis()).unwrap_or(u32::MAX);
        quic.keep_alive_interval = quic.keep_alive_interval.min(config.heartbeat);
        // quinn's handshake timeout applies both ways; the inbound side is cut shorter below.
        quic.handshake_timeout = config.dial_timeout;
        let quic =
            quic::tokio::Transport::new(quic).map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)));
        TransportTimeout::with_ingoing_timeout(quic, handshake_timeout)
    });
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let tcp = match swarm_key {
        Some(key) => tcp
            .and_then(move |socket, _| PnetConfig::new(key).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(security)
            .multiplex(yamux::Config::default())
            .outbound_timeout(config.dial_timeout)
            .inbound_timeout(handshake_timeout)
            .boxed(),
        None => tcp
            .upgrade(Version::V1Lazy)
            .authenticate(security)
            .multiplex(yamux::Config::default())
            .outbound_timeout(config.dial_timeout)
            .inbound_timeout(handshake_timeout)
            .boxed(),
    };
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| tcp)?
        .with_other_transport(|_| match quic {
            Some(quic) => OptionalTransport::some(quic),
            None => OptionalTransport::none(),
        })?
        .with_dns()?
        .with_bandwidth_metrics(registry.sub_registry_with_prefix("libp2p"))
        .with_behaviour(|_| behaviour)?
        // Liveness is our policy (ping heartbeats and the peer table), not libp2p's idle timer: a known peer stays
        // connected even when no protocol has a stream open.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::MAX))
        .build();
    Ok(swarm)
}
