//! swarmnode: a peer-to-peer swarm node on rust-libp2p.
//!
//! The library holds everything the `swarmnode` binary runs, so that tests (and other Rust programs) can start
//! in-process nodes and talk to them through the same `NodeHandle` the CLI uses. The folders say what each part is
//! (`docs/architecture.md`): `policy` decides (pure), `wire` encodes (pure), `security` holds keys and credentials,
//! `node` is the only code touching the libp2p `Swarm`, `api` and `cli` are the surfaces over `NodeHandle`, and
//! `files` reads every file an operator names, bounded.

pub mod api;
pub mod cli;
pub mod config;
pub mod files;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod security;
pub mod state;
pub mod time;
pub mod wire;
