//! A device certificate with its key in a PKCS#12 bundle, for clients that
//! cannot make a certificate request (operating systems' certificate
//! stores, most phones): the server makes the key, issues the
//! certificate, seals both under a passphrase made for this one download
//! and keeps neither the key nor the passphrase. PBES2 with AES-256-CBC
//! and PBKDF2-HMAC-SHA256, MAC HMAC-SHA256 (what OpenSSL 3 writes by
//! default, and what current Windows, macOS, iOS and Android import).

use ring::rand::SecureRandom;

/// Characters of a passphrase: no look-alikes (0/O, 1/l/I).
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A passphrase of 20 characters (about 116 bits).
pub fn passphrase() -> Result<String, String> {
    let mut raw = [0u8; 20];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// The bundle: `key` (PKCS#8 DER) with its certificate and the device CA's
/// (as the chain), under `passphrase`, named `name`.
pub fn pkcs12(
    cert: &[u8],
    key_pkcs8: &[u8],
    ca: &[u8],
    name: &str,
    passphrase: &str,
) -> Result<Vec<u8>, String> {
    let e = |x: p12_keystore::error::Error| format!("PKCS#12: {x}");
    let key = p12_keystore::PrivateKey::from_der(key_pkcs8).map_err(e)?;
    let chain = vec![
        p12_keystore::Certificate::from_der(cert).map_err(e)?,
        p12_keystore::Certificate::from_der(ca).map_err(e)?,
    ];
    let mut id = [0u8; 20];
    id.copy_from_slice(&crate::fingerprint(cert)[..20]);
    // The friendly name is a BMPString: characters beyond the Basic
    // Multilingual Plane cannot be written there.
    let alias: String = name
        .chars()
        .map(|c| if u32::from(c) <= 0xffff { c } else { '?' })
        .collect();
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        &alias,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            id.to_vec(),
            key,
            chain,
        )),
    );
    store
        .writer(passphrase)
        .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha256)
        .write()
        .map_err(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bundle_opens_with_its_passphrase_only_and_holds_key_and_chain() {
        let (ca_pem, ca_key) = crate::ca::DeviceCa::create("example.test").unwrap();
        let ca = crate::ca::DeviceCa::load(&ca_pem, &ca_key, "example.test").unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let issued = ca
            .issue(
                &key,
                "sip:alice@example.test",
                "0011223344556677",
                "phone",
                30,
            )
            .unwrap();
        let pass = passphrase().unwrap();
        assert_eq!(pass.chars().count(), 20);
        assert_ne!(pass, passphrase().unwrap());
        let p12 = pkcs12(
            &issued.der,
            &key.serialize_der(),
            ca.certificate(),
            "phone",
            &pass,
        )
        .unwrap();
        assert!(p12_keystore::KeyStore::from_pkcs12(
            &p12,
            "wrong",
            p12_keystore::Pkcs12ImportPolicy::Relaxed
        )
        .is_err());
        let store = p12_keystore::KeyStore::from_pkcs12(
            &p12,
            &pass,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        assert_eq!(chain.key().as_der(), key.serialize_der().as_slice());
        assert_eq!(chain.certs()[0].as_der(), issued.der.as_ref());
        assert_eq!(chain.certs().len(), 2);
    }
}
