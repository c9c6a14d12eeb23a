//! The `--service` flag: one service definition in one comma-separated value, e.g.
//! `web=8080,tag=v1,check=http://127.0.0.1:8080/health`. The flag only gathers the parts into a `ServiceBody`; the
//! body's validation decides, so a flag and an API request with the same content are accepted or refused alike.

use std::str::FromStr;

use super::{CheckBody, ServiceBody, ServiceDefinition};

/// The keys that may follow `NAME=PORT`.
const KEYS: &str = "tag, check, interval, timeout, id or deregister_after";

/// `NAME=PORT[,tag=T]...[,check=http://HOST:PORT/PATH | check=tcp://HOST:PORT | check=ttl:30s][,interval=10s]
/// [,timeout=2s][,id=ID][,deregister_after=1m]`; the id is the name when not given. The error names the bad part.
impl FromStr for ServiceDefinition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',');
        let first = parts.next().unwrap_or_default();
        let Some((name, port)) = first.split_once('=') else {
            return Err(format!("{first:?} should be NAME=PORT (e.g. web=8080)"));
        };
        let port = port
            .parse()
            .map_err(|_| format!("port {port:?} must be a number from 1 to 65535"))?;
        let mut body = ServiceBody {
            name: name.to_owned(),
            port,
            ..ServiceBody::default()
        };
        let mut check = CheckBody::default();
        let mut id = None;
        for part in parts {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("{part:?} should be KEY=VALUE, KEY one of {KEYS}"));
            };
            let slot = match key {
                "tag" => {
                    body.tags.push(value.to_owned());
                    continue;
                }
                "check" if has_kind(&check) => return Err("check is given twice".into()),
                "check" => {
                    set_target(&mut check, value)?;
                    continue;
                }
                "interval" => &mut check.interval,
                "timeout" => &mut check.timeout,
                "id" => &mut id,
                "deregister_after" => &mut body.deregister_after,
                _ => return Err(format!("unknown key {key:?}: use {KEYS}")),
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(format!("{key} is given twice"));
            }
        }
        if check != CheckBody::default() {
            if !has_kind(&check) {
                return Err("interval and timeout need a check=...".into());
            }
            body.check = Some(check);
        }
        let id = id.unwrap_or_else(|| body.name.clone());
        body.into_definition(id)
    }
}

fn has_kind(check: &CheckBody) -> bool {
    check.http.is_some() || check.tcp.is_some() || check.ttl.is_some()
}

/// Fills the check's kind from a `check=` value. Any `SCHEME://` but `tcp://` is taken for a URL, so the URL check
/// can say what is wrong with it (`https` is not supported).
fn set_target(check: &mut CheckBody, value: &str) -> Result<(), String> {
    if let Some(address) = value.strip_prefix("tcp://") {
        check.tcp = Some(address.to_owned());
    } else if let Some(ttl) = value.strip_prefix("ttl:") {
        check.ttl = Some(ttl.to_owned());
    } else if value.contains("://") {
        check.http = Some(value.to_owned());
    } else {
        return Err(format!(
            "check {value:?} should be http://HOST:PORT/PATH, tcp://HOST:PORT or ttl:DURATION"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        config::services::{Check, CheckKind, TIMEOUT},
        wire::members::{MAX_NAME, MAX_SERVICE_TAGS},
    };

    const SEC: Duration = Duration::from_secs(1);

    fn parse(flag: &str) -> ServiceDefinition {
        flag.parse().unwrap_or_else(|e| panic!("{flag}: {e}"))
    }

    fn http(url: &str, interval: Duration, timeout: Duration) -> Option<Check> {
        Some(Check {
            kind: CheckKind::Http { url: url.into() },
            interval,
            timeout,
        })
    }

    #[test]
    fn the_flag_example_is_a_web_service_with_an_http_check_on_the_default_schedule() {
        assert_eq!(
            parse("web=8080,tag=v1,check=http://127.0.0.1:8080/health"),
            ServiceDefinition {
                id: "web".into(),
                name: "web".into(),
                port: 8080,
                tags: vec!["v1".into()],
                check: http("http://127.0.0.1:8080/health", 10 * SEC, 2 * SEC),
                deregister_after: None,
            }
        );
        let bare = parse("cache=6379");
        assert_eq!((bare.id.as_str(), bare.check, bare.tags.len()), ("cache", None, 0));
    }

    #[test]
    fn every_flag_key_lands_in_its_field() {
        let definition = parse(
            "api=9000,tag=a,tag=b,check=tcp://localhost:5432,interval=5s,timeout=1s,id=api-1,deregister_after=1m",
        );
        assert_eq!(definition.id, "api-1");
        assert_eq!(definition.tags, ["a", "b"]);
        assert_eq!(
            definition.check,
            Some(Check {
                kind: CheckKind::Tcp {
                    address: "localhost:5432".into()
                },
                interval: 5 * SEC,
                timeout: SEC,
            })
        );
        assert_eq!(definition.deregister_after, Some(60 * SEC));
        let ttl = parse("worker=7000,check=ttl:30s").check.unwrap();
        assert_eq!(ttl.kind, CheckKind::Ttl { ttl: 30 * SEC });
    }

    #[test]
    fn a_short_interval_alone_gets_a_timeout_of_half_of_it() {
        let check = parse("web=80,check=http://localhost/,interval=1s").check.unwrap();
        assert_eq!(check.timeout, SEC / 2);
        let fastest = parse("web=80,check=http://localhost/,interval=100ms").check.unwrap();
        assert_eq!(fastest.timeout, *TIMEOUT.start());
    }

    #[test]
    fn flag_errors_name_the_bad_part() {
        let long_name = format!("{}=80", "n".repeat(MAX_NAME + 1));
        let many_tags = format!("web=80{}", ",tag=t".repeat(MAX_SERVICE_TAGS + 1));
        let cases = [
            ("web", "NAME=PORT"),
            ("web=80x", "port \"80x\""),
            ("web=0", "port must be"),
            ("web=70000", "port \"70000\""),
            ("=80", "name must be 1 to 64 bytes"),
            (&long_name, "name must be 1 to 64 bytes"),
            ("we\u{202E}b=80", "invisible"),
            ("web=80,tag=v\u{7}1", "tag \"v\\u{7}1\" holds control"),
            ("web=80,tag=", "tag must be"),
            (&many_tags, "at most 16 tags"),
            ("web=80,id=", "id must be"),
            ("web=80,color=red", "unknown key \"color\""),
            ("web=80,v1", "KEY=VALUE"),
            ("web=80,id=a,id=b", "id is given twice"),
            ("web=80,check=tcp://h:1,check=ttl:1s", "check is given twice"),
            ("web=80,check=redis:6379", "should be http://"),
            ("web=80,check=https://h/", "https checks are not supported"),
            ("web=80,check=tcp://h", "HOST:PORT"),
            ("web=80,interval=5s", "need a check"),
            ("web=80,check=ttl:soon", "ttl \"soon\""),
            ("web=80,check=ttl:50ms", "ttl 50ms: must be between 100ms and 1day"),
            (
                "web=80,check=http://localhost/,interval=50ms",
                "interval 50ms: must be between 100ms and 1h",
            ),
            (
                "web=80,check=http://localhost/,interval=2h",
                "interval 2h: must be between",
            ),
            (
                "web=80,check=http://localhost/,timeout=10s",
                "timeout 10s must be shorter than interval 10s",
            ),
            (
                "web=80,check=http://localhost/,timeout=10ms",
                "timeout 10ms: must be between 50ms and 5m",
            ),
            ("web=80,check=http://localhost/,timeout=1x", "timeout \"1x\""),
            (
                "web=80,check=ttl:1s,deregister_after=31days",
                "must be between 1s and 30days",
            ),
        ];
        for (flag, expected) in cases {
            let error = flag.parse::<ServiceDefinition>().unwrap_err();
            assert!(
                error.contains(expected),
                "{flag}: {error:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn each_range_holds_at_its_ends() {
        for flag in [
            "web=65535,check=http://localhost/,interval=100ms,timeout=50ms",
            "web=1,check=http://localhost/,interval=1h,timeout=5m",
            "web=80,check=ttl:100ms,deregister_after=1s",
            "web=80,check=ttl:24h,deregister_after=30days",
        ] {
            parse(flag);
        }
    }
}
