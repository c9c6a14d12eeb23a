//! Every duration, size and count flag has a range (`swarmnode::config::bounds`): extreme values given to the command
//! line end in a clean error naming the flag, never a panic; the issue's `300000000000years` exits 2 like any other
//! bad flag; and real nodes with every flag at its upper bound start, admit each other and refuse (and ban, for the
//! longest ban) peers that are not members, and keep running.

use std::{ops::RangeInclusive, time::Duration};

use clap::Parser;
use proptest::prelude::*;
use serde_json::Value;
use swarmnode::{
    api::limits as api_limits,
    cli::{Cli, Command},
    config::bounds,
};

use crate::support::binary::{RunningBinary, swarmnode};

/// Every duration flag of `run` with its range.
const DURATION_FLAGS: [(&str, RangeInclusive<Duration>); 16] = [
    ("--heartbeat", bounds::HEARTBEAT),
    ("--peer-timeout", bounds::PEER_TIMEOUT),
    ("--kad-refresh", bounds::KAD_REFRESH),
    ("--reconnect-backoff", bounds::RECONNECT_BACKOFF),
    ("--reconnect-backoff-max", bounds::RECONNECT_BACKOFF_MAX),
    ("--forget-after", bounds::FORGET_AFTER),
    ("--dial-timeout", bounds::DIAL_TIMEOUT),
    ("--dedup-window", bounds::DEDUP_WINDOW),
    ("--batch-window", bounds::BATCH_WINDOW),
    ("--admission-timeout", bounds::ADMISSION_TIMEOUT),
    ("--ban-duration", bounds::BAN_DURATION),
    ("--handshake-timeout", bounds::HANDSHAKE_TIMEOUT),
    ("--api-header-timeout", api_limits::TIMEOUT),
    ("--api-body-timeout", api_limits::TIMEOUT),
    ("--api-request-timeout", api_limits::TIMEOUT),
    ("--api-write-timeout", api_limits::TIMEOUT),
];

/// Every count flag of `run` with its largest value.
fn count_flags() -> [(&'static str, u64); 13] {
    let end = |range: RangeInclusive<u32>| u64::from(*range.end());
    let end_usize = |range: RangeInclusive<usize>| *range.end() as u64;
    [
        ("--reconnect-attempts", end(bounds::RECONNECT_ATTEMPTS)),
        ("--max-known-peers", end_usize(bounds::MAX_KNOWN_PEERS)),
        ("--max-peers", end(bounds::MAX_PEERS)),
        ("--max-pending-incoming", end(bounds::MAX_PENDING)),
        ("--max-pending-outgoing", end(bounds::MAX_PENDING)),
        ("--max-topics", end_usize(bounds::MAX_TOPICS)),
        ("--peer-message-rate", end(bounds::PEER_MESSAGE_RATE)),
        (
            "--gossip-ip-colocation-threshold",
            end(bounds::GOSSIP_IP_COLOCATION_THRESHOLD),
        ),
        ("--max-pending-per-ip", end(bounds::PER_IP)),
        ("--max-established-per-ip", end(bounds::PER_IP)),
        ("--api-max-connections", end_usize(api_limits::MAX_CONNECTIONS)),
        // At most --api-max-connections (128 by default).
        ("--api-max-event-streams", 128),
        ("--api-event-stream-bytes", end_usize(api_limits::EVENT_STREAM_BYTES)),
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    let units = prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y", "years"]);
    prop_oneof![
        (any::<u64>(), units.clone()).prop_map(|(n, unit)| format!("{n}{unit}")),
        (0u64..100_000, units).prop_map(|(n, unit)| format!("{n}{unit}")),
        prop::sample::select(vec![
            "300000000000years".to_owned(),
            "18446744073709551615s".to_owned(),
            "584542046090years".to_owned(),
            "0".to_owned(),
            "off".to_owned(),
            "1day 1ns".to_owned(),
            "30days 1s".to_owned(),
        ]),
    ]
}

proptest! {
    /// Extreme values for a few flags at once, through the parser and `RunArgs::to_config`: a clean error naming a
    /// flag given (or the other side of a relation with one), or a valid configuration whose every duration, even
    /// doubled, still fits in an `Instant` — never a panic.
    #[test]
    fn extreme_flag_values_are_a_clean_error_or_a_valid_config(
        durations in proptest::collection::vec((0..DURATION_FLAGS.len(), duration_text()), 1..4),
        counts in proptest::collection::vec((0..count_flags().len(), any::<u64>()), 0..3),
    ) {
        let mut args = vec!["swarmnode", "run", "--data-dir", "/nonexistent"].into_iter().map(String::from).collect::<Vec<_>>();
        let mut given = Vec::new();
        for (index, value) in &durations {
            args.extend([DURATION_FLAGS[*index].0.to_owned(), value.clone()]);
            given.push(DURATION_FLAGS[*index].0);
        }
        for (index, value) in &counts {
            args.extend([count_flags()[*index].0.to_owned(), value.to_string()]);
            given.push(count_flags()[*index].0);
        }
        let cli = match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(e) => {
                let message = e.to_string();
                prop_assert!(given.iter().any(|flag| message.contains(flag)), "{}", message);
                return Ok(());
            }
        };
        let Command::Run(run) = cli.command else { panic!("parsed another command") };
        let config = run.to_config().unwrap();
        let limits = run.api_limits.to_limits();
        match config.validate().and_then(|()| limits.validate()) {
            Ok(()) => {
                let now = std::time::Instant::now();
                let liveness = config.liveness;
                for duration in [
                    config.heartbeat, config.kad_refresh, config.dial_timeout, config.dedup_window,
                    config.admission_timeout, config.ban_duration, liveness.peer_timeout,
                    liveness.reconnect_backoff, liveness.reconnect_backoff_max, liveness.forget_after,
                    config.batch_window.unwrap_or_default(), config.inbound_handshake_timeout(),
                    limits.header_timeout, limits.body_timeout, limits.request_timeout, limits.write_timeout,
                ] {
                    prop_assert!(now.checked_add(duration.saturating_mul(2)).is_some(), "{:?}", duration);
                }
            }
            Err(e) => {
                let flag = format!("--{}", e.setting);
                let related = [
                    "--heartbeat", "--peer-timeout", "--reconnect-backoff", "--reconnect-backoff-max",
                    "--dial-timeout", "--handshake-timeout", "--api-max-connections", "--api-max-event-streams",
                ];
                prop_assert!(given.contains(&flag.as_str()) || related.contains(&flag.as_str()), "{}", e);
                let prefix = format!("invalid {flag}: ");
                prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
            }
        }
    }
}

#[test]
fn the_issue_s_300000000000years_exits_2_naming_each_flag_and_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for (flag, range) in DURATION_FLAGS {
        let output = swarmnode(&[
            "run",
            "--no-mdns",
            "--api",
            "off",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            data_dir,
            flag,
            "300000000000years",
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        let most = humantime::format_duration(*range.end()).to_string();
        assert!(
            stderr.contains(&format!("invalid {flag}: must be")) && stderr.contains(&most),
            "{flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}

/// `run` flags setting every duration and count to its largest value.
fn flags_at_their_maxima() -> Vec<String> {
    let mut flags = Vec::new();
    // --handshake-timeout must be shorter than --dial-timeout, whose longest it shares: left to its default, half of
    // the longest dial timeout.
    for (flag, range) in DURATION_FLAGS
        .into_iter()
        .filter(|(flag, _)| *flag != "--handshake-timeout")
    {
        flags.extend([flag.to_owned(), humantime::format_duration(*range.end()).to_string()]);
    }
    for (flag, most) in count_flags() {
        flags.extend([flag.to_owned(), most.to_string()]);
    }
    flags.extend(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"].map(String::from));
    flags
}

/// `swarmnode ARGS`, which must succeed; its stdout, trimmed.
fn succeed(args: &[&str]) -> String {
    let output = swarmnode(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn start(flags: &[String]) -> RunningBinary {
    RunningBinary::spawn(&[], &flags.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn nodes_with_every_flag_at_its_maximum_admit_members_refuse_and_ban_others_and_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    succeed(&["ca", "init", "--out", &path("ca")]);
    succeed(&["ca", "init", "--out", &path("other-ca")]);
    // A member of `ca` (or of `other-ca`): its key, certificate and the flags that make it one.
    let enrol = |name: &str, ca: &str| {
        let key = path(&format!("{name}.key"));
        let peer = succeed(&["key", "generate", "--out", &key]);
        let cert = path(&format!("{name}.cert"));
        succeed(&[
            "ca",
            "sign",
            "--ca",
            &path(ca),
            "--peer",
            &peer,
            "--name",
            name,
            "--valid-for",
            "1h",
            "--out",
            &cert,
        ]);
        let mut flags = flags_at_their_maxima();
        let ca_pub = path(&format!("{ca}/ca.pub"));
        flags.extend([
            "--key".to_owned(),
            key,
            "--ca-cert".to_owned(),
            ca_pub,
            "--cert".to_owned(),
            cert,
        ]);
        (peer, flags)
    };
    let (alpha_id, alpha_flags) = enrol("alpha", "ca");
    let (beta_id, mut beta_flags) = enrol("beta", "ca");
    let (foreign_id, mut foreign_flags) = enrol("foreign", "other-ca");

    let alpha = start(&alpha_flags);
    let listening = alpha.wait_for("a listen address", |l| l["event"] == "listening");
    let alpha_address = format!("{}/p2p/{alpha_id}", listening["address"].as_str().unwrap());
    beta_flags.extend(["--bootstrap".to_owned(), alpha_address.clone()]);
    let beta = start(&beta_flags);
    let admitted = alpha.wait_for("beta's admission", |l| l["event"] == "peer_admitted");
    assert_eq!(
        (&admitted["peer"], &admitted["name"]),
        (&beta_id.as_str().into(), &"beta".into())
    );
    beta.wait_for("alpha's admission", |l| {
        l["event"] == "peer_admitted" && l["peer"] == alpha_id.as_str()
    });

    // A node of another CA: refused (by whichever side answers first) and disconnected.
    foreign_flags.extend(["--bootstrap".to_owned(), alpha_address.clone()]);
    let _foreign = start(&foreign_flags);
    let refused = alpha.wait_for("the foreign member's refusal", |l| {
        l["event"] == "peer_refused" && l["peer"] == foreign_id.as_str()
    });
    assert!(refused["reason"].as_str().unwrap().contains("another CA"), "{refused}");

    // A node without a CA does not speak admission: refused at once and banned for the longest ban.
    let mut plain_flags = flags_at_their_maxima();
    plain_flags.extend(["--bootstrap".to_owned(), alpha_address]);
    let plain = start(&plain_flags);
    let plain_id = plain.peer_id().to_owned();
    let banned = alpha.wait_for("the plain node's ban", |l| {
        l["event"] == "peer_banned" && l["peer"] == plain_id.as_str()
    });
    let longest_ms = bounds::BAN_DURATION.end().as_millis() as u64;
    assert_eq!(banned["duration_ms"].as_u64(), Some(longest_ms), "{banned}");

    // Alpha kept running and still has its member.
    let api = alpha.api.clone().unwrap();
    let peers: Value = serde_json::from_str(&succeed(&["peers", "--json", "--api", &api])).unwrap();
    let rows = peers.as_array().unwrap();
    let row = |id: &str| rows.iter().find(|row| row["peer"] == id).cloned();
    let beta_row = row(&beta_id).unwrap_or_else(|| panic!("{peers}"));
    assert_eq!(
        (&beta_row["state"], &beta_row["admitted"]),
        (&"active".into(), &true.into())
    );
    for outsider in [&foreign_id, &plain_id] {
        assert!(
            row(outsider).is_none_or(|r| r["state"] != "active" && r["admitted"] != true),
            "{outsider}: {peers}"
        );
    }
}
