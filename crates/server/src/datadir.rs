//! The data directory: database, keys and certificates, created on first start.
//!
//! ```text
//! DATA_DIR/            mode 0700
//!   parapet.db         SQLite (WAL)
//!   realm              the SIP domain the directory was made for: digest
//!                      secrets depend on it, so it cannot change afterwards
//!   keys/secret.key    64 random bytes, mode 0600: 32 seal the digest secrets,
//!                      32 key the digest nonces. Never in the database.
//!                      The audit log's MAC key is derived from it.
//!   pki/ca.pem         the private CA certificate: give this to clients to trust
//!   pki/ca-key.pem     its key, mode 0600
//!   pki/server.pem     the server certificate (domain, host_names, localhost, 127.0.0.1, ::1;
//!                      90 days, renewed by the running server: see renew.rs)
//!   pki/server-key.pem its key, mode 0600
//!   pki/device-ca.pem  the device CA: issues users' device certificates
//!                      (its own key; only this server verifies them)
//!   pki/device-ca-key.pem its key, mode 0600
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use config::Config;

/// An opened data directory.
#[derive(Debug)]
pub struct DataDir {
    pub root: PathBuf,
    pub db_path: PathBuf,
    pub seal_key: [u8; 32],
    pub nonce_key: [u8; 32],
    pub ca_path: PathBuf,
    /// The listeners' certificate (also presented to partners), replaced
    /// in place when the server renews it.
    pub cert: Arc<sip_transport::tls::LiveCert>,
    /// The certificate was generated here (the server renews it), not
    /// configured by the operator.
    pub generated: bool,
    /// This start created the directory (print where the CA is).
    pub created: bool,
    /// Keys the audit log's MAC chain (derived from the seal key).
    pub audit_key: [u8; 32],
    /// The device CA's certificate and key (PEM).
    pub device_ca: (String, String),
}

/// What the CLI needs from an existing data directory.
#[derive(Debug)]
pub struct Existing {
    pub db_path: PathBuf,
    pub seal_key: [u8; 32],
    pub realm: String,
    pub audit_key: [u8; 32],
    pub root: PathBuf,
}

/// The audit chain's key: HMAC-SHA256 of a fixed label under the seal key,
/// so it lives outside the database like the seal key, without a new file.
fn audit_key(seal_key: &[u8; 32]) -> [u8; 32] {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seal_key);
    let tag = ring::hmac::sign(&k, b"parapet audit chain v1");
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("{}: {what}: {e}", path.display())
}

fn mkdir_private(p: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| err(p, "cannot create directory", e))
}

fn write_private(p: &Path, data: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| err(p, "cannot create file", e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(p, "cannot write", e))
}

fn write_public(p: &Path, data: &[u8]) -> Result<(), String> {
    fs::write(p, data).map_err(|e| err(p, "cannot write", e))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o644))
        .map_err(|e| err(p, "cannot set permissions", e))
}

impl DataDir {
    /// Opens the directory for CLI use. Nothing is created.
    pub fn open_existing(root: &Path) -> Result<Existing, String> {
        let keyfile = root.join("keys/secret.key");
        if !keyfile.exists() {
            return Err(format!(
                "{} is not a Parapet data directory (no keys/secret.key); start `parapet serve --data-dir {}` once to create it",
                root.display(),
                root.display()
            ));
        }
        let (seal_key, _) = read_keys(&keyfile)?;
        Ok(Existing {
            db_path: root.join("parapet.db"),
            seal_key,
            realm: read_realm(root)?,
            audit_key: audit_key(&seal_key),
            root: root.to_path_buf(),
        })
    }

    /// Opens the directory, creating what is missing.
    pub fn open_or_init(config: &Config) -> Result<DataDir, String> {
        let root = config.data_dir.clone();
        let created = !root.join("keys/secret.key").exists();
        mkdir_private(&root)?;
        mkdir_private(&root.join("keys"))?;
        mkdir_private(&root.join("pki"))?;
        let keyfile = root.join("keys/secret.key");
        if !keyfile.exists() {
            let mut k = [0u8; 64];
            k[..32].copy_from_slice(
                &auth::secret::SecretKey::generate()
                    .map_err(|_| "system random generator failed")?,
            );
            k[32..].copy_from_slice(
                &auth::secret::SecretKey::generate()
                    .map_err(|_| "system random generator failed")?,
            );
            write_private(&keyfile, &k)?;
        }
        let (seal_key, nonce_key) = read_keys(&keyfile)?;
        let realm_file = root.join("realm");
        if !realm_file.exists() {
            write_public(&realm_file, config.domain.as_bytes())?;
        }
        let realm = read_realm(&root)?;
        if realm != config.domain {
            return Err(format!(
                "{} was created for domain {realm:?}, but the configuration says {:?}; passwords are bound to the domain, so use --domain {realm} or a new data directory",
                root.display(),
                config.domain
            ));
        }
        let ca_path = root.join("pki/ca.pem");
        let names = crate::renew::Names {
            domain: config.domain.clone(),
            host_names: config.host_names.clone(),
        };
        let (cert, generated) = match &config.tls_cert {
            Some((c, k)) => {
                let (chain, key) = load_pair(c, k)?;
                (live(chain, &key)?, false)
            }
            None => {
                let pki = root.join("pki");
                let server = pki.join("server.pem");
                if !server.exists() {
                    if ca_path.exists() {
                        return Err(format!(
                            "{} is missing but the CA exists; restore it, or remove {} to make a new CA and certificate",
                            server.display(),
                            pki.display()
                        ));
                    }
                    make_pki(&pki, &config.domain, &config.host_names)?;
                }
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let current = crate::renew::load(&pki).and_then(|(chain, key)| {
                    match chain.first().and_then(|c| crate::renew::reason(c, now)) {
                        Some(why) => Err(why.to_string()),
                        None => live(chain, &key),
                    }
                });
                let cert = match current {
                    Ok(cert) => cert,
                    // Due, from before the current rules, unreadable, or
                    // not matching its key (a crash between writing a
                    // renewal's key and its certificate): issued again
                    // from the CA, before anything uses it.
                    Err(why) => {
                        crate::renew::issue(&pki, &names)?;
                        let (chain, key) = crate::renew::load(&pki)?;
                        tracing::info!(
                            why,
                            days = crate::renew::LIFETIME_DAYS,
                            "server certificate renewed from the private CA"
                        );
                        live(chain, &key)?
                    }
                };
                (cert, true)
            }
        };
        let device_ca = device_ca(&root.join("pki"), &config.domain)?;
        Ok(DataDir {
            device_ca,
            db_path: root.join("parapet.db"),
            root,
            seal_key,
            nonce_key,
            ca_path,
            cert,
            generated,
            created,
            audit_key: audit_key(&seal_key),
        })
    }
}

/// The device CA, made on first use (a data directory from before device
/// certificates gets one at its next start).
fn device_ca(pki: &Path, domain: &str) -> Result<(String, String), String> {
    let cert = pki.join("device-ca.pem");
    let key = pki.join("device-ca-key.pem");
    if !cert.exists() {
        if key.exists() {
            return Err(format!(
                "{} is missing but its key exists; restore it, or remove {} (every device certificate issued so far stops working)",
                cert.display(),
                key.display()
            ));
        }
        let (c, k) = pki::ca::DeviceCa::create(domain)?;
        write_private(&key, k.as_bytes())?;
        write_public(&cert, c.as_bytes())?;
    }
    check_private(&key)?;
    let c = fs::read_to_string(&cert).map_err(|e| err(&cert, "cannot read", e))?;
    let k = fs::read_to_string(&key).map_err(|e| err(&key, "cannot read", e))?;
    Ok((c, k))
}

/// Refuses a secret file others can read.
fn check_private(p: &Path) -> Result<(), String> {
    let meta = fs::metadata(p).map_err(|e| err(p, "cannot read", e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by other users; run `chmod 600 {}`",
            p.display(),
            p.display()
        ));
    }
    Ok(())
}

fn read_realm(root: &Path) -> Result<String, String> {
    let p = root.join("realm");
    let r = fs::read_to_string(&p).map_err(|e| err(&p, "cannot read", e))?;
    Ok(r.trim().to_owned())
}

fn read_keys(p: &Path) -> Result<([u8; 32], [u8; 32]), String> {
    check_private(p)?;
    let k = fs::read(p).map_err(|e| err(p, "cannot read", e))?;
    if k.len() != 64 {
        return Err(format!(
            "{} is damaged (expected 64 bytes, found {})",
            p.display(),
            k.len()
        ));
    }
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(&k[..32]);
    b.copy_from_slice(&k[32..]);
    Ok((a, b))
}

fn live(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<Arc<sip_transport::tls::LiveCert>, String> {
    sip_transport::tls::LiveCert::new(chain, key).map_err(|e| format!("TLS: {e}"))
}

pub(crate) fn load_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let c = fs::read(cert).map_err(|e| err(cert, "cannot read certificate", e))?;
    let k = fs::read(key).map_err(|e| err(key, "cannot read private key", e))?;
    let chain = sip_transport::tls::certs_from_pem(&c).map_err(|e| err(cert, "certificate", e))?;
    let key = sip_transport::tls::key_from_pem(&k).map_err(|e| err(key, "private key", e))?;
    Ok((chain, key))
}

/// The private CA's parameters. Its subject is its name only, so the same
/// parameters signed again with the CA's key make an issuer whose
/// certificates verify against `pki/ca.pem` (the edge pairing issues this
/// way; rcgen cannot read a certificate back without x509-parser).
pub(crate) fn ca_params(domain: &str) -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Parapet private CA for {domain}"),
    );
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now;
    ca.not_after = now + time::Duration::days(3650);
    Ok(ca)
}

/// A private CA (10 years) and a server certificate for `domain` (see
/// [`crate::renew`]: 90 days, renewed by the server).
pub(crate) fn make_pki(dir: &Path, domain: &str, host_names: &[String]) -> Result<(), String> {
    let g = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(g)?;
    let ca_cert = ca_params(domain)
        .map_err(g)?
        .self_signed(&ca_key)
        .map_err(g)?;
    write_private(&dir.join("ca-key.pem"), ca_key.serialize_pem().as_bytes())?;
    write_public(&dir.join("ca.pem"), ca_cert.pem().as_bytes())?;
    crate::renew::issue(
        dir,
        &crate::renew::Names {
            domain: domain.to_owned(),
            host_names: host_names.to_vec(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_names_the_sip_domain_for_partners_and_hosts_for_clients() {
        let dir = std::env::temp_dir().join(format!("parapet-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_pki(&dir, "example.test", &["sip.example.test".to_string()]).unwrap();
        let pem = std::fs::read(dir.join("server.pem")).unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .unwrap();
        let ids = federation::identity::identities(&der).unwrap();
        assert_eq!(ids.source, federation::identity::Source::SipUri);
        assert!(ids.covers("example.test"));
        assert!(
            !ids.covers("sip.example.test"),
            "partners see the domain only"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_crash_between_a_renewals_key_and_certificate_is_mended_at_start() {
        let dir = std::env::temp_dir().join(format!("parapet-halfrenew-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let toml = format!(
            "domain = \"example.test\"\ndata_dir = \"{}\"\n",
            dir.display()
        );
        let config = config::RawConfig::from_toml(&toml)
            .unwrap()
            .build()
            .unwrap();
        let first = DataDir::open_or_init(&config).unwrap().cert.leaf().unwrap();
        // The new key written, the certificate not yet: they do not match.
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("pki/server-key.pem"), key.serialize_pem()).unwrap();
        let again = DataDir::open_or_init(&config).unwrap().cert.leaf().unwrap();
        assert_ne!(first, again, "issued again, for the key on disk");
        let (chain, _) = crate::renew::load(&dir.join("pki")).unwrap();
        assert_eq!(chain.first(), Some(&again));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
