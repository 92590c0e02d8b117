//! Watcher information documents (RFC 3857, RFC 3858): who watches a
//! user's presence and in what state. Written only; the server never
//! accepts one.

use crate::access::WatcherStatus;

/// One watcher of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEntry {
    /// The subscription's id (stable while it lives).
    pub id: String,
    /// The watcher's address.
    pub uri: String,
    pub status: WatcherStatus,
}

/// A full-state `application/watcherinfo+xml` document for `resource`'s
/// `presence` watchers, with document `version` (RFC 3858 §4.2).
pub fn full(resource: &str, version: u32, watchers: &[WatcherEntry]) -> String {
    let e = |s: &str| quick_xml::escape::escape(s).into_owned();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<watcherinfo xmlns=\"urn:ietf:params:xml:ns:watcherinfo\" version=\"{version}\" state=\"full\">\n <watcher-list resource=\"{}\" package=\"presence\">\n",
        e(resource)
    );
    for w in watchers {
        let (status, event) = match w.status {
            WatcherStatus::Active => ("active", "approved"),
            WatcherStatus::Pending => ("pending", "subscribe"),
            WatcherStatus::Rejected => ("terminated", "rejected"),
        };
        out.push_str(&format!(
            "  <watcher id=\"{}\" event=\"{event}\" status=\"{status}\">{}</watcher>\n",
            e(&w.id),
            e(&w.uri)
        ));
    }
    out.push_str(" </watcher-list>\n</watcherinfo>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_and_versioned() {
        let doc = full(
            "sip:alice@example.com",
            3,
            &[WatcherEntry {
                id: "a<b".into(),
                uri: "sip:bob@example.com".into(),
                status: WatcherStatus::Pending,
            }],
        );
        assert!(doc.contains("version=\"3\" state=\"full\""));
        assert!(doc.contains("id=\"a&lt;b\" event=\"subscribe\" status=\"pending\""));
        assert!(doc.contains(">sip:bob@example.com</watcher>"));
    }
}
