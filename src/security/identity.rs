//! The node's identity: its ed25519 key file, and the locks that keep two nodes from running with one identity (the
//! data directory's and the key file's own). Key files are written by `secret_file`.
//!
//! The peer id *is* the public key, so losing or silently replacing the key changes who the node is to the whole
//! swarm. The key is therefore created once (mode 0600, written atomically, never over an existing file), reused on
//! every start, and a file that cannot be read or decoded is an error the operator must resolve — never overwritten.
//!
//! A running node holds an exclusive `flock` on its key file, taken on the very descriptor the key is read from, so
//! the lock covers exactly the key in use, wherever it lives (`--key` outside the data directory too) and by whatever
//! path or hard link it is named; it needs no write access and leaves no lock file behind. A rename does not move
//! the lock to the new file: `key generate --force` (which replaces by rename) therefore checks the lock on the file
//! it would replace and refuses while a node holds it. A copy of the key under another inode is not detected.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;

use super::secret_file::write_secret;
use crate::files::{self, FileError};

/// Largest key file read, in bytes (an ed25519 key pair takes 68).
pub const MAX_KEY_FILE: usize = 4096;
/// How a key file is named in errors.
const KEY_FILE: &str = "key file";

/// What can go wrong with the key file or the data directory.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(FileError),
    #[error(
        "key file {} is empty: restore it from a backup, or remove it to start with a new identity (a new peer id)",
        .0.display()
    )]
    Empty(PathBuf),
    #[error(
        "key file {path} is corrupt or not a libp2p protobuf-encoded ed25519 key ({reason}); \
         restore it from a backup, or move it away to start with a new identity (a new peer id)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("no key file at {0}: start the node once, or create one with `swarmnode key generate --out {0}`")]
    Missing(PathBuf),
    #[error("key file {0} already exists: pass --force to replace it (the old key is then gone for good)")]
    Exists(PathBuf),
    #[error("{path} is not a regular file (it is a {kind}): refusing to replace it, even with --force")]
    NotReplaceable { path: PathBuf, kind: &'static str },
    #[error(
        "key file {0} is in use by a running swarmnode: stop that node first, or pass another --key \
         (two nodes sharing one identity would silently ignore each other)"
    )]
    KeyInUse(PathBuf),
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

impl IdentityError {
    fn from_file(path: &Path, error: FileError) -> Self {
        if error.is_not_found() {
            IdentityError::Missing(path.into())
        } else {
            IdentityError::File(error)
        }
    }
}

/// The running node's hold on its key file, released on drop (also when the process dies: the kernel drops the lock
/// with the file descriptor).
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

/// Reads and locks the key at `path`, creating a new one there if no file exists. Fails at once if another node
/// holds the key.
pub fn load_or_create(path: &Path) -> Result<(Keypair, KeyLock), IdentityError> {
    match load_locked(path) {
        Err(IdentityError::Missing(_)) => {
            match write_new(path, &Keypair::generate_ed25519(), false) {
                // Another process created it first: use that one, as it may already be running with it.
                Ok(()) | Err(IdentityError::Exists(_)) => {}
                Err(e) => return Err(e),
            }
            let (keypair, lock) = load_locked(path)?;
            tracing::info!(path = %path.display(), peer_id = %keypair.public().to_peer_id(), "created a new identity key");
            Ok((keypair, lock))
        }
        other => other,
    }
}

/// Opens the key at `path`, locks it, and decodes the bytes read through the locked descriptor.
fn load_locked(path: &Path) -> Result<(Keypair, KeyLock), IdentityError> {
    let mut file = files::open_regular(path, KEY_FILE).map_err(|e| IdentityError::from_file(path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(IdentityError::KeyInUse(path.into())),
        Err(TryLockError::Error(source)) => {
            return Err(IdentityError::File(FileError::Unreadable {
                what: KEY_FILE.into(),
                path: path.into(),
                source,
            }));
        }
    }
    let bytes = files::read_opened(&mut file, path, KEY_FILE, MAX_KEY_FILE).map_err(IdentityError::File)?;
    warn_if_readable_by_others(&file, path);
    Ok((decode(path, &bytes)?, KeyLock { _file: file }))
}

/// Reads the key at `path` (without locking it: `swarmnode id` may look at a running node's key); a missing file is
/// `IdentityError::Missing`.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let mut file = files::open_regular(path, KEY_FILE).map_err(|e| IdentityError::from_file(path, e))?;
    let bytes = files::read_opened(&mut file, path, KEY_FILE, MAX_KEY_FILE).map_err(IdentityError::File)?;
    warn_if_readable_by_others(&file, path);
    decode(path, &bytes)
}

/// Decodes a key file's bytes; every refusal says what the bytes look like in our own words.
fn decode(path: &Path, bytes: &[u8]) -> Result<Keypair, IdentityError> {
    if bytes.is_empty() {
        return Err(IdentityError::Empty(path.into()));
    }
    Keypair::from_protobuf_encoding(bytes).map_err(|_| IdentityError::Corrupt {
        path: path.into(),
        reason: why_not_a_key(bytes),
    })
}

/// Why bytes that libp2p could not decode are not an ed25519 key pair. A libp2p private key is a protobuf message:
/// field 1 (tag 0x08) the key type, field 2 (tag 0x12) the key bytes; an ed25519 pair is type 1 with 64 bytes.
fn why_not_a_key(bytes: &[u8]) -> String {
    const ED25519_FILE: usize = 68;
    let other_type = match bytes {
        [0x08, 0, ..] => Some("an RSA key"),
        [0x08, 2, ..] => Some("a secp256k1 key"),
        [0x08, 3, ..] => Some("an ECDSA key"),
        [0x08, 1, ..] => None,
        [0x08, kind, ..] => return format!("key type {kind} is unknown"),
        _ => None,
    };
    if let Some(other_type) = other_type {
        return format!("it holds {other_type}; swarmnode identities are ed25519 keys");
    }
    if bytes.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        return format!(
            "it is {} bytes of text, not the binary key `swarmnode key generate` writes",
            bytes.len()
        );
    }
    if bytes.len() != ED25519_FILE {
        return format!(
            "an ed25519 key file is {ED25519_FILE} bytes, this one is {}",
            bytes.len()
        );
    }
    "its bytes are not a valid ed25519 key pair".into()
}

/// Writes a freshly generated key to `path`; refuses to replace an existing file unless `force`, and refuses to
/// replace a key a running node holds.
pub fn generate(path: &Path, force: bool) -> Result<Keypair, IdentityError> {
    let keypair = Keypair::generate_ed25519();
    write_new(path, &keypair, force)?;
    Ok(keypair)
}

fn write_new(path: &Path, keypair: &Keypair, force: bool) -> Result<(), IdentityError> {
    let encoded = keypair.to_protobuf_encoding().map_err(|e| IdentityError::Unwritable {
        path: path.into(),
        source: io::Error::other(e.to_string()),
    })?;
    write_secret(path, &encoded, force)
}

fn warn_if_readable_by_others(file: &File, path: &Path) {
    if let Ok(metadata) = file.metadata()
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
    use crate::security::secret_file::tests::names;

    #[test]
    fn first_start_creates_a_private_key_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/identity.key");
        let (first, lock) = load_or_create(&path).unwrap();
        drop(lock);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (second, _lock) = load_or_create(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        assert_eq!(
            names(&dir.path().join("nested")),
            ["identity.key"],
            "no temporary file left"
        );
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
    fn undecodable_keys_are_described_in_our_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        fs::write(&path, b"").unwrap();
        let empty = load(&path).unwrap_err().to_string();
        assert!(
            empty.starts_with(&format!("key file {} is empty", path.display())),
            "{empty}"
        );
        let cases: [(&[u8], &str); 5] = [
            (b"\x08\x00\x12\x00", "holds an RSA key"),
            (b"\x08\x02\x12\x20", "holds a secp256k1 key"),
            (b"\x08\x09", "key type 9 is unknown"),
            (b"CAESQ...base64\n", "bytes of text"),
            (b"\x08\x01\x12\x40\x00", "68 bytes, this one is 5"),
        ];
        for (bytes, expected) in cases {
            fs::write(&path, bytes).unwrap();
            let message = load(&path).unwrap_err().to_string();
            assert!(message.contains(expected), "{bytes:?}: {message}");
            assert!(!message.contains("cargo feature"), "{message}");
        }
        let mut mismatched = Keypair::generate_ed25519().to_protobuf_encoding().unwrap();
        mismatched[40] ^= 1;
        fs::write(&path, mismatched).unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("not a valid ed25519 key pair"), "{message}");
    }

    #[test]
    fn only_regular_key_files_of_a_few_kib_are_read() {
        let error = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(
            error,
            "key file /dev/zero is not a regular file (it is a character device)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.key");
        fs::write(&path, vec![0; MAX_KEY_FILE + 1]).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("is larger than 4 KiB"));
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
        assert_eq!(names(dir.path()), ["k"], "no temporary file left");
    }

    #[test]
    fn a_key_in_use_cannot_be_loaded_by_another_node_or_replaced_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let (keypair, lock) = load_or_create(&path).unwrap();
        assert!(matches!(load_or_create(&path), Err(IdentityError::KeyInUse(_))));
        let link = dir.path().join("another-name");
        fs::hard_link(&path, &link).unwrap();
        assert!(
            matches!(load_or_create(&link), Err(IdentityError::KeyInUse(_))),
            "the lock is on the file, not its name"
        );
        let refused = generate(&path, true).unwrap_err();
        assert!(
            refused.to_string().contains("in use by a running swarmnode"),
            "{refused}"
        );
        assert_eq!(load(&path).unwrap().public(), keypair.public(), "`id` still reads it");
        drop(lock);
        assert!(generate(&path, true).is_ok());
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
