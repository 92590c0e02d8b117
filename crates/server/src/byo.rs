//! Bring your own PKI for users' devices (`[client_certificates]`): the
//! organisation's CAs, and its revocation lists read at start and every
//! `crl_refresh_secs` from files or over HTTP(S). A list that cannot be
//! read keeps the last good copy of that source (the lists' own
//! nextUpdate still applies: one that has expired refuses everyone of
//! that CA). After each refresh, the organisation's certificates recorded
//! as devices are checked again (with the chain they presented): one the
//! lists now revoke is revoked here too, and its connections are closed;
//! one that no longer verifies for another reason (its list expired) has
//! its connections closed and is decided again at its next handshake.

use std::sync::Arc;
use std::time::Duration;

use config::client_certs::{ClientCertificatesConfig, CrlSource, MapBy};
use pki::byo::OrgTrust;
use webpki::CertRevocationList;

/// How long one list may take to fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// The organisation's trust from the configuration (`None`: none set).
pub fn setup(
    cfg: &ClientCertificatesConfig,
    domain: &str,
) -> Result<Option<Arc<OrgTrust>>, String> {
    if cfg.trusted_cas.is_empty() {
        return Ok(None);
    }
    let mut cas = Vec::new();
    for path in &cfg.trusted_cas {
        let pem = std::fs::read(path)
            .map_err(|e| format!("client_certificates.trusted_cas: {}: {e}", path.display()))?;
        cas.extend(
            sip_transport::tls::certs_from_pem(&pem)
                .map_err(|e| format!("client_certificates.trusted_cas: {}: {e}", path.display()))?,
        );
    }
    let map_by = match cfg.map_by {
        MapBy::SipUri => pki::byo::MapBy::SipUri,
        MapBy::Email => pki::byo::MapBy::Email,
        MapBy::Upn => pki::byo::MapBy::Upn,
    };
    OrgTrust::new(&cas, map_by, !cfg.crls.is_empty(), domain)
        .map(Some)
        .map_err(|e| format!("client_certificates.trusted_cas: {e}"))
}

/// The lists, per source, last good copy kept.
#[derive(Debug)]
pub struct Crls {
    sources: Vec<CrlSource>,
    /// Each source's last good content (it parsed when read).
    held: Vec<Option<Vec<u8>>>,
}

impl Crls {
    pub fn new(sources: Vec<CrlSource>) -> Crls {
        let held = vec![None; sources.len()];
        Crls { sources, held }
    }

    /// Reads every source again and hands `org` what is held.
    pub async fn refresh(&mut self, org: &OrgTrust) {
        for (i, src) in self.sources.iter().enumerate() {
            let got = match src {
                CrlSource::File(p) => {
                    let path = p.clone();
                    tokio::task::spawn_blocking(move || std::fs::read(&path))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| format!("{}: {e}", p.display())))
                }
                CrlSource::Url(u) => tokio::time::timeout(FETCH_TIMEOUT, http_get(u))
                    .await
                    .unwrap_or_else(|_| Err(format!("{u}: no answer within 15 s"))),
            };
            // Parsed off the runtime's threads: a list may be megabytes.
            let checked = match got {
                Ok(b) => tokio::task::spawn_blocking(move || pki::byo::parse_crls(&b).map(|_| b))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map_err(|e| format!("{src:?}: {e}")),
                Err(e) => Err(e),
            };
            match checked {
                Ok(bytes) => self.held[i] = Some(bytes),
                Err(e) => {
                    tracing::warn!(error = %e, "a revocation list could not be read; the last good copy stays in use")
                }
            }
        }
        let held = self.held.clone();
        let lists: Vec<CertRevocationList<'static>> = tokio::task::spawn_blocking(move || {
            held.iter()
                .flatten()
                .flat_map(|b| pki::byo::parse_crls(b).unwrap_or_default())
                .collect()
        })
        .await
        .unwrap_or_default();
        org.set_crls(lists);
    }
}

/// GET over HTTP or HTTPS (the system's CAs), at most
/// `pki::byo::MAX_CRL` bytes.
async fn http_get(url: &str) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt;
    let e = |m: String| format!("{url}: {m}");
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(e("not an http(s) URL".into()));
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h.trim_start_matches('[').trim_end_matches(']'), p),
            Err(_) => (authority, if tls { 443 } else { 80 }),
        },
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|x| e(x.to_string()))?;
    let req = hyper::Request::get(&path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "Parapet")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|x| e(x.to_string()))?;
    let resp = if tls {
        // The system's bundle is a file read and hundreds of certificates
        // parsed: off the runtime's threads.
        let (cas, _) = tokio::task::spawn_blocking(|| {
            federation::verifier::read_cas(&[(
                std::path::PathBuf::from(config::SYSTEM_CA_BUNDLE),
                true,
            )])
        })
        .await
        .map_err(|x| e(x.to_string()))??;
        let mut roots = rustls::RootCertStore::empty();
        for c in cas {
            let _ = roots.add(c);
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|x| e(x.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|x| e(x.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|x| e(x.to_string()))?;
        send(hyper_util::rt::TokioIo::new(stream), req).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await
    }
    .map_err(e)?;
    if !resp.status().is_success() {
        return Err(e(format!("answered {}", resp.status())));
    }
    let body = http_body_util::Limited::new(resp.into_body(), pki::byo::MAX_CRL)
        .collect()
        .await
        .map_err(|x| e(format!("reading the answer: {x}")))?;
    Ok(body.to_bytes().to_vec())
}

async fn send<T>(
    io: T,
    req: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|x| x.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|x| x.to_string())
}

/// Reads the lists every `every`; then revokes here the recorded
/// certificates the lists now revoke, closing their connections.
pub fn spawn<S: store::Store>(
    mut crls: Crls,
    every: Duration,
    org: Arc<OrgTrust>,
    registry: Arc<pki::registry::Registry>,
    store: S,
    transport: sip_transport::Transport,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            crls.refresh(&org).await;
            let now = rustls_pki_types::UnixTime::now();
            let mut gone = std::collections::HashSet::new();
            for (fp, device) in registry.org_certificates() {
                let Some(chain) = device.org else { continue };
                let (aor, id) = (device.aor, device.id);
                let certs: Vec<rustls_pki_types::CertificateDer<'_>> = chain
                    .iter()
                    .map(|c| rustls_pki_types::CertificateDer::from(c.as_slice()))
                    .collect();
                let Some((leaf, intermediates)) = certs.split_first() else {
                    continue;
                };
                match org.verify(leaf, intermediates, now) {
                    Ok(()) => {}
                    Err(webpki::Error::CertRevoked) => {
                        let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
                        if let Err(e) = store.revoke_device(&aor, &id, "crl", at).await {
                            tracing::warn!(error = %e, "could not record a revocation from the organisation's list");
                        }
                        registry.remove([&fp]);
                        gone.insert(fp);
                        tracing::info!(user = %aor, device = %id, "the organisation's revocation list revokes a certificate in use; revoked here too");
                    }
                    Err(e) => {
                        // No longer verifiable (its list expired, its CA
                        // was removed): not revoked, but its connections
                        // close and the next handshake decides.
                        registry.forget([&fp]);
                        gone.insert(fp);
                        tracing::info!(user = %aor, device = %id, error = %e, "an organisation's certificate in use no longer verifies; its connections are closed");
                    }
                }
            }
            if !gone.is_empty() {
                transport.close_certified(&gone);
            }
        }
    });
}
