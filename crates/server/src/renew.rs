//! The generated server certificate: issued by the private CA with the
//! extensions RFC 5280 expects (Authority Key Identifier, Key Usage,
//! Extended Key Usage), for [`LIFETIME_DAYS`], and renewed by the running
//! server when a third of that is left, without a restart: the listeners
//! and the partners' connections take the new one at their next handshake
//! (`sip_transport::tls::LiveCert`). The CA stays; clients that trust it
//! notice nothing. A certificate the operator configured (`tls_cert`) is
//! theirs to renew.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The server certificate's lifetime. Well under the 366 days of the
/// Mozilla profile: a certificate renewed by the server itself can be
/// short-lived.
pub const LIFETIME_DAYS: i64 = 90;
/// Renewed when fewer days than this are left.
pub const RENEW_DAYS: i64 = 30;
/// How often the running server looks.
const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// What a server certificate is issued for.
#[derive(Debug, Clone)]
pub struct Names {
    pub domain: String,
    pub host_names: Vec<String>,
}

fn g(e: rcgen::Error) -> String {
    format!("certificate generation failed: {e}")
}

/// Why `cert` should be replaced now, if it should: it expires within
/// [`RENEW_DAYS`], lives longer than 366 days, or lacks the extensions
/// strict verifiers require (certificates from before this rule).
pub fn reason(cert: &CertificateDer<'_>, now: i64) -> Option<&'static str> {
    use x509_parser::prelude::*;
    let Ok((_, x)) = X509Certificate::from_der(cert) else {
        return Some("it cannot be read");
    };
    let not_after = x.validity().not_after.timestamp();
    let not_before = x.validity().not_before.timestamp();
    if not_after - now < RENEW_DAYS * 86_400 {
        return Some("it expires within 30 days");
    }
    if not_after - not_before > 366 * 86_400 {
        return Some("it lives longer than 366 days");
    }
    let eku = x.extended_key_usage().ok().flatten();
    let ku = x.key_usage().ok().flatten();
    let aki = x.extensions().iter().any(|e| {
        matches!(
            e.parsed_extension(),
            ParsedExtension::AuthorityKeyIdentifier(_)
        )
    });
    match (eku, ku) {
        (Some(e), Some(_)) if aki && e.value.server_auth => None,
        _ => {
            Some("it lacks the Key Usage, Extended Key Usage or Authority Key Identifier extension")
        }
    }
}

/// Issues a new server certificate and key from the CA in `pki` and
/// writes them, the key first, each to a temporary file renamed into
/// place: a crash leaves each file whole, and at worst the new key beside
/// the old certificate, which the next start finds not matching and
/// issues again (`datadir`).
pub fn issue(pki: &Path, names: &Names) -> Result<(), String> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key_pem = std::fs::read_to_string(pki.join("ca-key.pem"))
        .map_err(|e| format!("{}: {e}", pki.join("ca-key.pem").display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(g)?;
    // The CA's subject and key, signed again: certificates it issues
    // verify against pki/ca.pem (see datadir::ca_params).
    let ca = crate::datadir::ca_params(&names.domain)
        .map_err(g)?
        .self_signed(&ca_key)
        .map_err(g)?;
    let now = time::OffsetDateTime::now_utc();
    let mut dns = vec![names.domain.clone()];
    dns.extend(names.host_names.iter().cloned());
    dns.extend(["localhost".into(), "127.0.0.1".into(), "::1".into()]);
    let mut p = CertificateParams::new(dns).map_err(g)?;
    // RFC 5922: partners identify a SIP domain by a `sip:domain` URI
    // subjectAltName; clients match the DNS names.
    let uri = rcgen::Ia5String::try_from(format!("sip:{}", names.domain)).map_err(g)?;
    p.subject_alt_names.push(rcgen::SanType::URI(uri));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.domain.as_str());
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // clientAuth too: the same certificate is presented to partners'
    // servers, which verify it as a client's.
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(LIFETIME_DAYS);
    let key = KeyPair::generate().map_err(g)?;
    let cert = p.signed_by(&key, &ca, &ca_key).map_err(g)?;
    replace(
        &pki.join("server-key.pem"),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    replace(&pki.join("server.pem"), cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn replace(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp: PathBuf = path.with_extension("pem.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads the server certificate and key from `pki`.
pub fn load(pki: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    crate::datadir::load_pair(&pki.join("server.pem"), &pki.join("server-key.pem"))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Renews the certificate in `pki` if it is due and puts the new one in
/// `live`; returns whether it did.
pub fn renew_if_due(
    pki: &Path,
    names: &Names,
    live: &sip_transport::tls::LiveCert,
) -> Result<bool, String> {
    let Some(current) = live.leaf() else {
        return Ok(false);
    };
    let Some(why) = reason(&current, unix_now()) else {
        return Ok(false);
    };
    issue(pki, names)?;
    let (chain, key) = load(pki)?;
    live.replace(chain, &key).map_err(|e| e.to_string())?;
    tracing::info!(
        why,
        days = LIFETIME_DAYS,
        "server certificate renewed from the private CA; new connections use it now"
    );
    Ok(true)
}

/// Checks every hour, off the runtime's threads, for as long as the
/// server runs.
pub fn spawn(pki: PathBuf, names: Names, live: Arc<sip_transport::tls::LiveCert>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let (pki, names, live) = (pki.clone(), names.clone(), live.clone());
            let r = tokio::task::spawn_blocking(move || renew_if_due(&pki, &names, &live)).await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "server certificate renewal failed; retrying in an hour")
                }
                Err(e) => tracing::error!(error = %e, "server certificate renewal task failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_generated_certificate_has_the_extensions_and_is_renewed_only_when_due() {
        let dir = std::env::temp_dir().join(format!("parapet-renew-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names = Names {
            domain: "example.test".into(),
            host_names: vec![],
        };
        crate::datadir::make_pki(&dir, "example.test", &[]).unwrap();
        let (chain, key) = load(&dir).unwrap();
        let now = unix_now();
        assert_eq!(reason(&chain[0], now), None);
        // Near the end of its life it is due.
        let late = now + (LIFETIME_DAYS - RENEW_DAYS + 1) * 86_400;
        assert_eq!(reason(&chain[0], late), Some("it expires within 30 days"));
        let live = sip_transport::tls::LiveCert::new(chain.clone(), &key).unwrap();
        assert!(!renew_if_due(&dir, &names, &live).unwrap());
        // A certificate of the old kind (two years, no extensions) is
        // replaced at once, by one from the same CA.
        let ca = std::fs::read_to_string(dir.join("ca-key.pem")).unwrap();
        let ca_key = rcgen::KeyPair::from_pem(&ca).unwrap();
        let issuer = crate::datadir::ca_params("example.test")
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let mut old = rcgen::CertificateParams::new(vec!["example.test".to_string()]).unwrap();
        old.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(730);
        let old_key = rcgen::KeyPair::generate().unwrap();
        let old = old.signed_by(&old_key, &issuer, &ca_key).unwrap();
        let old_der = old.der().clone();
        assert!(reason(&old_der, now).is_some());
        let old_key = PrivateKeyDer::try_from(old_key.serialize_der()).unwrap();
        live.replace(vec![old_der.clone()], &old_key).unwrap();
        assert!(renew_if_due(&dir, &names, &live).unwrap());
        let renewed = live.leaf().unwrap();
        assert_ne!(renewed, old_der);
        assert_eq!(reason(&renewed, now), None);
        // It chains to the CA that was there before.
        let ca_pem = std::fs::read(dir.join("ca.pem")).unwrap();
        let ca_der = sip_transport::tls::certs_from_pem(&ca_pem).unwrap();
        let anchor = webpki::anchor_from_trusted_cert(&ca_der[0]).unwrap();
        let ee = webpki::EndEntityCert::try_from(&renewed).unwrap();
        ee.verify_for_usage(
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .all,
            &[anchor],
            &[],
            rustls_pki_types::UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
