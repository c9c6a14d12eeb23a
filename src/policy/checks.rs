//! `Services`: the services this node offers and their health, as a pure state machine. The event loop registers
//! and deregisters definitions, asks which HTTP and TCP probes are due (bounded in number, so a node with many
//! services never opens more than a few sockets at once), hands back each probe's outcome, and ticks it so TTLs run
//! out and long-critical services are dropped. No I/O and no clock of its own (`node::probe` does the I/O), so every
//! rule is unit-tested with a fake clock.
//!
//! The rules are Consul's: a service without a check is passing; a checked one starts critical ("not checked yet")
//! and is probed at once; HTTP 2xx is passing, 429 warning, anything else critical; a TTL check holds what the
//! service last reported for its TTL, then turns critical; a service critical for `deregister_after` is removed.
//! Outputs are cleaned here (bounded, no control or invisible characters), so the member record built from
//! `records()` always passes `MemberRecord::check`.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use crate::{
    config::{
        is_invisible_format,
        services::{CheckKind, ServiceDefinition},
    },
    time::deadline,
    wire::members::{Health, MAX_OUTPUT, MAX_SERVICES, ServiceRecord},
};

/// Services one node offers at most: as many as its member record may carry.
pub const MAX_LOCAL_SERVICES: usize = MAX_SERVICES;
/// The output of a checked service before its first result.
pub const NOT_CHECKED: &str = "not checked yet";
/// The output of a TTL check whose service did not report in time.
pub const TTL_EXPIRED: &str = "TTL expired";

/// What `register` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new id.
    Added,
    /// The id had another definition: replaced, and its health starts over.
    Replaced,
    /// The id had this very definition: nothing changed, its health is kept.
    Unchanged,
}

/// A probe to run now. Every request handed out must be answered by one `probe_finished` with it: until then it
/// counts against the in-flight bound, even if its service is deregistered meanwhile (its socket is still open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub id: String,
    /// Which definition of `id` the probe checks: a result for an older one is ignored.
    pub generation: u64,
    pub kind: CheckKind,
    pub timeout: Duration,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// An HTTP response with this status.
    Http { status: u16 },
    /// A TCP connection was accepted.
    Connected,
    /// No answer: the error, in a few words (`connection refused`).
    Failed { error: String },
    /// No answer within the check's timeout.
    TimedOut,
}

/// A service's status changed (output changes alone are not reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub id: String,
    pub name: String,
    pub from: Health,
    pub to: Health,
    pub output: String,
}

/// What a `tick` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    pub changes: Vec<HealthChange>,
    /// Services critical for their `deregister_after`, now removed.
    pub deregistered: Vec<ServiceDefinition>,
}

/// Why a registry call was refused; the messages are written for API users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("no service {id:?} is registered on this node")]
    NotFound { id: String },
    #[error("service {id:?} has no ttl check: only ttl checks are set with pass, warn and fail")]
    NotTtl { id: String },
    #[error("this node offers at most {limit} services: deregister one first")]
    TooMany { limit: usize },
}

/// The registry of this node's services and their health.
#[derive(Debug)]
pub struct Services {
    max_in_flight: usize,
    /// By id, so records come out in a stable order.
    entries: BTreeMap<String, Entry>,
    /// Generations with a probe handed out and not finished, including those of services since removed or redefined.
    in_flight: HashSet<u64>,
    next_generation: u64,
}

#[derive(Debug)]
struct Entry {
    definition: ServiceDefinition,
    /// Unique across the registry's life: each registration of a new definition gets a new one.
    generation: u64,
    status: Health,
    output: String,
    /// Since when the status has been critical, for `deregister_after`.
    critical_since: Option<Instant>,
    /// HTTP and TCP checks: when the next probe is due.
    next_probe: Instant,
    /// TTL checks: when the last report runs out (none before the first, and after it ran out).
    ttl_expires: Option<Instant>,
}

impl Services {
    /// An empty registry that runs at most `max_in_flight` probes at once (at least one).
    pub fn new(max_in_flight: usize) -> Self {
        Services {
            max_in_flight: max_in_flight.max(1),
            entries: BTreeMap::new(),
            in_flight: HashSet::new(),
            next_generation: 0,
        }
    }

    /// Adds `definition`, or replaces the one with its id. A new or changed definition starts over: passing without
    /// a check, else critical and (HTTP, TCP) probed at once; an unchanged one keeps its health and schedule.
    pub fn register(&mut self, definition: ServiceDefinition, now: Instant) -> Result<Registered, ServiceError> {
        let registered = match self.entries.get(&definition.id) {
            Some(entry) if entry.definition == definition => return Ok(Registered::Unchanged),
            Some(_) => Registered::Replaced,
            None if self.entries.len() >= MAX_LOCAL_SERVICES => {
                return Err(ServiceError::TooMany {
                    limit: MAX_LOCAL_SERVICES,
                });
            }
            None => Registered::Added,
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        let checked = definition.check.is_some();
        let entry = Entry {
            generation,
            status: if checked { Health::Critical } else { Health::Passing },
            output: if checked { NOT_CHECKED.to_owned() } else { String::new() },
            critical_since: checked.then_some(now),
            next_probe: now,
            ttl_expires: None,
            definition,
        };
        self.entries.insert(entry.definition.id.clone(), entry);
        Ok(registered)
    }

    /// Removes the service `id`, giving back its definition.
    pub fn deregister(&mut self, id: &str) -> Result<ServiceDefinition, ServiceError> {
        self.entries
            .remove(id)
            .map(|entry| entry.definition)
            .ok_or_else(|| ServiceError::NotFound { id: id.to_owned() })
    }

    /// A TTL service's own report (pass, warn, fail): sets its status and output (`note`, or a default) and restarts
    /// its TTL. The change, if the status changed.
    pub fn update_ttl(
        &mut self,
        id: &str,
        health: Health,
        note: Option<String>,
        now: Instant,
    ) -> Result<Option<HealthChange>, ServiceError> {
        let entry = self
            .entries
            .get_mut(id)
            .ok_or_else(|| ServiceError::NotFound { id: id.to_owned() })?;
        let Some(CheckKind::Ttl { ttl }) = entry.definition.check.as_ref().map(|check| &check.kind) else {
            return Err(ServiceError::NotTtl { id: id.to_owned() });
        };
        entry.ttl_expires = Some(deadline(now, *ttl));
        let output = note.unwrap_or_else(|| format!("marked {health}"));
        Ok(entry.set(health, &output, now))
    }

    /// The HTTP and TCP probes due by `now`, longest waiting first, as many as the in-flight bound leaves room for.
    /// Each service has one probe in flight at most; its next is due an interval after this one started.
    pub fn due(&mut self, now: Instant) -> Vec<ProbeRequest> {
        let room = self.max_in_flight.saturating_sub(self.in_flight.len());
        let mut ready: Vec<&mut Entry> = self
            .entries
            .values_mut()
            .filter(|entry| entry.probed() && entry.next_probe <= now && !self.in_flight.contains(&entry.generation))
            .collect();
        ready.sort_by_key(|entry| entry.next_probe);
        ready
            .into_iter()
            .take(room)
            .filter_map(|entry| {
                let check = entry.definition.check.as_ref()?;
                entry.next_probe = deadline(now, check.interval);
                self.in_flight.insert(entry.generation);
                Some(ProbeRequest {
                    id: entry.definition.id.clone(),
                    generation: entry.generation,
                    kind: check.kind.clone(),
                    timeout: check.timeout,
                })
            })
            .collect()
    }

    /// Takes a probe's outcome: the change, if the status changed. A result for a service deregistered or redefined
    /// since the probe started only frees its slot.
    pub fn probe_finished(
        &mut self,
        request: &ProbeRequest,
        outcome: ProbeOutcome,
        now: Instant,
    ) -> Option<HealthChange> {
        if !self.in_flight.remove(&request.generation) {
            return None;
        }
        let entry = self
            .entries
            .get_mut(&request.id)
            .filter(|entry| entry.generation == request.generation)?;
        let (health, output) = judge(outcome, request.timeout);
        entry.set(health, &output, now)
    }

    /// Turns services whose TTL ran out critical, and removes those critical for their `deregister_after`.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick::default();
        for entry in self.entries.values_mut() {
            if entry.ttl_expires.is_some_and(|at| at <= now) {
                entry.ttl_expires = None;
                tick.changes.extend(entry.set(Health::Critical, TTL_EXPIRED, now));
            }
        }
        let overdue: Vec<String> = self
            .entries
            .values()
            .filter(|entry| entry.deregister_at().is_some_and(|at| at <= now))
            .map(|entry| entry.definition.id.clone())
            .collect();
        for id in overdue {
            if let Some(entry) = self.entries.remove(&id) {
                tick.deregistered.push(entry.definition);
            }
        }
        tick
    }

    /// The soonest instant at which `due` or `tick` has something to do, if any: when to wake up. Probes waiting
    /// for a free slot are left out (a finishing probe frees one).
    pub fn next_deadline(&self) -> Option<Instant> {
        let room = self.in_flight.len() < self.max_in_flight;
        self.entries
            .values()
            .flat_map(|entry| {
                let probe =
                    (room && entry.probed() && !self.in_flight.contains(&entry.generation)).then_some(entry.next_probe);
                [probe, entry.ttl_expires, entry.deregister_at()]
            })
            .flatten()
            .min()
    }

    /// Each service with its health, ordered by id: the `services` of this node's member record.
    pub fn records(&self) -> Vec<ServiceRecord> {
        self.entries
            .values()
            .map(|entry| ServiceRecord {
                id: entry.definition.id.clone(),
                name: entry.definition.name.clone(),
                port: entry.definition.port,
                tags: entry.definition.tags.clone(),
                status: entry.status,
                output: entry.output.clone(),
            })
            .collect()
    }

    /// The definitions, ordered by id: what the node persists.
    pub fn definitions(&self) -> impl Iterator<Item = &ServiceDefinition> {
        self.entries.values().map(|entry| &entry.definition)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Entry {
    /// Whether the node probes this service (HTTP and TCP checks) rather than waiting for its reports.
    fn probed(&self) -> bool {
        matches!(
            self.definition.check.as_ref().map(|check| &check.kind),
            Some(CheckKind::Http { .. } | CheckKind::Tcp { .. })
        )
    }

    fn deregister_at(&self) -> Option<Instant> {
        Some(deadline(self.critical_since?, self.definition.deregister_after?))
    }

    /// Sets status and output; the change if the status differs.
    fn set(&mut self, status: Health, output: &str, now: Instant) -> Option<HealthChange> {
        self.output = clean_output(output);
        let from = self.status;
        if from == status {
            return None;
        }
        self.status = status;
        self.critical_since = (status == Health::Critical).then_some(now);
        Some(HealthChange {
            id: self.definition.id.clone(),
            name: self.definition.name.clone(),
            from,
            to: status,
            output: self.output.clone(),
        })
    }
}

/// A probe's outcome as a status and its output.
fn judge(outcome: ProbeOutcome, timeout: Duration) -> (Health, String) {
    match outcome {
        ProbeOutcome::Http { status } => {
            let health = match status {
                200..=299 => Health::Passing,
                429 => Health::Warning,
                _ => Health::Critical,
            };
            let reason = hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|code| code.canonical_reason());
            let output = match reason {
                Some(reason) => format!("HTTP {status} {reason}"),
                None => format!("HTTP {status}"),
            };
            (health, output)
        }
        ProbeOutcome::Connected => (Health::Passing, "connected".to_owned()),
        ProbeOutcome::Failed { error } => (Health::Critical, error),
        ProbeOutcome::TimedOut => (
            Health::Critical,
            format!("timed out after {}", humantime::format_duration(timeout)),
        ),
    }
}

/// `text` without control or invisible formatting characters, cut to `MAX_OUTPUT` bytes on a character boundary.
fn clean_output(text: &str) -> String {
    let mut output = String::new();
    for c in text.chars().filter(|&c| !c.is_control() && !is_invisible_format(c)) {
        if output.len() + c.len_utf8() > MAX_OUTPUT {
            break;
        }
        output.push(c);
    }
    output
}

#[cfg(test)]
mod tests;
