//! Transaction keys (RFC 3261 §17.1.3, §17.2.3).
//!
//! With an RFC 3261 branch (magic cookie) a request matches on the branch, the
//! sent-by of the top Via and the method (ACK counts as INVITE, so the ACK for a
//! non-2xx response finds its INVITE transaction; CANCEL is its own). Without
//! one, the RFC 2543 fallback compares Request-URI, From tag, Call-ID, CSeq
//! number, the whole top Via, and the method the same way.

use sip::headers::Via;
use sip::{Method, RequestFields};

/// Method class for matching: ACK matches INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MethodKey {
    Invite,
    Cancel,
    Other(Box<str>),
}

impl MethodKey {
    pub fn of(m: Method<'_>) -> MethodKey {
        match m {
            Method::Invite | Method::Ack => MethodKey::Invite,
            Method::Cancel => MethodKey::Cancel,
            other => MethodKey::Other(other.as_str().into()),
        }
    }
}

/// A transaction key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnKey {
    Rfc3261 {
        branch: Box<str>,
        sent_by: Box<str>,
        method: MethodKey,
    },
    Rfc2543 {
        request_uri: Box<str>,
        from_tag: Box<str>,
        call_id: Box<str>,
        cseq: u32,
        via: Box<str>,
        method: MethodKey,
    },
    /// Client transactions: we chose the branch, so it alone identifies them
    /// (with the method, so that a CANCEL's transaction differs from its INVITE's).
    Client { branch: Box<str>, method: MethodKey },
}

fn sent_by(v: &Via<'_>) -> Box<str> {
    let host = v.host.to_string().to_ascii_lowercase();
    match v.port {
        Some(p) => format!("{host}:{p}").into(),
        None => host.into(),
    }
}

impl TxnKey {
    /// The key a server transaction for `req` is filed under.
    pub fn server(req: &RequestFields<'_>) -> TxnKey {
        TxnKey::server_with_method(req, MethodKey::of(req.method))
    }

    /// The key of the INVITE transaction a CANCEL (or an ACK) refers to.
    pub fn invite_for(req: &RequestFields<'_>) -> TxnKey {
        TxnKey::server_with_method(req, MethodKey::Invite)
    }

    fn server_with_method(req: &RequestFields<'_>, method: MethodKey) -> TxnKey {
        let via = &req.top_via;
        if via.has_rfc3261_branch() {
            TxnKey::Rfc3261 {
                branch: via.branch().unwrap_or("").into(),
                sent_by: sent_by(via),
                method,
            }
        } else {
            let request_uri = match req.request_uri {
                sip::Uri::Sip(u) => u.raw,
                sip::Uri::Tel(t) => t.raw,
                sip::Uri::Absolute(a) => a.rest,
            };
            TxnKey::Rfc2543 {
                request_uri: request_uri.into(),
                from_tag: req.from.tag().unwrap_or("").into(),
                call_id: req.call_id.into(),
                cseq: req.cseq.seq,
                via: format!(
                    "{}/{}/{} {};{}",
                    via.protocol,
                    via.version,
                    via.transport,
                    sent_by(via),
                    via.params.as_str()
                )
                .into(),
                method,
            }
        }
    }

    /// The key of a client transaction, from the branch we generated and the
    /// CSeq method of the response.
    pub fn client(branch: &str, method: Method<'_>) -> TxnKey {
        TxnKey::Client {
            branch: branch.into(),
            method: MethodKey::of(method),
        }
    }
}
