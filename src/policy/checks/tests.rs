//! The registry's rules, one story each, on a fake clock: an `Instant` base plus durations, no sleeps.

use super::*;
use crate::{
    config::services::Check,
    wire::members::{MEMBERS_VERSION, MemberRecord},
};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn service(id: &str, check: Option<CheckKind>) -> ServiceDefinition {
    ServiceDefinition {
        id: id.into(),
        name: "web".into(),
        port: 8080,
        tags: vec!["v1".into()],
        check: check.map(|kind| Check {
            kind,
            interval: 10 * SEC,
            timeout: 2 * SEC,
        }),
        deregister_after: None,
    }
}

fn http(id: &str) -> ServiceDefinition {
    service(
        id,
        Some(CheckKind::Http {
            url: "http://127.0.0.1:8080/health".into(),
        }),
    )
}

fn ttl(id: &str) -> ServiceDefinition {
    service(id, Some(CheckKind::Ttl { ttl: 30 * SEC }))
}

fn health(services: &Services, id: &str) -> (Health, String) {
    let record = services.records().into_iter().find(|r| r.id == id).unwrap();
    (record.status, record.output)
}

/// The status and output a fresh HTTP service gets from `outcome` as its first result.
fn judged(outcome: ProbeOutcome) -> (Health, String) {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(http("web"), now).unwrap();
    let [probe] = services.due(now).try_into().unwrap();
    services.probe_finished(&probe, outcome, now + MS);
    health(&services, "web")
}

#[test]
fn a_service_without_a_check_is_passing_and_never_probed() {
    let now = Instant::now();
    let mut services = Services::new(8);
    assert_eq!(services.register(service("cache", None), now), Ok(Registered::Added));
    assert_eq!(health(&services, "cache"), (Health::Passing, String::new()));
    assert!(services.due(now + 3600 * SEC).is_empty());
    assert_eq!(services.tick(now + 3600 * SEC), Tick::default());
    assert_eq!(services.next_deadline(), None);
}

#[test]
fn a_checked_service_starts_critical_is_probed_at_once_then_every_interval() {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(http("web"), now).unwrap();
    assert_eq!(health(&services, "web"), (Health::Critical, NOT_CHECKED.into()));
    assert_eq!(services.next_deadline(), Some(now));
    let [probe] = services.due(now).try_into().unwrap();
    assert_eq!(
        (&probe.kind, probe.timeout),
        (&http("web").check.unwrap().kind, 2 * SEC)
    );
    assert!(services.due(now).is_empty(), "one probe in flight per service");

    let change = services.probe_finished(&probe, ProbeOutcome::Http { status: 200 }, now + 5 * MS);
    let expected = HealthChange {
        id: "web".into(),
        name: "web".into(),
        from: Health::Critical,
        to: Health::Passing,
        output: "HTTP 200 OK".into(),
    };
    assert_eq!(change, Some(expected));
    assert_eq!(services.next_deadline(), Some(now + 10 * SEC));
    assert!(services.due(now + 10 * SEC - MS).is_empty());
    assert_eq!(services.due(now + 10 * SEC).len(), 1);
}

#[test]
fn http_statuses_timeouts_and_connections_are_judged_as_consul_does() {
    let cases = [
        (ProbeOutcome::Http { status: 200 }, Health::Passing, "HTTP 200 OK"),
        (
            ProbeOutcome::Http { status: 204 },
            Health::Passing,
            "HTTP 204 No Content",
        ),
        (ProbeOutcome::Http { status: 299 }, Health::Passing, "HTTP 299"),
        (
            ProbeOutcome::Http { status: 429 },
            Health::Warning,
            "HTTP 429 Too Many Requests",
        ),
        (
            ProbeOutcome::Http { status: 301 },
            Health::Critical,
            "HTTP 301 Moved Permanently",
        ),
        (
            ProbeOutcome::Http { status: 404 },
            Health::Critical,
            "HTTP 404 Not Found",
        ),
        (
            ProbeOutcome::Http { status: 500 },
            Health::Critical,
            "HTTP 500 Internal Server Error",
        ),
        (ProbeOutcome::TimedOut, Health::Critical, "timed out after 2s"),
        (ProbeOutcome::Connected, Health::Passing, "connected"),
        (
            ProbeOutcome::Failed {
                error: "connection refused".into(),
            },
            Health::Critical,
            "connection refused",
        ),
    ];
    for (outcome, status, output) in cases {
        assert_eq!(judged(outcome.clone()), (status, output.into()), "{outcome:?}");
    }
}

#[test]
fn a_tcp_check_is_probed_like_an_http_one() {
    let now = Instant::now();
    let mut services = Services::new(8);
    let address = "127.0.0.1:5432".to_owned();
    services
        .register(
            service(
                "db",
                Some(CheckKind::Tcp {
                    address: address.clone(),
                }),
            ),
            now,
        )
        .unwrap();
    let [probe] = services.due(now).try_into().unwrap();
    assert_eq!(probe.kind, CheckKind::Tcp { address });
    let refused = ProbeOutcome::Failed {
        error: "connection refused".into(),
    };
    assert_eq!(services.probe_finished(&probe, refused, now), None, "critical already");
    assert_eq!(health(&services, "db"), (Health::Critical, "connection refused".into()));
}

#[test]
fn only_a_status_change_is_reported_while_the_output_follows_every_result() {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(http("web"), now).unwrap();
    for (at, status, change) in [(0, 500, None), (10, 503, None), (20, 429, Some(Health::Warning))] {
        let [probe] = services.due(now + at * SEC).try_into().unwrap();
        let outcome = ProbeOutcome::Http { status };
        let reported = services.probe_finished(&probe, outcome, now + at * SEC);
        assert_eq!(reported.map(|c| c.to), change, "HTTP {status}");
        assert!(health(&services, "web").1.starts_with(&format!("HTTP {status}")));
    }
}

#[test]
fn a_ttl_service_holds_its_report_for_the_ttl_then_turns_critical() {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(ttl("job"), now).unwrap();
    assert!(services.due(now).is_empty(), "a ttl check is never probed");
    assert_eq!(
        services.tick(now + 3600 * SEC),
        Tick::default(),
        "critical until its first report"
    );
    assert_eq!(health(&services, "job"), (Health::Critical, NOT_CHECKED.into()));

    let start = now + 3600 * SEC;
    let passed = services.update_ttl("job", Health::Passing, Some("ok: 3 queued".into()), start);
    assert_eq!(
        passed.unwrap().map(|c| (c.from, c.to, c.output)),
        Some((Health::Critical, Health::Passing, "ok: 3 queued".into()))
    );
    assert_eq!(services.next_deadline(), Some(start + 30 * SEC));
    assert!(services.tick(start + 30 * SEC - MS).changes.is_empty());

    let warned = services
        .update_ttl("job", Health::Warning, None, start + 20 * SEC)
        .unwrap();
    assert_eq!(warned.map(|c| c.output), Some("marked warning".into()));
    assert!(
        services.tick(start + 30 * SEC).changes.is_empty(),
        "the warn restarted the ttl"
    );
    let expired = services.tick(start + 50 * SEC).changes;
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].from, expired[0].to, expired[0].output.as_str()),
        (Health::Warning, Health::Critical, TTL_EXPIRED)
    );
    assert!(services.tick(start + 100 * SEC).changes.is_empty(), "expired once");

    let failed = services.update_ttl("job", Health::Critical, Some("disk full".into()), start + 101 * SEC);
    assert_eq!(failed, Ok(None), "critical already");
    assert_eq!(health(&services, "job"), (Health::Critical, "disk full".into()));
}

#[test]
fn pass_warn_and_fail_need_a_registered_ttl_service() {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(http("web"), now).unwrap();
    let not_ttl = services.update_ttl("web", Health::Passing, None, now).unwrap_err();
    assert_eq!(not_ttl, ServiceError::NotTtl { id: "web".into() });
    assert!(not_ttl.to_string().contains("no ttl check"));
    let missing = services.update_ttl("api", Health::Passing, None, now);
    assert_eq!(missing, Err(ServiceError::NotFound { id: "api".into() }));
    assert_eq!(
        services.deregister("api"),
        Err(ServiceError::NotFound { id: "api".into() })
    );
    assert_eq!(services.deregister("web"), Ok(http("web")));
    assert!(services.is_empty());
}

#[test]
fn probes_in_flight_are_bounded_even_for_services_removed_meanwhile() {
    let now = Instant::now();
    let mut services = Services::new(2);
    for id in ["a", "b", "c", "d"] {
        services.register(http(id), now).unwrap();
    }
    let first = services.due(now);
    assert_eq!(first.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(services.due(now).is_empty());
    assert_eq!(services.next_deadline(), None, "nothing to do until a probe finishes");

    services.deregister("a").unwrap();
    assert!(services.due(now).is_empty(), "a's probe still runs");
    assert_eq!(services.probe_finished(&first[0], ProbeOutcome::Connected, now), None);
    let [next] = services.due(now).try_into().unwrap();
    assert_eq!(next.id, "c");
    assert_eq!(
        services.probe_finished(&first[0], ProbeOutcome::Connected, now),
        None,
        "answered once"
    );
    assert!(services.due(now).is_empty(), "a repeated answer frees nothing");
}

#[test]
fn a_result_for_a_replaced_definition_is_ignored_and_the_new_one_is_probed_at_once() {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(http("web"), now).unwrap();
    let [old] = services.due(now).try_into().unwrap();
    let mut moved = http("web");
    moved.port = 9090;
    assert_eq!(services.register(moved, now + SEC), Ok(Registered::Replaced));
    let [new] = services.due(now + SEC).try_into().unwrap();
    assert_ne!(new.generation, old.generation);

    assert_eq!(
        services.probe_finished(&old, ProbeOutcome::Http { status: 200 }, now + SEC),
        None
    );
    assert_eq!(health(&services, "web"), (Health::Critical, NOT_CHECKED.into()));
    let change = services.probe_finished(&new, ProbeOutcome::Http { status: 200 }, now + SEC);
    assert_eq!(change.map(|c| c.to), Some(Health::Passing));
}

#[test]
fn re_registering_keeps_health_only_for_the_same_definition() {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(ttl("job"), now).unwrap();
    services.update_ttl("job", Health::Passing, None, now).unwrap();
    assert_eq!(services.register(ttl("job"), now + SEC), Ok(Registered::Unchanged));
    assert_eq!(health(&services, "job").0, Health::Passing);
    let mut tagged = ttl("job");
    tagged.tags.push("v2".into());
    assert_eq!(services.register(tagged, now + SEC), Ok(Registered::Replaced));
    assert_eq!(health(&services, "job"), (Health::Critical, NOT_CHECKED.into()));
    assert_eq!(services.len(), 1);
}

#[test]
fn a_service_critical_for_its_deregister_after_is_removed() {
    let now = Instant::now();
    let mut services = Services::new(8);
    let mut definition = http("web");
    definition.deregister_after = Some(30 * SEC);
    services.register(definition.clone(), now).unwrap();
    let [probe] = services.due(now).try_into().unwrap();
    services.probe_finished(&probe, ProbeOutcome::Http { status: 200 }, now + SEC);
    let [probe] = services.due(now + 10 * SEC).try_into().unwrap();
    services.probe_finished(&probe, ProbeOutcome::TimedOut, now + 12 * SEC);

    assert!(
        services.tick(now + 42 * SEC - MS).deregistered.is_empty(),
        "critical since 12s, not since 0s"
    );
    assert_eq!(
        services.next_deadline(),
        Some(now + 20 * SEC),
        "the next probe comes first"
    );
    let tick = services.tick(now + 42 * SEC);
    assert_eq!(tick.deregistered, [definition]);
    assert!(services.is_empty() && services.records().is_empty());
}

#[test]
fn a_never_checked_service_counts_as_critical_from_registration() {
    let now = Instant::now();
    let mut services = Services::new(8);
    let mut definition = ttl("job");
    definition.deregister_after = Some(60 * SEC);
    services.register(definition, now).unwrap();
    assert_eq!(services.next_deadline(), Some(now + 60 * SEC));
    assert_eq!(services.tick(now + 60 * SEC).deregistered.len(), 1);
}

#[test]
fn a_node_offers_a_bounded_number_of_services() {
    let now = Instant::now();
    let mut services = Services::new(8);
    for i in 0..MAX_LOCAL_SERVICES {
        services.register(http(&format!("s{i}")), now).unwrap();
    }
    let refused = services.register(http("one-more"), now).unwrap_err();
    assert_eq!(refused, ServiceError::TooMany { limit: 64 });
    let mut changed = http("s0");
    changed.port = 1;
    assert_eq!(
        services.register(changed, now),
        Ok(Registered::Replaced),
        "a replacement fits"
    );
}

#[test]
fn records_carry_each_service_cleaned_to_what_a_member_record_accepts() {
    let now = Instant::now();
    let mut services = Services::new(8);
    services.register(http("web-2"), now).unwrap();
    services.register(service("cache", None), now).unwrap();
    let [probe] = services.due(now).try_into().unwrap();
    let error = format!("line\none\u{202E}\u{7}{}", "é".repeat(MAX_OUTPUT));
    services.probe_finished(&probe, ProbeOutcome::Failed { error }, now);

    let records = services.records();
    assert_eq!(
        records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["cache", "web-2"]
    );
    let web = &records[1];
    assert_eq!(
        (web.name.as_str(), web.port, web.tags.as_slice()),
        ("web", 8080, &["v1".to_owned()][..])
    );
    assert!(
        web.output.starts_with("lineone") && web.output.ends_with('é'),
        "{}",
        web.output
    );
    assert!((MAX_OUTPUT - 1..=MAX_OUTPUT).contains(&web.output.len()));
    let record = MemberRecord {
        v: MEMBERS_VERSION,
        incarnation: 1,
        seq: 1,
        name: "node".into(),
        tags: Default::default(),
        services: records,
        weight: 1.0,
        load: Default::default(),
        addrs: Vec::new(),
        left: false,
    };
    assert_eq!(record.check(), Ok(()));
    assert_eq!(
        services.definitions().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["cache", "web-2"]
    );
}
