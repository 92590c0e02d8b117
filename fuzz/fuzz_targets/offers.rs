//! File transfers offered between clients, as a SIP body of any of the
//! types read (SDP with a=file-selector, Lync's XML, Communicator's
//! text, multipart around them); the first byte picks the type.
//! Invariants: no panic, at most MAX_FILES reported.
#![no_main]

use content::offers::{offered, MAX_FILES};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 5] = [
    "application/sdp",
    "application/ms-filetransfer+xml",
    "text/x-msmsgsinvite",
    "multipart/mixed; boundary=b1",
    "multipart/alternative;boundary=\"b1\"",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = TYPES[usize::from(pick) % TYPES.len()];
    assert!(offered(ct, body).len() <= MAX_FILES);
});
