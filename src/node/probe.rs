//! The I/O of health checks: one HTTP GET or one TCP connect, all of it (name lookup, connect, request, response
//! head) under the check's timeout. The verdict is not made here: the outcome goes back to `policy::checks`, which
//! judges it. The HTTP request is written by hand (HTTP/1.1, `Connection: close`) and only the status line and
//! headers are read, at most `MAX_RESPONSE_HEAD` bytes, so a check costs one short-lived socket and a small buffer
//! whatever the service sends back.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, lookup_host},
};

use super::agent_version;
use crate::{
    config::services::{CheckKind, Endpoint, Host, HttpTarget},
    policy::checks::ProbeOutcome,
};

/// Most bytes of an HTTP response read, status line and headers together; a longer head fails the check.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Runs one check of `kind` within `timeout`. TTL checks are reported by their services, not probed: asking for
/// one is a failure.
pub async fn probe(kind: &CheckKind, timeout: Duration) -> ProbeOutcome {
    let attempt = async {
        match kind {
            CheckKind::Http { url } => http(url).await,
            CheckKind::Tcp { address } => {
                connect(&Endpoint::parse(address, None)?).await?;
                Ok(ProbeOutcome::Connected)
            }
            CheckKind::Ttl { .. } => Err("a ttl check is reported by its service, not probed".to_owned()),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => ProbeOutcome::Failed { error },
        Err(_) => ProbeOutcome::TimedOut,
    }
}

/// `GET` the URL and read the response's status.
async fn http(url: &str) -> Result<ProbeOutcome, String> {
    let target = HttpTarget::parse(url)?;
    let mut stream = connect(&target.endpoint).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.host_header(),
        agent_version()
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| brief(&e))?;
    let head = read_head(&mut stream).await?;
    status(&head).map(|status| ProbeOutcome::Http { status })
}

/// A connection to the endpoint: its IP, or each address its name resolves to in turn until one accepts.
async fn connect(endpoint: &Endpoint) -> Result<TcpStream, String> {
    let addresses: Vec<SocketAddr> = match &endpoint.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, endpoint.port)],
        Host::Name(name) => lookup_host((name.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("cannot resolve {name}: {}", brief(&e)))?
            .collect(),
    };
    let mut error = format!("{} resolves to no address", endpoint.host);
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => error = brief(&e),
        }
    }
    Err(error)
}

/// The response head, up to the blank line that ends it.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut head = Vec::with_capacity(1024);
    let mut limited = stream.take(MAX_RESPONSE_HEAD as u64);
    loop {
        let searched = head.len().saturating_sub(3);
        let read = limited.read_buf(&mut head).await.map_err(|e| brief(&e))?;
        if let Some(end) = head[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(searched + end);
            return Ok(head);
        }
        if read == 0 {
            return Err(match head.len() {
                0 => "the connection closed without a response".to_owned(),
                MAX_RESPONSE_HEAD => format!("the response head is longer than {} KiB", MAX_RESPONSE_HEAD / 1024),
                _ => "the connection closed inside the response head".to_owned(),
            });
        }
    }
}

/// The status code of a head's status line (`HTTP/1.1 200 OK`).
fn status(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = std::str::from_utf8(parts.next().unwrap_or_default())
        .ok()
        .filter(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|code| code.parse().ok());
    if version.starts_with(b"HTTP/1.")
        && let Some(status) = code
    {
        return Ok(status);
    }
    let shown: String = String::from_utf8_lossy(line).chars().take(64).collect();
    Err(format!("not an HTTP response: {shown:?}"))
}

/// An I/O error in a few words (`connection refused`), without the OS error number when the kind says it all.
fn brief(error: &io::Error) -> String {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        AddrNotAvailable => "address not available".into(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::{net::TcpListener, sync::oneshot};

    use super::*;

    const SHORT: Duration = Duration::from_millis(200);

    /// A server on 127.0.0.1 that answers one request with `response` and hands over the request head it read.
    async fn server(response: Vec<u8>) -> (u16, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sent, request) = oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") && socket.read_buf(&mut head).await.is_ok_and(|read| read > 0) {}
            let _ = sent.send(String::from_utf8_lossy(&head).into_owned());
            // The probe may hang up first (it reads no more than a head): that is not the server's failure.
            let _ = socket.write_all(&response).await;
        });
        (port, request)
    }

    async fn answering(status: &str) -> (u16, oneshot::Receiver<String>) {
        server(format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").into_bytes()).await
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn http_check(url: String) -> CheckKind {
        CheckKind::Http { url }
    }

    #[tokio::test]
    async fn an_http_check_sends_a_plain_get_and_reads_the_status() {
        let (port, request) = answering("200 OK").await;
        let url = format!("http://127.0.0.1:{port}/health?full=1");
        assert_eq!(probe(&http_check(url), SHORT).await, ProbeOutcome::Http { status: 200 });
        let request = request.await.unwrap();
        assert!(request.starts_with("GET /health?full=1 HTTP/1.1\r\n"), "{request}");
        for header in [
            format!("Host: 127.0.0.1:{port}\r\n"),
            format!("User-Agent: swarmnode/{}\r\n", env!("CARGO_PKG_VERSION")),
            "Connection: close\r\n".to_owned(),
        ] {
            assert!(request.contains(&header), "{request} should hold {header}");
        }
    }

    #[tokio::test]
    async fn every_status_is_handed_back_as_it_came() {
        for status in ["429 Too Many Requests", "500 Internal Server Error", "204 No Content"] {
            let (port, _) = answering(status).await;
            let code = status[..3].parse().unwrap();
            let outcome = probe(&http_check(format!("http://127.0.0.1:{port}/")), SHORT).await;
            assert_eq!(outcome, ProbeOutcome::Http { status: code });
        }
    }

    #[tokio::test]
    async fn a_dns_name_is_resolved_and_each_address_tried() {
        let (port, request) = answering("200 OK").await;
        let outcome = probe(&http_check(format!("http://localhost:{port}")), SHORT).await;
        assert_eq!(outcome, ProbeOutcome::Http { status: 200 });
        assert!(request.await.unwrap().starts_with("GET / HTTP/1.1\r\nHost: localhost:"));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_on_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let connection = listener.accept().await;
            tokio::time::sleep(10 * SHORT).await;
            drop(connection);
        });
        let started = Instant::now();
        let outcome = probe(&http_check(format!("http://127.0.0.1:{port}/")), SHORT).await;
        assert_eq!(outcome, ProbeOutcome::TimedOut);
        assert!(started.elapsed() < 2 * SHORT, "{:?}", started.elapsed());
        held.abort();
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_for_tcp_and_http() {
        let port = closed_port().await;
        let refused = ProbeOutcome::Failed {
            error: "connection refused".into(),
        };
        let tcp = CheckKind::Tcp {
            address: format!("127.0.0.1:{port}"),
        };
        assert_eq!(probe(&tcp, SHORT).await, refused);
        assert_eq!(
            probe(&http_check(format!("http://127.0.0.1:{port}/")), SHORT).await,
            refused
        );
    }

    #[tokio::test]
    async fn a_tcp_check_passes_once_the_port_accepts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = CheckKind::Tcp {
            address: listener.local_addr().unwrap().to_string(),
        };
        assert_eq!(probe(&tcp, SHORT).await, ProbeOutcome::Connected);
    }

    #[tokio::test]
    async fn an_endless_or_foreign_response_fails_with_the_reason() {
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(300));
        let cases = [
            (endless, "longer than 16 KiB"),
            (
                b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(),
                "not an HTTP response: \"SSH-2.0-OpenSSH_9.6\"",
            ),
            (b"HTTP/1.1 2000 OK\r\n\r\n".to_vec(), "not an HTTP response"),
            (b"HTTP/1.1 200 OK\r\n".to_vec(), "closed inside the response head"),
            (Vec::new(), "closed without a response"),
        ];
        for (response, expected) in cases {
            let (port, _) = server(response).await;
            let outcome = probe(&http_check(format!("http://127.0.0.1:{port}/")), SHORT).await;
            let ProbeOutcome::Failed { error } = outcome else {
                panic!("{outcome:?} should fail with {expected}");
            };
            assert!(error.contains(expected), "{error} should mention {expected}");
        }
    }

    #[tokio::test]
    async fn a_ttl_check_is_not_probed() {
        let ttl = CheckKind::Ttl {
            ttl: Duration::from_secs(30),
        };
        assert!(matches!(probe(&ttl, SHORT).await, ProbeOutcome::Failed { .. }));
    }
}
