//! Which topic names a node accepts (to join, publish on, or take from the command line). A name is shown to
//! operators in events, tables and logs, so besides being short and free of control characters it may not hold
//! characters that change how it displays without showing themselves: a bidirectional override can make
//! `invoice\u{202E}fdp.exe` read as `invoiceexe.pdf`, and a zero-width space makes two names look identical.

use super::MAX_TOPIC_LEN;

/// Topics the node uses itself (`wire::members::MEMBERS_TOPIC`): never joined, left or published on by users.
pub const RESERVED_TOPIC_PREFIX: &str = "/swarmnode/";

/// Why a topic name is refused, if it is.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("a topic name cannot be empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!("topic names are at most {MAX_TOPIC_LEN} bytes"));
    }
    if topic.starts_with(RESERVED_TOPIC_PREFIX) {
        return Err(format!(
            "topic names starting with {RESERVED_TOPIC_PREFIX} are reserved for the node's own use (member records)"
        ));
    }
    if topic.chars().any(char::is_control) {
        return Err("a topic name cannot contain control characters".into());
    }
    if let Some(invisible) = topic.chars().find(|&c| is_invisible_format(c)) {
        return Err(format!(
            "a topic name cannot contain invisible formatting characters (bidirectional controls, zero-width \
             characters, line separators), which make it display as another name: found U+{:04X}",
            u32::from(invisible)
        ));
    }
    Ok(())
}

/// Characters that change how the text around them displays without showing themselves, as ranges: Unicode's
/// format characters (category Cf: bidirectional embeddings, overrides, isolates and marks, zero-width spaces and
/// joiners, the byte-order mark, invisible operators, tags) and the line and paragraph separators. The API's schema
/// for topic names is built from this table too.
pub const INVISIBLE_FORMAT: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{2028}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is one of `INVISIBLE_FORMAT`.
pub fn is_invisible_format(c: char) -> bool {
    INVISIBLE_FORMAT
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    #[test]
    fn topic_names_refuse_characters_that_change_how_they_display() {
        for spoof in [
            "invoice\u{202E}fdp.exe",
            "a\u{202A}b",
            "\u{2066}admin\u{2069}",
            "left\u{200E}",
            "right\u{200F}",
            "arabic\u{061C}mark",
            "zero\u{200B}width",
            "join\u{200D}er",
            "\u{FEFF}bom",
            "line\u{2028}break",
            "tag\u{E0041}",
        ] {
            let reason = check_topic(spoof).unwrap_err();
            assert!(
                reason.contains("invisible formatting characters"),
                "{spoof:?}: {reason}"
            );
        }
        let reason = check_topic("invoice\u{202E}fdp.exe").unwrap_err();
        assert!(reason.ends_with("found U+202E"), "{reason}");
        for fine in ["news", "café-日本", "sensors/eu-west/1", "π ≈ 3.14", "émoji 🚀"] {
            assert_eq!(check_topic(fine), Ok(()), "{fine:?}");
        }
        let mut config = NodeConfig::with_data_dir("/tmp/swarmnode-test".into());
        config.topics = vec!["a\u{202E}b".into()];
        assert_eq!(config.validate().unwrap_err().setting, "topic");
    }
}
