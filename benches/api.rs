//! API publish throughput: 10 `swarmnode run` processes on loopback (mDNS off) bootstrapped from node 0; a client
//! sends M `POST /v1/publish` requests to node 0's API, C at a time, and the other 9 nodes' `message` events are
//! counted. Reports requests/s (all answers in) and messages/s delivered (first request sent to the last of the
//! 9·M deliveries). Run through `scripts/bench-api.sh BATCH_WINDOW M C` (release build); BATCH_WINDOW `off` or e.g.
//! `5ms`.

#[path = "../tests/support/process.rs"]
mod process;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use process::NodeProcess;
use serde_json::{Value, json};

const NODES: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [window, messages, concurrency] = &args[..] else {
        panic!("usage: api BATCH_WINDOW MESSAGES CONCURRENCY");
    };
    let messages: usize = messages.parse().expect("MESSAGES is a number");
    let concurrency: usize = concurrency.parse().expect("CONCURRENCY is a number");

    let data = tempfile::tempdir().unwrap();
    let (lines_tx, lines) = mpsc::channel::<(usize, Value)>();
    let start_node = |index: usize, extra: &[&str]| {
        let tx = lines_tx.clone();
        let mut args = vec![
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--batch-window",
            window.as_str(),
        ];
        args.extend(extra);
        let data_dir = data.path().join(format!("node-{index}"));
        NodeProcess::start(&[], &data_dir, &args, move |line| tx.send((index, line)).is_ok())
    };
    // Many nodes share the machine: only node 0 serves an API.
    let mut nodes = vec![start_node(0, &["--api", "127.0.0.1:0"])];
    let starting = Duration::from_secs(30);
    // The API's address is node 0's first line, before any event.
    let (_, line) = process::wait_for(&lines, "node 0's API", starting, |(_, l)| l["event"] == "api_listening");
    let api = line["address"].as_str().unwrap().to_owned();
    let (_, line) = process::wait_for(&lines, "node 0 to listen", starting, |(_, l)| l["event"] == "listening");
    let bootstrap = format!("{}/p2p/{}", line["address"].as_str().unwrap(), nodes[0].peer_id);
    for index in 1..NODES {
        nodes.push(start_node(index, &["--api", "off", "--bootstrap", &bootstrap]));
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let publish = |data: String| {
        let (client, url) = (client.clone(), format!("{api}/v1/publish"));
        async move {
            let response = client
                .post(url)
                .json(&json!({"topic": "swarmnode", "data": data}))
                .send()
                .await;
            response.map(|r| r.status().is_success()).unwrap_or(false)
        }
    };

    // Warm-up: until one message reaches all 9 others, so the measured run sees a formed mesh.
    let mut warmed = [false; NODES];
    warmed[0] = true;
    let deadline = Instant::now() + Duration::from_secs(60);
    while warmed.iter().any(|w| !w) {
        assert!(Instant::now() < deadline, "swarm did not form within 60 s");
        runtime.block_on(publish("warmup".into()));
        while let Ok((index, line)) = lines.recv_timeout(Duration::from_millis(300)) {
            if line["event"] == "message" {
                warmed[index] = true;
            }
        }
    }

    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let failures: usize = runtime.block_on(async {
        let workers = (0..concurrency).map(|_| {
            let (sent, publish) = (sent.clone(), &publish);
            async move {
                let mut failures = 0;
                loop {
                    let i = sent.fetch_add(1, Ordering::Relaxed);
                    if i >= messages {
                        return failures;
                    }
                    if !publish(format!("bench-{i:08}")).await {
                        failures += 1;
                    }
                }
            }
        });
        futures::future::join_all(workers).await.into_iter().sum()
    });
    let answered = started.elapsed();

    let expected = (NODES - 1) * messages;
    // Events a node could not print fast enough are skipped on its stdout and counted in `lagged` lines: those are
    // deliveries that happened but that this benchmark cannot see.
    let (mut delivered, mut unseen) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered + unseen < expected && Instant::now() < deadline {
        let Ok((_, line)) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line["event"] == "message" && line["data"].as_str().is_some_and(|d| d.starts_with("bench-")) {
            delivered += 1;
        } else if line["event"] == "lagged" {
            unseen += line["skipped"].as_u64().unwrap_or(0) as usize;
        }
    }
    let all_delivered = started.elapsed();
    println!(
        "| {window} | {messages} | {concurrency} | {failures} | {:.0} | {delivered} / {expected} | {unseen} | {:.0} |",
        messages as f64 / answered.as_secs_f64(),
        delivered as f64 / all_delivered.as_secs_f64(),
    );
}
