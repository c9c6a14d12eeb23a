//! The node's secrets and credentials and their files: the identity key (and the lock that keeps one node per
//! identity), the private swarm's pre-shared key, and the CA-signed membership certificates.

pub mod certificate;
pub mod identity;
pub mod swarm_key;
