//! Who may drive the API, decided from a request's headers alone (pure, so every case is a unit test): the bearer
//! token when one is configured, and the checks that keep web pages out. A page in a browser can make requests to a
//! loopback API too: through DNS rebinding (its own name resolving to 127.0.0.1, so it reads the answers) or with a
//! cross-origin form post (which needs no preflight). Hence, without a token, `Host` must name a loopback host; and
//! with or without one, a request a browser marks as coming from another origin is refused: a change it would make,
//! and also a read (the API serves no page to other origins, and a cross-origin event stream would hold a slot).

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// Why a request was refused before reaching its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, a wrong one, or another scheme.
    Unauthorized,
    /// `Host` is missing or names something other than this loopback API.
    ForeignHost,
    /// A browser sent the request from a page of another origin.
    CrossOrigin,
}

impl Refusal {
    /// The metric label and error code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::ForeignHost => "forbidden_host",
            Refusal::CrossOrigin => "forbidden_origin",
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive (RFC 9110 §11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

/// Whether `headers` carry `expected` as a bearer token, compared in constant time.
pub fn has_token(headers: &HeaderMap, expected: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// The host of a `Host` value without its port: `localhost:5100` → `localhost`, `[::1]:5100` → `::1`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

/// Whether `host` names this machine's loopback: `localhost` (and `*.localhost`, which resolve there by RFC 6761),
/// or a loopback IP address.
pub fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a browser marks this request as made by a page of another origin: `Origin` names another host than the
/// one the request is for (or is `null`, an opaque origin), or `Sec-Fetch-Site` says so.
fn is_cross_origin(headers: &HeaderMap) -> bool {
    let value = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = value(header::HeaderName::from_static("sec-fetch-site"))
        && (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return true;
    }
    match value(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let own = value(header::HOST).unwrap_or("");
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_none_or(|authority| !authority.eq_ignore_ascii_case(own))
        }
    }
}

/// Whether the request may go on to its route: the token first (when configured), then `Host` (only without a
/// token: a token holder may reach the API under any name), then the origin.
pub fn check(headers: &HeaderMap, token: Option<&str>) -> Result<(), Refusal> {
    match token {
        Some(expected) if !has_token(headers, expected) => return Err(Refusal::Unauthorized),
        Some(_) => {}
        None => {
            let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
            if !host.is_some_and(is_loopback_host) {
                return Err(Refusal::ForeignHost);
            }
        }
    }
    if is_cross_origin(headers) {
        return Err(Refusal::CrossOrigin);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_not_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert!(has_token(&headers(&[("authorization", "bEaReR s3cret")]), "s3cret"));
        assert!(!has_token(&headers(&[("authorization", "Bearer s3cre")]), "s3cret"));
        assert!(!has_token(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn without_a_token_only_loopback_host_names_are_served() {
        for host in [
            "127.0.0.1:5100",
            "localhost:5100",
            "LOCALHOST",
            "[::1]:5100",
            "app.localhost:1",
            "127.1.2.3",
        ] {
            assert_eq!(check(&headers(&[("host", host)]), None), Ok(()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:5100",
            "127.0.0.1.evil.example",
            "10.0.0.1:5100",
            "[::2]:1",
        ] {
            assert_eq!(
                check(&headers(&[("host", host)]), None),
                Err(Refusal::ForeignHost),
                "{host}"
            );
        }
        assert_eq!(check(&HeaderMap::new(), None), Err(Refusal::ForeignHost));
    }

    #[test]
    fn with_a_token_any_host_is_served_but_only_with_the_token() {
        let with = headers(&[("host", "node.example:5100"), ("authorization", "Bearer t")]);
        assert_eq!(check(&with, Some("t")), Ok(()));
        let without = headers(&[("host", "127.0.0.1:5100")]);
        assert_eq!(check(&without, Some("t")), Err(Refusal::Unauthorized));
    }

    #[test]
    fn cross_origin_browser_requests_are_refused() {
        let host = ("host", "127.0.0.1:5100");
        let refused = [
            headers(&[host, ("origin", "http://evil.example")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("origin", "http://127.0.0.1:5101")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
        ];
        for request in &refused {
            assert_eq!(check(request, None), Err(Refusal::CrossOrigin), "{request:?}");
        }
        let same_origin = headers(&[
            host,
            ("origin", "http://127.0.0.1:5100"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(check(&same_origin, None), Ok(()));
        assert_eq!(check(&headers(&[host]), None), Ok(()), "curl sends no Origin");
        let token = headers(&[host, ("authorization", "Bearer t"), ("origin", "http://evil.example")]);
        assert_eq!(check(&token, Some("t")), Err(Refusal::CrossOrigin));
    }
}
