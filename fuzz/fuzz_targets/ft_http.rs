//! An RCS file pointer (application/vnd.gsma.rcs-ft-http+xml) as a client
//! sends it in a MESSAGE, raw or in CPIM. Invariants: no panic; a pointer
//! that reads is written back and reads as the same file (what the server
//! writes for uploads, it reads); a URL read as one of the server's names
//! a 32-hex-digit id it contains.
#![no_main]

use content::ft_http::{offer, our_url, read, write, Offer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Offer::Pointer(p) = offer("message/cpim", data) {
        for u in p.urls() {
            if let Some(ours) = our_url(u) {
                assert_eq!(ours.id.len(), 32);
                assert!(u.contains(ours.id) && u.contains(ours.host));
            }
        }
    }
    if let Ok(p) = read(data) {
        assert!(p.urls().count() >= 1);
        let again = read(write(&p.file).as_bytes());
        // Characters XML 1.0 cannot carry are dropped when writing.
        let clean = |s: &str| !s.chars().any(|c| (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'));
        let f = &p.file;
        if [&f.name, &f.url, &f.content_type].iter().all(|s| clean(s))
            && f.until.as_deref().is_none_or(clean)
        {
            let again = again.expect("what is written reads");
            assert_eq!(again.file.url, p.file.url);
            assert_eq!(again.file.size, p.file.size);
        }
    }
});
