//! An admission request off the wire, as libp2p's CBOR codec hands it over, then its certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmnode::{security::certificate::Certificate, wire::admission::AdmissionRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = cbor4ii::serde::from_slice::<AdmissionRequest>(data) {
        let _ = Certificate::decode(&request.certificate);
    }
});
