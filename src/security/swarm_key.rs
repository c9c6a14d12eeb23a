//! The pre-shared key of a private swarm (`--swarm-key`), in Kubo's `swarm.key` format so the same file works for
//! go-libp2p and js-libp2p nodes:
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! <64 hex digits>
//! ```
//!
//! Parsing says which line is wrong and why, since operators write and copy these files by hand. Pure apart from
//! `load`, which reads the file (a regular file of at most `MAX_SWARM_KEY_FILE` bytes).

use std::path::Path;

use libp2p::pnet::PreSharedKey;

use crate::files::{self, FileError};

/// Largest swarm key file read, in bytes (a key file takes 95).
pub const MAX_SWARM_KEY_FILE: usize = 4096;
const KEY_TYPE: &str = "/key/swarm/psk/1.0.0/";
const ENCODING: &str = "/base16/";
const KEY_BYTES: usize = 32;

/// Why a swarm key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SwarmKeyError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("swarm key {path}, line {line}: {reason}")]
    Invalid { path: String, line: usize, reason: String },
}

/// Parses the file's text; on error, the 1-based line that is wrong and why.
pub fn parse(text: &str) -> Result<PreSharedKey, (usize, String)> {
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));
    match lines.next() {
        Some(KEY_TYPE) => {}
        other => return Err((1, format!("expected {KEY_TYPE:?}, found {:?}", other.unwrap_or("")))),
    }
    match lines.next() {
        Some(ENCODING) => {}
        other => {
            return Err((
                2,
                format!(
                    "expected {ENCODING:?} (the only encoding supported), found {:?}",
                    other.unwrap_or("")
                ),
            ));
        }
    }
    let hex_key = lines.next().unwrap_or("").trim();
    let bytes = hex::decode(hex_key).map_err(|e| (3, format!("the key is not hexadecimal: {e}")))?;
    let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        (
            3,
            format!("the key must be 64 hex digits (32 bytes), found {}", bytes.len() * 2),
        )
    })?;
    if let Some((index, extra)) = lines.enumerate().find(|(_, line)| !line.trim().is_empty()) {
        return Err((4 + index, format!("unexpected text after the key: {extra:?}")));
    }
    Ok(PreSharedKey::new(key))
}

/// Reads and parses a swarm key file.
pub fn load(path: &Path) -> Result<PreSharedKey, SwarmKeyError> {
    let text = files::read_text(path, "swarm key", MAX_SWARM_KEY_FILE)?;
    parse(&text).map_err(|(line, reason)| SwarmKeyError::Invalid {
        path: path.display().to_string(),
        line,
        reason,
    })
}

/// A new random key, as file text.
pub fn generate() -> (PreSharedKey, String) {
    let key = PreSharedKey::new(rand::random());
    (key, key.to_key_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back() {
        let (key, text) = generate();
        assert_eq!(
            parse(&text).unwrap().fingerprint().to_string(),
            key.fingerprint().to_string()
        );
        assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));
    }

    #[test]
    fn each_wrong_line_is_named() {
        let good = "a".repeat(64);
        let cases = [
            ("".to_owned(), 1),
            (format!("/key/swarm/psk/2.0.0/\n/base16/\n{good}\n"), 1),
            (format!("/key/swarm/psk/1.0.0/\n/base64/\n{good}\n"), 2),
            ("/key/swarm/psk/1.0.0/\n/base16/\nxyz\n".to_owned(), 3),
            (format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "a".repeat(62)), 3),
            (format!("/key/swarm/psk/1.0.0/\n/base16/\n{good}\n\nmore\n"), 5),
        ];
        for (text, line) in cases {
            assert_eq!(parse(&text).unwrap_err().0, line, "{text:?}");
        }
        assert!(
            parse(&format!("/key/swarm/psk/1.0.0/\r\n/base16/\r\n{good}\r\n")).is_ok(),
            "CRLF files work"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_key_or_names_a_line(text in "(/key/swarm/psk/1.0.0/\n)?(/base16/\n)?[0-9a-fA-F]{0,70}\n?.{0,20}") {
            if let Err((line, _)) = parse(&text) {
                proptest::prop_assert!((1..=text.lines().count().max(1) + 3).contains(&line));
            }
        }
    }
}
