//! Pure decisions: no I/O, no clock and no randomness of their own (time and seeds are passed in). The event loop
//! feeds them what happened and carries out what they decide, so each is unit-tested directly with a fake clock.

pub mod admission;
pub mod dedup;
pub mod dials;
pub mod discovery;
pub mod gossip;
pub mod inbound;
pub mod liveness;
pub mod publish;
pub mod rate_limit;
pub mod route;
