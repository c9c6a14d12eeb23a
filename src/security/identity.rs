//! The node's identity: its ed25519 key file, and the data-directory lock that keeps two nodes from running with
//! one identity.
//!
//! The peer id *is* the public key, so losing or silently replacing the key changes who the node is to the whole
//! swarm. The key is therefore created once (mode 0600, written atomically), reused on every start, and a file that
//! cannot be read or decoded is an error the operator must resolve — never overwritten.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;

/// What can go wrong with the key file or the data directory.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read key file {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "key file {path} is corrupt or not a libp2p protobuf-encoded ed25519 key ({reason}); \
         restore it from a backup, or move it away to start with a new identity (a new peer id)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("no key file at {0}: start the node once, or create one with `swarmnode key generate --out {0}`")]
    Missing(PathBuf),
    #[error("key file {0} already exists: pass --force to replace it (the old key is then gone for good)")]
    Exists(PathBuf),
    #[error("cannot write key file {path}: {source}")]
    Unwritable { path: PathBuf, source: io::Error },
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error(
        "data directory {0} is in use by another running swarmnode; pass another --data-dir \
         (two nodes sharing one identity would silently ignore each other)"
    )]
    DataDirInUse(PathBuf),
}

/// Reads the key at `path`, creating a new one there if no file exists.
pub fn load_or_create(path: &Path) -> Result<Keypair, IdentityError> {
    match load(path) {
        Err(IdentityError::Missing(_)) => {
            let keypair = Keypair::generate_ed25519();
            write_new(path, &keypair, false)?;
            tracing::info!(path = %path.display(), peer_id = %keypair.public().to_peer_id(), "created a new identity key");
            Ok(keypair)
        }
        other => other,
    }
}

/// Reads the key at `path`; a missing file is `IdentityError::Missing`.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing(path.into()));
        }
        Err(source) => {
            return Err(IdentityError::Unreadable {
                path: path.into(),
                source,
            });
        }
    };
    warn_if_readable_by_others(path);
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Writes a freshly generated key to `path`; refuses to replace an existing file unless `force`.
pub fn generate(path: &Path, force: bool) -> Result<Keypair, IdentityError> {
    let keypair = Keypair::generate_ed25519();
    write_new(path, &keypair, force)?;
    Ok(keypair)
}

/// Writes the key to a temporary file with mode 0600 and renames it into place, so a crash never leaves a
/// half-written key behind.
fn write_new(path: &Path, keypair: &Keypair, force: bool) -> Result<(), IdentityError> {
    let encoded = keypair.to_protobuf_encoding().map_err(|e| IdentityError::Unwritable {
        path: path.into(),
        source: io::Error::other(e.to_string()),
    })?;
    write_secret(path, &encoded, force)
}

/// Writes a secret (a key) to a temporary file with mode 0600 and renames it into place; refuses to replace an
/// existing file unless `force`.
pub fn write_secret(path: &Path, contents: &[u8], force: bool) -> Result<(), IdentityError> {
    if !force && path.exists() {
        return Err(IdentityError::Exists(path.into()));
    }
    let unwritable = |source| IdentityError::Unwritable {
        path: path.into(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(unwritable)?;
    }
    let temporary = path.with_extension("partial");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(unwritable)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(unwritable)?;
    fs::rename(&temporary, path).map_err(unwritable)
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "key file is readable by other users; chmod 600 it");
    }
}

/// An exclusive lock on a data directory, held for as long as the node runs and released on drop (also when the
/// process dies: the kernel drops the lock with the file descriptor).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates the directory if needed and locks it, failing at once if another node holds it.
    pub fn acquire(dir: &Path) -> Result<Self, IdentityError> {
        let data_dir_error = |source| IdentityError::DataDir {
            path: dir.into(),
            source,
        };
        fs::create_dir_all(dir).map_err(data_dir_error)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(data_dir_error)?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(IdentityError::DataDirInUse(dir.into())),
            Err(TryLockError::Error(source)) => Err(data_dir_error(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_a_private_key_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/identity.key");
        let first = load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
    }

    #[test]
    fn a_corrupt_key_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        fs::write(&path, b"definitely not a key").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("corrupt"));
        assert_eq!(fs::read(&path).unwrap(), b"definitely not a key");
    }

    #[test]
    fn generate_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let first = generate(&path, false).unwrap();
        assert!(matches!(generate(&path, false), Err(IdentityError::Exists(_))));
        assert_eq!(load(&path).unwrap().public(), first.public());
        let replaced = generate(&path, true).unwrap();
        assert_ne!(replaced.public(), first.public());
        assert_eq!(load(&path).unwrap().public(), replaced.public());
    }

    #[test]
    fn a_missing_key_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("absent")).unwrap_err();
        assert!(err.to_string().contains("swarmnode key generate"));
    }

    #[test]
    fn a_locked_data_dir_refuses_a_second_node_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains("--data-dir"), "{err}");
        drop(held);
        assert!(DataDirLock::acquire(dir.path()).is_ok());
    }
}
