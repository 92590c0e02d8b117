//! Header names: the known ones as an enum (with RFC 3261 compact forms), the
//! rest kept as text. Header names are case-insensitive.

macro_rules! header_kinds {
    ($( $variant:ident => $name:literal, $compact:expr, $single:expr; )*) => {
        /// A header field name the stack knows, or `Other`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum HeaderKind {
            $( $variant, )*
            /// A header this stack has no typed form for.
            Other,
        }

        const TABLE: &[(HeaderKind, &str, Option<u8>, bool)] = &[
            $( (HeaderKind::$variant, $name, $compact, $single), )*
        ];
    };
}

header_kinds! {
    Via => "Via", Some(b'v'), false;
    From => "From", Some(b'f'), true;
    To => "To", Some(b't'), true;
    CallId => "Call-ID", Some(b'i'), true;
    CSeq => "CSeq", None, true;
    MaxForwards => "Max-Forwards", None, true;
    Contact => "Contact", Some(b'm'), false;
    Route => "Route", None, false;
    RecordRoute => "Record-Route", None, false;
    Path => "Path", None, false;
    ContentType => "Content-Type", Some(b'c'), true;
    ContentLength => "Content-Length", Some(b'l'), true;
    ContentEncoding => "Content-Encoding", Some(b'e'), false;
    Expires => "Expires", None, true;
    MinExpires => "Min-Expires", None, true;
    Authorization => "Authorization", None, false;
    ProxyAuthorization => "Proxy-Authorization", None, false;
    WwwAuthenticate => "WWW-Authenticate", None, false;
    ProxyAuthenticate => "Proxy-Authenticate", None, false;
    AuthenticationInfo => "Authentication-Info", None, true;
    Event => "Event", Some(b'o'), true;
    AllowEvents => "Allow-Events", Some(b'u'), false;
    SubscriptionState => "Subscription-State", None, true;
    Supported => "Supported", Some(b'k'), false;
    Require => "Require", None, false;
    ProxyRequire => "Proxy-Require", None, false;
    Unsupported => "Unsupported", None, false;
    Allow => "Allow", None, false;
    Accept => "Accept", None, false;
    UserAgent => "User-Agent", None, true;
    Server => "Server", None, true;
    RetryAfter => "Retry-After", None, true;
    Date => "Date", None, true;
    Subject => "Subject", Some(b's'), false;
    ReferTo => "Refer-To", Some(b'r'), true;
    ReferredBy => "Referred-By", Some(b'b'), true;
    SessionExpires => "Session-Expires", Some(b'x'), true;
    AcceptContact => "Accept-Contact", Some(b'a'), false;
    RejectContact => "Reject-Contact", Some(b'j'), false;
    RequestDisposition => "Request-Disposition", Some(b'd'), false;
    Identity => "Identity", Some(b'y'), false;
    Warning => "Warning", None, false;
    SipETag => "SIP-ETag", None, true;
    SipIfMatch => "SIP-If-Match", None, true;
    RSeq => "RSeq", None, true;
    RAck => "RAck", None, true;
    Timestamp => "Timestamp", None, true;
}

/// Case-insensitive equality of a canonical name (letters and `-` only) with a
/// received name that the parser already checked to be a token. Among token
/// characters, `c | 0x20` equals a lower-case letter only for that letter, so one
/// OR per byte replaces a full case fold.
fn eq_token_ignore_case(canonical: &[u8], name: &[u8]) -> bool {
    canonical
        .iter()
        .zip(name)
        .all(|(&a, &b)| a | 0x20 == b | 0x20)
}

/// Compact form letter → kind.
static COMPACT: [HeaderKind; 128] = {
    let mut t = [HeaderKind::Other; 128];
    let mut i = 0;
    while i < TABLE.len() {
        if let Some(c) = TABLE[i].2 {
            t[c as usize] = TABLE[i].0;
        }
        i += 1;
    }
    t
};

/// Table indices by lower-case first letter (`u8::MAX` ends a row).
static BY_FIRST: [[u8; 12]; 26] = {
    let mut t = [[u8::MAX; 12]; 26];
    let mut i = 0;
    while i < TABLE.len() {
        let row = (TABLE[i].1.as_bytes()[0].to_ascii_lowercase() - b'a') as usize;
        let mut j = 0;
        while t[row][j] != u8::MAX {
            j += 1;
        }
        t[row][j] = i as u8;
        i += 1;
    }
    t
};

impl HeaderKind {
    /// Classifies a header name (case-insensitive, compact forms included).
    pub fn from_name(name: &[u8]) -> HeaderKind {
        let Some(&first) = name.first() else {
            return HeaderKind::Other;
        };
        let first = first.to_ascii_lowercase();
        if name.len() == 1 {
            return match COMPACT.get(first as usize) {
                Some(&k) => k,
                None => HeaderKind::Other,
            };
        }
        // Candidates share the first letter; compare length before bytes.
        if let Some(cands) = first
            .checked_sub(b'a')
            .and_then(|i| BY_FIRST.get(i as usize))
        {
            for &idx in cands {
                let Some(&(kind, canonical, _, _)) = TABLE.get(idx as usize) else {
                    break;
                };
                if canonical.len() == name.len() && eq_token_ignore_case(canonical.as_bytes(), name)
                {
                    return kind;
                }
            }
        }
        HeaderKind::Other
    }

    /// The canonical (long) name, e.g. `Call-ID`. `Other` has none.
    pub fn canonical_name(self) -> Option<&'static str> {
        TABLE.get(self as usize).map(|e| e.1)
    }

    /// Whether RFC 3261 (or the extension defining it) allows this header at most
    /// once in a message.
    pub fn is_singleton(self) -> bool {
        TABLE.get(self as usize).is_some_and(|e| e.3)
    }

    pub(crate) fn index(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_case_insensitive_and_compact() {
        assert_eq!(
            HeaderKind::from_name(b"MaX-fOrWaRdS"),
            HeaderKind::MaxForwards
        );
        assert_eq!(HeaderKind::from_name(b"v"), HeaderKind::Via);
        assert_eq!(HeaderKind::from_name(b"L"), HeaderKind::ContentLength);
        assert_eq!(HeaderKind::from_name(b"call-id"), HeaderKind::CallId);
        assert_eq!(HeaderKind::from_name(b"C%6Fntact"), HeaderKind::Other);
        assert_eq!(HeaderKind::from_name(b"q"), HeaderKind::Other);
        assert_eq!(
            HeaderKind::from_name(b"NewFangledHeader"),
            HeaderKind::Other
        );
    }

    #[test]
    fn table_is_in_enum_order() {
        for (i, e) in TABLE.iter().enumerate() {
            assert_eq!(e.0 as usize, i, "{}", e.1);
        }
        assert!(TABLE.len() < 64, "singleton bitmask is a u64");
        assert!(HeaderKind::CSeq.is_singleton());
        assert!(!HeaderKind::Via.is_singleton());
        assert!(!HeaderKind::Other.is_singleton());
        assert_eq!(HeaderKind::CallId.canonical_name(), Some("Call-ID"));
    }
}
