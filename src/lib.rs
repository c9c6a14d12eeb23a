//! swarmnode: a peer-to-peer swarm node on rust-libp2p.
//!
//! The library holds everything the `swarmnode` binary runs, so that tests (and other Rust programs) can start
//! in-process nodes and talk to them through the same `NodeHandle` the CLI uses. See `docs/architecture.md`.

pub mod admission;
pub mod api;
pub mod batch;
pub mod cli;
pub mod client;
pub mod config;
pub mod dedup;
pub mod envelope;
pub mod identity;
pub mod leave;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod rate_limit;
pub mod swarm_key;
pub mod time;
