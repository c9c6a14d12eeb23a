//! The integration tests, one binary: a module per scenario, each driving in-process nodes or the real `swarmnode`
//! binary on loopback (the mDNS test in network namespaces of its own), with the helpers of `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod api;
mod api_guard;
mod api_limits;
mod batching;
mod bounds;
mod cli;
mod event_budget;
mod forgetting;
mod hardening;
mod idempotency;
mod identity;
mod limits;
mod liveness;
mod mdns;
mod member_flood;
mod members;
mod perf;
mod port_flood;
mod private;
mod services;
mod state;
mod state_api;
mod state_durability;
mod state_flood;
mod swarm;
mod transports;
mod validation;
