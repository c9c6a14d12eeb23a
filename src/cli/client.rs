//! The CLI's client commands (`status`, `peers`, `connect`, `disconnect`, `publish`, `subscribe`, `events`,
//! `diagnose`, and the others' entry points): each is one request to a running node's HTTP API, printed as a human-readable table or, with
//! `--json`, as the API's JSON. Streams (`subscribe`, `events`) print one JSON line per event until interrupted.
//! When no node answers, the error says where we looked and how to point elsewhere.

use std::{
    fmt::Write as _,
    io::{Read, Write},
};

use anyhow::Context;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    api::{self, ConnectBody, Connected, Disconnected, ErrorBody, PublishBody, TopicChange, TopicName},
    cli::{ClientArgs, ClientCommand as Command},
    config::MAX_MESSAGE_SIZE,
    node::{Diagnosis, NodeStatus, PeerInfo, Published},
};

/// The longest SSE line a node can send: the largest message's payload with every byte escaped in JSON (`\u00XX`),
/// and room for the event's other fields. A longer line is not from a swarmnode.
const MAX_EVENT_LINE: usize = MAX_MESSAGE_SIZE * 6 + 64 * 1024;

/// A client of one node's API.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// An answer decoded into the type the API serialised it from, and its JSON as it came (what `--json` prints).
#[derive(Debug)]
pub struct Answer<T> {
    pub value: T,
    pub json: String,
}

impl ApiClient {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let token = args.api_token_file.as_deref().map(api::read_token).transpose()?;
        let base = args.api_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!(
                "invalid --api {:?}: expected a URL such as http://127.0.0.1:5100",
                args.api_url
            );
        }
        Ok(ApiClient {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    pub(super) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends the request; a non-2xx answer becomes an error carrying the API's message and code.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(
                    "no swarmnode API at {} (is `swarmnode run` running? point elsewhere with --api or SWARMNODE_API)",
                    self.base
                )
            } else {
                anyhow::anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let Ok(ErrorBody { error }) = serde_json::from_str(&body) else {
            anyhow::bail!(
                "{} answered HTTP {} without an error body (is it a swarmnode API?)",
                self.base,
                status.as_u16()
            );
        };
        if status == StatusCode::UNAUTHORIZED {
            anyhow::bail!("{} (pass --api-token-file or SWARMNODE_API_TOKEN_FILE)", error.message);
        }
        anyhow::bail!("{} ({}, HTTP {})", error.message, error.code, status.as_u16())
    }

    /// Sends the request and decodes the answer as `T`.
    pub async fn call<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer<T>> {
        let response = self.send(request).await?;
        let json = response.text().await.context("the API's answer broke off")?;
        let value = serde_json::from_str(&json)
            .context("the API's answer is not what this client reads (is the node a different swarmnode version?)")?;
        Ok(Answer { value, json })
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Answer<T>> {
        self.call(self.request(Method::GET, path)).await
    }

    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<Answer<T>> {
        self.call(self.request(Method::POST, path).json(body)).await
    }

    /// Opens the event stream at `path`: from the moment this returns, no event is missed.
    pub async fn open_stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.send(self.request(Method::GET, path)).await
    }

    /// Prints each SSE `data:` payload of an open stream as one line until the stream ends.
    pub async fn print_stream(response: reqwest::Response, out: &mut impl Write) -> anyhow::Result<()> {
        print_data_lines(response.bytes_stream(), out).await
    }
}

/// Prints the `data:` payload of each SSE line in `chunks` (the body as it arrives) until it ends. Bytes are buffered
/// until a line is complete, so a character split across two network reads arrives whole; a line longer than
/// `MAX_EVENT_LINE` is an error.
async fn print_data_lines<E: std::error::Error + Send + Sync + 'static>(
    chunks: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut chunks = std::pin::pin!(chunks);
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        pending.extend_from_slice(&chunk.context("the event stream broke off")?);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                writeln!(out, "{}", data.trim_start())?;
                out.flush()?;
            }
        }
        if pending.len() > MAX_EVENT_LINE {
            anyhow::bail!("the event stream sent a line of more than {MAX_EVENT_LINE} bytes: not a swarmnode");
        }
    }
    anyhow::bail!("the node closed the event stream")
}

/// Runs one client command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    match command {
        Command::Status(args) => {
            let node: Answer<NodeStatus> = ApiClient::new(&args)?.get("/v1/node").await?;
            print(&args, &node, status_text)
        }
        Command::Peers(args) => {
            let peers: Answer<Vec<PeerInfo>> = ApiClient::new(&args)?.get("/v1/peers").await?;
            print(&args, &peers, |peers| peers_table(peers))
        }
        Command::Connect { client, address } => {
            let answer: Answer<Connected> = ApiClient::new(&client)?
                .post("/v1/peers", &ConnectBody { address })
                .await?;
            print(&client, &answer, |connected| {
                format!("connected to {}\n", connected.peer)
            })
        }
        Command::Disconnect {
            client,
            peer,
            block_for,
        } => {
            let api = ApiClient::new(&client)?;
            let path = format!("/v1/peers/{}", path_segment(&peer));
            let request = api
                .request(Method::DELETE, &path)
                .query(&[("for", humantime::format_duration(block_for).to_string())]);
            let answer: Answer<Disconnected> = api.call(request).await?;
            print(&client, &answer, |gone| {
                let blocked = humantime::format_duration(std::time::Duration::from_millis(gone.blocked_for_ms));
                match (gone.disconnected, gone.blocked_for_ms) {
                    (true, 0) => format!("disconnected {}\n", gone.peer),
                    (true, _) => format!("disconnected {}; blocked for {blocked}\n", gone.peer),
                    (false, _) => format!("{} was not connected; blocked for {blocked}\n", gone.peer),
                }
            })
        }
        Command::Publish {
            client,
            topic,
            message,
            id,
            content_type,
        } => {
            let data = match message.as_deref() {
                None | Some("-") => {
                    // No node accepts more than MAX_MESSAGE_SIZE: a longer input is an error, not a memory hog.
                    let mut text = String::new();
                    std::io::stdin()
                        .take(MAX_MESSAGE_SIZE as u64 + 1)
                        .read_to_string(&mut text)
                        .context("cannot read the message from stdin")?;
                    if text.len() > MAX_MESSAGE_SIZE {
                        anyhow::bail!(
                            "the message on stdin is larger than {} MiB, more than any node accepts",
                            MAX_MESSAGE_SIZE >> 20
                        );
                    }
                    // `echo hi | swarmnode publish t -` means "hi", as a shell's $(...) would.
                    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                    trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
                }
                Some(text) => text.to_owned(),
            };
            let body = PublishBody {
                topic: TopicName(topic),
                data: Some(data),
                data_base64: None,
                content_type: Some(content_type.unwrap_or_else(|| crate::wire::envelope::TEXT_CONTENT_TYPE.to_owned())),
                id,
            };
            let answer: Answer<Published> = ApiClient::new(&client)?.post("/v1/publish", &body).await?;
            print(&client, &answer, |published| {
                format!(
                    "published id {} to {} peer(s){}\n",
                    published.id,
                    published.recipients,
                    if published.duplicate {
                        " (a repeat: the first result, nothing sent)"
                    } else {
                        ""
                    }
                )
            })
        }
        Command::Subscribe { client, topic } => {
            let api = ApiClient::new(&client)?;
            let segment = path_segment(&topic);
            // Stream first, then join: a message that arrives right after the join is already on the stream.
            let stream = api
                .open_stream(&format!("/v1/events?types=message&topic={segment}"))
                .await?;
            let _: Answer<TopicChange> = api
                .call(api.request(Method::POST, &format!("/v1/topics/{segment}")))
                .await?;
            ApiClient::print_stream(stream, &mut stdout).await
        }
        Command::Events { client, types, topic } => {
            let mut query = Vec::new();
            if let Some(types) = types {
                query.push(format!("types={}", path_segment(&types)));
            }
            if let Some(topic) = topic {
                query.push(format!("topic={}", path_segment(&topic)));
            }
            let path = format!("/v1/events?{}", query.join("&"));
            let stream = ApiClient::new(&client)?.open_stream(&path).await?;
            ApiClient::print_stream(stream, &mut stdout).await
        }
        Command::Cluster(command) => super::cluster::run(command).await,
        Command::State { command } => super::state::run(command).await,
        Command::Perf {
            client,
            peer,
            upload,
            download,
        } => super::perf::run(&client, peer, upload, download).await,
        Command::Diagnose(args) => {
            let diagnosis: Answer<Diagnosis> = ApiClient::new(&args)?.get("/v1/diagnose").await?;
            print(&args, &diagnosis, diagnosis_text)
        }
    }
}

/// Prints the answer: its JSON as the API sent it with `--json`, else as `human` renders it.
pub(super) fn print<T>(args: &ClientArgs, answer: &Answer<T>, human: impl Fn(&T) -> String) -> anyhow::Result<()> {
    let out = if args.json {
        format!("{}\n", answer.json.trim_end())
    } else {
        human(&answer.value)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// Percent-encodes a path segment or query value (peer ids and topics may hold any character).
pub(super) fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Items as one comma-separated cell.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The name a value (a peer state, a direction, a list of sources) has in the API's JSON, lists comma-separated;
/// `-` for none.
fn json_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".to_owned(),
    }
}

fn status_text(node: &NodeStatus) -> String {
    let mut out = String::new();
    let topics: Vec<String> = node
        .topics
        .iter()
        .map(|(topic, peers)| format!("{topic} ({peers} peers)"))
        .collect();
    let rows = [
        ("peer id", node.peer_id.to_string()),
        ("agent", node.agent.clone()),
        ("uptime", format!("{} s", node.uptime_ms / 1000)),
        ("listening on", list(&node.listen_addresses)),
        ("external", list(&node.external_addresses)),
        ("connected peers", node.connected_peers.len().to_string()),
        ("routing table", node.routing_table.len().to_string()),
        ("topics", topics.join(", ")),
        (
            "state",
            format!(
                "{} keys, {} tombstones, {} bytes, {} writers",
                node.state.keys, node.state.tombstones, node.state.bytes, node.state.writers
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<16} {value}");
    }
    out
}

fn peers_table(peers: &[PeerInfo]) -> String {
    let rows: Vec<[String; 7]> = peers
        .iter()
        .map(|p| {
            [
                p.peer.to_string(),
                json_name(&p.state),
                json_name(&p.direction),
                p.rtt_ms.map_or("-".to_owned(), |ms| format!("{ms:.1}")),
                json_name(&p.sources),
                member(p),
                p.addresses.first().map_or("-".to_owned(), ToString::to_string),
            ]
        })
        .collect();
    table(
        &["PEER", "STATE", "DIRECTION", "RTT MS", "SOURCES", "MEMBER", "ADDRESS"],
        &rows,
    )
}

/// With a CA: the member's certificate name (or `yes`), `no` while not admitted; `-` without a CA.
fn member(peer: &PeerInfo) -> String {
    match peer.admitted {
        Some(true) => peer.member_name.clone().unwrap_or_else(|| "yes".to_owned()),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    }
}

fn diagnosis_text(d: &Diagnosis) -> String {
    let mut out = String::new();
    let c = &d.connections;
    let _ = writeln!(out, "listening on     {}", list(&d.listen_addresses));
    let _ = writeln!(out, "external         {}", list(&d.external_addresses));
    let _ = writeln!(out, "mDNS             {}", if d.mdns_enabled { "on" } else { "off" });
    for i in &d.interfaces {
        let mdns = if i.mdns { "mDNS" } else { "no mDNS" };
        let _ = writeln!(out, "interface        {} {} ({mdns})", i.name, list(&i.addresses));
    }
    let _ = writeln!(out, "routing table    {} peers", d.routing_table_size);
    let _ = writeln!(
        out,
        "connections      {} in + {} out established (max {}), {} / {} pending in, {} / {} pending out",
        c.established_incoming,
        c.established_outgoing,
        c.max_peers,
        c.pending_incoming,
        c.max_pending_incoming,
        c.pending_outgoing,
        c.max_pending_outgoing,
    );
    for b in &d.bootstrap {
        let state = if b.connected { "connected" } else { "not connected" };
        let _ = writeln!(out, "bootstrap        {} ({state})", b.address);
    }
    for (topic, size) in &d.mesh_sizes {
        let _ = writeln!(out, "mesh             {topic}: {size} peers");
    }
    out
}

/// Left-aligned columns separated by two spaces.
pub(super) fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = [
            ["a".to_owned(), "long value".to_owned()],
            ["bbb".to_owned(), "x".to_owned()],
        ];
        assert_eq!(table(&["K", "V"], &rows), "K    V\na    long value\nbbb  x\n");
    }

    #[tokio::test]
    async fn a_character_split_across_two_reads_arrives_whole() {
        let line = "event: message\ndata: {\"data\":\"caf\u{e9} \u{1f41d}\"}\n\n"
            .as_bytes()
            .to_vec();
        // Split inside the two-byte é and again inside the four-byte bee.
        let e_acute = line.iter().position(|&b| b == 0xc3).unwrap() + 1;
        let bee = line.iter().position(|&b| b == 0xf0).unwrap() + 2;
        let chunks = vec![
            line[..e_acute].to_vec(),
            line[e_acute..bee].to_vec(),
            line[bee..].to_vec(),
        ];
        let reads = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        );
        let mut out = Vec::new();
        let ended = print_data_lines(reads, &mut out).await.unwrap_err();
        assert!(ended.to_string().contains("closed the event stream"), "{ended}");
        assert_eq!(String::from_utf8(out).unwrap(), "{\"data\":\"caf\u{e9} \u{1f41d}\"}\n");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(path_segment("chat-1"), "chat-1");
    }
}
