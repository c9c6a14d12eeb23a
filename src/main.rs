//! The `swarmnode` binary: parse the command line, set up logging on stderr, and run one subcommand.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use swarmnode::{
    cli::{self, Cli, Command, KeyCommand, LogFormat},
    config::ConfigError,
    security::{identity, secret_file, swarm_key},
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    return_large_blocks_to_the_system();
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
            secret_file::write_secret(&out, text.as_bytes(), force)
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
            exit_code(&e)
        }
    }
}

/// 2 for a setting that cannot be used, as for any other bad command line (clap's own errors exit 2); 1 otherwise.
fn exit_code(error: &anyhow::Error) -> ExitCode {
    if error.downcast_ref::<ConfigError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Large blocks (gossip messages and their copies, event payloads) get their own mapping and go back to the system
/// when freed. glibc's default raises that threshold after the first large block is freed and then keeps freed
/// blocks in its arenas, so a node that once received a flood of large messages would stay at its peak for good
/// (docs/benchmarks.md, "Memory").
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it is called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
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
