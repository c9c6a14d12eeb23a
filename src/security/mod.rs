//! The node's secrets and credentials and their files: the identity key (and the locks that keep one node per
//! identity), the private swarm's pre-shared key, the CA-signed membership certificates, and how secret files are
//! written.

pub mod certificate;
pub mod identity;
pub mod secret_file;
pub mod swarm_key;
