//! What requests inside a dialog carry is held to the policies that hold
//! the requests opening one: a MESSAGE inside a call (RFC 3428 allows it)
//! passes the IM filter and the file-transfer policy's rules for
//! encrypted bodies, and files offered straight between the clients in a
//! re-INVITE or UPDATE (MSRP's `a=file-selector`) the file-transfer
//! policy, as an INVITE's do; their session descriptions (and a PRACK's)
//! the media policy (`crate::media`). Otherwise a call once set up would
//! be a way around all three.
//!
//! Requests inside a dialog are not authenticated (they follow one whose
//! first request was), so each end named in From and To that is one of
//! our users is held to their policy, and the strictest wins. A pointer to
//! a file uploaded for transfer is refused inside a dialog: the recipient
//! is granted the file when the MESSAGE offering it is relayed outside
//! any, as clients send it.

use sip::headers::NameAddr;
use sip::{Message, Method, Uri};

use super::files::{content_type_of, Checked, Direction};
use super::{Core, Req};

impl<S: store::Store> Core<S> {
    /// The policies on a request inside a dialog: `None` when it was
    /// refused (and answered), `Some(None)` to relay it as it is,
    /// `Some(Some(m))` to relay `m` instead (its text filtered).
    pub(crate) async fn in_dialog_content(
        &mut self,
        r: &Req<'_>,
        out_secure: bool,
    ) -> Option<Option<Message>> {
        let carries = matches!(
            r.f.method,
            Method::Invite | Method::Update | Method::Message | Method::Prack
        );
        // (A re-INVITE without a body still goes to the media policy: its
        // offer would come in the 2xx.)
        if !carries || (r.msg.body().is_empty() && r.f.method != Method::Invite) {
            return Some(None);
        }
        let (sender, rcpt, direction) = match (self.our_party(&r.f.from), self.our_party(&r.f.to)) {
            (Some(a), Some(b)) => (a, b, Direction::Internal),
            (Some(a), None) => (a, String::new(), Direction::ToPartner),
            (None, Some(b)) => (String::new(), b, Direction::FromPartner),
            // (Neither end ours, e.g. an anonymous From and a partner's
            // To: the global policy, as for a user without a group.)
            (None, None) => (String::new(), String::new(), Direction::Internal),
        };
        if r.f.method != Method::Message {
            let allowed = self.peer_offers_allowed(r, &sender, &rcpt, direction).await
                && self.media_allowed(r, &[&sender, &rcpt], out_secure).await;
            return allowed.then_some(None);
        }
        if !self.message_fits(r).await {
            return None;
        }
        let content_type = content_type_of(r.msg);
        if matches!(
            content::ft_http::offer(&content_type, r.msg.body()),
            content::ft_http::Offer::Pointer(_)
        ) {
            self.refuse_offer(
                r,
                403,
                "Forbidden (File Offer Inside a Dialog)",
                "send files in a MESSAGE outside the call".into(),
            )
            .await;
            return None;
        }
        let rules = match direction {
            Direction::Internal => content::im_filter::strictest(
                self.im_rules(&sender, false),
                self.im_rules(&rcpt, false),
            ),
            Direction::ToPartner => self.im_rules(&sender, true),
            Direction::FromPartner => self.im_rules(&rcpt, true),
        };
        // Without a pointer, the check passes or refuses (an encrypted
        // body where inspection is required, an MSRP or Lync offer).
        match self
            .check_file_offer(r, &sender, &rcpt, direction, rules.as_ref())
            .await
        {
            Checked::Pass => self.im_filtered(r, rules).await,
            Checked::Refused | Checked::Replace(_) | Checked::Pending => None,
        }
    }

    /// The address of record of `party` when it names one of our users.
    pub(crate) fn our_party(&self, party: &NameAddr<'_>) -> Option<String> {
        let Uri::Sip(u) = &party.uri else {
            return None;
        };
        let user = u.user?;
        if !u.host.to_string().eq_ignore_ascii_case(&self.cfg.domain) {
            return None;
        }
        let aor = format!("sip:{user}@{}", self.cfg.domain);
        self.users.get(&aor).is_some().then_some(aor)
    }
}
