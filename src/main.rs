//! The `swarmnode` binary: parse the command line, set up logging on stderr, and run one subcommand.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use swarmnode::{
    api::{self, ApiConfig},
    cli::{CaCommand, Cli, Command, KeyCommand, LogFormat, RunArgs},
    client,
    envelope::TEXT_CONTENT_TYPE,
    identity,
    membership::{self, Certificate},
    node::{self, Event, NodeHandle, PublishRequest},
    swarm_key,
    time::now_unix_ms,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    signal::unix::{Signal, SignalKind, signal},
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
        Command::Key {
            command: KeyCommand::SwarmKey { out, force },
        } => {
            let (key, text) = swarm_key::generate();
            identity::write_secret(&out, text.as_bytes(), force)
                .map(|()| println!("{}", key.fingerprint()))
                .map_err(Into::into)
        }
        Command::Ca { command } => ca(command),
        Command::Client(command) => tokio::runtime::Runtime::new()
            .map_err(Into::into)
            .and_then(|runtime| runtime.block_on(client::run(command))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `ca` subcommands: create a CA, issue a certificate, show one.
fn ca(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { out, force } => {
            let ca = membership::write_new_ca(&out, force)?;
            println!("{}", membership::ca_id(&ca.public()));
            eprintln!(
                "CA created: keep {} secret (offline if you can); give {} to every node (--ca-cert)",
                out.join("ca.key").display(),
                out.join("ca.pub").display()
            );
        }
        CaCommand::Sign {
            ca,
            peer,
            name,
            valid_for,
            out,
            force,
        } => {
            let ca_key = identity::load(&ca.join("ca.key"))?;
            let now = now_unix_ms() / 1000;
            let certificate = Certificate::issue(
                &ca_key,
                peer,
                name.as_deref(),
                now,
                now.saturating_add(valid_for.as_secs()),
            )?;
            identity::write_secret(&out, &certificate.encode(), force)?;
            println!("{}", describe_certificate(&certificate, now));
        }
        CaCommand::Show { file, json } => {
            let certificate = membership::load_certificate(&file)?;
            let now = now_unix_ms() / 1000;
            if json {
                println!("{}", certificate_json(&certificate, now));
            } else {
                println!("{}", describe_certificate(&certificate, now));
            }
        }
    }
    Ok(())
}

fn certificate_status(certificate: &Certificate, now: u64) -> &'static str {
    if now < certificate.not_before {
        "not yet valid"
    } else if now > certificate.not_after {
        "expired"
    } else {
        "valid"
    }
}

fn rfc3339(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}

fn describe_certificate(certificate: &Certificate, now: u64) -> String {
    format!(
        "peer        {}\nname        {}\nvalid from  {}\nvalid until {}\nsigned by   CA {}\nstatus      {}",
        certificate.peer,
        certificate.name.as_deref().unwrap_or("-"),
        rfc3339(certificate.not_before),
        rfc3339(certificate.not_after),
        membership::ca_id(&certificate.ca),
        certificate_status(certificate, now),
    )
}

fn certificate_json(certificate: &Certificate, now: u64) -> serde_json::Value {
    serde_json::json!({
        "peer": certificate.peer.to_string(),
        "name": certificate.name,
        "not_before": certificate.not_before,
        "not_after": certificate.not_after,
        "ca": membership::ca_id(&certificate.ca),
        "status": certificate_status(certificate, now),
    })
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
        let mut signals = ShutdownSignals::install()?;
        let api_config = ApiConfig::from_flags(&args.api_listen, args.api_token_file.as_deref())?;
        let mut node = node::spawn(config.clone()).await?;
        let api = match &api_config {
            Some(api_config) => {
                let api = api::start(api_config, node.handle.clone(), config.max_message_size).await?;
                // Before any event line, so a script reading stdout learns the API's address first.
                // Key order as in every event line: ts, event, then the fields.
                let address = serde_json::Value::String(format!("http://{}", api.address));
                println!(
                    r#"{{"ts":{},"event":"api_listening","address":{address}}}"#,
                    now_unix_ms()
                );
                Some(api)
            }
            None => None,
        };
        // The printer takes the receiver that has every event since start (the listen addresses first).
        let events = std::mem::replace(&mut node.events, node.handle.subscribe_events());
        tokio::spawn(print_events(events));
        if args.stdin {
            tokio::spawn(publish_stdin_lines(node.handle.clone(), config.topics[0].clone()));
        }
        tokio::select! {
            () = signals.recv() => tracing::info!("shutting down"),
            () = node.stopped() => anyhow::bail!("the node stopped unexpectedly"),
        }
        if let Some(api) = api {
            api.stop();
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

/// SIGINT and SIGTERM, caught from before the node starts: a signal that arrived between the first event line and
/// the first poll of a lazily registered handler would otherwise kill the process without a graceful shutdown.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
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
