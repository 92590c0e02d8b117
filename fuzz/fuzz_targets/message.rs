//! Whole-message parsing and everything built on a parsed message: proxy fields,
//! admission, typed headers, responses, proxy edits. Invariants: no panic; a
//! parsed message serializes back byte-exact; edited messages parse again.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::admission::{self, Capabilities};
use sip::headers::*;
use sip::{parse_datagram, Limits, Method, RequestFields, ResponseFields};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    let Ok(msg) = parse_datagram(Bytes::copy_from_slice(data), &limits) else {
        let _ = sip::build::error_response(data, 400, "Bad Request", "t");
        return;
    };
    assert!(msg.len() <= data.len());
    assert_eq!(sip::forward::Forward::new(&msg).serialize().len(), msg.len() + if msg.content_length().is_none() { 18 + msg.body().len().to_string().len() } else { 0 });
    for h in msg.headers() {
        let _ = h.value.len();
    }
    let _ = msg.typed::<CSeq>();
    let _ = msg.typed::<CallId>();
    let _ = msg.typed::<From>();
    let _ = msg.typed::<To>();
    let _ = msg.typed::<MaxForwards>();
    let _ = msg.typed::<ContentType>();
    let _ = msg.typed::<Expires>();
    let _ = msg.typed::<Event>();
    let _ = msg.typed::<SubscriptionState>();
    let _ = msg.typed::<UserAgent>();
    let _ = msg.typed::<RetryAfter>();
    let _ = msg.typed::<Date>();
    let _ = msg.typed::<Authorization>();
    let _ = msg.list::<Contact>().count();
    let _ = msg.list::<Route>().count();
    let _ = msg.list::<Supported>().count();
    let _ = msg.list::<Accept>().count();
    if msg.is_request() {
        if let Ok(f) = RequestFields::extract(&msg) {
            let caps = Capabilities {
                methods: &[Method::Register, Method::Invite, Method::Ack, Method::Options],
                schemes: &["sip", "sips"],
                supported: &["path"],
                check_proxy_require: true,
                accept: &[("application", "sdp")],
            };
            let _ = admission::check(&msg, &caps);
            let _ = admission::check_accept(&msg, &[("application", "sdp")]);
            let resp = sip::build::ResponseBuilder::new(&msg, 200, "OK")
                .to_tag("x")
                .via_received(Some([127, 0, 0, 1].into()), Some(5060))
                .finish();
            let parsed = parse_datagram(resp, &limits).expect("our response parses");
            assert_eq!(parsed.status(), Some(200));
            if let Ok(fwd) = sip::forward::Forward::new(&msg)
                .request_uri("sip:next@127.0.0.1")
                .push_via("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKfuzz")
                .record_route("<sip:127.0.0.1;lr>")
                .pop_route()
                .decrement_max_forwards()
            {
                let out = fwd.serialize();
                // The edit adds a Via, a Record-Route, possibly Max-Forwards and
                // Content-Length: the result must be valid within the limits plus
                // that much. (Whether to forward a request already at a limit is
                // the proxy's decision, made before editing.)
                let grown = Limits {
                    max_message_size: limits.max_message_size + 1024,
                    max_headers: limits.max_headers + 4,
                    max_vias: limits.max_vias + 1,
                    ..limits
                };
                let re = parse_datagram(out, &grown).expect("forwarded request parses");
                let rf = RequestFields::extract(&re).expect("forwarded request keeps its fields");
                assert_eq!(rf.call_id, f.call_id);
                // The strict-router rewrite: our URI back on top, the last Route gone.
                let loose = sip::forward::Forward::new(&msg)
                    .request_uri("sip:target@127.0.0.1")
                    .routes(["<sip:127.0.0.1;lr>"])
                    .drop_last_route()
                    .serialize();
                let re = parse_datagram(loose, &grown).expect("rewritten request parses");
                assert!(re.list::<sip::headers::Route>().count() <= msg.list::<sip::headers::Route>().count() + 1);
            }
        }
    } else if ResponseFields::extract(&msg).is_ok() {
        let _ = sip::forward::Forward::new(&msg).pop_via().serialize();
    }
});
