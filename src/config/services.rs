//! What a local service is: its definition (name, port, tags, an optional health check) as the operator writes it,
//! with the `--service` flag, as the JSON body of `PUT /v1/services/{id}`, or as the node persists it. All three go
//! through one validation (`ServiceBody::into_definition`), so a definition the node holds is one it can announce in
//! its member record and probe safely: texts within the record's limits and free of characters that disguise them,
//! check targets it can reach without a URL library (plain HTTP to an IP or DNS name), durations within ranges that
//! keep deadline arithmetic finite.

mod flag;
mod target;

use std::{ops::RangeInclusive, time::Duration};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use target::{Endpoint, Host, HttpTarget};

use super::{bounds, is_invisible_format, parse_duration};
use crate::wire::members::{MAX_NAME, MAX_SERVICE_TAGS, MAX_TAG_VALUE};

/// How often an HTTP or TCP check runs when not told.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How long a probe may take when not told (at most half the interval, so a short interval alone is valid).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// `interval`: probes more often than ten times a second are load, not monitoring.
pub const INTERVAL: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(3600);
/// `timeout` (it must also be shorter than the interval).
pub const TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(50)..=Duration::from_secs(300);
/// `ttl`: how long a pass, warn or fail holds.
pub const TTL: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(24 * 3600);
/// `deregister_after`: how long a service may stay critical before the node drops it.
pub const DEREGISTER_AFTER: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(30 * 24 * 3600);
/// Longest check URL or TCP address, in bytes: it is persisted and sent on every probe.
pub const MAX_TARGET: usize = 1024;

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET` the URL: 2xx is passing, 429 warning, anything else critical.
    Http { url: String },
    /// Open a TCP connection to `host:port`: connected is passing.
    Tcp { address: String },
    /// The service reports itself (pass, warn, fail) at least once per `ttl`, or turns critical.
    Ttl { ttl: Duration },
}

/// A health check and its schedule (the schedule applies to HTTP and TCP checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
}

/// One service this node offers, as validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredService", into = "StoredService")]
pub struct ServiceDefinition {
    /// Unique on this node; the name when not given.
    pub id: String,
    /// What clients look it up by.
    pub name: String,
    pub port: u16,
    pub tags: Vec<String>,
    /// None: the service is always passing.
    pub check: Option<Check>,
    /// Critical for this long (continuously, from registration or its last non-critical result): deregistered.
    pub deregister_after: Option<Duration>,
}

/// `PUT /v1/services/{id}`: a service definition without its id, which comes from the path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceBody {
    /// 1 to 64 bytes of UTF-8 without control or invisible formatting characters (the schema promises the 16
    /// characters that always fit).
    #[schema(min_length = 1, max_length = 16, pattern = "^[A-Za-z0-9._-]{1,16}$", example = "web")]
    pub name: String,
    #[schema(minimum = 1, maximum = 65535, example = 8080)]
    #[serde(deserialize_with = "whole_port")]
    pub port: u16,
    /// At most 16, each 1 to 256 bytes of UTF-8 without control or invisible formatting characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub check: Option<CheckBody>,
    /// A duration (`1m`, 1s to 30days): critical for this long, the service is deregistered. Needs a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^[1-9][0-9]?m$", example = "1m")]
    pub deregister_after: Option<String>,
}

/// A check: exactly one of `http`, `tcp` and `ttl`; `interval` and `timeout` for HTTP and TCP checks only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// `http://HOST[:PORT][/PATH]`, HOST an IP address (IPv6 in brackets) or a DNS name; no https, no user info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        pattern = "^http://(127\\.0\\.0\\.1|localhost|\\[::1\\]):[1-9][0-9]{0,3}(/[A-Za-z0-9._~/-]*)?$",
        example = "http://127.0.0.1:8080/health"
    )]
    pub http: Option<String>,
    /// `HOST:PORT` to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        pattern = "^(127\\.0\\.0\\.1|localhost|\\[::1\\]):[1-9][0-9]{0,3}$",
        example = "127.0.0.1:5432"
    )]
    pub tcp: Option<String>,
    /// A duration (100ms to 24h): the service must pass, warn or fail at least this often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^[1-9][0-9]?s$", example = "30s")]
    pub ttl: Option<String>,
    /// A duration (100ms to 1h); 10s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^[1-9][0-9]?s$", example = "10s")]
    pub interval: Option<String>,
    /// A duration (50ms to 5m, shorter than the interval); 2s, or half the interval if shorter, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^([5-9][0-9]|[1-9][0-9]{2})ms$", example = "500ms")]
    pub timeout: Option<String>,
}

/// The persisted form: the body's fields plus the id.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredService {
    id: String,
    name: String,
    port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<CheckBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deregister_after: Option<String>,
}

impl ServiceBody {
    /// The definition with `id`, checked exactly as the `--service` flag and the persisted form are.
    pub fn into_definition(self, id: String) -> Result<ServiceDefinition, String> {
        check_text("name", &self.name, MAX_NAME)?;
        check_text("id", &id, MAX_NAME)?;
        check_id(&id)?;
        if self.port == 0 {
            return Err("port must be a number from 1 to 65535".into());
        }
        if self.tags.len() > MAX_SERVICE_TAGS {
            return Err(format!("a service has at most {MAX_SERVICE_TAGS} tags"));
        }
        for tag in &self.tags {
            check_text("tag", tag, MAX_TAG_VALUE)?;
        }
        let check = self.check.map(CheckBody::into_check).transpose()?;
        let deregister_after = match self.deregister_after {
            None => None,
            // Without a check the service is always passing, so it never applies; accepted all the same.
            Some(text) => Some(ranged("deregister_after", &text, DEREGISTER_AFTER)?),
        };
        Ok(ServiceDefinition {
            id,
            name: self.name,
            port: self.port,
            tags: self.tags,
            check,
            deregister_after,
        })
    }
}

impl CheckBody {
    fn into_check(self) -> Result<Check, String> {
        let kind = match (self.http, self.tcp, self.ttl) {
            (Some(url), None, None) => {
                HttpTarget::parse(&url)?;
                CheckKind::Http { url }
            }
            (None, Some(address), None) => {
                Endpoint::parse(&address, None)?;
                CheckKind::Tcp { address }
            }
            (None, None, Some(ttl)) => {
                // A TTL check is renewed by its service's pass, warn and fail: interval and timeout (checked all
                // the same) do not apply to it.
                if let Some(text) = &self.interval {
                    ranged("interval", text, INTERVAL)?;
                }
                if let Some(text) = &self.timeout {
                    ranged("timeout", text, TIMEOUT)?;
                }
                let ttl = ranged("ttl", &ttl, TTL)?;
                return Ok(Check {
                    kind: CheckKind::Ttl { ttl },
                    interval: DEFAULT_INTERVAL,
                    timeout: DEFAULT_TIMEOUT,
                });
            }
            _ => return Err("a check is exactly one of http, tcp and ttl".into()),
        };
        let interval = match self.interval {
            Some(text) => ranged("interval", &text, INTERVAL)?,
            None => DEFAULT_INTERVAL,
        };
        let timeout = match self.timeout {
            Some(text) => ranged("timeout", &text, TIMEOUT)?,
            None => DEFAULT_TIMEOUT.min(interval / 2),
        };
        if timeout >= interval {
            return Err(format!(
                "timeout {} must be shorter than interval {}",
                show(timeout),
                show(interval)
            ));
        }
        Ok(Check {
            kind,
            interval,
            timeout,
        })
    }
}

impl ServiceDefinition {
    /// The definition as the API shows and takes it (without its id).
    pub fn to_body(&self) -> ServiceBody {
        ServiceBody {
            name: self.name.clone(),
            port: self.port,
            tags: self.tags.clone(),
            check: self.check.as_ref().map(Check::to_body),
            deregister_after: self.deregister_after.map(show),
        }
    }
}

impl Check {
    fn to_body(&self) -> CheckBody {
        let schedule = |body: CheckBody| CheckBody {
            interval: Some(show(self.interval)),
            timeout: Some(show(self.timeout)),
            ..body
        };
        match &self.kind {
            CheckKind::Http { url } => schedule(CheckBody {
                http: Some(url.clone()),
                ..CheckBody::default()
            }),
            CheckKind::Tcp { address } => schedule(CheckBody {
                tcp: Some(address.clone()),
                ..CheckBody::default()
            }),
            CheckKind::Ttl { ttl } => CheckBody {
                ttl: Some(show(*ttl)),
                ..CheckBody::default()
            },
        }
    }
}

impl TryFrom<StoredService> for ServiceDefinition {
    type Error = String;

    fn try_from(stored: StoredService) -> Result<Self, String> {
        let body = ServiceBody {
            name: stored.name,
            port: stored.port,
            tags: stored.tags,
            check: stored.check,
            deregister_after: stored.deregister_after,
        };
        body.into_definition(stored.id)
    }
}

impl From<ServiceDefinition> for StoredService {
    fn from(definition: ServiceDefinition) -> Self {
        let body = definition.to_body();
        StoredService {
            id: definition.id,
            name: body.name,
            port: body.port,
            tags: body.tags,
            check: body.check,
            deregister_after: body.deregister_after,
        }
    }
}

/// A port as JSON may write it: `8080`, or `8080.0` (JSON Schema counts a whole float as an integer).
fn whole_port<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    struct Port;
    impl serde::de::Visitor<'_> for Port {
        type Value = u16;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a port number from 0 to 65535")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format!("port {v} is above 65535")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format!("port {v} is not from 0 to 65535")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u16, E> {
            if v.fract() == 0.0 && (0.0..=65535.0).contains(&v) {
                Ok(v as u16)
            } else {
                Err(E::custom(format!("port {v} is not a whole number from 0 to 65535")))
            }
        }
    }
    deserializer.deserialize_any(Port)
}

/// What a service id may be: ASCII letters, digits, `.`, `_` and `-`, 1 to 64 bytes, starting with a letter or a
/// digit, so that it is one plain path segment of `/v1/services/{id}`.
pub const SERVICE_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

fn check_id(id: &str) -> Result<(), String> {
    let mut bytes = id.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Ok(());
    }
    Err(format!(
        "service id {:?} must be ASCII letters, digits, '.', '_' and '-', starting with a letter or digit (give \
         the flag an id=… of that form when the name is not one)",
        short(id)
    ))
}

/// 1 to `max` bytes, no control characters and no invisible formatting characters (the member record's rule).
fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.is_empty() || text.len() > max {
        return Err(format!(
            "{what} must be 1 to {max} bytes, {:?} has {}",
            short(text),
            text.len()
        ));
    }
    if text.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        return Err(format!(
            "{what} {:?} holds control or invisible formatting characters",
            short(text)
        ));
    }
    Ok(())
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

/// A humantime duration within `range`, or an error naming `what`.
fn ranged(what: &'static str, text: &str, range: RangeInclusive<Duration>) -> Result<Duration, String> {
    let duration = parse_duration(text).map_err(|e| format!("{what} {:?}: {e}", short(text)))?;
    bounds::duration(what, duration, range).map_err(|e| format!("{what} {}: {}", show(duration), e.reason))?;
    Ok(duration)
}

fn show(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flag: &str) -> ServiceDefinition {
        flag.parse().unwrap_or_else(|e| panic!("{flag}: {e}"))
    }

    const EXAMPLE: &str = r#"{"name":"web","port":8080,"tags":["v1"],"check":{"http":"http://127.0.0.1:8080/health","interval":"10s","timeout":"2s"},"deregister_after":"1m"}"#;

    #[test]
    fn the_api_body_is_validated_like_the_flag() {
        let body: ServiceBody = serde_json::from_str(EXAMPLE).unwrap();
        let definition = body.into_definition("web".into()).unwrap();
        assert_eq!(
            definition,
            parse("web=8080,tag=v1,check=http://127.0.0.1:8080/health,deregister_after=1m")
        );
        assert_eq!(serde_json::to_string(&definition.to_body()).unwrap(), EXAMPLE);

        let both: ServiceBody = serde_json::from_str(
            r#"{"name":"web","port":80,"check":{"http":"http://localhost/","tcp":"localhost:80"}}"#,
        )
        .unwrap();
        assert!(both.into_definition("web".into()).unwrap_err().contains("exactly one"));
        let none: ServiceBody = serde_json::from_str(r#"{"name":"web","port":80,"check":{}}"#).unwrap();
        assert!(none.into_definition("web".into()).unwrap_err().contains("exactly one"));
        let whole: ServiceBody = serde_json::from_str(r#"{"name":"web","port":8080.0}"#).unwrap();
        assert_eq!(whole.port, 8080);
        assert!(serde_json::from_str::<ServiceBody>(r#"{"name":"web","port":80.5}"#).is_err());
        let port: ServiceBody = serde_json::from_str(r#"{"name":"web","port":0}"#).unwrap();
        assert!(port.into_definition("web".into()).unwrap_err().contains("port"));
        let id = ServiceBody {
            name: "web".into(),
            port: 80,
            ..ServiceBody::default()
        };
        assert!(id.into_definition("a\u{200B}b".into()).unwrap_err().contains("id"));
    }

    #[test]
    fn misspelt_json_fields_are_refused_by_name() {
        for (json, field) in [
            (r#"{"name":"web","port":80,"tag":["v1"]}"#, "tag"),
            (
                r#"{"name":"web","port":80,"check":{"ttl":"5s","intervall":"1s"}}"#,
                "intervall",
            ),
            (r#"{"id":"web","name":"web","port":80}"#, "id"),
        ] {
            let error = serde_json::from_str::<ServiceBody>(json).unwrap_err().to_string();
            assert!(error.contains(&format!("unknown field `{field}`")), "{error}");
        }
    }

    #[test]
    fn the_persisted_form_is_the_body_with_its_id_and_is_checked_on_load() {
        for flag in [
            "web=8080,tag=v1,check=http://127.0.0.1:8080/health,deregister_after=90s",
            "db=5432,check=tcp://[::1]:5432,interval=30s,timeout=3s,id=db-2",
            "worker=7000,check=ttl:1m",
            "plain=1",
        ] {
            let definition = parse(flag);
            let json = serde_json::to_string(&definition).unwrap();
            assert_eq!(
                serde_json::from_str::<ServiceDefinition>(&json).unwrap(),
                definition,
                "{json}"
            );
        }
        let stored = serde_json::to_string(&parse("worker=7000,check=ttl:1m")).unwrap();
        assert_eq!(
            stored,
            r#"{"id":"worker","name":"worker","port":7000,"check":{"ttl":"1m"}}"#
        );
        let spoilt = r#"{"id":"web","name":"web","port":80,"check":{"http":"https://h/"}}"#;
        let error = serde_json::from_str::<ServiceDefinition>(spoilt)
            .unwrap_err()
            .to_string();
        assert!(error.contains("https"), "{error}");
    }

    #[test]
    fn the_schema_shows_what_is_required_and_refuses_unknown_fields() {
        use utoipa::PartialSchema;
        let body = serde_json::to_value(ServiceBody::schema()).unwrap();
        assert_eq!(body["required"], serde_json::json!(["name", "port"]), "{body}");
        assert_eq!(body["additionalProperties"], false, "{body}");
        let check = serde_json::to_value(CheckBody::schema()).unwrap();
        assert_eq!(check["additionalProperties"], false, "{check}");
        assert!(check.get("required").is_none(), "{check}");
    }
}
