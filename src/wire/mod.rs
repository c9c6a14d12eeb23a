//! Wire formats: the bytes of our own protocols and their ids, pure (no I/O). Each codec checks everything it
//! decodes and fails with a typed error; docs/protocol.md is the normative description of every one of them.

pub mod admission;
pub mod batch;
pub mod cbor;
pub mod envelope;
pub mod leave;
pub mod members;
pub mod perf;
pub mod state;
