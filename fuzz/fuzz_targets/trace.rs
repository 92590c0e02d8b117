//! A trace segment as read back from disk (a file anyone with the data
//! directory could have changed): no panic; every record read, written
//! again, reads back the same; redacting for disk never panics and
//! leaves no `response=` in an Authorization header it found.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for r in trace::parse_segment(data) {
        let mut again = Vec::new();
        r.encode(&mut again);
        assert_eq!(trace::parse_segment(&again), vec![r.clone()]);
        let _ = r.header("Call-ID", Some("i"));
        let _ = r.first_line();
        let _ = trace::hep::encode(&r, 1);
    }
    let redacted = trace::redact_for_disk(data);
    let text = String::from_utf8_lossy(&redacted);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    for line in head.split('\n') {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if name == "authorization" || name == "proxy-authorization" {
            let value = line.split_once(':').map_or("", |(_, v)| v);
            assert!(!value.contains("response="), "{line:?}");
        }
    }
});
