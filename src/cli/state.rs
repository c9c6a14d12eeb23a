//! The replicated map on the command line: `state get|put|del|list|watch`, each a request to a running node's API
//! (a listing one per page), printed as the value itself, a line or a table or, with `--json`, as JSON (a listing
//! as one array of the entries of every page). A watch prints one JSON line per change until interrupted.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    time::Duration,
};

use anyhow::Context;
use base64::Engine;
use clap::{Subcommand, value_parser};
use reqwest::Method;

use super::{
    ClientArgs,
    client::{Answer, ApiClient, path_segment, print, table},
};
use crate::{
    api::state::StatePut,
    config,
    node::{MAX_PAGE, StateEntry, StatePage, StateWrite},
    wire::state::{MAX_VALUE_LIMIT, check_key},
};

/// Characters of a value shown in a listing; the rest is cut.
const VALUE_COLUMN: usize = 40;

/// The state client commands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print a key's value (with --json, its entry: value, version, origin, when written, when it expires).
    Get {
        #[command(flatten)]
        client: ClientArgs,
        key: String,
        /// Wait until this version of the key (the one a write answered), or a later one, is visible on the node.
        #[arg(long)]
        min_version: Option<u64>,
        /// How long to wait for --min-version (at most 60s).
        #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
        wait: Duration,
    },
    /// Write a key; it replicates to the swarm.
    Put {
        #[command(flatten)]
        client: ClientArgs,
        key: String,
        /// The value; `-` reads it from stdin (text loses one trailing newline; other bytes are kept as they are).
        value: String,
        /// The value expires after this long (100ms to 365days).
        #[arg(long, value_parser = config::parse_duration)]
        ttl: Option<Duration>,
        /// VALUE (or stdin) is the base64 of the bytes to store.
        #[arg(long)]
        base64: bool,
    },
    /// Delete a key; the deletion replicates like a write.
    Del {
        #[command(flatten)]
        client: ClientArgs,
        key: String,
    },
    /// List the live keys in key order, every page unless --limit.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// List at most this many keys.
        #[arg(long, value_parser = value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Print each change of the keys under a prefix as a JSON line until Ctrl-C.
    Watch {
        #[command(flatten)]
        client: ClientArgs,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

pub async fn run(command: StateCommand) -> anyhow::Result<()> {
    match command {
        StateCommand::Get {
            client,
            key,
            min_version,
            wait,
        } => {
            let mut path = key_path(&key)?;
            if let Some(version) = min_version {
                let wait = humantime::format_duration(wait).to_string();
                write!(path, "?min_version={version}&wait={}", path_segment(&wait))?;
            }
            let answer: Answer<StateEntry> = ApiClient::new(&client)?.get(&path).await?;
            if client.json {
                return print(&client, &answer, |_| String::new());
            }
            write_value(&answer.value)
        }
        StateCommand::Put {
            client,
            key,
            value,
            ttl,
            base64,
        } => {
            let api = ApiClient::new(&client)?;
            let mut body = value_body(&value, base64)?;
            body.ttl = ttl.map(|ttl| humantime::format_duration(ttl).to_string());
            let request = api.request(Method::PUT, &key_path(&key)?).json(&body);
            let answer: Answer<StateWrite> = api.call(request).await?;
            print(&client, &answer, |write| written("wrote", write))
        }
        StateCommand::Del { client, key } => {
            let api = ApiClient::new(&client)?;
            let answer: Answer<StateWrite> = api.call(api.request(Method::DELETE, &key_path(&key)?)).await?;
            print(&client, &answer, |write| written("deleted", write))
        }
        StateCommand::List { client, prefix, limit } => {
            let entries = list(&ApiClient::new(&client)?, &prefix, limit).await?;
            let json = serde_json::to_string(&entries)?;
            print(&client, &Answer { value: entries, json }, |entries| {
                entries_table(entries, &prefix)
            })
        }
        StateCommand::Watch { client, prefix } => {
            let path = format!("/v1/state/watch?prefix={}", path_segment(&prefix));
            let stream = ApiClient::new(&client)?.open_stream(&path).await?;
            ApiClient::print_stream(stream, &mut std::io::stdout()).await
        }
    }
}

/// The API path of a key, checked as the node checks it (an empty key would name no route). The key `watch` has
/// its first letter percent-encoded, so it reaches the key and not the watch stream's route.
fn key_path(key: &str) -> anyhow::Result<String> {
    check_key(key).map_err(|e| anyhow::anyhow!("invalid key {key:?}: {e}"))?;
    let segment = if key == "watch" {
        "%77atch".to_owned()
    } else {
        path_segment(key)
    };
    Ok(format!("/v1/state/{segment}"))
}

/// The put body for VALUE: text as it is, `-` from stdin (text without its last newline, other bytes as base64),
/// and with `--base64` the base64 text given (checked by the node).
fn value_body(given: &str, base64: bool) -> anyhow::Result<StatePut> {
    let from_stdin = given == "-";
    let bytes = if from_stdin {
        read_stdin(base64)?
    } else {
        given.as_bytes().to_vec()
    };
    let (value, value_base64) = match String::from_utf8(bytes) {
        Ok(text) if base64 => (None, Some(text.trim().to_owned())),
        Ok(text) if from_stdin => {
            let trimmed = text.strip_suffix('\n').unwrap_or(&text);
            (Some(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()), None)
        }
        Ok(text) => (Some(text), None),
        Err(_) if base64 => anyhow::bail!("--base64 takes base64 text, and stdin is not text"),
        Err(binary) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(binary.as_bytes())),
        ),
    };
    Ok(StatePut {
        value,
        value_base64,
        ttl: None,
    })
}

/// Stdin, at most the largest value any node stores (its base64 with `--base64`, and room for a line end).
fn read_stdin(base64: bool) -> anyhow::Result<Vec<u8>> {
    let limit = if base64 {
        MAX_VALUE_LIMIT.div_ceil(3) * 4 + 2
    } else {
        MAX_VALUE_LIMIT + 2
    };
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the value from stdin")?;
    if bytes.len() > limit {
        anyhow::bail!(
            "the value on stdin is larger than {} KiB, more than any node stores",
            MAX_VALUE_LIMIT >> 10
        );
    }
    Ok(bytes)
}

/// Every live key under `prefix`, page after page, at most `limit` of them.
async fn list(api: &ApiClient, prefix: &str, limit: Option<u64>) -> anyhow::Result<Vec<StateEntry>> {
    let limit = limit.map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX));
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    while entries.len() < limit {
        let page = (limit - entries.len()).min(MAX_PAGE);
        let mut path = format!("/v1/state?prefix={}&limit={page}", path_segment(prefix));
        if let Some(cursor) = &cursor {
            write!(path, "&cursor={}", path_segment(cursor))?;
        }
        let answer: Answer<StatePage> = api.get(&path).await?;
        entries.extend(answer.value.entries);
        match answer.value.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(entries)
}

/// The value as stored: text with a line end, other bytes exactly.
fn write_value(entry: &StateEntry) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    match &entry.value {
        Some(text) => writeln!(stdout, "{text}")?,
        None => stdout.write_all(&entry.bytes())?,
    }
    Ok(stdout.flush()?)
}

fn written(what: &str, write: &StateWrite) -> String {
    match &write.expires {
        Some(expires) => format!("{what} {} (version {}, expires {expires})\n", write.key, write.version),
        None => format!("{what} {} (version {})\n", write.key, write.version),
    }
}

fn entries_table(entries: &[StateEntry], prefix: &str) -> String {
    if entries.is_empty() {
        return match prefix {
            "" => "no keys\n".to_owned(),
            prefix => format!("no keys under {prefix:?}\n"),
        };
    }
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            [
                entry.key.clone(),
                value_cell(entry),
                entry.version.clone(),
                entry.updated.clone(),
                entry.expires.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    table(&["KEY", "VALUE", "VERSION", "UPDATED", "EXPIRES"], &rows)
}

/// A value for one table cell: text with control characters escaped and cut to `VALUE_COLUMN` characters; bytes
/// by their size.
fn value_cell(entry: &StateEntry) -> String {
    let Some(text) = &entry.value else {
        return format!("({} bytes)", entry.bytes().len());
    };
    let escaped: String = text
        .chars()
        .take(VALUE_COLUMN + 1)
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if escaped.chars().count() <= VALUE_COLUMN {
        return escaped;
    }
    escaped.chars().take(VALUE_COLUMN - 1).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: Option<&str>, value_base64: Option<&str>) -> StateEntry {
        StateEntry {
            key: "k".into(),
            value: value.map(str::to_owned),
            value_base64: value_base64.map(str::to_owned),
            version: "1".into(),
            origin: "peer".into(),
            updated: "now".into(),
            expires: None,
        }
    }

    #[test]
    fn key_paths_are_encoded_and_checked_and_watch_is_a_key() {
        assert_eq!(key_path("a/b c").unwrap(), "/v1/state/a%2Fb%20c");
        assert_eq!(key_path("watch").unwrap(), "/v1/state/%77atch");
        assert_eq!(key_path("watch/x").unwrap(), "/v1/state/watch%2Fx");
        assert!(key_path("").unwrap_err().to_string().contains("invalid key"));
        assert!(key_path("a\u{1}b").is_err());
    }

    #[test]
    fn values_are_text_or_base64() {
        let text = value_body("blue", false).unwrap();
        assert_eq!((text.value.as_deref(), text.value_base64), (Some("blue"), None));
        let given = value_body(" AAE= ", true).unwrap();
        assert_eq!((given.value, given.value_base64.as_deref()), (None, Some("AAE=")));
    }

    #[test]
    fn listed_values_are_cut_and_escaped() {
        assert_eq!(value_cell(&entry(Some("a\nb"), None)), "a\\nb");
        let long = value_cell(&entry(Some(&"x".repeat(100)), None));
        assert_eq!(long.chars().count(), VALUE_COLUMN);
        assert!(long.ends_with('…'));
        assert_eq!(value_cell(&entry(None, Some("AAEC"))), "(3 bytes)");
        assert_eq!(entries_table(&[], "a/"), "no keys under \"a/\"\n");
    }
}
