//! The CLI's client commands (`status`, `peers`, `connect`, `disconnect`, `publish`, `subscribe`, `events`,
//! `diagnose`): each is one request to a running node's HTTP API, printed as a human-readable table or, with
//! `--json`, as the API's JSON. Streams (`subscribe`, `events`) print one JSON line per event until interrupted.
//! When no node answers, the error says where we looked and how to point elsewhere.

use std::{
    fmt::Write as _,
    io::{Read, Write},
};

use anyhow::Context;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::{ClientArgs, ClientCommand as Command};

/// A client of one node's API.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let token = match &args.api_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --api-token-file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
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

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends the request; a non-2xx answer becomes an error carrying the API's message.
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
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        let code = body["error"]["code"].as_str().unwrap_or("error");
        if status == StatusCode::UNAUTHORIZED {
            anyhow::bail!("{message} (pass --api-token-file or SWARMNODE_API_TOKEN_FILE)");
        }
        anyhow::bail!("{message} ({code}, HTTP {})", status.as_u16())
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = self.send(request).await?;
        response
            .json()
            .await
            .context("the API answered with something that is not JSON")
    }

    /// Opens the event stream at `path`: from the moment this returns, no event is missed.
    pub async fn open_stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.send(self.request(Method::GET, path)).await
    }

    /// Prints each SSE `data:` payload of an open stream as one line until the stream ends.
    pub async fn print_stream(response: reqwest::Response, out: &mut impl Write) -> anyhow::Result<()> {
        let mut bytes = response.bytes_stream();
        let mut pending = String::new();
        while let Some(chunk) = bytes.next().await {
            pending.push_str(&String::from_utf8_lossy(&chunk.context("the event stream broke off")?));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data:") {
                    writeln!(out, "{}", data.trim_start())?;
                    out.flush()?;
                }
            }
        }
        anyhow::bail!("the node closed the event stream")
    }
}

/// Runs one client command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    match command {
        Command::Status(args) => {
            let node = ApiClient::new(&args)?.call(Method::GET, "/v1/node", None).await?;
            print(&args, &node, status_text)
        }
        Command::Peers(args) => {
            let peers = ApiClient::new(&args)?.call(Method::GET, "/v1/peers", None).await?;
            print(&args, &peers, peers_table)
        }
        Command::Connect { client, address } => {
            let answer = ApiClient::new(&client)?
                .call(Method::POST, "/v1/peers", Some(json!({"address": address})))
                .await?;
            print(&client, &answer, |v| format!("connected to {}\n", text(&v["peer"])))
        }
        Command::Disconnect { client, peer } => {
            let answer = ApiClient::new(&client)?
                .call(Method::DELETE, &format!("/v1/peers/{}", path_segment(&peer)), None)
                .await?;
            print(&client, &answer, |v| format!("disconnected {}\n", text(&v["peer"])))
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
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("cannot read the message from stdin")?;
                    // `echo hi | swarmnode publish t -` means "hi", as a shell's $(...) would.
                    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                    trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
                }
                Some(text) => text.to_owned(),
            };
            let mut body = json!({
                "topic": topic,
                "data": data,
                "content_type": content_type.unwrap_or_else(|| crate::wire::envelope::TEXT_CONTENT_TYPE.to_owned()),
            });
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            let answer = ApiClient::new(&client)?
                .call(Method::POST, "/v1/publish", Some(body))
                .await?;
            print(&client, &answer, |v| {
                format!(
                    "published id {} to {} peer(s){}\n",
                    text(&v["id"]),
                    v["recipients"],
                    if v["duplicate"] == true {
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
            api.call(Method::POST, &format!("/v1/topics/{segment}"), None).await?;
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
        Command::Diagnose(args) => {
            let diagnosis = ApiClient::new(&args)?.call(Method::GET, "/v1/diagnose", None).await?;
            print(&args, &diagnosis, diagnosis_text)
        }
    }
}

fn print(args: &ClientArgs, value: &Value, human: impl Fn(&Value) -> String) -> anyhow::Result<()> {
    let out = if args.json { format!("{value}\n") } else { human(value) };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// Percent-encodes a path segment or query value (peer ids and topics may hold any character).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON value as plain text: strings without quotes, null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn status_text(node: &Value) -> String {
    let mut out = String::new();
    let topics: Vec<String> = node["topics"]
        .as_object()
        .map(|topics| topics.iter().map(|(t, n)| format!("{t} ({n} peers)")).collect())
        .unwrap_or_default();
    let rows = [
        ("peer id", text(&node["peer_id"])),
        ("agent", text(&node["agent"])),
        (
            "uptime",
            format!("{} s", node["uptime_ms"].as_u64().unwrap_or(0) / 1000),
        ),
        ("listening on", text(&node["listen_addresses"])),
        ("external", text(&node["external_addresses"])),
        (
            "connected peers",
            node["connected_peers"].as_array().map_or(0, Vec::len).to_string(),
        ),
        (
            "routing table",
            node["routing_table"].as_array().map_or(0, Vec::len).to_string(),
        ),
        ("topics", topics.join(", ")),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<16} {value}");
    }
    out
}

fn peers_table(peers: &Value) -> String {
    let rows: Vec<[String; 7]> = peers
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .map(|p| {
                    [
                        text(&p["peer"]),
                        text(&p["state"]),
                        text(&p["direction"]),
                        p["rtt_ms"].as_f64().map_or("-".to_owned(), |ms| format!("{ms:.1}")),
                        text(&p["sources"]),
                        member(p),
                        p["addresses"][0].as_str().unwrap_or("-").to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &["PEER", "STATE", "DIRECTION", "RTT MS", "SOURCES", "MEMBER", "ADDRESS"],
        &rows,
    )
}

/// With a CA: the member's certificate name (or `yes`), `no` while not admitted; `-` without a CA.
fn member(peer: &Value) -> String {
    match peer["admitted"].as_bool() {
        Some(true) => peer["member_name"].as_str().unwrap_or("yes").to_owned(),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    }
}

fn diagnosis_text(d: &Value) -> String {
    let mut out = String::new();
    let c = &d["connections"];
    let _ = writeln!(out, "listening on     {}", text(&d["listen_addresses"]));
    let _ = writeln!(out, "external         {}", text(&d["external_addresses"]));
    let _ = writeln!(
        out,
        "mDNS             {}",
        if d["mdns_enabled"] == true { "on" } else { "off" }
    );
    for i in d["interfaces"].as_array().into_iter().flatten() {
        let mdns = if i["mdns"] == true { "mDNS" } else { "no mDNS" };
        let _ = writeln!(
            out,
            "interface        {} {} ({mdns})",
            text(&i["name"]),
            text(&i["addresses"])
        );
    }
    let _ = writeln!(out, "routing table    {} peers", d["routing_table_size"]);
    let _ = writeln!(
        out,
        "connections      {} in + {} out established (max {}), {} / {} pending in, {} / {} pending out",
        c["established_incoming"],
        c["established_outgoing"],
        c["max_peers"],
        c["pending_incoming"],
        c["max_pending_incoming"],
        c["pending_outgoing"],
        c["max_pending_outgoing"],
    );
    for b in d["bootstrap"].as_array().into_iter().flatten() {
        let state = if b["connected"] == true {
            "connected"
        } else {
            "not connected"
        };
        let _ = writeln!(out, "bootstrap        {} ({state})", text(&b["address"]));
    }
    for (topic, size) in d["mesh_sizes"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "mesh             {topic}: {size} peers");
    }
    out
}

/// Left-aligned columns separated by two spaces.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
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

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(path_segment("chat-1"), "chat-1");
    }
}
