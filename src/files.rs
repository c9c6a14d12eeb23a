//! Reading the files an operator points swarmnode at (keys, certificates, the swarm key, peer lists, the API token).
//! Each must be a regular file no larger than a bound chosen for its kind, so that `--key /dev/zero` or a peer list
//! that is really a multi-gigabyte log is a clear error instead of a hang or an exhausted memory. The check is made on
//! the opened file (fstat of the descriptor), not on the path beforehand, so nothing can swap the file in between;
//! the open itself does not block on a FIFO. At most `limit + 1` bytes are ever read.

use std::{
    fs::{File, FileType, OpenOptions},
    io::{self, Read},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// Why a file cannot be used. `what` names the file as the operator knows it: the flag (`--deny-file`) or its kind
/// (`key file`).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Unreadable {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {} is not a regular file (it is a {kind})", path.display())]
    NotRegular {
        what: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{what} {} is larger than {}", path.display(), show_size(*limit))]
    TooLarge { what: String, path: PathBuf, limit: usize },
    #[error("{what} {} is not UTF-8 text", path.display())]
    NotText { what: String, path: PathBuf },
}

impl FileError {
    /// True when there is no file at the path (some callers then create one).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Unreadable { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens `path` for reading and checks that what was opened is a regular file. The open does not wait for a writer
/// when the path is a FIFO (`O_NONBLOCK`, which changes nothing for regular files) and never makes a terminal ours.
pub fn open_regular(path: &Path, what: &str) -> Result<File, FileError> {
    let unreadable = |source| FileError::Unreadable {
        what: what.to_owned(),
        path: path.into(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    match special_kind(metadata.file_type()) {
        Some(kind) => Err(FileError::NotRegular {
            what: what.to_owned(),
            path: path.into(),
            kind,
        }),
        None => Ok(file),
    }
}

/// Reads all of an opened regular file (`open_regular`), refusing one of more than `limit` bytes.
pub fn read_opened(file: &mut File, path: &Path, what: &str, limit: usize) -> Result<Vec<u8>, FileError> {
    let too_large = || FileError::TooLarge {
        what: what.to_owned(),
        path: path.into(),
        limit,
    };
    let unreadable = |source| FileError::Unreadable {
        what: what.to_owned(),
        path: path.into(),
        source,
    };
    let size = file.metadata().map_err(unreadable)?.len();
    if usize::try_from(size).map_or(true, |size| size > limit) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(limit).min(limit));
    // The file may have grown since the size was read: one byte more than the limit tells.
    file.by_ref()
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads the regular file at `path`, of at most `limit` bytes.
pub fn read(path: &Path, what: &str, limit: usize) -> Result<Vec<u8>, FileError> {
    let mut file = open_regular(path, what)?;
    read_opened(&mut file, path, what, limit)
}

/// Reads the regular file at `path`, of at most `limit` bytes of UTF-8 text.
pub fn read_text(path: &Path, what: &str, limit: usize) -> Result<String, FileError> {
    String::from_utf8(read(path, what, limit)?).map_err(|_| FileError::NotText {
        what: what.to_owned(),
        path: path.into(),
    })
}

/// What a file that is not a regular file is, for messages; `None` for a regular file.
pub fn special_kind(file_type: FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("directory")
    } else if file_type.is_char_device() {
        Some("character device")
    } else if file_type.is_block_device() {
        Some("block device")
    } else if file_type.is_fifo() {
        Some("FIFO")
    } else if file_type.is_socket() {
        Some("socket")
    } else if file_type.is_symlink() {
        Some("symbolic link")
    } else {
        Some("special file")
    }
}

/// `4096` as `4 KiB`, `1048576` as `1 MiB`.
fn show_size(bytes: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};

    use super::*;

    #[test]
    fn a_regular_file_within_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list");
        std::fs::write(&path, [7u8; 4096]).unwrap();
        assert_eq!(read(&path, "--deny-file", 4096).unwrap().len(), 4096);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(
            read(&link, "--deny-file", 4096).unwrap().len(),
            4096,
            "a link is followed"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_it_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list");
        std::fs::write(&path, vec![b'x'; (1 << 20) + 1]).unwrap();
        let error = read(&path, "--deny-file", 1 << 20).unwrap_err();
        assert!(matches!(error, FileError::TooLarge { .. }));
        assert_eq!(
            error.to_string(),
            format!("--deny-file {} is larger than 1 MiB", path.display())
        );
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_without_reading_or_blocking() {
        let error = read(Path::new("/dev/zero"), "--key", 4096).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--key /dev/zero is not a regular file (it is a character device)"
        );
        let dir = tempfile::tempdir().unwrap();
        let error = read(dir.path(), "--cert", 4096).unwrap_err();
        assert!(error.to_string().contains("(it is a directory)"), "{error}");
        let fifo = dir.path().join("fifo");
        let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path and creates a node; nothing else is touched.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = read(&fifo, "--swarm-key", 4096).unwrap_err();
        assert!(error.to_string().contains("(it is a FIFO)"), "{error}");
    }

    #[test]
    fn a_missing_file_is_told_apart_and_text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read(&dir.path().join("absent"), "key file", 10)
                .unwrap_err()
                .is_not_found()
        );
        let path = dir.path().join("token");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let error = read_text(&path, "--api-token-file", 10).unwrap_err();
        assert!(error.to_string().ends_with("is not UTF-8 text"), "{error}");
        assert!(!error.is_not_found());
    }

    #[test]
    fn sizes_are_shown_in_their_unit() {
        assert_eq!(show_size(4096), "4 KiB");
        assert_eq!(show_size(1 << 20), "1 MiB");
        assert_eq!(show_size(100), "100 bytes");
    }
}
