//! Serving the router over HTTP/1.1 with every connection bounded. hyper does the protocol, with its header-read
//! timeout (which also closes idle keep-alive connections) and a small buffer limit; `tokio-io-timeout` closes a
//! connection whose writes stall (a client that stops reading); a semaphore caps the connections served at once.
//! A connection over the cap gets an immediate 503 with `Retry-After` and is closed, so it costs nothing while
//! waiting and never hangs; those answers are themselves capped, and past that a connection is just closed.

use std::{sync::Arc, time::Duration};

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
use crate::metrics::Metrics;

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
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = tasks.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("API accept error: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone();
                tasks.spawn(async move {
                    serve_connection(stream, app, &limits).await;
                    drop(permit);
                });
            }
            Err(_) => {
                metrics
                    .api_refused
                    .get_or_create(&crate::metrics::ReasonLabel { reason: "connections" })
                    .inc();
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tasks.spawn(async move {
                        refuse(stream, limits.max_connections).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, app: Router, limits: &ApiLimits) {
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

/// Answers a connection over the cap: reads what it sent within a moment (so closing does not reset the connection
/// before the client reads the answer), writes a 503 and closes.
async fn refuse(mut stream: TcpStream, cap: usize) {
    let body = format!(
        r#"{{"error":{{"code":"too_many_connections","message":"the API serves at most {cap} connections at once (--api-max-connections); retry shortly"}}}}"#
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut request = [0u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_TIME / 4, stream.read(&mut request)).await;
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_TIME, exchange).await;
}
