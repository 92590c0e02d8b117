//! Session descriptions as offers and answers carry them. Invariants: no
//! panic; a description that reads is judged without panicking, and
//! reads the same with LF line ends as with CRLF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdp::Session;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Session::parse(data) else { return };
    let _ = sdp::protection::judge(&s);
    let _ = sdp::protection::streams(&s);
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.contains('\r') {
            let crlf = text.replace('\n', "\r\n");
            if let Ok(again) = Session::parse(crlf.as_bytes()) {
                assert_eq!(again, s);
            }
        }
    }
});
