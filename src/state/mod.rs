//! The replicated key/value map: pure merge and sync decisions (`map`, `sync`, `ranges`) and the `redb` store
//! (`store`). The event loop glues them to gossip, the sync protocol and the API (`node/state*.rs`); docs/state.md
//! gives the guarantees.

pub mod map;
pub mod ranges;
pub mod store;
pub mod sync;

#[cfg(test)]
mod tests;

pub use map::{Book, Map, MapCounts, MapLimits, Merged, Persist, StateError};
pub use sync::Coverage;
