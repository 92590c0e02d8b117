//! Flow tokens (RFC 5626 §5.2): the server puts a token naming a client's
//! connection into its Record-Route, so requests later in the dialog go back
//! over that connection. The token is MAC'd, so nobody can forge one that names
//! somebody else's connection — and bound to the dialog's Call-ID, so one
//! learnt from a dialog steers no request of another (a request made up with
//! a foreign From, sent over our connection to a partner).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

use crate::constant_time_eq;

/// Signs and checks flow tokens.
pub struct FlowTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for FlowTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowTokens(..)")
    }
}

impl FlowTokens {
    /// Derives the token key from a server secret.
    pub fn new(secret: &[u8; 32]) -> Self {
        let base = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&base, b"parapet flow token");
        FlowTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// A token for `flow` in the dialog `call_id`, safe in a SIP URI user
    /// part (`[A-Za-z0-9_-]`).
    pub fn sign(&self, flow: u64, call_id: &str) -> String {
        let mut raw = [0u8; 20];
        raw[..8].copy_from_slice(&flow.to_be_bytes());
        let tag = self.tag(&raw[..8], call_id);
        raw[8..].copy_from_slice(&tag.as_ref()[..12]);
        format!("ft{}", URL_SAFE_NO_PAD.encode(raw))
    }

    fn tag(&self, flow: &[u8], call_id: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(flow);
        ctx.update(call_id.as_bytes());
        ctx.sign()
    }

    /// The flow a token names, if the token is one we made for the dialog
    /// `call_id`.
    pub fn verify(&self, token: &str, call_id: &str) -> Option<u64> {
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix("ft")?).ok()?;
        if raw.len() != 20 {
            return None;
        }
        let tag = self.tag(&raw[..8], call_id);
        if !constant_time_eq(&tag.as_ref()[..12], &raw[8..]) {
            return None;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[..8]);
        Some(u64::from_be_bytes(b))
    }
}

/// Signs and checks the tokens by which one node of a pool hands another
/// a request for a binding that node holds (RFC 5626 §5.2's flow token,
/// for a binding instead of a connection): the MAC covers the node that
/// holds the binding, the binding (address of record and key) and the
/// dialog's Call-ID, under a key derived from the secret every node of
/// the pool shares (the data directory's `keys/`). A connection must
/// present a serving node's certificate *and* the request carry a token
/// made with the pool's key: a certificate of the pool's CA alone steers
/// nothing.
pub struct PoolRoutes {
    key: hmac::Key,
}

impl std::fmt::Debug for PoolRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolRoutes(..)")
    }
}

impl PoolRoutes {
    /// Derives the pool's route key from the shared secret.
    pub fn new(secret: &[u8; 32]) -> Self {
        let base = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&base, b"parapet pool route");
        PoolRoutes {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    fn tag(&self, node: &str, aor: &str, key: &str, call_id: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Each field length-prefixed: no two tuples sign the same bytes.
        for f in [node, aor, key, call_id] {
            ctx.update(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
            ctx.update(f.as_bytes());
        }
        ctx.sign()
    }

    /// The token for the binding (`aor`, `key`) held by `node`, in the
    /// dialog `call_id`: 16 characters of `[A-Za-z0-9_-]`.
    pub fn sign(&self, node: &str, aor: &str, key: &str, call_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(&self.tag(node, aor, key, call_id).as_ref()[..12])
    }

    /// Whether `token` is one a node of the pool made for this binding on
    /// `node` in the dialog `call_id`.
    pub fn verify(&self, token: &str, node: &str, aor: &str, key: &str, call_id: &str) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        raw.len() == 12 && constant_time_eq(&self.tag(node, aor, key, call_id).as_ref()[..12], &raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_resist_forgery() {
        let t = FlowTokens::new(&[9; 32]);
        let tok = t.sign(42, "a84b4c76e66710@pc33");
        assert!(tok
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(t.verify(&tok, "a84b4c76e66710@pc33"), Some(42));
        assert_eq!(
            t.verify(&tok, "another-dialog@pc33"),
            None,
            "bound to its dialog"
        );
        assert_eq!(
            FlowTokens::new(&[8; 32]).verify(&tok, "a84b4c76e66710@pc33"),
            None
        );
        let mut forged = tok.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.verify(std::str::from_utf8(&forged).unwrap(), "a84b4c76e66710@pc33"),
            None
        );
        assert_eq!(t.verify("ft", ""), None);
        assert_eq!(t.verify("nope", ""), None);
    }

    #[test]
    fn pool_route_tokens_bind_node_binding_and_dialog() {
        let p = PoolRoutes::new(&[7; 32]);
        let args = ("fe-a", "sip:bob@example.test", "sip:bob@192.0.2.1", "c1@x");
        let tok = p.sign(args.0, args.1, args.2, args.3);
        assert_eq!(tok.len(), 16);
        assert!(tok
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(p.verify(&tok, args.0, args.1, args.2, args.3));
        assert!(
            !p.verify(&tok, "fe-b", args.1, args.2, args.3),
            "another node"
        );
        assert!(!p.verify(&tok, args.0, "sip:eve@example.test", args.2, args.3));
        assert!(!p.verify(&tok, args.0, args.1, "sip:bob@192.0.2.9", args.3));
        assert!(
            !p.verify(&tok, args.0, args.1, args.2, "c2@x"),
            "another dialog"
        );
        // Fields do not run into each other.
        let shifted = p.sign("fe-a", "sip:bob@example.tes", "tsip:bob@192.0.2.1", "c1@x");
        assert_ne!(shifted, tok);
        assert!(!PoolRoutes::new(&[8; 32]).verify(&tok, args.0, args.1, args.2, args.3));
        // A flow token's key is not the pool's: the two derive apart.
        let flow = FlowTokens::new(&[7; 32]).sign(1, "c1@x");
        assert!(!p.verify(&flow, args.0, args.1, args.2, args.3));
        for bad in ["", "AAAA", "!!!!!!!!!!!!!!!!", &format!("{tok}A")] {
            assert!(!p.verify(bad, args.0, args.1, args.2, args.3), "{bad}");
        }
    }
}
