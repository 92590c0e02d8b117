//! `[client_certificates]`: bring your own PKI for users' devices. Besides
//! the certificates Parapet's device CA issues, certificates from the
//! organisation's CA sign users in: mapped to a user by a subject
//! alternative name, refused when the organisation's revocation list
//! (files or URLs, fetched on a schedule) or Parapet's own list names them.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawClientCertificates {
    pub trusted_cas: Option<Vec<String>>,
    pub map_by: Option<String>,
    pub crls: Option<Vec<String>>,
    pub crl_refresh_secs: Option<u64>,
    pub on_wss: Option<bool>,
}

/// Which name of an organisation's certificate says who the user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapBy {
    /// A `sip:user@domain` URI subject alternative name.
    SipUri,
    /// An e-mail (rfc822Name) subject alternative name `user@domain`.
    Email,
    /// A Microsoft UPN (otherName 1.3.6.1.4.1.311.20.2.3) `user@domain`.
    Upn,
}

/// Where a revocation list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlSource {
    File(PathBuf),
    /// `http://` or `https://`.
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificatesConfig {
    /// PEM files of the organisation's CAs (empty: only Parapet's own
    /// device certificates sign users in).
    pub trusted_cas: Vec<PathBuf>,
    pub map_by: MapBy,
    pub crls: Vec<CrlSource>,
    pub crl_refresh: std::time::Duration,
    /// The WSS listeners ask for device certificates too.
    pub on_wss: bool,
}

impl Default for ClientCertificatesConfig {
    fn default() -> Self {
        ClientCertificatesConfig {
            trusted_cas: Vec::new(),
            map_by: MapBy::SipUri,
            crls: Vec::new(),
            crl_refresh: std::time::Duration::from_secs(3600),
            on_wss: false,
        }
    }
}

impl RawClientCertificates {
    pub fn build(self) -> Result<ClientCertificatesConfig, String> {
        let trusted_cas = self
            .trusted_cas
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                if p.trim().is_empty() {
                    Err(
                        "client_certificates.trusted_cas: an empty entry; give a PEM file's path"
                            .to_string(),
                    )
                } else {
                    Ok(PathBuf::from(p))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let map_by = match self.map_by.as_deref().unwrap_or("sip-uri") {
            "sip-uri" => MapBy::SipUri,
            "email" => MapBy::Email,
            "upn" => MapBy::Upn,
            other => {
                return Err(format!(
                    "client_certificates.map_by: {other:?} is not one of sip-uri, email, upn"
                ))
            }
        };
        let crls = self
            .crls
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let c = c.trim().to_string();
                if c.starts_with("http://") || c.starts_with("https://") {
                    Ok(CrlSource::Url(c))
                } else if c.is_empty() || c.contains("://") {
                    Err(format!(
                        "client_certificates.crls: {c:?} is neither a file path nor an http(s) URL"
                    ))
                } else {
                    Ok(CrlSource::File(PathBuf::from(c)))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if trusted_cas.is_empty() && !crls.is_empty() {
            return Err("client_certificates.crls is set but trusted_cas is empty: the lists are for the organisation's CA, so name it too".into());
        }
        let secs = self.crl_refresh_secs.unwrap_or(3600);
        if !(10..=86_400).contains(&secs) {
            return Err("client_certificates.crl_refresh_secs must be between 10 and 86400".into());
        }
        Ok(ClientCertificatesConfig {
            trusted_cas,
            map_by,
            crls,
            crl_refresh: std::time::Duration::from_secs(secs),
            on_wss: self.on_wss.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_messages_that_say_what_to_write() {
        let ok = RawClientCertificates {
            trusted_cas: Some(vec!["/etc/parapet/org-ca.pem".into()]),
            map_by: Some("email".into()),
            crls: Some(vec![
                "/etc/parapet/org.crl".into(),
                "http://pki.example/org.crl".into(),
            ]),
            crl_refresh_secs: Some(600),
            on_wss: Some(true),
        }
        .build()
        .unwrap();
        assert_eq!(ok.map_by, MapBy::Email);
        assert!(ok.on_wss);
        assert_eq!(
            ok.crls[1],
            CrlSource::Url("http://pki.example/org.crl".into())
        );
        assert_eq!(
            RawClientCertificates::default().build().unwrap(),
            ClientCertificatesConfig::default()
        );
        for (raw, says) in [
            (
                RawClientCertificates {
                    map_by: Some("cn".into()),
                    ..Default::default()
                },
                "not one of",
            ),
            (
                RawClientCertificates {
                    crls: Some(vec!["/x.crl".into()]),
                    ..Default::default()
                },
                "trusted_cas is empty",
            ),
            (
                RawClientCertificates {
                    trusted_cas: Some(vec!["/ca.pem".into()]),
                    crls: Some(vec!["ftp://x/y.crl".into()]),
                    ..Default::default()
                },
                "neither a file path nor an http(s) URL",
            ),
            (
                RawClientCertificates {
                    crl_refresh_secs: Some(5),
                    ..Default::default()
                },
                "between 10 and 86400",
            ),
        ] {
            let e = raw.build().unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
