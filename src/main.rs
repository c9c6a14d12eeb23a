//! The `swarmnode` binary: parse the command line, set up logging on stderr, and run one subcommand.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use swarmnode::{
    cli::{self, Cli, Command, KeyCommand, LogFormat},
    security::{identity, swarm_key},
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => cli::run::run(*args),
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
        Command::Ca { command } => cli::ca::run(command),
        Command::Client(command) => tokio::runtime::Runtime::new()
            .map_err(Into::into)
            .and_then(|runtime| runtime.block_on(cli::client::run(command))),
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
