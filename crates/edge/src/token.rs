//! Opaque tokens: what the edge must remember about a hop or a dialog, sealed
//! into the message itself (a Via branch, a Record-Route or Path user part, a
//! Contact), so the edge keeps no per-dialog state and any edge of the pool
//! (or this one after a restart) can read them back.
//!
//! Sealing is ChaCha20-Poly1305 with a synthetic nonce (the first 12 bytes of
//! HMAC-SHA256 over the kind and the plaintext, as SIV constructions do): the
//! same input always gives the same token, which a stateless proxy needs (a
//! CANCEL, or the ACK of a failed INVITE, must carry the same branch as the
//! INVITE it belongs to), and a token altered anywhere fails to open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;

/// The largest plaintext a token carries; longer input is refused rather
/// than sent (a URI or header parameter must stay well under the parser's
/// line limit).
pub const MAX_PLAINTEXT: usize = 2048;

/// What a token is for: a token of one kind never opens as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The edge's Via branch on a request going inward.
    Inward,
    /// The edge's Via branch on a request going outward: the inside's top
    /// Via (all a CANCEL shares with its INVITE) and the connection.
    Outward,
    /// The rest of the inside's Vias, in a parameter of the edge's Via.
    Vias,
    /// The edge's outside-facing Record-Route: the hidden inside entries.
    Route,
    /// The edge's Path entry: the outside connection of a registration.
    Path,
    /// A Contact from the inside, as the outside sees it.
    Contact,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Inward => b'v',
            Kind::Outward => b'h',
            Kind::Vias => b'w',
            Kind::Route => b'r',
            Kind::Path => b'p',
            Kind::Contact => b'c',
        }
    }
}

/// Seals and opens tokens under the pool's topology key.
pub struct Sealer {
    aead: LessSafeKey,
    siv: hmac::Key,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Derives the encryption and nonce keys from the pool's 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        let base = hmac::Key::new(hmac::HMAC_SHA256, key);
        let enc = hmac::sign(&base, b"parapet edge token encryption v1");
        let siv = hmac::sign(&base, b"parapet edge token nonce v1");
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &enc.as_ref()[..32]);
        Sealer {
            // A 32-byte key is always the right length for ChaCha20-Poly1305.
            aead: LessSafeKey::new(unbound.unwrap_or_else(|_| unreachable!())),
            siv: hmac::Key::new(hmac::HMAC_SHA256, siv.as_ref()),
        }
    }

    /// A token of `kind` for `plain`: `[a-z]` then base64url, safe in a URI
    /// user part and a Via parameter. `None` if `plain` is too long.
    pub fn seal(&self, kind: Kind, plain: &[u8]) -> Option<String> {
        if plain.len() > MAX_PLAINTEXT {
            return None;
        }
        let mut ctx = hmac::Context::with_key(&self.siv);
        ctx.update(&[kind.letter()]);
        ctx.update(plain);
        let tag = ctx.sign();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag.as_ref()[..NONCE_LEN]);
        let mut body = plain.to_vec();
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([kind.letter()]),
                &mut body,
            )
            .ok()?;
        let mut buf = Vec::with_capacity(NONCE_LEN + body.len() + 16);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(&body);
        buf.extend_from_slice(tag.as_ref());
        let mut out = String::with_capacity(1 + buf.len() * 4 / 3 + 4);
        out.push(char::from(kind.letter()));
        URL_SAFE_NO_PAD.encode_string(&buf, &mut out);
        Some(out)
    }

    /// The plaintext of a token of `kind`, if it is one this pool sealed and
    /// nobody changed.
    pub fn open(&self, kind: Kind, token: &str) -> Option<Vec<u8>> {
        let rest = token.strip_prefix(char::from(kind.letter()))?;
        if rest.len() > (MAX_PLAINTEXT + NONCE_LEN + 16) * 4 / 3 + 4 {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(rest).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([kind.letter()]),
                &mut raw[NONCE_LEN..],
            )
            .ok()?
            .to_vec();
        Some(plain)
    }
}

/// Writes a token's fields: fixed-width integers and length-prefixed text.
#[derive(Debug, Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn new() -> Self {
        Writer(Vec::with_capacity(64))
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    /// Text up to 65,535 bytes (longer is cut; callers bound what they pass).
    pub fn text(mut self, s: &str) -> Self {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    pub fn texts<'a>(mut self, items: impl IntoIterator<Item = &'a str>) -> Self {
        let items: Vec<&str> = items.into_iter().collect();
        self.0.push(items.len().min(255) as u8);
        for s in items.into_iter().take(255) {
            self = self.text(s);
        }
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads what a [`Writer`] wrote; every read checks the bounds.
#[derive(Debug)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader(b)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Some(u64::from_be_bytes(b))
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn text(&mut self) -> Option<&'a str> {
        let n = self.take(2)?;
        let n = u16::from_be_bytes([n[0], n[1]]) as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    pub fn texts(&mut self) -> Option<Vec<&'a str>> {
        let n = self.u8()?;
        (0..n).map(|_| self.text()).collect()
    }
    /// Everything was read: a token with trailing bytes is not ours.
    pub fn done(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&[7u8; 32])
    }

    #[test]
    fn a_token_opens_to_what_was_sealed_and_only_as_its_kind() {
        let s = sealer();
        let t = s.seal(Kind::Route, b"hidden entries").unwrap();
        assert!(t.starts_with('r'));
        assert!(t[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(s.open(Kind::Route, &t).unwrap(), b"hidden entries");
        assert_eq!(s.open(Kind::Path, &t), None);
        let relabelled = format!("p{}", &t[1..]);
        assert_eq!(
            s.open(Kind::Path, &relabelled),
            None,
            "kind is authenticated"
        );
    }

    #[test]
    fn the_same_input_gives_the_same_token_and_another_input_another() {
        let s = sealer();
        let a = s.seal(Kind::Inward, b"flow 1 branch x").unwrap();
        assert_eq!(a, s.seal(Kind::Inward, b"flow 1 branch x").unwrap());
        assert_ne!(a, s.seal(Kind::Inward, b"flow 1 branch y").unwrap());
    }

    #[test]
    fn one_flipped_bit_anywhere_is_refused() {
        let s = sealer();
        let t = s.seal(Kind::Contact, b"sip:bob@10.0.0.5:5060").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&t[1..]).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut r = raw.clone();
                r[i] ^= 1 << bit;
                let bad = format!("c{}", URL_SAFE_NO_PAD.encode(&r));
                assert_eq!(s.open(Kind::Contact, &bad), None, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn another_pool_key_cannot_open_and_garbage_is_refused() {
        let t = sealer().seal(Kind::Path, b"x").unwrap();
        assert_eq!(Sealer::new(&[8u8; 32]).open(Kind::Path, &t), None);
        for junk in ["", "p", "p!!", "pAAAA", &"p".repeat(5000)] {
            assert_eq!(sealer().open(Kind::Path, junk), None);
        }
        assert!(sealer().seal(Kind::Path, &[0; MAX_PLAINTEXT + 1]).is_none());
    }

    #[test]
    fn fields_round_trip_and_short_input_is_refused() {
        let b = Writer::new()
            .u64(42)
            .u8(3)
            .text("alice@example.test")
            .texts(["<sip:a;lr>", "<sip:b;lr>"])
            .finish();
        let mut r = Reader::new(&b);
        assert_eq!(r.u64(), Some(42));
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.text(), Some("alice@example.test"));
        assert_eq!(r.texts().unwrap(), ["<sip:a;lr>", "<sip:b;lr>"]);
        assert!(r.done());
        for cut in 0..b.len() {
            let mut r = Reader::new(&b[..cut]);
            let whole =
                r.u64().is_some() && r.u8().is_some() && r.text().is_some() && r.texts().is_some();
            assert!(!whole, "cut at {cut}");
        }
    }
}
