//! Pairing edges with this pool: the certificates the private CA issues an
//! edge, and the pool's keys for edges.
//!
//! ```text
//! DATA_DIR/keys/edge-topology.key  32 random bytes, mode 0600: the key every
//!                                  edge of the pool seals its tokens with
//! DATA_DIR/keys/edge-snapshot.key  Ed25519 (PKCS#8), mode 0600: signs the
//!                                  configuration snapshots edges fetch
//! ```
//!
//! Both are made at the first start (so a pool's nodes, whose `keys/` are
//! copied from the first, share them). The records of paired edges are
//! the store's (`store::EdgePairings`: every node of a pool knows them);
//! records an earlier version kept in `DATA_DIR/edges/NAME.json` are
//! imported into the store at start and the files renamed
//! `NAME.json.imported`.
//!
//! An edge gets two certificates: an internal one (clientAuth and
//! serverAuth, naming `urn:parapet:edge:NAME` and its internal address) for
//! mutual TLS with the pool, and an external one (its external names and
//! the `sip:DOMAIN` URI partners check) for the Internet side. The front end
//! accepts an edge by its internal certificate's SHA-256, so unpairing (the
//! record unpaired) ends its standing at once.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use api::edges::{EdgeRecord, EdgeRegistry, PairError, PairRequest, Paired};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use edge::pairing::{Pairing, EDGE_URI_PREFIX};
use sip_app::edges::{EdgeSetup, PairedEdge};

/// How long an edge's certificates last.
const CERT_DAYS: i64 = 397;

/// The pool's edge registry, over the data directory.
#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
    domain: String,
    /// This front end's TLS listener, if bound to one address.
    front_end: Option<SocketAddr>,
}

impl Registry {
    /// `None` when the listeners use the operator's certificates
    /// (`private_ca` false): the operator's PKI issues the edge's too.
    pub fn new(
        root: &Path,
        domain: &str,
        front_end: Option<SocketAddr>,
        private_ca: bool,
    ) -> Option<Registry> {
        (private_ca && root.join("pki/ca-key.pem").exists()).then(|| Registry {
            root: root.to_path_buf(),
            domain: domain.to_owned(),
            front_end,
        })
    }

    fn dir(&self) -> PathBuf {
        self.root.join("edges")
    }

    fn topology_key(&self) -> Result<[u8; 32], String> {
        topology_key(&self.root)
    }

    /// The snapshot signing key, made on first use.
    fn snapshot_key(
        &self,
        create: bool,
    ) -> Result<Option<ring::signature::Ed25519KeyPair>, String> {
        let p = self.root.join("keys/edge-snapshot.key");
        if !p.exists() {
            if !create {
                return Ok(None);
            }
            let k = auth::edge_snapshot::generate_key().ok_or("system random generator failed")?;
            write_secret(&p, &k)?;
        }
        let raw = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        auth::edge_snapshot::load_key(&raw)
            .map(Some)
            .ok_or_else(|| format!("{} is damaged (not an Ed25519 PKCS#8 key)", p.display()))
    }

    /// A check value of the pool's keys for edges (never the keys): the
    /// pairing records carry it, so a node whose `keys/` differ says so.
    fn keys_check(&self) -> Result<String, String> {
        let topology = self.topology_key()?;
        let signer = self.snapshot_key(true)?.ok_or("no snapshot key")?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"parapet edge keys");
        ctx.update(&topology);
        ctx.update(auth::edge_snapshot::public_key(&signer).as_bytes());
        Ok(hex(&ctx.finish().as_ref()[..8]))
    }

    /// The records an earlier version kept in `edges/NAME.json`, for the
    /// store (`store::EdgePairings::import_edges`); expired ones left out.
    pub(crate) fn legacy_records(&self) -> Result<Vec<(PathBuf, store::EdgeRow)>, String> {
        let dir = self.dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        let check = self.keys_check()?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut out = Vec::new();
        for e in entries {
            let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let r: EdgeRecord = serde_json::from_str(&text)
                .map_err(|e| format!("{}: damaged edge record: {e}", p.display()))?;
            if r.expires_at < now {
                continue;
            }
            out.push((
                p,
                store::EdgeRow {
                    name: r.name,
                    internal: r.internal,
                    external_names: r.external_names,
                    fingerprint: r.fingerprint,
                    paired_at: r.paired_at,
                    expires_at: r.expires_at,
                    // Made by this node, with its keys.
                    keys_check: check.clone(),
                },
            ));
        }
        Ok(out)
    }
}

/// A new secret file: owner-only, synced.
fn write_secret(p: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn gen_err(e: rcgen::Error) -> PairError {
    PairError::Server(format!("certificate generation failed: {e}"))
}

fn san_for(name: &str) -> rcgen::SanType {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => rcgen::SanType::IpAddress(ip),
        Err(_) => match rcgen::Ia5String::try_from(name.to_owned()) {
            Ok(n) => rcgen::SanType::DnsName(n),
            // Checked by the API already; a name rcgen refuses is skipped.
            Err(_) => rcgen::SanType::DnsName(
                rcgen::Ia5String::try_from("invalid.invalid").unwrap_or_else(|_| unreachable!()),
            ),
        },
    }
}

/// Issues one certificate for `sans` from the CA.
fn issue(
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
    common_name: &str,
    sans: Vec<rcgen::SanType>,
) -> Result<(String, String), PairError> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let now = time::OffsetDateTime::now_utc();
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    p.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = now;
    p.not_after = now + time::Duration::days(CERT_DAYS);
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = p.signed_by(&key, ca, ca_key).map_err(gen_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fingerprint_of(pem: &str) -> Result<[u8; 32], String> {
    let der = sip_transport::tls::certs_from_pem(pem.as_bytes())
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no certificate")?;
    Ok(sip_transport::fingerprint(&der))
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl EdgeRegistry for Registry {
    fn pair(&self, req: &PairRequest, front_ends: &[SocketAddr]) -> Result<Paired, PairError> {
        let server = |e: String| PairError::Server(e);
        let internal: SocketAddr = req
            .internal
            .parse()
            .map_err(|_| PairError::Invalid("internal must be IP:port".into()))?;
        if front_ends.is_empty() {
            return Err(PairError::Conflict("no front end for the edge to reach: say which address it reaches this server at with front_end (--front-end IP:port)".into()));
        }
        let pki = self.root.join("pki");
        let ca_pem = fs::read_to_string(pki.join("ca.pem"))
            .map_err(|e| server(format!("pki/ca.pem: {e}")))?;
        let ca_key_pem = fs::read_to_string(pki.join("ca-key.pem"))
            .map_err(|e| server(format!("pki/ca-key.pem: {e}")))?;
        let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(gen_err)?;
        let ca = crate::datadir::ca_params(&self.domain)
            .and_then(|p| p.self_signed(&ca_key))
            .map_err(gen_err)?;
        let uri = rcgen::Ia5String::try_from(format!("{EDGE_URI_PREFIX}{}", req.name))
            .map_err(gen_err)?;
        let (cert, key) = issue(
            &ca,
            &ca_key,
            &format!("Parapet edge {}", req.name),
            vec![
                rcgen::SanType::URI(uri),
                rcgen::SanType::IpAddress(internal.ip()),
            ],
        )?;
        let mut ext_sans: Vec<rcgen::SanType> =
            req.external_names.iter().map(|n| san_for(n)).collect();
        ext_sans.push(rcgen::SanType::URI(
            rcgen::Ia5String::try_from(format!("sip:{}", self.domain)).map_err(gen_err)?,
        ));
        let (ext_cert, ext_key) = issue(&ca, &ca_key, &req.external_names[0], ext_sans)?;
        let topology_key = self.topology_key().map_err(server)?;
        let signer = self
            .snapshot_key(true)
            .map_err(server)?
            .ok_or_else(|| server("no snapshot key".into()))?;
        let pairing = Pairing {
            version: 1,
            name: req.name.clone(),
            domain: self.domain.clone(),
            front_ends: front_ends.to_vec(),
            front_end_name: self.domain.clone(),
            internal,
            external_names: req.external_names.clone(),
            ca: ca_pem,
            certificate: cert.clone(),
            key,
            external_certificate: ext_cert,
            external_key: ext_key,
            topology_key: STANDARD.encode(topology_key),
            snapshot_key: auth::edge_snapshot::public_key(&signer),
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let row = store::EdgeRow {
            name: req.name.clone(),
            internal: internal.to_string(),
            external_names: req.external_names.clone(),
            fingerprint: hex(&fingerprint_of(&cert).map_err(server)?),
            paired_at: now,
            expires_at: now + CERT_DAYS * 86_400,
            keys_check: self.keys_check().map_err(server)?,
        };
        let bundle = serde_json::to_value(&pairing).map_err(|e| server(e.to_string()))?;
        Ok(Paired { bundle, row })
    }

    fn front_end(&self) -> Option<SocketAddr> {
        self.front_end
    }

    fn setup(&self, paired: &[store::EdgeRow]) -> Result<EdgeSetup, String> {
        // Made now if it was not (a pool's nodes copy keys/ from the
        // first node after its first start).
        let check = self.keys_check()?;
        let mut out = Vec::new();
        for r in paired {
            let (Some(fingerprint), Ok(internal)) = (unhex(&r.fingerprint), r.internal.parse())
            else {
                tracing::warn!(edge = %r.name, "damaged edge record ignored");
                continue;
            };
            if r.keys_check != check {
                tracing::error!(edge = %r.name, "this edge was paired by a node whose keys/edge-topology.key or keys/edge-snapshot.key differ from this node's: its tokens and snapshots do not verify here; copy keys/ from the node it was paired on and restart this one (docs/POSTGRES.md)");
            }
            out.push(PairedEdge {
                name: r.name.clone(),
                fingerprint,
                internal,
            });
        }
        let ca = self.root.join("pki/ca.pem");
        let own_ca = fs::read(&ca)
            .ok()
            .and_then(|pem| sip_transport::tls::certs_from_pem(&pem).ok())
            .and_then(|c| c.into_iter().next())
            .map(|c| c.to_vec());
        let dial = match dial_config(&self.root) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "this front end cannot connect to its edges' internal listeners");
                None
            }
        };
        Ok(EdgeSetup {
            paired: out,
            signer: self.snapshot_key(false)?.map(std::sync::Arc::new),
            own_ca,
            dial,
        })
    }
}

/// The client side of a connection to an edge's internal listener:
/// this server's certificate (it speaks for the domain, which the edge
/// requires of the pool), the edge's verified against the pool's CA for
/// the internal address dialled.
fn dial_config(root: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let pki = root.join("pki");
    let read = |name: &str| fs::read(pki.join(name)).map_err(|e| format!("pki/{name}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for c in sip_transport::tls::certs_from_pem(&read("ca.pem")?)
        .map_err(|e| format!("pki/ca.pem: {e}"))?
    {
        roots.add(c).map_err(|e| format!("pki/ca.pem: {e}"))?;
    }
    let chain = sip_transport::tls::certs_from_pem(&read("server.pem")?)
        .map_err(|e| format!("pki/server.pem: {e}"))?;
    let key = sip_transport::tls::key_from_pem(&read("server-key.pem")?)
        .map_err(|e| format!("pki/server-key.pem: {e}"))?;
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| format!("pki/server.pem and its key: {e}"))?;
    Ok(std::sync::Arc::new(cfg))
}

/// The pool's topology key (`DATA_DIR/keys/edge-topology.key`), made on
/// first use: it seals the edges' routing tokens, and the relays' secret
/// for web credentials is derived from it (`relay::credentials`).
pub(crate) fn topology_key(root: &Path) -> Result<[u8; 32], String> {
    let p = root.join("keys/edge-topology.key");
    if !p.exists() {
        let k =
            auth::secret::SecretKey::generate().map_err(|_| "system random generator failed")?;
        write_secret(&p, &k)?;
    }
    let raw = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    raw.try_into()
        .map_err(|_| format!("{} is damaged (expected 32 bytes)", p.display()))
}

/// Moves the records an earlier version kept in `edges/NAME.json` into
/// the store, each file renamed `NAME.json.imported` once the store has
/// it (or refused it: an edge unpaired or paired again since).
pub(crate) async fn import_legacy<S: store::Store>(
    reg: &Registry,
    store: &S,
) -> Result<(), String> {
    let legacy = reg.legacy_records()?;
    if legacy.is_empty() {
        return Ok(());
    }
    let rows = legacy.iter().map(|(_, r)| r.clone()).collect();
    let n = store::EdgePairings::import_edges(store, rows)
        .await
        .map_err(|e| format!("importing the paired edges into the database: {e}"))?;
    for (p, _) in &legacy {
        let to = p.with_extension("json.imported");
        fs::rename(p, &to).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    tracing::info!(
        imported = n,
        files = legacy.len(),
        "paired edges' records moved from the data directory's edges/ into the database"
    );
    Ok(())
}
