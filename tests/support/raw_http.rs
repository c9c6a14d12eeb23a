//! An API under test with chosen limits, and a raw HTTP client that sends exactly the bytes a hostile client would
//! (half a request line, a trickle of headers, pipelined junk) and reports what came back and when the server closed.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use swarmnode::api::{self, ApiConfig, RunningApi, limits::ApiLimits};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{DEADLINE, TestNode};

/// A node with its API on a free loopback port.
pub struct LimitedApi {
    pub node: TestNode,
    pub api: RunningApi,
}

impl LimitedApi {
    pub async fn start(token: Option<&str>, limits: ApiLimits) -> LimitedApi {
        let node = TestNode::start(|_| {}).await;
        let config = ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: token.map(str::to_owned),
            limits,
        };
        let api = api::start(&config, node.handle.clone(), node.config.max_message_size)
            .await
            .unwrap();
        LimitedApi { node, api }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api.address)
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.api.address).await.unwrap()
    }
}

/// What a raw exchange got: the bytes read, and after how long the server closed (None: still open at the end).
pub struct Exchange {
    pub text: String,
    pub closed_after: Option<Duration>,
}

impl Exchange {
    /// The status codes of every response in the bytes read, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .match_indices("HTTP/1.1 ")
            .filter_map(|(at, _)| self.text.get(at + 9..at + 12)?.parse().ok())
            .collect()
    }
}

/// Reads from `stream` until the server closes it or `wait` passes.
pub async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Exchange {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; 64 << 10];
    let closed_after = loop {
        let left = wait.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => break None,
            Ok(Ok(0) | Err(_)) => break Some(start.elapsed()),
            Ok(Ok(n)) => bytes.extend_from_slice(&buffer[..n]),
        }
    };
    Exchange {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        closed_after,
    }
}

/// Sends `request` on a new connection and reads until the server closes it (or the test deadline).
pub async fn exchange(api: &LimitedApi, request: &[u8]) -> Exchange {
    let mut stream = api.connect().await;
    stream.write_all(request).await.unwrap();
    read_until_closed(&mut stream, DEADLINE).await
}

/// The JSON body of the last response in `text`.
pub fn last_json(text: &str) -> serde_json::Value {
    let body = text.rsplit("\r\n\r\n").next().unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}
