//! The command line. This file holds the clap definitions: every flag of `run` has a `SWARMNODE_*` variable (flags
//! win), list flags also take comma-separated values, a boolean flag's variable takes 1/0, true/false, yes/no or
//! on/off (`BoolishValueParser`), and values are parsed by the same functions `NodeConfig` documents.
//! `run` turns the flags into a `NodeConfig` and runs the node; `ca` and `client` are the other subcommands.

pub mod ca;
pub mod client;
pub mod cluster;
pub mod perf;
mod printer;
pub mod run;
pub mod state;
pub mod state_flags;

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum, builder::BoolishValueParser};
use libp2p::{Multiaddr, PeerId, StreamProtocol};

use crate::config::{self, SecurityProtocol};

#[derive(Debug, Parser)]
#[command(
    name = "swarmnode",
    version,
    about = "A peer-to-peer swarm node on libp2p: discovery, encrypted transports, gossip broadcast"
)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SWARMNODE_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: print one JSON event per line on stdout until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Print the peer id of a key file.
    Id(KeyLocation),
    /// Manage key files.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// A private certificate authority for swarm membership (`run --ca-cert --cert`).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    #[command(flatten)]
    Client(ClientCommand),
}

/// Commands that talk to a running node through its API.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Show a running node: peer id, addresses, protocols, uptime, topics.
    Status(ClientArgs),
    /// List the running node's peer table.
    Peers(ClientArgs),
    /// Ask the running node to dial an address and wait for the outcome.
    Connect {
        #[command(flatten)]
        client: ClientArgs,
        /// A multiaddr (`/p2p/<id>` optional), or `/p2p/<id>` alone to find the peer through the DHT first.
        address: String,
    },
    /// Close the running node's connections to a peer: it is removed, not redialled, and may not connect either way
    /// for --for.
    Disconnect {
        #[command(flatten)]
        client: ClientArgs,
        /// Peer id.
        peer: String,
        /// How long the peer may not connect (at most 30days; 0s lets it reconnect at once).
        #[arg(long = "for", default_value = "10m", value_parser = config::parse_duration)]
        block_for: Duration,
    },
    /// Publish a message through the running node.
    Publish {
        #[command(flatten)]
        client: ClientArgs,
        topic: String,
        /// The message text; `-` or nothing reads it from stdin.
        message: Option<String>,
        /// Idempotency key: the same id again within the node's --dedup-window is sent once.
        #[arg(long)]
        id: Option<String>,
        /// MIME type of the message [default: text/plain; charset=utf-8].
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Print the messages of a topic as JSON lines until Ctrl-C (the node joins the topic if needed).
    Subscribe {
        #[command(flatten)]
        client: ClientArgs,
        topic: String,
    },
    /// Print the running node's events as JSON lines until Ctrl-C.
    Events {
        #[command(flatten)]
        client: ClientArgs,
        /// Comma-separated event names (e.g. peer_state,message); all when absent.
        #[arg(long)]
        types: Option<String>,
        /// Only events about this topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// What to check when peers do not find each other.
    Diagnose(ClientArgs),
    /// Measure throughput from the running node to a peer with the libp2p perf protocol: upload, then download.
    Perf {
        #[command(flatten)]
        client: ClientArgs,
        /// A peer id (connected, or found in the DHT), or a multiaddr ending in /p2p/<id> (dialled unless connected).
        peer: String,
        /// Bytes to upload: a number or a size with a binary unit (KiB, MiB, GiB); at most 64GiB.
        #[arg(long, default_value = "100MiB", value_parser = config::perf::parse_byte_count)]
        upload: u64,
        /// Bytes to download, likewise (a swarmnode serves at most 16GiB per run).
        #[arg(long, default_value = "100MiB", value_parser = config::perf::parse_byte_count)]
        download: u64,
    },
    #[command(flatten)]
    Cluster(cluster::ClusterCommand),
    /// Read, write, list and watch the swarm's replicated key/value state.
    State {
        #[command(subcommand)]
        command: state::StateCommand,
    },
}

/// How the client commands reach a running node's API.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The node's API.
    #[arg(long = "api", env = "SWARMNODE_API", default_value = "http://127.0.0.1:5100")]
    pub api_url: String,
    /// File holding the API's bearer token, when it requires one.
    #[arg(long, env = "SWARMNODE_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new ed25519 identity key (protobuf encoding, mode 0600) and print its peer id.
    Generate {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file (the peer id changes).
        #[arg(long)]
        force: bool,
    },
    /// Write a new pre-shared swarm key (Kubo's swarm.key format, mode 0600) for `run --swarm-key`.
    SwarmKey {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file (every node must then get the new one).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA: DIR/ca.key (ed25519, mode 0600; keep it offline) and DIR/ca.pub (give it to every node).
    Init {
        /// Directory for the CA's files (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing CA key (every certificate it signed stops being accepted).
        #[arg(long)]
        force: bool,
    },
    /// Issue a membership certificate for one node's peer id (`swarmnode id` prints it).
    Sign {
        /// The CA's directory (holding ca.key).
        #[arg(long)]
        ca: PathBuf,
        /// The member's peer id.
        #[arg(long)]
        peer: PeerId,
        /// A name for the member, shown in events and `ca show` (1 to 64 bytes).
        #[arg(long)]
        name: Option<String>,
        /// How long the certificate is valid from now, e.g. 30d, 12h.
        #[arg(long, default_value = "30d", value_parser = config::parse_duration)]
        valid_for: Duration,
        /// Where to write the certificate.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print a certificate: peer, name, validity, signing CA.
    Show {
        /// The certificate file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the identity key is: `--key`, else `identity.key` in `--data-dir`.
#[derive(Debug, Clone, Args)]
pub struct KeyLocation {
    /// Data directory: holds the identity key and the lock that keeps two nodes off one identity
    /// [default: the platform data directory, e.g. ~/.local/share/swarmnode].
    #[arg(long, env = "SWARMNODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Identity key file [default: DATA_DIR/identity.key]; created on first start.
    #[arg(long, env = "SWARMNODE_KEY")]
    pub key: Option<PathBuf>,
}

impl KeyLocation {
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => dirs::data_local_dir()
                .map(|dir| dir.join("swarmnode"))
                .ok_or_else(|| anyhow::anyhow!("no platform data directory (is HOME set?): pass --data-dir")),
        }
    }

    pub fn key_path(&self) -> anyhow::Result<PathBuf> {
        match &self.key {
            Some(key) => Ok(key.clone()),
            None => Ok(self.data_dir()?.join("identity.key")),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub location: KeyLocation,
    /// Address to listen on (repeatable). Port 0 picks a free port.
    #[arg(long, env = "SWARMNODE_LISTEN", value_delimiter = ',',
          default_values = ["/ip4/0.0.0.0/tcp/4100", "/ip4/0.0.0.0/udp/4100/quic-v1"])]
    pub listen: Vec<Multiaddr>,
    /// Peer to join the swarm through (repeatable); `/p2p/<id>` optional, `/dns4/host/tcp/port` allowed.
    #[arg(long, env = "SWARMNODE_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,
    /// Turn off mDNS discovery on the local network (variable: 1/0, true/false, yes/no, on/off).
    #[arg(long, env = "SWARMNODE_NO_MDNS", value_parser = BoolishValueParser::new())]
    pub no_mdns: bool,
    /// Do not serve the libp2p perf protocol /perf/1.0.0 to peers (variable: 1/0, true/false, yes/no, on/off).
    #[arg(long, env = "SWARMNODE_NO_PERF", value_parser = BoolishValueParser::new())]
    pub no_perf: bool,
    /// Kademlia protocol; `/ipfs/kad/1.0.0` to interoperate with other libp2p DHTs.
    #[arg(long, env = "SWARMNODE_KAD_PROTOCOL", default_value = config::DEFAULT_KAD_PROTOCOL, value_parser = parse_protocol)]
    pub kad_protocol: StreamProtocol,
    /// How often Kademlia refreshes its routing table once it has peers.
    #[arg(long, env = "SWARMNODE_KAD_REFRESH", default_value = "5m", value_parser = config::parse_duration)]
    pub kad_refresh: Duration,
    /// Security protocols offered on TCP, most preferred first: tls,noise | noise,tls | tls | noise.
    #[arg(long, env = "SWARMNODE_SECURITY", default_value = "tls,noise", value_parser = parse_security_order)]
    pub security: SecurityOrder,
    /// Gossipsub topic to join (repeatable); `--stdin` publishes on the first.
    #[arg(long, env = "SWARMNODE_TOPIC", value_delimiter = ',', default_values = [config::DEFAULT_TOPIC])]
    pub topic: Vec<String>,
    /// Largest message (envelope) published or accepted, e.g. 65536, 512KiB, 1MiB.
    #[arg(long, env = "SWARMNODE_MAX_MESSAGE_SIZE", default_value = "1MiB", value_parser = config::parse_size)]
    pub max_message_size: usize,
    /// Interval between pings to each connected peer, e.g. 500ms, 10s.
    #[arg(long, env = "SWARMNODE_HEARTBEAT", default_value = "10s", value_parser = config::parse_duration)]
    pub heartbeat: Duration,
    /// A peer with no successful ping or traffic for this long is disconnected (then redialled).
    #[arg(long, env = "SWARMNODE_PEER_TIMEOUT", default_value = "30s", value_parser = config::parse_duration)]
    pub peer_timeout: Duration,
    /// Redials after a peer drops before it is removed (bootstrap peers are retried for ever).
    #[arg(long, env = "SWARMNODE_RECONNECT_ATTEMPTS", default_value_t = 3)]
    pub reconnect_attempts: u32,
    /// Delay before the first redial; doubled each attempt, with ±25 % jitter.
    #[arg(long, env = "SWARMNODE_RECONNECT_BACKOFF", default_value = "1s", value_parser = config::parse_duration)]
    pub reconnect_backoff: Duration,
    /// Longest delay between redials.
    #[arg(long, env = "SWARMNODE_RECONNECT_BACKOFF_MAX", default_value = "30s", value_parser = config::parse_duration)]
    pub reconnect_backoff_max: Duration,
    /// A removed or left peer is forgotten (with everything kept about it) this long after; bootstrap peers never.
    #[arg(long, env = "SWARMNODE_FORGET_AFTER", default_value = "10m", value_parser = config::parse_duration)]
    pub forget_after: Duration,
    /// Most peers not connected that the node remembers; past it, those heard from longest ago are forgotten.
    #[arg(long, env = "SWARMNODE_MAX_KNOWN_PEERS", default_value_t = 1000)]
    pub max_known_peers: usize,
    /// Longest a connection may take to be set up (connect, encryption, multiplexing); a dial to an address that
    /// does not answer fails after this.
    #[arg(long, env = "SWARMNODE_DIAL_TIMEOUT", default_value = "10s", value_parser = config::parse_duration)]
    pub dial_timeout: Duration,
    /// Longest an inbound connection may take from accept to a finished handshake (swarm key, encryption,
    /// multiplexing); a socket that stays silent is closed after this. Shorter than --dial-timeout; 50ms to 5m
    /// [default: half of --dial-timeout].
    #[arg(long, env = "SWARMNODE_HANDSHAKE_TIMEOUT", value_parser = config::parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// Most established connections at once (a peer normally has one, at most 2); beyond it new ones are refused.
    #[arg(long, env = "SWARMNODE_MAX_PEERS", default_value_t = 128)]
    pub max_peers: u32,
    /// Most inbound connections in their handshake at once; beyond it new ones are refused.
    #[arg(long, env = "SWARMNODE_MAX_PENDING_INCOMING", default_value_t = 64)]
    pub max_pending_incoming: u32,
    /// Most outbound dials in progress at once; beyond it new dials fail at once.
    #[arg(long, env = "SWARMNODE_MAX_PENDING_OUTGOING", default_value_t = 64)]
    pub max_pending_outgoing: u32,
    /// Most inbound connections in their handshake from one address (IPv4, or an IPv6 /64) at once; beyond it
    /// new ones from that address are closed at once.
    #[arg(long, env = "SWARMNODE_MAX_PENDING_PER_IP", default_value_t = 8)]
    pub max_pending_per_ip: u32,
    /// Most established inbound connections from one address (IPv4, or an IPv6 /64); loopback is not exempt, so
    /// raise it for many nodes on one host or behind one NAT.
    #[arg(long, env = "SWARMNODE_MAX_ESTABLISHED_PER_IP", default_value_t = 16)]
    pub max_established_per_ip: u32,
    /// How long a message id is remembered: a publish repeating it is answered from memory and sends nothing, and
    /// receivers deliver an id once.
    #[arg(long, env = "SWARMNODE_DEDUP_WINDOW", default_value = "2m", value_parser = config::parse_duration)]
    pub dedup_window: Duration,
    /// Publishes to one topic within this window go out as one gossip message (e.g. 5ms), or `off`. Every
    /// subscriber must be a swarmnode: batches are our extension of the envelope (docs/protocol.md).
    #[arg(long, env = "SWARMNODE_BATCH_WINDOW", default_value = "off", value_parser = parse_batch_window)]
    pub batch_window: BatchWindow,
    /// Private swarm: the pre-shared key file (`swarmnode key swarm-key`); only nodes with the same key can connect.
    /// QUIC cannot carry it, so it is turned off.
    #[arg(long, env = "SWARMNODE_SWARM_KEY")]
    pub swarm_key: Option<PathBuf>,
    /// Membership: the CA's public key (`ca.pub`); with it, peers must show a certificate from this CA within
    /// --admission-timeout or they are disconnected and banned.
    #[arg(long, env = "SWARMNODE_CA_CERT", requires = "cert")]
    pub ca_cert: Option<PathBuf>,
    /// This node's membership certificate (`swarmnode ca sign`).
    #[arg(long, env = "SWARMNODE_CERT", requires = "ca_cert")]
    pub cert: Option<PathBuf>,
    /// How long a connected peer has to show a valid certificate.
    #[arg(long, env = "SWARMNODE_ADMISSION_TIMEOUT", default_value = "5s", value_parser = config::parse_duration)]
    pub admission_timeout: Duration,
    /// How long a refused peer (failed admission, gossip score below the graylist) may not connect.
    #[arg(long, env = "SWARMNODE_BAN_DURATION", default_value = "10m", value_parser = config::parse_duration)]
    pub ban_duration: Duration,
    /// Only these peers may connect (repeatable; with --allow-file, the union).
    #[arg(long, env = "SWARMNODE_ALLOW_PEER", value_delimiter = ',')]
    pub allow_peer: Vec<PeerId>,
    /// File of peers allowed to connect: one peer id per line, `#` comments.
    #[arg(long, env = "SWARMNODE_ALLOW_FILE")]
    pub allow_file: Option<PathBuf>,
    /// A peer that may never connect (repeatable).
    #[arg(long, env = "SWARMNODE_DENY_PEER", value_delimiter = ',')]
    pub deny_peer: Vec<PeerId>,
    /// File of peers that may never connect: one peer id per line, `#` comments.
    #[arg(long, env = "SWARMNODE_DENY_FILE")]
    pub deny_file: Option<PathBuf>,
    /// Peers sharing one IP address (loopback excepted) beyond which gossipsub scores them down; 0 turns the
    /// penalty off (e.g. many honest nodes behind one NAT).
    #[arg(long, env = "SWARMNODE_GOSSIP_IP_COLOCATION_THRESHOLD", default_value_t = 10)]
    pub gossip_ip_colocation_threshold: u32,
    /// Most gossipsub topics tracked per peer (a peer subscribing to more is refused), and joined by this node.
    #[arg(long, env = "SWARMNODE_MAX_TOPICS", default_value_t = 256)]
    pub max_topics: usize,
    /// Gossip messages accepted per second from one peer; a flood beyond it is dropped. 0 is unlimited.
    #[arg(long, env = "SWARMNODE_PEER_MESSAGE_RATE", default_value_t = 2000)]
    pub peer_message_rate: u32,
    /// Most bytes of events kept for readers (stdout, /v1/events), each event counting its payload plus 1 KiB; past
    /// it the oldest are dropped and a reader that had not read them gets a `lagged` notice. At least
    /// --max-message-size plus 1 KiB, at most 1024MiB.
    #[arg(long, env = "SWARMNODE_EVENT_BUFFER_BYTES", default_value = "64MiB", value_parser = config::parse_size)]
    pub event_buffer_bytes: usize,
    /// Where to serve the HTTP/JSON control API, HOST:PORT (port 0 picks one), or `off`. Any address but loopback
    /// needs --api-token-file.
    #[arg(long = "api", env = "SWARMNODE_API_LISTEN", default_value = "127.0.0.1:5100")]
    pub api_listen: String,
    /// File holding the bearer token every API request must then carry.
    #[arg(long, env = "SWARMNODE_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub api_limits: ApiLimitArgs,
    #[command(flatten)]
    pub members: cluster::MemberArgs,
    #[command(flatten)]
    pub state: state_flags::StateArgs,
    /// Publish each line read from stdin on the first topic (end of input does not stop the node).
    #[arg(long)]
    pub stdin: bool,
}

/// What one client of the API may cost (`api::limits::ApiLimits`).
#[derive(Debug, Clone, Args)]
pub struct ApiLimitArgs {
    /// API connections served at once; one more is answered 503 with Retry-After and closed.
    #[arg(long, env = "SWARMNODE_API_MAX_CONNECTIONS", default_value_t = 128)]
    pub api_max_connections: usize,
    /// API connections served at once to one source address; one more is answered 503 with Retry-After and closed
    /// [default: 32, or --api-max-connections when that is lower].
    #[arg(long, env = "SWARMNODE_API_MAX_CONNECTIONS_PER_IP")]
    pub api_max_connections_per_ip: Option<usize>,
    /// Event streams (GET /v1/events) open at once; one more is answered 503 with Retry-After [default: 32, or
    /// --api-max-connections when that is lower].
    #[arg(long, env = "SWARMNODE_API_MAX_EVENT_STREAMS")]
    pub api_max_event_streams: Option<usize>,
    /// Longest a connection may take to send a whole request head; also how long an idle keep-alive connection
    /// stays open.
    #[arg(long, env = "SWARMNODE_API_HEADER_TIMEOUT", default_value = "10s", value_parser = config::parse_duration)]
    pub api_header_timeout: Duration,
    /// Longest a request body may pause between two chunks.
    #[arg(long, env = "SWARMNODE_API_BODY_TIMEOUT", default_value = "10s", value_parser = config::parse_duration)]
    pub api_body_timeout: Duration,
    /// Longest a request may take from its head to its answer (a dial through a DHT lookup included); 408 after it.
    #[arg(long, env = "SWARMNODE_API_REQUEST_TIMEOUT", default_value = "90s", value_parser = config::parse_duration)]
    pub api_request_timeout: Duration,
    /// Longest a client may leave an answer unread before its connection is closed (a stalled event stream, say).
    #[arg(long, env = "SWARMNODE_API_WRITE_TIMEOUT", default_value = "30s", value_parser = config::parse_duration)]
    pub api_write_timeout: Duration,
    /// Most bytes of events one event stream may have waiting; a reader further behind gets `lagged` and is cut off.
    #[arg(long, env = "SWARMNODE_API_EVENT_STREAM_BYTES", default_value = "8MiB", value_parser = config::parse_size)]
    pub api_event_stream_bytes: usize,
}

impl ApiLimitArgs {
    pub fn to_limits(&self) -> crate::api::limits::ApiLimits {
        let defaults = crate::api::limits::ApiLimits::default();
        crate::api::limits::ApiLimits {
            max_connections: self.api_max_connections,
            max_connections_per_ip: self
                .api_max_connections_per_ip
                .unwrap_or(defaults.max_connections_per_ip.min(self.api_max_connections)),
            max_event_streams: self
                .api_max_event_streams
                .unwrap_or(defaults.max_event_streams.min(self.api_max_connections)),
            header_timeout: self.api_header_timeout,
            body_timeout: self.api_body_timeout,
            request_timeout: self.api_request_timeout,
            write_timeout: self.api_write_timeout,
            event_stream_bytes: self.api_event_stream_bytes,
        }
    }
}

/// The `--security` list as one value (clap would take a bare `Vec` for a repeatable flag).
#[derive(Debug, Clone)]
pub struct SecurityOrder(pub Vec<SecurityProtocol>);

fn parse_security_order(text: &str) -> Result<SecurityOrder, String> {
    config::parse_security(text).map(SecurityOrder)
}

/// `--batch-window` as one value (clap would read a bare `Option` as "the flag may be absent").
#[derive(Debug, Clone, Copy)]
pub struct BatchWindow(pub Option<Duration>);

fn parse_batch_window(text: &str) -> Result<BatchWindow, String> {
    config::parse_optional_duration(text).map(BatchWindow)
}

fn parse_protocol(text: &str) -> Result<StreamProtocol, String> {
    StreamProtocol::try_from_owned(text.to_owned()).map_err(|e| format!("{e} (a protocol starts with '/')"))
}
