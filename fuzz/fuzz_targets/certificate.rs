//! A partner's certificate read for its identities (RFC 5922). Invariants:
//! no panic; a name found is never covered when it holds a wildcard; a
//! certificate's identities match the domains they list, ignoring case.
#![no_main]

use federation::identity::identities;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ids) = identities(data) {
        for n in &ids.names {
            if n.contains('*') {
                assert!(!ids.covers(n));
            }
            if ids.covers(n) {
                assert!(ids.covers(&n.to_ascii_uppercase()));
            }
        }
    }
});
