//! URI parsing. Invariant: a parsed SIP/tel URI's `raw` is exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match Uri::parse(s) {
        Ok(Uri::Sip(u)) => {
            assert_eq!(u.raw, s);
            for p in u.params {
                let _ = p.value;
            }
            let _ = u.host.to_string();
        }
        Ok(Uri::Tel(t)) => assert_eq!(t.raw, s),
        Ok(Uri::Absolute(a)) => assert_eq!(a.scheme.len() + 1 + a.rest.len(), s.len()),
        Err(_) => {}
    }
});
