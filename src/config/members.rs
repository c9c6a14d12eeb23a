//! What this node says about itself in its member record, and the timers every node ages records by: `--name`,
//! `--tag`, `--service`, `--weight`, `--dynamic-weight`, `--member-interval`, `--member-ttl`, `--reap-after`. The
//! record's own limits (text lengths, counts, 8 KiB signed) live with its wire format; here they are checked at start,
//! so a node whose tags and services do not fit refuses to run instead of being refused by every other node.

use std::{collections::BTreeMap, ops::RangeInclusive, time::Duration};

use super::{
    ConfigError,
    bounds::{count, duration},
    services::ServiceDefinition,
};
use crate::wire::members::{
    Health, Load, MAX_NAME, MAX_SERVICES, MAX_WEIGHT, MEMBERS_VERSION, MemberRecord, ServiceRecord,
};

/// `--member-interval`: how often a node re-announces its record.
pub const MEMBER_INTERVAL: RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(3600);
/// `--member-ttl`: how long a record stays alive unrenewed (it must also be longer than the interval).
pub const MEMBER_TTL: RangeInclusive<Duration> = Duration::from_millis(20)..=Duration::from_secs(86_400);
/// `--reap-after`: how long failed and left members stay in the view.
pub const REAP_AFTER: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(30 * 86_400);
/// Renewals a record may miss before it is suspect, by default.
pub const DEFAULT_TTL_INTERVALS: u32 = 3;

/// The member settings of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct MembersConfig {
    /// How operators know the node (`--name`, default the host name).
    pub name: String,
    /// `--tag k=v`, for filtering members and routes.
    pub tags: BTreeMap<String, String>,
    /// `--service`: services defined on the command line (those registered through the API are kept in the data
    /// directory instead).
    pub services: Vec<ServiceDefinition>,
    /// `--weight`: this node's share of routed keys relative to the others.
    pub weight: f64,
    /// `--dynamic-weight`: scale the advertised weight by spare CPU capacity.
    pub dynamic_weight: bool,
    /// `--member-interval`; `None` follows `--heartbeat`.
    pub interval: Option<Duration>,
    /// `--member-ttl`; `None` is `DEFAULT_TTL_INTERVALS` intervals.
    pub ttl: Option<Duration>,
    /// `--reap-after`.
    pub reap_after: Duration,
}

impl Default for MembersConfig {
    fn default() -> Self {
        MembersConfig {
            name: host_name(),
            tags: BTreeMap::new(),
            services: Vec::new(),
            weight: 1.0,
            dynamic_weight: false,
            interval: None,
            ttl: None,
            reap_after: Duration::from_secs(3600),
        }
    }
}

impl MembersConfig {
    /// The announcement interval, given the ping heartbeat it follows by default.
    pub fn interval(&self, heartbeat: Duration) -> Duration {
        self.interval.unwrap_or(heartbeat)
    }

    /// How long a record stays alive unrenewed.
    pub fn ttl(&self, heartbeat: Duration) -> Duration {
        self.ttl
            .unwrap_or_else(|| self.interval(heartbeat) * DEFAULT_TTL_INTERVALS)
    }

    /// Checks the settings and that a record with the configured tags and services keeps every record limit.
    pub fn validate(&self, heartbeat: Duration) -> Result<(), ConfigError> {
        let interval = self.interval(heartbeat);
        duration("member-interval", interval, MEMBER_INTERVAL)?;
        let ttl = self.ttl(heartbeat);
        duration("member-ttl", ttl, MEMBER_TTL)?;
        if ttl <= interval {
            return Err(ConfigError::new(
                "member-ttl",
                format!(
                    "must be longer than the member interval ({}), or every member would turn suspect between two \
                     announcements",
                    humantime::format_duration(interval)
                ),
            ));
        }
        duration("reap-after", self.reap_after, REAP_AFTER)?;
        if !(self.weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&self.weight)) {
            return Err(ConfigError::new(
                "weight",
                format!("must be a number from 0 to {MAX_WEIGHT}"),
            ));
        }
        count("service", self.services.len(), 0..=MAX_SERVICES)?;
        if let Some(service) = self
            .services
            .iter()
            .enumerate()
            .find_map(|(i, s)| self.services[..i].iter().any(|other| other.id == s.id).then_some(s))
        {
            return Err(ConfigError::new(
                "service",
                format!("service id {:?} is given twice", service.id),
            ));
        }
        // The configured services as they are first announced (critical until checked).
        let services = self
            .services
            .iter()
            .map(|s| ServiceRecord {
                id: s.id.clone(),
                name: s.name.clone(),
                port: s.port,
                tags: s.tags.clone(),
                status: Health::Critical,
                output: String::new(),
            })
            .collect();
        let record = self.record(0, 0, services, Load::default(), self.weight);
        record.check().map_err(|e| ConfigError::new("tag", e.to_string()))
    }

    /// Our record with `services` as they are now.
    pub fn record(
        &self,
        incarnation: u64,
        seq: u64,
        services: Vec<ServiceRecord>,
        load: Load,
        weight: f64,
    ) -> MemberRecord {
        MemberRecord {
            v: MEMBERS_VERSION,
            incarnation,
            seq,
            name: self.name.clone(),
            tags: self.tags.clone(),
            services,
            weight,
            load,
            addrs: Vec::new(),
            left: false,
        }
    }
}

/// `--tag k=v`: a key of 1–64 bytes and a value (which may be empty).
pub fn parse_tag(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("{text:?} is not key=value"));
    };
    if key.is_empty() {
        return Err(format!("{text:?} has an empty key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The host name, as the default `--name`; `swarmnode` if it cannot be read or would not fit a record.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `buffer.len()` bytes into the buffer we own.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name)
            if result == 0 && !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control) =>
        {
            name.to_owned()
        }
        _ => "swarmnode".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_follow_the_heartbeat_unless_set() {
        let config = MembersConfig::default();
        let heartbeat = Duration::from_secs(10);
        assert_eq!(config.interval(heartbeat), heartbeat);
        assert_eq!(config.ttl(heartbeat), Duration::from_secs(30));
        config.validate(heartbeat).unwrap();
        let fast = MembersConfig {
            interval: Some(Duration::from_millis(500)),
            ..MembersConfig::default()
        };
        assert_eq!(fast.ttl(heartbeat), Duration::from_millis(1500));
    }

    #[test]
    fn bad_settings_name_the_flag() {
        let heartbeat = Duration::from_secs(10);
        let cases: Vec<(MembersConfig, &str)> = vec![
            (
                MembersConfig {
                    ttl: Some(Duration::from_secs(5)),
                    ..MembersConfig::default()
                },
                "--member-ttl: must be longer than the member interval",
            ),
            (
                MembersConfig {
                    interval: Some(Duration::from_millis(1)),
                    ..MembersConfig::default()
                },
                "--member-interval",
            ),
            (
                MembersConfig {
                    weight: f64::INFINITY,
                    ..MembersConfig::default()
                },
                "--weight",
            ),
            (
                MembersConfig {
                    name: "x".repeat(65),
                    ..MembersConfig::default()
                },
                "name must be 1 to 64 bytes",
            ),
            (
                MembersConfig {
                    tags: (0..65).map(|i| (format!("k{i}"), String::new())).collect(),
                    ..MembersConfig::default()
                },
                "at most 64 tags",
            ),
        ];
        for (config, expected) in cases {
            let error = config.validate(heartbeat).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should contain {expected}");
        }
    }

    #[test]
    fn tags_are_key_value() {
        assert_eq!(parse_tag("zone=eu-1").unwrap(), ("zone".into(), "eu-1".into()));
        assert_eq!(parse_tag("empty=").unwrap(), ("empty".into(), String::new()));
        assert!(parse_tag("novalue").unwrap_err().contains("key=value"));
        assert!(parse_tag("=v").unwrap_err().contains("empty key"));
    }

    #[test]
    fn the_host_name_fits_a_record() {
        let name = host_name();
        assert!(!name.is_empty() && name.len() <= MAX_NAME);
    }
}
