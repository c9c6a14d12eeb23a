//! Writing secret files (identity and CA keys, swarm keys, certificates) so that nothing is ever half-written or
//! wrongly replaced: the bytes go to a new temporary file beside the target (mode 0600, a name no other writer can
//! be using), are synced, and the file is then moved into place. Only a regular file is ever replaced — never a
//! device such as `/dev/full`, a FIFO, a directory or a symlink, whatever `--force` says — and never one a running
//! node holds (`identity::KeyLock`). The temporary file is removed on every error.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::identity::IdentityError;
use crate::files::{self, FileError};

/// Writes a secret (a key, a certificate) with mode 0600, atomically: to a new temporary file beside `path`, synced,
/// then moved into place, so a crash or a failed write never leaves a half-written secret. Without `force` an
/// existing file is never replaced (the move is a hard link, which fails if the name exists); with it, only a regular
/// file that no running node holds is. The temporary file is removed on every error.
pub fn write_secret(path: &Path, contents: &[u8], force: bool) -> Result<(), IdentityError> {
    let unwritable = |source| IdentityError::Unwritable {
        path: path.into(),
        source,
    };
    let replaced = existing_target(path, force)?;
    let name = path
        .file_name()
        .ok_or_else(|| unwritable(io::Error::new(io::ErrorKind::InvalidInput, "not a file name")))?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(unwritable)?;
    let mut temporary = TemporaryFile::create(parent, name).map_err(unwritable)?;
    temporary
        .file
        .write_all(contents)
        .and_then(|()| temporary.file.sync_all())
        .map_err(unwritable)?;
    if replaced.is_some() {
        fs::rename(&temporary.path, path).map_err(unwritable)?;
        temporary.renamed();
    } else {
        match fs::hard_link(&temporary.path, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(IdentityError::Exists(path.into())),
            // A file system without hard links: check, then move (not atomic, but nothing better is offered).
            Err(_) => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(IdentityError::Exists(path.into()));
                }
                fs::rename(&temporary.path, path).map_err(unwritable)?;
                temporary.renamed();
            }
        }
    }
    // Best effort: the new name survives a crash once the directory is synced too.
    if let Ok(directory) = File::open(parent) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// What `path` holds before a write: `None` when nothing is there; the opened, locked file when it is a regular file
/// `force` may replace (held until the replacement is in place, so no node can start on it meanwhile).
fn existing_target(path: &Path, force: bool) -> Result<Option<File>, IdentityError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(IdentityError::Unwritable {
                path: path.into(),
                source,
            });
        }
    };
    if let Some(kind) = files::special_kind(metadata.file_type()) {
        return Err(IdentityError::NotReplaceable {
            path: path.into(),
            kind,
        });
    }
    if !force {
        return Err(IdentityError::Exists(path.into()));
    }
    let file = files::open_regular(path, "existing file").map_err(|e| match e {
        FileError::NotRegular { kind, .. } => IdentityError::NotReplaceable {
            path: path.into(),
            kind,
        },
        other => IdentityError::File(other),
    })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(IdentityError::KeyInUse(path.into())),
        Err(TryLockError::Error(source)) => Err(IdentityError::Unwritable {
            path: path.into(),
            source,
        }),
    }
}

/// A new file with a name no other writer can be using (`.NAME.PID-RANDOM.tmp`, created exclusively, mode 0600),
/// removed on drop unless it was renamed into place.
struct TemporaryFile {
    path: PathBuf,
    file: File,
    in_place: bool,
}

impl TemporaryFile {
    fn create(dir: &Path, name: &std::ffi::OsStr) -> io::Result<Self> {
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(".{}-{:016x}.tmp", std::process::id(), rand::random::<u64>()));
        let path = dir.join(temporary_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(TemporaryFile {
            path,
            file,
            in_place: false,
        })
    }

    /// The file now has its final name: nothing to remove.
    fn renamed(&mut self) {
        self.in_place = true;
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        if !self.in_place {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Every name in `dir`, sorted (the identity tests use it too).
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_secret_is_private_and_an_existing_one_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_secret(&path, b"one", false).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(
            write_secret(&path, b"two", false),
            Err(IdentityError::Exists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_secret(&path, b"two", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["secret"], "no temporary file left");
    }

    #[test]
    fn secrets_never_replace_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a-directory");
        fs::create_dir(&target).unwrap();
        let link = dir.path().join("a-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for (path, kind) in [(&target, "directory"), (&link, "symbolic link")] {
            let error = write_secret(path, b"secret", true).unwrap_err();
            assert!(matches!(error, IdentityError::NotReplaceable { .. }), "{error}");
            assert!(error.to_string().contains(kind), "{error}");
        }
        assert!(target.is_dir());
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("/dev/null"));
        assert_eq!(names(dir.path()), ["a-directory", "a-link"], "no temporary file left");
    }

    #[test]
    fn a_temporary_file_is_removed_unless_it_was_moved_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let first = TemporaryFile::create(dir.path(), "k".as_ref()).unwrap();
        let second = TemporaryFile::create(dir.path(), "k".as_ref()).unwrap();
        assert_ne!(first.path, second.path, "two writers never share a name");
        drop((first, second));
        assert!(names(dir.path()).is_empty());
    }
}
