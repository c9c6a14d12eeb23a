//! The perf protocol, `/perf/1.0.0`, between nodes on loopback: a run moves exactly the bytes asked for each way and
//! a second run at the same time is refused; a node with `--no-perf` is reported as not supporting it; and against
//! a hostile client (a bare libp2p peer opening raw perf streams) the server resets a request over its cap at once,
//! cuts a stalled stream after its idle bound, resets streams past its limit and goes on serving honest runs. With a
//! CA, members measure each other and a peer that never shows a certificate is not served. The API refuses bad
//! bodies with 400, and `swarmnode perf` prints the report of the real binary.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    Multiaddr, PeerId, Stream, SwarmBuilder,
    identity::Keypair,
    noise,
    request_response::{self, ProtocolSupport, cbor},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use swarmnode::{
    api::{self, ApiConfig, limits::ApiLimits},
    config::NodeConfig,
    node::{NodeError, PerfReport, PerfTarget},
    security::{certificate, identity},
    time::now_unix_ms,
    wire::{
        admission::{ADMISSION_PROTOCOL, AdmissionRequest, AdmissionResponse},
        perf::{PERF_PROTOCOL, encode_header},
    },
};
use tokio::sync::oneshot;

use crate::support::{DEADLINE, TestNode, binary, eventually};

const MIB: u64 = 1 << 20;

fn target(node: &TestNode) -> PerfTarget {
    node.tcp_address
        .to_string()
        .parse()
        .expect("a listen address with /p2p/")
}

fn metric(node: &TestNode, line: &str) -> bool {
    node.handle.metrics().encode().lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_moves_the_bytes_asked_for_each_way_and_a_second_one_meanwhile_is_refused() {
    let server = TestNode::start(|_| {}).await;
    let client = TestNode::start(|_| {}).await;
    let report = client
        .handle
        .perf(target(&server), 8 * MIB, 8 * MIB)
        .await
        .expect("perf run");
    assert_eq!(report.peer, server.peer_id);
    assert_eq!((report.upload_bytes, report.download_bytes), (8 * MIB, 8 * MIB));
    assert!(
        report.upload_seconds > 0.0 && report.download_seconds > 0.0,
        "{report:?}"
    );
    assert!(report.upload_bits_per_second > 0.0 && report.download_bits_per_second > 0.0);
    let first_byte = report.time_to_first_byte_ms.expect("a download has a first byte");
    assert!(
        first_byte >= 0.0 && first_byte <= report.download_seconds * 1000.0,
        "{report:?}"
    );
    assert!(
        server.status().await.protocols.iter().any(|p| p == "/perf/1.0.0"),
        "identify and status list the protocol"
    );
    eventually("the server counts the stream served", || async {
        metric(&server, r#"swarmnode_perf_streams_total{outcome="served"} 1"#)
    })
    .await;

    // Connected now, so the peer id alone is enough, either way round; nothing asked for is nothing sent.
    let back = server
        .handle
        .perf(PerfTarget::Peer(client.peer_id), 0, 0)
        .await
        .expect("perf run by peer id");
    assert_eq!(
        (back.upload_bytes, back.download_bytes, back.time_to_first_byte_ms),
        (0, 0, None)
    );

    let (first, second) = futures::join!(
        client.handle.perf(PerfTarget::Peer(server.peer_id), MIB, MIB),
        client.handle.perf(PerfTarget::Peer(server.peer_id), MIB, MIB),
    );
    assert_eq!(first.expect("the first run").download_bytes, MIB);
    assert_eq!(second.unwrap_err(), NodeError::PerfBusy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_perf_is_reported_as_not_supporting_it() {
    let server = TestNode::start(|c| c.perf.serve = false).await;
    let client = TestNode::start(|_| {}).await;
    let error = client.handle.perf(target(&server), MIB, MIB).await.unwrap_err();
    assert_eq!(error, NodeError::PerfUnsupported { peer: server.peer_id });
    let text = error.to_string();
    assert!(
        text.contains("does not support /perf/1.0.0") && text.contains("--no-perf"),
        "{text}"
    );
    assert!(!server.status().await.protocols.iter().any(|p| p == "/perf/1.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_cannot_be_are_refused_at_once() {
    let node = TestNode::start(|_| {}).await;
    let started = Instant::now();
    let unknown = PeerId::random();
    let error = node
        .handle
        .perf(PerfTarget::Peer(unknown), 64 << 30, 64 << 30)
        .await
        .unwrap_err();
    assert_eq!(error, NodeError::PeerNotFound { peer: unknown });
    let myself = node
        .handle
        .perf(PerfTarget::Peer(node.peer_id), 1, 1)
        .await
        .unwrap_err();
    assert!(matches!(myself, NodeError::InvalidPerfRequest { .. }), "{myself}");
    let too_much = node
        .handle
        .perf(PerfTarget::Peer(unknown), 1, (64 << 30) + 1)
        .await
        .unwrap_err();
    assert!(too_much.to_string().contains("64 GiB"), "{too_much}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered fast: {:?}",
        started.elapsed()
    );
}

/// A bare libp2p peer that opens raw perf streams (and, optionally, speaks the admission protocol without ever
/// showing a certificate).
#[derive(NetworkBehaviour)]
struct RawClientBehaviour {
    stream: libp2p_stream::Behaviour,
    admission: libp2p::swarm::behaviour::toggle::Toggle<cbor::Behaviour<AdmissionRequest, AdmissionResponse>>,
}

/// A raw client connected to `address`, with its control; its swarm runs in a task of its own.
async fn raw_client(address: Multiaddr, speaks_admission: bool) -> libp2p_stream::Control {
    let mut swarm = SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("tcp")
        .with_behaviour(|_| RawClientBehaviour {
            stream: libp2p_stream::Behaviour::new(),
            admission: speaks_admission
                .then(|| {
                    cbor::Behaviour::new(
                        [(ADMISSION_PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default(),
                    )
                })
                .into(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let control = swarm.behaviour().stream.new_control();
    swarm.dial(address).expect("dial starts");
    let (connected_tx, connected) = oneshot::channel();
    tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        while let Some(event) = swarm.next().await {
            if let SwarmEvent::ConnectionEstablished { .. } = event
                && let Some(tx) = connected_tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(DEADLINE, connected)
        .await
        .expect("the raw client connects in time")
        .expect("the raw client's task runs");
    control
}

/// Opens a perf stream asking for `download` bytes (the upload left open). A stream the server resets as it arrives
/// may refuse the header already; what is read from it afterwards tells either way.
async fn open(control: &mut libp2p_stream::Control, server: PeerId, download: u64) -> Stream {
    let mut stream = control
        .open_stream(server, PERF_PROTOCOL)
        .await
        .expect("the stream opens");
    if stream.write_all(&encode_header(download)).await.is_ok() {
        let _ = stream.flush().await;
    }
    stream
}

/// Reads the stream to its end (or its reset) and returns the bytes read and how long it took.
async fn read_to_end(stream: &mut Stream) -> (u64, Duration) {
    let started = Instant::now();
    let mut received = 0;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buffer))
            .await
            .expect("the server ends the stream within the deadline");
        match read {
            Ok(0) | Err(_) => return (received, started.elapsed()),
            Ok(n) => received += n as u64,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_is_cut_off_within_the_bounds_and_others_are_still_served() {
    const IDLE: Duration = Duration::from_secs(4);
    let server = TestNode::start(|c| {
        c.perf.max_stream_bytes = 4 * MIB;
        c.perf.idle_timeout = IDLE;
        c.perf.stream_timeout = Duration::from_secs(8);
    })
    .await;
    let mut control = raw_client(server.tcp_address.clone(), false).await;
    let peer = server.peer_id;

    // More than the cap: reset at once, nothing sent.
    let mut greedy = open(&mut control, peer, 4 * MIB + 1).await;
    let _ = greedy.close().await;
    let (received, took) = read_to_end(&mut greedy).await;
    assert_eq!(received, 0);
    assert!(took < IDLE, "reset at once, not after the idle bound: {took:?}");

    // The cap itself is served in full.
    let mut honest = open(&mut control, peer, 4 * MIB).await;
    honest.close().await.expect("upload closed");
    assert_eq!(read_to_end(&mut honest).await.0, 4 * MIB);

    // Four stalled streams take every slot; three more are reset as they arrive.
    let mut stalled = Vec::new();
    for held in 1..=4 {
        stalled.push(open(&mut control, peer, 1).await);
        eventually(&format!("{held} perf streams served at once"), || async {
            metric(&server, &format!("swarmnode_perf_streams_active {held}"))
        })
        .await;
    }
    for _ in 0..3 {
        let mut extra = open(&mut control, peer, 1).await;
        let (received, took) = read_to_end(&mut extra).await;
        assert_eq!(received, 0, "an extra stream is not served");
        assert!(took < IDLE, "an extra stream is reset at once: {took:?}");
    }
    assert!(metric(&server, r#"swarmnode_perf_streams_total{outcome="busy"} 3"#));
    assert!(
        metric(&server, "swarmnode_perf_streams_active 4"),
        "the stalled ones still hold"
    );

    // The stalled ones are cut after the idle bound, having been sent nothing.
    for stream in &mut stalled {
        assert_eq!(read_to_end(stream).await.0, 0);
    }
    eventually("every slot free again", || async {
        metric(&server, "swarmnode_perf_streams_active 0")
    })
    .await;
    assert!(metric(&server, r#"swarmnode_perf_streams_total{outcome="idle"} 4"#));
    assert!(metric(
        &server,
        r#"swarmnode_perf_streams_total{outcome="too_large"} 1"#
    ));

    let other = TestNode::start(|_| {}).await;
    let report = other
        .handle
        .perf(target(&server), MIB, MIB)
        .await
        .expect("still served");
    assert_eq!(report.download_bytes, MIB);
}

/// A CA's key and a certificate for a new identity, as `(key path, certificate path, CA public key path)`.
fn enrol(dir: &tempfile::TempDir, ca: &Keypair, name: &str) -> (PathBuf, PathBuf) {
    let now = now_unix_ms() / 1000;
    let key_path = dir.path().join(format!("{name}.key"));
    let keypair = identity::generate(&key_path, false).unwrap();
    let certificate =
        certificate::Certificate::issue(ca, keypair.public().to_peer_id(), Some(name), now - 60, now + 3600).unwrap();
    let cert_path = dir.path().join(format!("{name}.cert"));
    std::fs::write(&cert_path, certificate.encode()).unwrap();
    (key_path, cert_path)
}

async fn member(dir: &tempfile::TempDir, ca: &Keypair, name: &str) -> TestNode {
    let (key_path, cert_path) = enrol(dir, ca, name);
    let ca_cert = dir.path().join("ca.pub");
    TestNode::start(move |c: &mut NodeConfig| {
        c.key_path = key_path;
        c.ca_cert = Some(ca_cert);
        c.cert = Some(cert_path);
        c.admission_timeout = Duration::from_secs(2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_ca_members_are_served_and_a_peer_without_a_certificate_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certificate::write_new_ca(dir.path(), false).unwrap();
    let a = member(&dir, &ca, "a").await;
    let b = member(&dir, &ca, "b").await;
    // Right after connecting: a may still be waiting for b's certificate, and serves once it has it.
    let report = b
        .handle
        .perf(target(&a), MIB, MIB)
        .await
        .expect("members measure each other");
    assert_eq!(report.download_bytes, MIB);

    // Speaks the admission protocol, so it is given the admission timeout, but never shows a certificate.
    let mut control = raw_client(a.tcp_address.clone(), true).await;
    let mut stream = open(&mut control, a.peer_id, 1).await;
    stream.close().await.expect("upload closed");
    assert_eq!(read_to_end(&mut stream).await.0, 0, "an outsider is sent nothing");
    eventually("the refusal counted", || async {
        metric(&a, r#"swarmnode_perf_streams_total{outcome="not_member"} 1"#)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_bad_perf_bodies_and_the_cli_prints_a_run() {
    let node = TestNode::start(|_| {}).await;
    let config = ApiConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        token: None,
        limits: ApiLimits::default(),
    };
    let running = api::start(&config, node.handle.clone(), node.config.max_message_size)
        .await
        .unwrap();
    let url = format!("http://{}/v1/perf", running.address);
    let http = reqwest::Client::new();
    let peer = PeerId::random().to_string();
    let bad: [(Value, &str); 8] = [
        (json!({}), "invalid_json"),
        (json!({"peer": "nonsense"}), "invalid_perf_request"),
        (json!({"peer": "/ip4/127.0.0.1/tcp/1"}), "invalid_perf_request"),
        (json!({"peer": peer, "upload": -1}), "invalid_json"),
        (json!({"peer": peer, "upload": 1.5}), "invalid_json"),
        (json!({"peer": peer, "download": "lots"}), "invalid_perf_request"),
        (json!({"peer": peer, "download": "65GiB"}), "invalid_perf_request"),
        (json!({"peer": peer, "upload": 1, "extra": true}), "invalid_json"),
    ];
    for (body, code) in bad {
        let response = http.post(&url).json(&body).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let response = http
        .post(&url)
        .json(&json!({"peer": peer, "upload": "64GiB", "download": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "an unknown peer, whatever the sizes"
    );

    // The real binary: one node serves, the other's CLI measures against it through its API.
    let (served, measuring) = (
        binary::RunningBinary::loopback(&[]),
        binary::RunningBinary::loopback(&[]),
    );
    let address = served.address();
    let api_url = measuring.api.clone().expect("the API is on");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "perf",
            address.as_str(),
            "--upload",
            "1MiB",
            "--download",
            "2MiB",
            "--api",
            &api_url,
        ];
        args.extend_from_slice(extra);
        binary::swarmnode(&args)
    };
    let json_run = tokio::task::block_in_place(|| run(&["--json"]));
    assert!(
        json_run.status.success(),
        "{}",
        String::from_utf8_lossy(&json_run.stderr)
    );
    let report: PerfReport = serde_json::from_slice(&json_run.stdout).expect("the report as JSON");
    assert_eq!((report.upload_bytes, report.download_bytes), (MIB, 2 * MIB));
    assert_eq!(report.peer.to_string(), served.peer_id());
    let text_run = tokio::task::block_in_place(|| run(&[]));
    let text = String::from_utf8_lossy(&text_run.stdout);
    assert!(
        text_run.status.success(),
        "{}",
        String::from_utf8_lossy(&text_run.stderr)
    );
    assert!(
        text.contains("upload           1.0 MiB in") && text.contains("download         2.0 MiB in"),
        "{text}"
    );
    assert!(text.contains("Gbit/s") && text.contains("first byte after"), "{text}");
}
