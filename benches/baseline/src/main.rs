//! The bare rust-libp2p node the benchmarks measure swarmnode against: identify, ping, Kademlia (server mode, as
//! swarmnode runs it, so both form the same topology on loopback) and gossipsub (its transmit limit raised to
//! swarmnode's 1 MiB message), all at their defaults otherwise, over TCP with
//! Noise and Yamux, and nothing else. It prints the JSON event lines swarmnode prints for what a benchmark watches
//! (`listening`, `connected`, `subscribed`, `message`, each with `ts` in unix ms) and publishes each stdin line on
//! the `swarmnode` topic, so a harness drives both the same way.
//!
//! With `--peers N --dial ADDR` it is instead a load of N such nodes in one process, each dialling ADDR in turn,
//! one every `--every` milliseconds (default 20), which the memory benchmark connects to the node it measures.
//!
//! Usage: swarmnode-baseline [--listen MULTIADDR] [--bootstrap MULTIADDR/p2p/PEER]... [--topic NAME]
//!        swarmnode-baseline --peers N --dial MULTIADDR/p2p/PEER [--every MS] [--topic NAME]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, gossipsub, identify, identity, kad,
    multiaddr::Protocol,
    noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(NetworkBehaviour)]
struct Bare {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
}

struct Options {
    listen: Multiaddr,
    bootstrap: Vec<Multiaddr>,
    topic: String,
    peers: usize,
    dial: Option<Multiaddr>,
    every: Duration,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        listen: "/ip4/127.0.0.1/tcp/0".parse()?,
        bootstrap: Vec::new(),
        topic: "swarmnode".into(),
        peers: 0,
        dial: None,
        every: Duration::from_millis(20),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => options.listen = value.parse().context("--listen")?,
            "--bootstrap" => options.bootstrap.push(value.parse().context("--bootstrap")?),
            "--topic" => options.topic = value,
            "--peers" => options.peers = value.parse().context("--peers")?,
            "--dial" => options.dial = Some(value.parse().context("--dial")?),
            "--every" => options.every = Duration::from_millis(value.parse().context("--every")?),
            _ => bail!("unknown flag {flag}; see the usage at the top of benches/baseline/src/main.rs"),
        }
    }
    Ok(options)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn print(event: &str, mut fields: Value) {
    fields["event"] = event.into();
    fields["ts"] = now_ms().into();
    println!("{fields}");
}

fn bare_swarm() -> anyhow::Result<libp2p::Swarm<Bare>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity::Keypair::generate_ed25519())
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let local = key.public().to_peer_id();
            let mut kad = kad::Behaviour::new(local, kad::store::MemoryStore::new(local));
            kad.set_mode(Some(kad::Mode::Server));
            // Defaults but one: gossipsub's 64 KiB transmit limit would refuse the throughput benchmark's 64 KiB
            // messages; swarmnode carries 1 MiB messages plus RPC framing, and so does this.
            let config = gossipsub::ConfigBuilder::default()
                .max_transmit_size((1 << 20) + 4096)
                .build()?;
            let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)?;
            Ok(Bare {
                identify: identify::Behaviour::new(identify::Config::new("/ipfs/id/1.0.0".into(), key.public())),
                ping: ping::Behaviour::default(),
                kad,
                gossipsub,
            })
        })?
        // As rust-libp2p's examples do: otherwise connections with no open stream close at once.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let topic = gossipsub::IdentTopic::new(&options.topic);
    if let Some(target) = options.dial {
        return load(options.peers, &target, options.every, &topic).await;
    }
    let mut swarm = bare_swarm()?;
    let peer_id = *swarm.local_peer_id();
    swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
    swarm.listen_on(options.listen.clone())?;
    for address in &options.bootstrap {
        let Some(Protocol::P2p(peer)) = address.iter().last() else {
            bail!("--bootstrap {address} must end in /p2p/PEER");
        };
        swarm.behaviour_mut().kad.add_address(&peer, address.clone());
        swarm.dial(address.clone())?;
    }
    if !options.bootstrap.is_empty() {
        swarm.behaviour_mut().kad.bootstrap()?;
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line? {
                Some(line) => {
                    if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), line.into_bytes()) {
                        eprintln!("publish: {e}");
                    }
                }
                None => stdin_open = false,
            },
            event = swarm.select_next_some() => on_event(&mut swarm, event, &peer_id),
        }
    }
}

/// `peers` bare nodes, subscribed to `topic`, each dialling `target` in turn, then kept running until killed.
async fn load(peers: usize, target: &Multiaddr, every: Duration, topic: &gossipsub::IdentTopic) -> anyhow::Result<()> {
    let mut tasks = Vec::with_capacity(peers);
    for _ in 0..peers {
        let mut swarm = bare_swarm()?;
        swarm.behaviour_mut().gossipsub.subscribe(topic)?;
        swarm.dial(target.clone())?;
        tasks.push(tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        }));
        tokio::time::sleep(every).await;
    }
    futures::future::join_all(tasks).await;
    Ok(())
}

fn on_event(swarm: &mut libp2p::Swarm<Bare>, event: SwarmEvent<BareEvent>, local: &PeerId) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            print(
                "listening",
                json!({"address": address.to_string(), "peer_id": local.to_string()}),
            );
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            endpoint,
            num_established,
            ..
        } if num_established.get() == 1 => {
            let direction = if endpoint.is_dialer() { "outbound" } else { "inbound" };
            let address = endpoint.get_remote_address().to_string();
            print(
                "connected",
                json!({"peer": peer_id.to_string(), "address": address, "direction": direction}),
            );
        }
        SwarmEvent::Behaviour(BareEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
            for address in info.listen_addrs {
                swarm.behaviour_mut().kad.add_address(&peer_id, address);
            }
        }
        SwarmEvent::Behaviour(BareEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })) => {
            print(
                "subscribed",
                json!({"peer": peer_id.to_string(), "topic": topic.as_str()}),
            );
        }
        SwarmEvent::Behaviour(BareEvent::Gossipsub(gossipsub::Event::Message {
            message_id, message, ..
        })) => {
            print(
                "message",
                json!({
                    "topic": message.topic.as_str(),
                    "from": message.source.map(|p| p.to_string()),
                    "id": message_id.to_string(),
                    "data": String::from_utf8_lossy(&message.data),
                }),
            );
        }
        _ => {}
    }
}
