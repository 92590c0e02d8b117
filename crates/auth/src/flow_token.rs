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
}
