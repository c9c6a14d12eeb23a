//! One envelope from gossip bytes: any input is a value or a typed error, never a panic; a value re-encodes to bytes
//! that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmnode::wire::envelope::Envelope;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data, LIMIT) {
        let bytes = envelope.encode(LIMIT).expect("a decoded envelope encodes");
        assert_eq!(Envelope::decode(&bytes, LIMIT).expect("and decodes again"), envelope);
    }
});
