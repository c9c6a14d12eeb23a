//! A membership certificate from a peer or a file: decoding and verifying never panic, and only a certificate that
//! really carries a valid signature can verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmnode::security::certificate::Certificate;

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = Certificate::decode(data) {
        let _ = certificate.verify(&certificate.ca, &certificate.peer, certificate.not_before);
        assert_eq!(Certificate::decode(&certificate.encode()).as_ref(), Ok(&certificate));
    }
});
