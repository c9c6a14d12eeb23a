//! A swarm.key file's text: a key, or the line at fault.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err((line, _)) = swarmnode::security::swarm_key::parse(text) {
            assert!(line >= 1 && line <= text.lines().count().max(1) + 3);
        }
    }
});
