//! An organisation's revocation list as the server reads it (fetched over
//! HTTP, so from the network): DER or PEM with one or more blocks.
//! Invariants: no panic; what is accepted is within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lists) = pki::byo::parse_crls(data) {
        assert!(data.len() <= pki::byo::MAX_CRL);
        assert!(!lists.is_empty());
    }
});
