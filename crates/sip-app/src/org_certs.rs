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
    /// `Some(Err(why))` the organisation's, naming no user here; a
    /// certificate that is not the organisation's at all (a partner's
    /// server, an edge) is `Some(Err(""))`.
    pub(crate) fn org_identity(
        &mut self,
        src: &sip_transport::Source,
        leaf: &CertificateDer<'static>,
    ) -> Option<Result<String, String>> {
        let org = self.org.clone()?;
        let flow = src.flow;
        if !self.org_flows.contains_key(&flow) {
            let chain = src
                .peer_certificates
                .as_deref()
                .map_or(&[][..], |c| c.as_slice());
            let intermediates = chain.get(1..).unwrap_or(&[]);
            let who = match org.verify(leaf, intermediates, rustls_pki_types::UnixTime::now()) {
                Err(_) => Err(String::new()),
                Ok(()) => org.user_of(leaf, &self.cfg.domain),
            };
            self.org_flows.insert(flow, who);
        }
        self.org_flows.get(&flow).cloned()
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
                    self.log_refusal(r, "the organisation's certificate names no user here", &why);
                }
                return None;
            }
        };
        Some(pki::registry::Device {
            aor,
            id: pki::hex(&fingerprint[..8]),
            not_after: parsed(leaf, |x| Some(x.validity().not_after.timestamp())).unwrap_or(0),
            org: Some(Arc::new(leaf.to_vec())),
        })
    }

    /// Records an organisation's certificate as one of its user's devices:
    /// in the registry at once, in the store when a write slot is free.
    pub(crate) fn record_org_device(
        &mut self,
        leaf: &CertificateDer<'static>,
        fingerprint: [u8; 32],
        device: &pki::registry::Device,
    ) {
        self.devices.insert(fingerprint, device.clone());
        let Some(permit) = self.writes.try_acquire() else {
            return;
        };
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
        tokio::spawn(async move {
            let _permit = permit;
            match store::Devices::add_device(&store, row, usize::MAX).await {
                // Conflict: recorded already (another connection, first).
                Ok(()) | Err(store::StoreError::Conflict(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not record an organisation's certificate")
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
