//! A device's certificate request (PKCS#10), as the user API reads it.
//! Invariants: no panic; what is accepted is within the size limit, and a
//! request accepted once is accepted again with the same key (the parse is
//! a function of its input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pki::csr::{parse, MAX_CSR};

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = parse(data, "sip:alice@example.test") {
        assert!(data.len() <= MAX_CSR);
        let again = parse(data, "sip:alice@example.test").expect("the same input parses again");
        assert_eq!(
            rcgen::PublicKeyData::der_bytes(&csr),
            rcgen::PublicKeyData::der_bytes(&again)
        );
    }
});
