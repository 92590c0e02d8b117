//! PIDF/RPID documents as a client would PUBLISH them. Invariants: nothing
//! panics or runs away (the parser bounds size, depth, elements, text); what
//! parses is written out and parses again to the same document, with the same
//! availability.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence::{Availability, Presence};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Presence::parse(data) {
        let out = p.to_xml();
        let again = Presence::parse(out.as_bytes()).expect("our own output parses");
        assert_eq!(again, p, "round trip");
        assert_eq!(Availability::of(&again), Availability::of(&p));
    }
});
