//! A subscription's dialog state, compact: the texts a NOTIFY needs, kept in
//! one allocation with their end offsets, because a server holds hundreds of
//! thousands of them (ten separate `String`s cost about three times as much).

use store::SubscriptionRow;

/// Field order in the buffer.
const CALL_ID: usize = 0;
const REMOTE_TAG: usize = 1;
const FROM: usize = 2;
const TO: usize = 3;
const TARGET: usize = 4;
const SOURCE: usize = 5;
const EVENT_ID: usize = 6;
const ROUTES: usize = 7;
const FIELDS: usize = 8;

/// The parts of a subscription's dialog, as received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) call_id: &'a str,
    /// The subscriber's From tag.
    pub(crate) remote_tag: &'a str,
    /// The SUBSCRIBE's From value (the NOTIFY's To), tag included.
    pub(crate) from: &'a str,
    /// The SUBSCRIBE's To value without our tag (the NOTIFY's From).
    pub(crate) to: &'a str,
    /// The subscriber's Contact URI (the NOTIFY's Request-URI).
    pub(crate) target: &'a str,
    /// `udp:1.2.3.4:5060`, `tls:...`: where the SUBSCRIBE came from.
    pub(crate) source: &'a str,
    /// The Event header's `id`, or empty.
    pub(crate) event_id: &'a str,
}

#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    text: Box<str>,
    ends: [u16; FIELDS],
}

impl Dialog {
    /// `None` when the texts exceed 64 KiB together (callers bound them far
    /// lower) or a route holds a newline (routes are joined by newlines).
    pub(crate) fn new(p: Parts<'_>, routes: &[String]) -> Option<Dialog> {
        if routes.iter().any(|r| r.contains('\n')) {
            return None;
        }
        let joined = routes.join("\n");
        let fields = [
            p.call_id,
            p.remote_tag,
            p.from,
            p.to,
            p.target,
            p.source,
            p.event_id,
            &joined,
        ];
        let mut text = String::with_capacity(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0u16; FIELDS];
        for (i, f) in fields.iter().enumerate() {
            text.push_str(f);
            ends[i] = u16::try_from(text.len()).ok()?;
        }
        Some(Dialog {
            text: text.into_boxed_str(),
            ends,
        })
    }

    fn field(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            usize::from(self.ends[i - 1])
        };
        self.text
            .get(start..usize::from(self.ends[i]))
            .unwrap_or("")
    }

    pub(crate) fn call_id(&self) -> &str {
        self.field(CALL_ID)
    }
    pub(crate) fn remote_tag(&self) -> &str {
        self.field(REMOTE_TAG)
    }
    pub(crate) fn from(&self) -> &str {
        self.field(FROM)
    }
    pub(crate) fn to(&self) -> &str {
        self.field(TO)
    }
    pub(crate) fn target(&self) -> &str {
        self.field(TARGET)
    }
    pub(crate) fn source(&self) -> &str {
        self.field(SOURCE)
    }
    pub(crate) fn event_id(&self) -> Option<&str> {
        Some(self.field(EVENT_ID)).filter(|s| !s.is_empty())
    }
    pub(crate) fn routes(&self) -> impl Iterator<Item = &str> {
        self.field(ROUTES).split('\n').filter(|r| !r.is_empty())
    }

    /// The same dialog with a new remote target and source (a refresh).
    pub(crate) fn refreshed(&self, target: Option<&str>, source: &str) -> Option<Dialog> {
        let routes: Vec<String> = self.routes().map(str::to_owned).collect();
        Dialog::new(
            Parts {
                call_id: self.call_id(),
                remote_tag: self.remote_tag(),
                from: self.from(),
                to: self.to(),
                target: target.unwrap_or(self.target()),
                source,
                event_id: self.event_id().unwrap_or(""),
            },
            &routes,
        )
    }

    /// From a stored row.
    pub(crate) fn from_row(r: &SubscriptionRow) -> Option<Dialog> {
        Dialog::new(
            Parts {
                call_id: &r.call_id,
                remote_tag: &r.remote_tag,
                from: &r.from_value,
                to: &r.to_value,
                target: &r.remote_target,
                source: &r.source,
                event_id: r.event_id.as_deref().unwrap_or(""),
            },
            &r.route_set,
        )
    }

    /// Fills the dialog's columns of a row.
    pub(crate) fn fill(&self, r: &mut SubscriptionRow) {
        r.call_id = self.call_id().to_owned();
        r.remote_tag = self.remote_tag().to_owned();
        r.from_value = self.from().to_owned();
        r.to_value = self.to().to_owned();
        r.remote_target = self.target().to_owned();
        r.source = self.source().to_owned();
        r.event_id = self.event_id().map(str::to_owned);
        r.route_set = self.routes().map(str::to_owned).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let d = Dialog::new(
            Parts {
                call_id: "c@h",
                remote_tag: "",
                from: "<sip:bob@example.com>;tag=x",
                to: "<sip:alice@example.com>",
                target: "sip:bob@192.0.2.1:5060",
                source: "udp:192.0.2.1:5060",
                event_id: "",
            },
            &["<sip:p1;lr>".into(), "<sip:p2;lr>".into()],
        )
        .unwrap_or_else(|| unreachable!());
        assert_eq!(d.call_id(), "c@h");
        assert_eq!(d.remote_tag(), "");
        assert_eq!(d.to(), "<sip:alice@example.com>");
        assert_eq!(d.event_id(), None);
        assert_eq!(
            d.routes().collect::<Vec<_>>(),
            ["<sip:p1;lr>", "<sip:p2;lr>"]
        );
        let r = d
            .refreshed(Some("sip:bob@192.0.2.9"), "tcp:192.0.2.9:1")
            .unwrap_or_else(|| unreachable!());
        assert_eq!(
            (r.target(), r.source(), r.from()),
            ("sip:bob@192.0.2.9", "tcp:192.0.2.9:1", d.from())
        );
        let mut row = SubscriptionRow {
            id: String::new(),
            event: String::new(),
            watcher: String::new(),
            resource: String::new(),
            call_id: String::new(),
            remote_tag: String::new(),
            from_value: String::new(),
            to_value: String::new(),
            remote_target: String::new(),
            route_set: vec![],
            source: String::new(),
            event_id: Some("7".into()),
            local_cseq: 0,
            remote_cseq: 0,
            expires_at: 0,
            node: String::new(),
        };
        d.fill(&mut row);
        assert_eq!(row.event_id, None);
        assert_eq!(row.route_set.len(), 2);
        let back = Dialog::from_row(&row).unwrap_or_else(|| unreachable!());
        assert_eq!(back.from(), d.from());
    }

    #[test]
    fn too_long_or_newline_routes_are_refused() {
        let long = "x".repeat(70_000);
        let p = Parts {
            call_id: &long,
            remote_tag: "",
            from: "",
            to: "",
            target: "",
            source: "",
            event_id: "",
        };
        assert!(Dialog::new(p, &[]).is_none());
        let p = Parts { call_id: "c", ..p };
        assert!(Dialog::new(p, &["a\nb".into()]).is_none());
    }
}
