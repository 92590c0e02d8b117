//! Bring your own PKI: a certificate of the organisation's CA on a
//! connection signs its user in like a device certificate Parapet issued.
//! The TLS handshake checked the chain and the revocation lists; here the
//! user it names is found (once per connection) and, at its first use, it
//! is recorded as one of the user's devices, so that it is listed and can
//! be revoked here like any other.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{unix_now, Core, Req};

impl<S: store::Store> Core<S> {
    /// What an organisation's certificate on this connection says, decided
    /// once per connection: `None` without one (or without an
    /// organisation's CA configured); `Some(Ok(aor))` its user;
    /// `Some(Err(why))` refused by the organisation's revocation lists
    /// since the handshake; a certificate that is not a user's of the
    /// organisation (a partner's server, an edge) is `Some(Err(""))`.
    pub(crate) fn org_identity(
        &mut self,
        src: &sip_transport::Source,
        leaf: &CertificateDer<'static>,
    ) -> Option<Result<String, String>> {
        let org = self.org.clone()?;
        let who = self.org_flows.entry(src.flow).or_insert_with(|| {
            let intermediates = src
                .peer_certificates
                .as_deref()
                .and_then(|c| c.get(1..))
                .unwrap_or(&[]);
            match org.classify(leaf, intermediates, rustls_pki_types::UnixTime::now()) {
                pki::byo::Verdict::User(aor) => Ok(aor),
                pki::byo::Verdict::Revoked(e) => Err(e.to_string()),
                pki::byo::Verdict::NotOurs(_) => Err(String::new()),
            }
        });
        Some(who.clone())
    }

    /// The device an organisation's certificate on this connection stands
    /// for, unless it is revoked here or names no user of this domain.
    pub(crate) fn org_certificate(
        &mut self,
        r: &Req<'_>,
        leaf: &CertificateDer<'static>,
        fingerprint: [u8; 32],
    ) -> Option<pki::registry::Device> {
        if self.devices.is_denied(&fingerprint) {
            return None;
        }
        let aor = match self.org_identity(r.src, leaf)? {
            Ok(aor) => aor,
            Err(why) => {
                if !why.is_empty() {
                    self.log_refusal(r, "the organisation's certificate is revoked", &why);
                }
                return None;
            }
        };
        Some(pki::registry::Device {
            aor,
            id: pki::hex(&fingerprint[..8]),
            not_after: parsed(leaf, |x| Some(x.validity().not_after.timestamp())).unwrap_or(0),
            org: Some(Arc::new(
                r.src
                    .peer_certificates
                    .as_deref()
                    .map_or_else(Vec::new, |c| c.iter().map(|c| c.to_vec()).collect()),
            )),
        })
    }

    /// Records an organisation's certificate as one of its user's devices:
    /// in the registry at once, in the store on the way (once per
    /// certificate: the registry has it from now on). If the store cannot
    /// take it, the registry forgets it and its next use tries again; if
    /// it was revoked while being written, the record is revoked too, so
    /// the revocation outlives a restart.
    pub(crate) fn record_org_device(
        &mut self,
        leaf: &CertificateDer<'static>,
        fingerprint: [u8; 32],
        device: &pki::registry::Device,
    ) {
        self.devices.insert(fingerprint, device.clone());
        let row = store::DeviceRow {
            aor: device.aor.clone(),
            id: device.id.clone(),
            name: parsed(leaf, |x| {
                let cn = x.subject().iter_common_name().next()?.as_str().ok()?;
                pki::ca::valid_device_name(cn).then(|| cn.to_string())
            })
            .unwrap_or_else(|| "organisation certificate".into()),
            fingerprint: pki::hex(&fingerprint),
            serial: parsed(leaf, |x| Some(pki::hex(x.raw_serial()))).unwrap_or_default(),
            certificate: pem(leaf),
            issued_at: unix_now(),
            expires_at: device.not_after,
            revoked_at: None,
            revoked_reason: None,
            last_seen: None,
            user_agent: None,
        };
        let store = self.store.clone();
        let registry = self.devices.clone();
        tokio::spawn(async move {
            let (aor, id) = (row.aor.clone(), row.id.clone());
            match store::Devices::add_device(&store, row, usize::MAX, None).await {
                Ok(()) => {
                    if registry.is_denied(&fingerprint) {
                        let at = crate::unix_now();
                        if let Err(e) =
                            store::Devices::revoke_device(&store, &aor, &id, "revoked", at).await
                        {
                            tracing::warn!(error = %e, "could not record the revocation of an organisation's certificate");
                        }
                    }
                }
                // Recorded already (by another connection, first).
                Err(store::StoreError::Conflict(m)) if m.contains("exists") => {}
                Err(e) => {
                    registry.forget([&fingerprint]);
                    tracing::warn!(error = %e, "could not record an organisation's certificate; it is checked again at its next use");
                }
            }
        });
    }
}

fn parsed<T>(der: &[u8], f: impl FnOnce(&X509Certificate<'_>) -> Option<T>) -> Option<T> {
    let (_, x) = X509Certificate::from_der(der).ok()?;
    f(&x)
}

/// A certificate as PEM (for the device list's download).
fn pem(der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_is_base64_in_lines_of_64() {
        let p = super::pem(b"any carnal pleasure.");
        assert_eq!(
            p,
            "-----BEGIN CERTIFICATE-----\nYW55IGNhcm5hbCBwbGVhc3VyZS4=\n-----END CERTIFICATE-----\n"
        );
        assert!(super::pem(&[0u8; 100]).lines().all(|l| l.len() <= 64));
    }
}
