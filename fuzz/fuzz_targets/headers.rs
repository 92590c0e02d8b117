//! Every typed header family on arbitrary values. The first byte picks the family.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::headers::*;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(v) = std::str::from_utf8(rest) else { return };
    match which % 24 {
        0 => drop(<Via as ListHeader>::parse_element(v).map(|x| (x.branch(), x.rport(), x.received()))),
        1 => drop(<From as TypedHeader>::parse(v).map(|x| x.tag())),
        2 => drop(<To as TypedHeader>::parse(v)),
        3 => drop(<Contact as ListHeader>::parse_element(v).map(|c| c.expires())),
        4 => drop(<Route as ListHeader>::parse_element(v)),
        5 => drop(<RecordRoute as ListHeader>::parse_element(v)),
        6 => drop(<Path as ListHeader>::parse_element(v)),
        7 => drop(<CallId as TypedHeader>::parse(v)),
        8 => drop(<CSeq as TypedHeader>::parse(v)),
        9 => drop(<MaxForwards as TypedHeader>::parse(v)),
        10 => drop(<ContentType as TypedHeader>::parse(v)),
        11 => drop(<ContentLength as TypedHeader>::parse(v)),
        12 => drop(<Expires as TypedHeader>::parse(v)),
        13 => drop(<Authorization as TypedHeader>::parse(v).map(|a| a.params().count() + a.param("nonce").map_or(0, str::len))),
        14 => drop(<WwwAuthenticate as TypedHeader>::parse(v)),
        15 => drop(<Event as TypedHeader>::parse(v).map(|e| e.package())),
        16 => drop(<AllowEvents as ListHeader>::parse_element(v)),
        17 => drop(<SubscriptionState as TypedHeader>::parse(v).map(|s| (s.expires(), s.reason()))),
        18 => drop(<Supported as ListHeader>::parse_element(v)),
        19 => drop(<Allow as ListHeader>::parse_element(v)),
        20 => drop(<Accept as ListHeader>::parse_element(v)),
        21 => drop(<UserAgent as TypedHeader>::parse(v).map(|u| u.products().count())),
        22 => drop(<RetryAfter as TypedHeader>::parse(v).map(|r| r.duration())),
        _ => drop(<Date as TypedHeader>::parse(v)),
    }
});
