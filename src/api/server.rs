//! Serving the router over HTTP/1.1 with every connection bounded. hyper does the protocol, with its header-read
//! timeout (which also closes idle keep-alive connections) and a small buffer limit; `tokio-io-timeout` closes a
//! connection whose writes stall (a client that stops reading); a semaphore and a count per source address cap the
//! connections served at once, in all and per address. A connection over a cap gets an immediate 503
//! with `Retry-After` and is closed, so it costs nothing while waiting and never hangs; those answers are themselves
//! capped, and past that a connection is just closed. Each accepted socket also gets `TCP_USER_TIMEOUT` (the write
//! timeout), so a client that vanished without a FIN or RST is dropped as soon as unacknowledged data waits that long.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tokio_io_timeout::TimeoutStream;

use super::limits::ApiLimits;
use crate::metrics::{Metrics, ReasonLabel};

/// Most bytes hyper buffers per connection, each way: room for a request head and then some (a body streams
/// through it in chunks).
const CONNECTION_BUFFER: usize = 64 << 10;
/// Longest request head (request line and headers); a longer one is answered 431 and the connection closed.
const MAX_REQUEST_HEAD: usize = 32 << 10;
/// Connections over the cap being answered 503 at once; past it they are closed without an answer.
const MAX_REFUSING: usize = 32;
/// How long a refused connection is given to send its request and read the 503.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// After an accept error (out of file descriptors, mostly), the pause before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until the task running it is dropped; dropping it also closes every connection.
pub async fn serve(listener: TcpListener, app: Router, limits: ApiLimits, metrics: Metrics) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSING));
    // Connections served per source address; a task serving one answers its address when it ends.
    let mut per_address: HashMap<IpAddr, usize> = HashMap::new();
    let mut tasks: JoinSet<Option<IpAddr>> = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(ended) = tasks.join_next() => {
                if let Ok(Some(address)) = ended {
                    release(&mut per_address, address);
                }
                continue;
            }
        };
        let (stream, address) = match accepted {
            Ok((stream, from)) => (stream, from.ip()),
            Err(e) => {
                tracing::warn!("API accept error: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let from_address = per_address.get(&address).copied().unwrap_or(0);
        let refusal = if from_address >= limits.max_connections_per_ip {
            Refusal::PerAddress(limits.max_connections_per_ip)
        } else if let Ok(permit) = connections.clone().try_acquire_owned() {
            per_address.insert(address, from_address + 1);
            let app = app.clone();
            tasks.spawn(async move {
                serve_connection(stream, app, &limits).await;
                drop(permit);
                Some(address)
            });
            continue;
        } else {
            Refusal::Total(limits.max_connections)
        };
        metrics
            .api_refused
            .get_or_create(&ReasonLabel {
                reason: refusal.reason(),
            })
            .inc();
        if let Ok(permit) = refusals.clone().try_acquire_owned() {
            tasks.spawn(async move {
                refuse(stream, refusal).await;
                drop(permit);
                None
            });
        }
    }
}

fn release(per_address: &mut HashMap<IpAddr, usize>, address: IpAddr) {
    if let Some(count) = per_address.get_mut(&address) {
        *count -= 1;
        if *count == 0 {
            per_address.remove(&address);
        }
    }
}

/// Why a connection is not served.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// `--api-max-connections` are served.
    Total(usize),
    /// `--api-max-connections-per-ip` are served to its address.
    PerAddress(usize),
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Total(_) => "connections",
            Refusal::PerAddress(_) => "connections_per_ip",
        }
    }

    fn message(self) -> String {
        match self {
            Refusal::Total(cap) => {
                format!("the API serves at most {cap} connections at once (--api-max-connections); retry shortly")
            }
            Refusal::PerAddress(cap) => format!(
                "the API serves at most {cap} connections at once to one address (--api-max-connections-per-ip); \
                 retry shortly"
            ),
        }
    }
}

async fn serve_connection(stream: TcpStream, app: Router, limits: &ApiLimits) {
    // Best effort: without it a vanished client is still dropped, by the kernel's retransmission limit.
    let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(limits.write_timeout));
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(limits.write_timeout));
    let io = TokioIo::new(Box::pin(stream));
    let service = TowerToHyperService::new(app);
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(CONNECTION_BUFFER)
        .max_header_size(MAX_REQUEST_HEAD)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        tracing::debug!("API connection ended: {e}");
    }
}

/// Answers a connection over a cap: reads what it sends for a moment (so closing does not reset the connection
/// before the client reads the answer), writes a 503, closes its side and drains the rest until the client closes or
/// the moment is over.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let body = serde_json::json!({"error": {"code": "too_many_connections", "message": refusal.message()}}).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut request = [0u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_TIME / 4, stream.read(&mut request)).await;
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut request).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, exchange).await;
}
