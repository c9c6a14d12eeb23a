//! Where a check reaches its service: `HOST:PORT` for TCP and `http://HOST[:PORT][/PATH]` for HTTP, taken apart
//! once by the same parser that validates definitions, so a probe never meets a target the node did not accept. Only
//! what a plain HTTP/1.1 request needs is supported: no https (the node has no TLS client for checks), no user info
//! (credentials would be persisted and announced), no fragment; hosts are loopback: the node checks
//! services on its own machine, and the API can never make it probe another host.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::MAX_TARGET;

/// A check target's host: an IP address is used as is, a DNS name is resolved at each probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// `HOST:PORT` as a check reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

/// An `http://` check URL taken apart: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub endpoint: Endpoint,
    /// The request target: a path starting with `/`, with its query if any.
    pub path: String,
}

impl Endpoint {
    /// Parses `HOST:PORT` (`[IPv6]:PORT`); the port may be left out only when `default_port` is given.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<Endpoint, String> {
        if text.len() > MAX_TARGET {
            return Err(format!("a check target is at most {MAX_TARGET} bytes"));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: an IPv6 address ends with ]"))?;
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("{text:?}: a colon and the port follow the ]"))?,
                ),
            };
            (Host::Ip(ip.into()), port)
        } else {
            let (host, port) = match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            if port.is_some_and(|port| port.contains(':')) {
                return Err(format!(
                    "{text:?}: an IPv6 address is written in brackets, e.g. [::1]:8080"
                ));
            }
            (parse_host(host)?, port)
        };
        let port = match (port, default_port) {
            (Some(port), _) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("{text:?}: port {port:?} must be a number from 1 to 65535")),
            },
            (None, Some(port)) => port,
            (None, None) => return Err(format!("{text:?} should be HOST:PORT")),
        };
        let local = match &host {
            Host::Ip(ip) => ip.is_loopback(),
            Host::Name(name) => name.eq_ignore_ascii_case("localhost"),
        };
        if !local {
            return Err(format!(
                "{host}: a check reaches the service on this machine, at 127.0.0.1, [::1] or localhost (the node \
                 probes no other host)"
            ));
        }
        Ok(Endpoint { host, port })
    }
}

impl HttpTarget {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY]`: plain HTTP only, no user info, no fragment, the path in
    /// printable ASCII (percent-encode the rest).
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        if url.len() > MAX_TARGET {
            return Err(format!("a check URL is at most {MAX_TARGET} bytes"));
        }
        let rest = match url.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &url[7..],
            _ if url
                .get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://")) =>
            {
                return Err(
                    "https checks are not supported: use http://, or tcp://HOST:PORT to check that a TLS \
                            port accepts connections"
                        .into(),
                );
            }
            _ => return Err(format!("check URL {url:?} should start with http://")),
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err("a check URL may not hold a user name or password".into());
        }
        if path.contains('#') {
            return Err("a check URL has no #fragment".into());
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a check URL's path is printable ASCII without spaces (percent-encode the rest)".into());
        }
        let endpoint = Endpoint::parse(authority, Some(80))?;
        let path = match path.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{path}"),
            Some(_) => path.to_owned(),
        };
        Ok(HttpTarget { endpoint, path })
    }

    /// The `Host` header: the host as written, and the port unless it is 80.
    pub fn host_header(&self) -> String {
        match self.endpoint.port {
            80 => self.endpoint.host.to_string(),
            _ => self.endpoint.to_string(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An IPv4 address or a DNS name (labels of letters, digits and inner hyphens, 253 bytes at most).
fn parse_host(host: &str) -> Result<Host, String> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(ip.into()));
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        return Ok(Host::Name(host.to_owned()));
    }
    Err(format!("{host:?} is neither an IP address nor a DNS name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str) -> Host {
        Host::Name(host.into())
    }

    #[test]
    fn an_http_url_gives_host_port_and_path_with_their_defaults() {
        let cases = [
            (
                "http://127.0.0.1:8080/health",
                Host::Ip([127, 0, 0, 1].into()),
                8080,
                "/health",
            ),
            ("http://localhost", name("localhost"), 80, "/"),
            ("HTTP://localhost/a/b?x=1&y", name("localhost"), 80, "/a/b?x=1&y"),
            ("http://localhost:81?ready", name("localhost"), 81, "/?ready"),
            ("http://[::1]:9000/", Host::Ip(Ipv6Addr::LOCALHOST.into()), 9000, "/"),
        ];
        for (url, host, port, path) in cases {
            let target = HttpTarget::parse(url).unwrap();
            assert_eq!(target.endpoint, Endpoint { host, port }, "{url}");
            assert_eq!(target.path, path, "{url}");
        }
    }

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_80() {
        let header = |url| HttpTarget::parse(url).unwrap().host_header();
        assert_eq!(header("http://localhost/x"), "localhost");
        assert_eq!(header("http://localhost:8080/x"), "localhost:8080");
        assert_eq!(header("http://[::1]:8080"), "[::1]:8080");
        assert_eq!(header("http://[::1]"), "[::1]");
    }

    #[test]
    fn urls_the_probe_cannot_or_should_not_send_are_refused_with_the_reason() {
        let cases = [
            ("https://localhost/", "https"),
            ("ftp://localhost/", "http://"),
            ("localhost:80", "http://"),
            ("http://user:secret@localhost/", "user name or password"),
            ("http://localhost/#top", "fragment"),
            ("http://localhost/a b", "printable ASCII"),
            ("http://localhost/é", "printable ASCII"),
            ("http://localhost:0/", "1 to 65535"),
            ("http://localhost:65536/", "1 to 65535"),
            ("http://localhost:/", "1 to 65535"),
            ("http:///health", "neither an IP address nor a DNS name"),
            ("http://exa_mple.com/", "neither an IP address nor a DNS name"),
            ("http://-bad.com/", "neither an IP address nor a DNS name"),
            ("http://::1/", "brackets"),
            ("http://[::1/", "ends with ]"),
            ("http://[::1]x/", "colon"),
            ("http://[127.0.0.1]/", "not an IPv6 address"),
        ];
        for (url, expected) in cases {
            let error = HttpTarget::parse(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error} should mention {expected}");
        }
        let long = format!("http://localhost/{}", "a".repeat(MAX_TARGET));
        assert!(HttpTarget::parse(&long).unwrap_err().contains("at most"));
    }

    #[test]
    fn only_this_machine_is_checked() {
        for other in [
            "10.0.0.5:80",
            "[fe80::1]:80",
            "redis:6379",
            "localhost.example.com:80",
            "0.0.0.0:80",
        ] {
            let error = Endpoint::parse(other, None).unwrap_err();
            assert!(error.contains("probes no other host"), "{other}: {error}");
        }
        assert!(HttpTarget::parse("http://192.168.1.1/health").is_err());
    }

    #[test]
    fn a_tcp_address_needs_its_port() {
        assert_eq!(
            Endpoint::parse("127.0.0.5:5432", None).unwrap(),
            Endpoint {
                host: Host::Ip([127, 0, 0, 5].into()),
                port: 5432
            }
        );
        assert_eq!(Endpoint::parse("[::1]:22", None).unwrap().to_string(), "[::1]:22");
        assert_eq!(Endpoint::parse("LocalHost:6379", None).unwrap().host, name("LocalHost"));
        for bad in ["redis", "[::1]", "redis:", "redis:http", "a:b:c"] {
            assert!(Endpoint::parse(bad, None).is_err(), "{bad}");
        }
    }
}
