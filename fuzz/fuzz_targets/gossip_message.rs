//! A whole gossip message's data, as the node decodes it: one envelope or a batch of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmnode::wire::batch::decode_message;

fuzz_target!(|data: &[u8]| {
    let _ = decode_message(data, 1 << 20);
});
