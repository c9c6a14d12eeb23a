//! Silent sockets on the P2P port (issue "Hostile input", finding 3): an attacker holding TCP connections that never
//! start a handshake, and reopening every one the node closes, must not keep honest peers out.
//!
//! From one address the attacker gets `--max-pending-per-ip` handshake slots and no more: its other sockets are
//! closed at once, the ones it holds are closed after `--handshake-timeout`, and an honest peer from another address
//! connects within 2 s throughout. Spread over enough addresses (`--max-pending-incoming / --max-pending-per-ip`, 8
//! with the defaults) it can fill the node-wide limit; then what the node guarantees is that every silent socket is
//! closed after the handshake timeout, so an attacker that does not reopen faster than the honest peer redials loses
//! its hold within that time. Attackers bind their sockets to 127.0.0.2 and up (Linux routes 127.0.0.0/8 to lo);
//! the node and the honest peers are on 127.0.0.1. Last, the limit on established connections from one address.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, multiaddr::Protocol};
use tokio::{io::AsyncReadExt, net::TcpSocket, task::JoinHandle};

use swarmnode::node::{Direction, EventKind};

use crate::support::{TestNode, binary::RunningBinary};

/// The node's `--handshake-timeout` in these tests (its default is 5 s; shorter keeps the tests short).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an honest peer may take to connect while the attack runs.
const HONEST_CONNECT: Duration = Duration::from_secs(2);
/// A socket the node closes within this was refused at accept; one it holds longer is in its handshake. Half the
/// handshake timeout, so a stall of the busy machine does not turn a refusal into a hold.
const REFUSED_WITHIN: Duration = Duration::from_millis(1500);
/// How late after its handshake timeout a silent socket may be closed, on a busy machine.
const TIMEOUT_SLACK: Duration = Duration::from_secs(2);
/// The attacker reopens a closed socket after this: with 62 sockets refused at once, hundreds of connects a second,
/// ten times the rate of the attack in the report (1 544 connects in 40 s).
const REOPEN_AFTER: Duration = Duration::from_millis(100);
/// Connects the attacker makes at most, in all.
const MAX_CONNECTS: usize = 10_000;
/// The node's default `--max-pending-per-ip` and `--max-pending-incoming`.
const PENDING_PER_IP: usize = 8;
const PENDING_INCOMING: usize = 64;

/// One attacker socket: where from, when it was opened, and when the node closed it.
#[derive(Clone, Copy)]
struct Life {
    source: Ipv4Addr,
    opened: Instant,
    closed: Option<Instant>,
}

impl Life {
    /// Open for more than `REFUSED_WITHIN` at `now`: the node holds it in a handshake.
    fn held_at(&self, now: Instant) -> bool {
        self.closed.is_none() && now.duration_since(self.opened) > REFUSED_WITHIN
    }
}

/// Silent sockets from some source addresses, each reopened (or not) when the node closes it, and a sampler that
/// records the most sockets each source had held at once.
struct Attack {
    lives: Arc<Mutex<Vec<Life>>>,
    most_held: Arc<Mutex<HashMap<Ipv4Addr, usize>>>,
    most_held_in_all: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Attack {
    fn start(target: SocketAddr, sources: &[Ipv4Addr], sockets: usize, reopen: bool) -> Attack {
        let lives = Arc::new(Mutex::new(Vec::new()));
        let connects = Arc::new(AtomicUsize::new(0));
        let mut tasks: Vec<JoinHandle<()>> = (0..sockets)
            .map(|n| {
                let source = sources[n % sources.len()];
                tokio::spawn(hold(target, source, lives.clone(), connects.clone(), reopen))
            })
            .collect();
        let most_held = Arc::new(Mutex::new(HashMap::new()));
        let most_held_in_all = Arc::new(AtomicUsize::new(0));
        tasks.push(tokio::spawn(sample(
            lives.clone(),
            most_held.clone(),
            most_held_in_all.clone(),
        )));
        Attack {
            lives,
            most_held,
            most_held_in_all,
            tasks,
        }
    }

    /// Stops the attack (its open sockets are dropped) and returns every socket's life.
    fn stop(self) -> (Vec<Life>, HashMap<Ipv4Addr, usize>, usize) {
        for task in &self.tasks {
            task.abort();
        }
        let lives = self.lives.lock().unwrap().clone();
        let most_held = self.most_held.lock().unwrap().clone();
        (lives, most_held, self.most_held_in_all.load(Ordering::SeqCst))
    }
}

/// One attacker socket: connect from `source`, send nothing, wait for the node to close it; again if `reopen`.
async fn hold(
    target: SocketAddr,
    source: Ipv4Addr,
    lives: Arc<Mutex<Vec<Life>>>,
    connects: Arc<AtomicUsize>,
    reopen: bool,
) {
    loop {
        if connects.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTS {
            return;
        }
        let socket = TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("127.0.0.0/8 is local");
        if let Ok(mut stream) = socket.connect(target).await {
            let index = {
                let mut lives = lives.lock().unwrap();
                lives.push(Life {
                    source,
                    opened: Instant::now(),
                    closed: None,
                });
                lives.len() - 1
            };
            let mut buffer = [0u8; 256];
            // Whatever the node sends (its multistream-select header) is read and ignored; the end of the stream
            // or an error is the node closing the socket.
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
            }
            lives.lock().unwrap()[index].closed = Some(Instant::now());
        }
        if !reopen {
            return;
        }
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}

async fn sample(
    lives: Arc<Mutex<Vec<Life>>>,
    most_held: Arc<Mutex<HashMap<Ipv4Addr, usize>>>,
    most_held_in_all: Arc<AtomicUsize>,
) {
    loop {
        let now = Instant::now();
        let mut held: HashMap<Ipv4Addr, usize> = HashMap::new();
        for life in lives.lock().unwrap().iter().filter(|life| life.held_at(now)) {
            *held.entry(life.source).or_default() += 1;
        }
        most_held_in_all.fetch_max(held.values().sum(), Ordering::SeqCst);
        {
            let mut most = most_held.lock().unwrap();
            for (source, count) in held {
                let entry = most.entry(source).or_default();
                *entry = (*entry).max(count);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every socket the node closed was refused at once or closed after its handshake timeout, never in between and
/// never much later; sockets still open were opened less than the timeout (and the slack) ago. Returns how many
/// were refused and how many timed out.
fn check_lives(lives: &[Life], stopped: Instant) -> (usize, usize) {
    let (mut refused, mut timed_out) = (0, 0);
    for life in lives {
        match life.closed {
            Some(closed) => {
                let lifetime = closed.duration_since(life.opened);
                if lifetime <= REFUSED_WITHIN {
                    refused += 1;
                } else {
                    assert!(
                        lifetime >= HANDSHAKE_TIMEOUT - Duration::from_millis(250)
                            && lifetime <= HANDSHAKE_TIMEOUT + TIMEOUT_SLACK,
                        "a silent socket from {} was closed after {lifetime:?}, not at the {HANDSHAKE_TIMEOUT:?} \
                         handshake timeout",
                        life.source
                    );
                    timed_out += 1;
                }
            }
            None => assert!(
                stopped.duration_since(life.opened) <= HANDSHAKE_TIMEOUT + TIMEOUT_SLACK,
                "a silent socket from {} is still open after {:?}",
                life.source,
                stopped.duration_since(life.opened)
            ),
        }
    }
    (refused, timed_out)
}

/// The node under attack: the real binary on 127.0.0.1 with the default limits, the test's handshake timeout and
/// `extra` flags; returns it with its TCP address.
fn target(extra: &[&str]) -> (RunningBinary, Multiaddr, SocketAddr) {
    let timeout = format!("{}s", HANDSHAKE_TIMEOUT.as_secs());
    let mut args = vec!["--handshake-timeout", timeout.as_str()];
    args.extend_from_slice(extra);
    let node = RunningBinary::loopback(&args);
    let address: Multiaddr = node.address().parse().unwrap();
    let port = address
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP address");
    (node, address, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A fresh honest node on 127.0.0.1 dials `address` once: how long it took to be connected, or why it was not
/// within `within`.
async fn honest_dial(address: &Multiaddr, within: Duration) -> Result<Duration, String> {
    let mut honest = TestNode::start(|_| {}).await;
    let started = Instant::now();
    let outcome = tokio::time::timeout(within, honest.handle.dial(address.clone())).await;
    let took = started.elapsed();
    honest.stop().await;
    match outcome {
        Ok(Ok(_)) => Ok(took),
        Ok(Err(e)) => Err(format!("refused after {took:?}: {e}")),
        Err(_) => Err(format!("not connected within {within:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_silent_sockets_from_one_address_do_not_keep_honest_peers_out() {
    let (node, address, socket_address) = target(&[]);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let started = Instant::now();
    let attack = Attack::start(socket_address, &[attacker], 70, true);

    // Three honest peers: once the attacker holds its slots, then across its sockets' first and second timeouts
    // (and reopenings), each connecting within 2 s.
    let mut took = Vec::new();
    for at in [
        Duration::from_millis(1500),
        Duration::from_millis(4500),
        Duration::from_millis(7500),
    ] {
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        match honest_dial(&address, HONEST_CONNECT).await {
            Ok(duration) => took.push(duration),
            Err(why) => panic!(
                "an honest peer was kept out {:?} into the attack: {why}",
                started.elapsed()
            ),
        }
    }
    let stopped = Instant::now();
    let (lives, most_held, _) = attack.stop();
    eprintln!(
        "honest connects during the attack: {took:?}; attacker connects: {}",
        lives.len()
    );

    let held = most_held.get(&attacker).copied().unwrap_or(0);
    assert!(
        (1..=PENDING_PER_IP).contains(&held),
        "the attacker held {held} sockets: some, and no more than --max-pending-per-ip"
    );
    let (refused, timed_out) = check_lives(&lives, stopped);
    assert!(
        refused > 100,
        "sockets beyond the limit are refused at once ({refused})"
    );
    assert!(
        timed_out >= PENDING_PER_IP,
        "held sockets are closed at the handshake timeout ({timed_out})"
    );
    let refusal = node.wait_for("a per-address refusal", |l| l["event"] == "connection_refused");
    let reason = refusal["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("--max-pending-per-ip") && reason.contains("127.0.0.2"),
        "{refusal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attackers_on_many_addresses_lose_the_node_wide_slots_at_the_handshake_timeout() {
    let (_node, address, socket_address) = target(&[]);
    let attackers: Vec<Ipv4Addr> = (2..=10).map(|last| Ipv4Addr::new(127, 0, 0, last)).collect();
    let opened = Instant::now();
    // 9 addresses × 8 sockets: more than --max-pending-incoming (64) together, none over its own limit.
    let attack = Attack::start(socket_address, &attackers, attackers.len() * PENDING_PER_IP, false);

    // Here the node guarantees no honest connect while the attacker holds the node-wide slots, only that it loses
    // them at the handshake timeout: once every socket is in, the honest peer redials until it is in.
    tokio::time::sleep(REFUSED_WITHIN + Duration::from_millis(200)).await;
    let deadline = opened + HANDSHAKE_TIMEOUT + HONEST_CONNECT;
    let mut attempts = Vec::new();
    let connected = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no honest connect by the handshake timeout + 2 s: {attempts:?}"
        );
        match honest_dial(&address, left).await {
            Ok(took) => break took,
            Err(why) => attempts.push(why),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "honest peer connected {:?} after the flood opened (its last dial took {connected:?}), after {} refused \
         dials (first: {:?})",
        opened.elapsed(),
        attempts.len(),
        attempts.first()
    );
    // Until the held sockets have timed out.
    tokio::time::sleep((opened + HANDSHAKE_TIMEOUT + TIMEOUT_SLACK).saturating_duration_since(Instant::now())).await;
    let stopped = Instant::now();
    let (lives, most_held, most_held_in_all) = attack.stop();

    assert!(
        (PENDING_INCOMING - PENDING_PER_IP..=PENDING_INCOMING).contains(&most_held_in_all),
        "the attackers (all but a few of them, on a busy machine) filled the node-wide limit: {most_held_in_all}"
    );
    for attacker in &attackers {
        let held = most_held.get(attacker).copied().unwrap_or(0);
        assert!(held <= PENDING_PER_IP, "{attacker} held {held}");
    }
    let (refused, timed_out) = check_lives(&lives, stopped);
    assert_eq!(
        refused + timed_out,
        lives.len(),
        "every socket was closed, at once or at the timeout"
    );
    assert!(
        timed_out <= PENDING_INCOMING && refused >= attackers.len() * PENDING_PER_IP - PENDING_INCOMING,
        "the sockets over the node-wide limit are refused ({refused}), every held one is closed at the handshake \
         timeout ({timed_out})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_inbound_connections_are_limited_per_address() {
    let mut node = TestNode::start(|c| c.max_established_per_ip = 1).await;
    let first = TestNode::start(|_| {}).await;
    first
        .handle
        .dial(node.tcp_address.clone())
        .await
        .expect("the first peer connects");
    let second = TestNode::start(|_| {}).await;
    let second_id = second.peer_id;
    // The refusal comes once the handshake has authenticated the second peer, so its own dial may briefly succeed;
    // what counts is the node's verdict.
    let _ = second.handle.dial(node.tcp_address.clone()).await;
    let reason = node
        .wait_for("the per-address refusal", |e| match e {
            EventKind::ConnectionRefused {
                direction: Direction::Inbound,
                peer: Some(peer),
                reason,
                ..
            } if *peer == second_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("--max-established-per-ip"), "{reason}");
    assert_eq!(
        node.status().await.connected_peers,
        vec![first.peer_id],
        "the first peer is kept"
    );
}
