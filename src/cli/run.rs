//! `swarmnode run`: the flags become a `NodeConfig` (with the allow and deny peer-list files), the node and its API
//! start, every event is printed as a JSON line on stdout, `--stdin` lines are published, and SIGINT/SIGTERM stop the
//! node gracefully (within `SHUTDOWN_GRACE`).

use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, stream::FuturesUnordered};
use libp2p::PeerId;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    signal::unix::{Signal, SignalKind, signal},
};

use super::{RunArgs, printer::Printer};
use crate::{
    api::{self, ApiConfig},
    config::{self, ConfigError, NodeConfig},
    node::{self, NodeHandle, PublishRequest, Published},
    policy::liveness::LivenessPolicy,
    time::now_unix_ms,
    wire::envelope::TEXT_CONTENT_TYPE,
};

/// How long a graceful shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long the event printer is given, once the node has stopped, to write what is left.
const PRINTER_GRACE: Duration = Duration::from_millis(500);
/// Most `--stdin` publishes under way at once; the publish byte budget bounds them too.
const STDIN_IN_FLIGHT: usize = 1024;

impl RunArgs {
    /// The node configuration these flags describe (validated when the node starts).
    pub fn to_config(&self) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::with_data_dir(self.location.data_dir()?);
        config.key_path = self.location.key_path()?;
        config.listen = self.listen.clone();
        config.bootstrap = self.bootstrap.clone();
        config.mdns = !self.no_mdns;
        config.perf.serve = !self.no_perf;
        config.kad_protocol = self.kad_protocol.clone();
        config.kad_refresh = self.kad_refresh;
        config.security = self.security.0.clone();
        config.topics = self.topic.clone();
        config.max_message_size = self.max_message_size;
        config.heartbeat = self.heartbeat;
        config.max_peers = self.max_peers;
        config.dial_timeout = self.dial_timeout;
        config.swarm_key = self.swarm_key.clone();
        config.max_pending_incoming = self.max_pending_incoming;
        config.max_pending_outgoing = self.max_pending_outgoing;
        config.max_pending_per_ip = self.max_pending_per_ip;
        config.max_established_per_ip = self.max_established_per_ip;
        config.handshake_timeout = self.handshake_timeout;
        config.dedup_window = self.dedup_window;
        config.batch_window = self.batch_window.0;
        config.ca_cert = self.ca_cert.clone();
        config.cert = self.cert.clone();
        config.admission_timeout = self.admission_timeout;
        config.ban_duration = self.ban_duration;
        config.allow_peers = peer_list(&self.allow_peer, self.allow_file.as_deref(), "allow-file")?;
        config.deny_peers = peer_list(&self.deny_peer, self.deny_file.as_deref(), "deny-file")?.unwrap_or_default();
        config.gossip_ip_colocation_threshold = self.gossip_ip_colocation_threshold;
        config.max_topics = self.max_topics;
        config.peer_message_rate = self.peer_message_rate;
        config.event_buffer_bytes = self.event_buffer_bytes;
        config.members = self.members.to_config();
        config.state = self.state.to_config();
        config.liveness = LivenessPolicy {
            peer_timeout: self.peer_timeout,
            reconnect_attempts: self.reconnect_attempts,
            reconnect_backoff: self.reconnect_backoff,
            reconnect_backoff_max: self.reconnect_backoff_max,
            forget_after: self.forget_after,
            max_known_peers: self.max_known_peers,
        };
        Ok(config)
    }
}

/// The peers of a list flag and its file together; `None` when neither was given. A bad file is a `ConfigError` for
/// `file_setting`.
fn peer_list(
    flags: &[PeerId],
    file: Option<&std::path::Path>,
    file_setting: &'static str,
) -> Result<Option<Vec<PeerId>>, ConfigError> {
    let mut peers = flags.to_vec();
    if let Some(file) = file {
        let listed = config::load_peer_list(file).map_err(|e| ConfigError::new(file_setting, e))?;
        peers.extend(listed.into_iter().filter(|peer| !flags.contains(peer)));
    }
    Ok((!flags.is_empty() || file.is_some()).then_some(peers))
}

/// Runs the node these flags describe until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let mut signals = ShutdownSignals::install()?;
        let api_config = ApiConfig::from_flags(
            &args.api_listen,
            args.api_token_file.as_deref(),
            args.api_limits.to_limits(),
        )?;
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
        let printer = Printer::start(events).context("cannot start the event printer")?;
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
        // The node's last events (its connections closing) are printed before the process ends.
        tokio::task::spawn_blocking(move || printer.finish(PRINTER_GRACE)).await?;
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

/// The chat demo: every non-empty stdin line is published as text on `topic`, in order. Up to `STDIN_IN_FLIGHT`
/// publishes are under way at once (each answered when it is out), so a batch window batches lines rather than
/// holding each one for a whole window.
async fn publish_stdin_lines(handle: NodeHandle, topic: String) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut in_flight = FuturesUnordered::new();
    let mut reading = true;
    while reading || !in_flight.is_empty() {
        tokio::select! {
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                Ok(published) => {
                    let published: Published = published;
                    tracing::debug!(id = %published.id, "published");
                }
                Err(e) => tracing::warn!("not published: {e}"),
            },
            line = lines.next_line(), if reading && in_flight.len() < STDIN_IN_FLIGHT => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    let request = PublishRequest {
                        topic: topic.clone(),
                        payload: line.into(),
                        content_type: Some(TEXT_CONTENT_TYPE.to_owned()),
                        id: None,
                    };
                    match handle.submit_publish(request).await {
                        Ok(outcome) => in_flight.push(outcome),
                        Err(e) => {
                            tracing::warn!("not published: {e}");
                            return;
                        }
                    }
                }
                Ok(None) => {
                    tracing::info!("end of stdin; the node keeps running");
                    reading = false;
                }
                Err(e) => {
                    tracing::warn!("cannot read stdin: {e}");
                    reading = false;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use std::path::PathBuf;

    use crate::{
        cli::{Cli, Command},
        config::SecurityProtocol,
    };

    fn run_args(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["swarmnode", "run"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Run(args) => *args,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn flags_fill_the_config_and_defaults_match_node_defaults() {
        let defaults = run_args(&["--data-dir", "/d"]).to_config().unwrap();
        let expected = NodeConfig::with_data_dir(PathBuf::from("/d"));
        assert_eq!(defaults.listen, expected.listen);
        assert_eq!(defaults.kad_protocol, expected.kad_protocol);
        assert_eq!(defaults.kad_refresh, expected.kad_refresh);
        assert_eq!(defaults.security, expected.security);
        assert_eq!(defaults.topics, expected.topics);
        assert_eq!(defaults.max_message_size, expected.max_message_size);
        assert_eq!(defaults.heartbeat, expected.heartbeat);
        assert_eq!(defaults.max_peers, expected.max_peers);
        assert_eq!(defaults.max_pending_incoming, expected.max_pending_incoming);
        assert_eq!(defaults.max_pending_outgoing, expected.max_pending_outgoing);
        assert_eq!(defaults.max_pending_per_ip, expected.max_pending_per_ip);
        assert_eq!(defaults.max_established_per_ip, expected.max_established_per_ip);
        assert_eq!(defaults.handshake_timeout, None);
        assert_eq!(defaults.dedup_window, expected.dedup_window);
        assert_eq!(defaults.batch_window, expected.batch_window);
        assert_eq!(defaults.dial_timeout, expected.dial_timeout);
        assert_eq!(defaults.liveness, expected.liveness);
        assert_eq!(defaults.admission_timeout, expected.admission_timeout);
        assert_eq!(defaults.ban_duration, expected.ban_duration);
        assert_eq!(defaults.allow_peers, None);
        assert_eq!(defaults.deny_peers, expected.deny_peers);
        assert_eq!(
            defaults.gossip_ip_colocation_threshold,
            expected.gossip_ip_colocation_threshold
        );
        assert_eq!(defaults.max_topics, expected.max_topics);
        assert_eq!(defaults.peer_message_rate, expected.peer_message_rate);
        assert_eq!(defaults.event_buffer_bytes, expected.event_buffer_bytes);
        assert_eq!(defaults.key_path, PathBuf::from("/d/identity.key"));
        assert!(defaults.mdns);
        assert_eq!(defaults.perf, expected.perf);
        let api_defaults = run_args(&[]).api_limits.to_limits();
        assert_eq!(api_defaults, crate::api::limits::ApiLimits::default());
        let few = run_args(&["--api-max-connections", "2"]).api_limits.to_limits();
        assert_eq!(
            (few.max_connections, few.max_connections_per_ip, few.max_event_streams),
            (2, 2, 2),
            "the per-address and stream caps follow a lower connection cap"
        );

        let config = run_args(&[
            "--data-dir",
            "/d",
            "--key",
            "/k",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1,/dns4/boot/tcp/4100",
            "--no-mdns",
            "--no-perf",
            "--security",
            "noise",
            "--topic",
            "a",
            "--topic",
            "b",
            "--max-message-size",
            "64KiB",
            "--heartbeat",
            "500ms",
            "--kad-protocol",
            "/ipfs/kad/1.0.0",
            "--event-buffer-bytes",
            "16MiB",
            "--max-pending-per-ip",
            "2",
            "--max-established-per-ip",
            "3",
            "--handshake-timeout",
            "1500ms",
        ])
        .to_config()
        .unwrap();
        assert_eq!(config.key_path, PathBuf::from("/k"));
        assert_eq!(config.bootstrap.len(), 2);
        assert!(!config.mdns);
        assert!(!config.perf.serve);
        assert_eq!(config.security, vec![SecurityProtocol::Noise]);
        assert_eq!(config.topics, vec!["a", "b"]);
        assert_eq!(config.max_message_size, 64 << 10);
        assert_eq!(config.heartbeat, Duration::from_millis(500));
        assert_eq!(config.kad_protocol.as_ref(), "/ipfs/kad/1.0.0");
        assert_eq!(config.event_buffer_bytes, 16 << 20);
        assert_eq!((config.max_pending_per_ip, config.max_established_per_ip), (2, 3));
        assert_eq!(config.handshake_timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn state_flags_fill_the_state_config() {
        let defaults = run_args(&["--data-dir", "/d"]).to_config().unwrap().state;
        assert_eq!(defaults, crate::config::state::StateConfig::default());
        let state = run_args(&[
            "--data-dir",
            "/d",
            "--max-value-size",
            "1KiB",
            "--max-clock-drift",
            "2s",
            "--sync-interval",
            "1s",
            "--tombstone-ttl",
            "1h",
        ])
        .to_config()
        .unwrap()
        .state;
        assert_eq!(state.max_value_size, 1024);
        assert_eq!(state.max_clock_drift, std::time::Duration::from_secs(2));
        assert_eq!(state.sync_interval, std::time::Duration::from_secs(1));
        assert_eq!(state.tombstone_ttl, std::time::Duration::from_secs(3600));
        let error = run_args(&["--data-dir", "/d", "--sync-peers", "0"])
            .to_config()
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("sync-peers"), "{error}");
    }

    #[test]
    fn member_flags_fill_the_members_config() {
        let defaults = run_args(&["--data-dir", "/d"]).to_config().unwrap().members;
        let expected = crate::config::members::MembersConfig::default();
        assert_eq!(defaults, expected);
        let members = run_args(&[
            "--name",
            "web-1",
            "--tag",
            "zone=eu-1,rack=7",
            "--service",
            "web=8080,check=http://127.0.0.1:8080/health",
            "--service",
            "worker=7000,check=ttl:30s",
            "--weight",
            "2.5",
            "--dynamic-weight",
            "--member-interval",
            "1s",
            "--member-ttl",
            "5s",
            "--reap-after",
            "10m",
        ])
        .to_config()
        .unwrap()
        .members;
        assert_eq!(members.name, "web-1");
        assert_eq!(members.tags.get("rack").map(String::as_str), Some("7"));
        let ids: Vec<&str> = members.services.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["web", "worker"]);
        assert_eq!((members.weight, members.dynamic_weight), (2.5, true));
        assert_eq!(members.interval, Some(Duration::from_secs(1)));
        assert_eq!(members.ttl, Some(Duration::from_secs(5)));
        assert_eq!(members.reap_after, Duration::from_secs(600));
        for (flag, value, expected) in [
            ("--tag", "novalue", "key=value"),
            ("--service", "web=80,check=http://10.0.0.1/", "probes no other host"),
            ("--service", "web", "NAME=PORT"),
        ] {
            let err = Cli::try_parse_from(["swarmnode", "run", flag, value])
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn allow_and_deny_lists_join_flags_and_files_and_bad_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let file = dir.path().join("allow.txt");
        std::fs::write(&file, format!("# members\n{b}\n{a}  # again\n")).unwrap();
        let file = file.to_str().unwrap().to_owned();
        let config = run_args(&[
            "--data-dir",
            "/d",
            "--allow-peer",
            &a.to_string(),
            "--allow-file",
            &file,
            "--deny-peer",
            &c.to_string(),
        ])
        .to_config()
        .unwrap();
        assert_eq!(config.allow_peers, Some(vec![a, b]));
        assert_eq!(config.deny_peers, vec![c]);

        let bad = dir.path().join("deny.txt");
        std::fs::write(&bad, format!("{a}\nnobody\n")).unwrap();
        let error = run_args(&["--data-dir", "/d", "--deny-file", bad.to_str().unwrap()])
            .to_config()
            .unwrap_err()
            .to_string();
        assert!(error.contains("--deny-file") && error.contains("line 2"), "{error}");
    }

    #[test]
    fn bad_flag_values_are_refused_with_the_reason() {
        for (flag, value, expected) in [
            ("--heartbeat", "soon", "examples"),
            ("--security", "ssl", "unknown security protocol"),
            ("--max-message-size", "big", "not a size"),
            ("--kad-protocol", "kad", "starts with '/'"),
            ("--listen", "not-an-address", "invalid value"),
        ] {
            let err = Cli::try_parse_from(["swarmnode", "run", flag, value])
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn a_bad_peer_list_file_is_a_config_error_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("deny.txt");
        std::fs::write(&big, vec![b'#'; config::MAX_PEER_LIST_FILE + 1]).unwrap();
        for (file, expected) in [
            (big.to_str().unwrap(), "is larger than 1 MiB"),
            (
                "/dev/zero",
                "/dev/zero is not a regular file (it is a character device)",
            ),
        ] {
            let error = run_args(&["--data-dir", "/d", "--deny-file", file])
                .to_config()
                .unwrap_err();
            let config_error = error.downcast_ref::<ConfigError>().expect("a ConfigError");
            assert_eq!(config_error.setting, "deny-file");
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn every_boolean_flag_with_a_variable_takes_1_0_true_false_yes_no() {
        use clap::{ArgAction, CommandFactory};

        fn boolean_flags_with_env(command: &clap::Command, found: &mut Vec<clap::Arg>) {
            found.extend(
                command
                    .get_arguments()
                    .filter(|arg| arg.get_env().is_some() && matches!(arg.get_action(), ArgAction::SetTrue))
                    .cloned(),
            );
            for sub in command.get_subcommands() {
                boolean_flags_with_env(sub, found);
            }
        }
        let mut flags = Vec::new();
        boolean_flags_with_env(&Cli::command(), &mut flags);
        assert!(flags.iter().any(|arg| arg.get_id() == "no_mdns"), "{flags:?}");
        assert!(flags.iter().any(|arg| arg.get_id() == "no_perf"), "{flags:?}");
        for flag in flags {
            // The variable's value goes through the flag's value parser: give it one as an argument.
            let probe = clap::Command::new("probe").arg(flag.clone().action(ArgAction::Set).num_args(1));
            let long = format!("--{}", flag.get_long().unwrap());
            let parse = |value: &str| {
                probe
                    .clone()
                    .try_get_matches_from(["probe", long.as_str(), value])
                    .map(|matches| matches.get_one::<bool>(flag.get_id().as_str()).copied())
            };
            for (value, expected) in [
                ("1", true),
                ("yes", true),
                ("TRUE", true),
                ("0", false),
                ("no", false),
                ("False", false),
            ] {
                assert_eq!(parse(value).unwrap(), Some(expected), "{long}={value}");
            }
            let refused = parse("maybe").unwrap_err().to_string();
            assert!(refused.contains("maybe") && refused.contains(&long), "{refused}");
        }
    }
}
