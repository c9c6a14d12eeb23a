//! The `swarmnode` binary: parse the command line, set up logging on stderr, and run one subcommand.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use clap::Parser;
use swarmnode::{
    cli::{Cli, Command, KeyCommand, LogFormat, RunArgs},
    envelope::TEXT_CONTENT_TYPE,
    identity,
    node::{self, Event, NodeHandle, PublishRequest},
    time::now_unix_ms,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    sync::broadcast,
};
use tracing_subscriber::EnvFilter;

/// How long a graceful shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Id(location) => location
            .key_path()
            .and_then(|path| Ok(identity::load(&path)?))
            .map(|key| println!("{}", key.public().to_peer_id())),
        Command::Key {
            command: KeyCommand::Generate { out, force },
        } => identity::generate(&out, force)
            .map(|key| println!("{}", key.public().to_peer_id()))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    // Kademlia warns "no known peers" whenever the first node of a swarm refreshes alone; that is normal.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("swarmnode=info,warn,libp2p_kad::behaviour=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let mut node = node::spawn(config.clone()).await?;
        // The printer takes the receiver that has every event since start (the listen addresses first).
        let events = std::mem::replace(&mut node.events, node.handle.subscribe_events());
        tokio::spawn(print_events(events));
        if args.stdin {
            tokio::spawn(publish_stdin_lines(node.handle.clone(), config.topics[0].clone()));
        }
        tokio::select! {
            () = shutdown_signal() => tracing::info!("shutting down"),
            () = node.stopped() => anyhow::bail!("the node stopped unexpectedly"),
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, node.shutdown()).await.is_err() {
            tracing::warn!("shutdown took longer than {SHUTDOWN_GRACE:?}; exiting anyway");
        }
        Ok(())
    })?;
    // Blocking stdin reads cannot be cancelled; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Writes each event as one JSON line on stdout. A reader that falls behind is told how many events it missed.
async fn print_events(mut events: broadcast::Receiver<Event>) {
    let mut stdout = tokio::io::stdout();
    loop {
        let line = match events.recv().await {
            Ok(event) => serde_json::to_string(&event),
            Err(broadcast::error::RecvError::Lagged(skipped)) => Ok(serde_json::json!({
                "event": "lagged", "ts": now_unix_ms(), "skipped": skipped
            })
            .to_string()),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                tracing::error!("cannot render event as JSON: {e}");
                continue;
            }
        };
        let written = async {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await
        };
        if let Err(e) = written.await {
            tracing::warn!("stdout closed ({e}); no more events will be printed");
            return;
        }
    }
}

/// The chat demo: every non-empty stdin line is published as text on `topic`.
async fn publish_stdin_lines(handle: NodeHandle, topic: String) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => {
                let request = PublishRequest {
                    topic: topic.clone(),
                    payload: line.into(),
                    content_type: Some(TEXT_CONTENT_TYPE.to_owned()),
                    id: None,
                };
                match handle.publish(request).await {
                    Ok(published) => tracing::info!(id = %published.id, "published"),
                    Err(e) => tracing::warn!("not published: {e}"),
                }
            }
            Ok(None) => {
                tracing::info!("end of stdin; the node keeps running");
                return;
            }
            Err(e) => {
                tracing::warn!("cannot read stdin: {e}");
                return;
            }
        }
    }
}
