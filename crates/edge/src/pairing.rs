//! The pairing file: everything an edge needs from its pool, issued by the
//! front end (`parapet admin edge pair`) and read by `parapet edge`.
//!
//! It holds the edge's own keys (its internal certificate for mutual TLS
//! with the pool, its external certificate), the pool's CA (to verify the
//! front ends), the pool's topology key (shared by every edge of the pool,
//! so tokens one edge made open on another) and where the front ends are.
//! No user secret and no database: the edge authenticates nobody itself.
//! The file is a secret: it must be readable by its owner only.

use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The URI subjectAltName prefix of an edge's internal certificate: the
/// front end knows a paired edge by it (and by the certificate itself).
pub const EDGE_URI_PREFIX: &str = "urn:parapet:edge:";

/// The pairing file's content (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pairing {
    /// Format version: 1.
    pub version: u32,
    /// The edge's name in the pool.
    pub name: String,
    /// The SIP domain the pool serves.
    pub domain: String,
    /// The front ends' SIP-over-TLS listeners the edge connects to.
    pub front_ends: Vec<SocketAddr>,
    /// The name the front ends' certificate carries (checked on connect).
    pub front_end_name: String,
    /// The edge's internal listener (mutual TLS; the front ends reach the
    /// edge here when no connection from the edge is open).
    pub internal: SocketAddr,
    /// Names the outside reaches the edge by (the first is advertised).
    pub external_names: Vec<String>,
    /// The pool's CA certificate (PEM).
    pub ca: String,
    /// The internal certificate chain and key (PEM).
    pub certificate: String,
    pub key: String,
    /// The external certificate chain and key (PEM).
    pub external_certificate: String,
    pub external_key: String,
    /// The pool's topology key, 32 bytes, base64.
    pub topology_key: String,
    /// The public key the pool signs configuration snapshots with
    /// (Ed25519, base64).
    pub snapshot_key: String,
}

impl Pairing {
    /// Reads and checks a pairing file: owner-only permissions, version,
    /// every field usable.
    pub fn load(path: &Path) -> Result<Pairing, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("pairing file {shown}: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "pairing file {shown} holds private keys and is readable by others: chmod 600 {shown}"
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("pairing file {shown}: {e}"))?;
        let p: Pairing = serde_json::from_str(&text)
            .map_err(|e| format!("pairing file {shown} is not a Parapet pairing file: {e}"))?;
        p.check()
            .map_err(|e| format!("pairing file {shown}: {e}"))?;
        Ok(p)
    }

    /// The checks [`Pairing::load`] makes on the content.
    pub fn check(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!(
                "version {} is not supported (this edge reads version 1)",
                self.version
            ));
        }
        if self.front_ends.is_empty() {
            return Err("no front end is listed".into());
        }
        if self.external_names.is_empty() {
            return Err("no external name is listed".into());
        }
        self.topology_key()?;
        self.snapshot_key()?;
        Ok(())
    }

    /// The snapshot key's 32 bytes.
    pub fn snapshot_key(&self) -> Result<Vec<u8>, String> {
        let raw = STANDARD
            .decode(self.snapshot_key.trim())
            .map_err(|_| "snapshot_key is not base64".to_string())?;
        if raw.len() != 32 {
            return Err("snapshot_key must be 32 bytes (Ed25519)".into());
        }
        Ok(raw)
    }

    /// The topology key's 32 bytes.
    pub fn topology_key(&self) -> Result<[u8; 32], String> {
        let raw = STANDARD
            .decode(self.topology_key.trim())
            .map_err(|_| "topology_key is not base64".to_string())?;
        raw.try_into()
            .map_err(|_| "topology_key must be 32 bytes".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Pairing {
        Pairing {
            version: 1,
            name: "edge1".into(),
            domain: "example.test".into(),
            front_ends: vec!["127.0.0.1:5061".parse().unwrap()],
            front_end_name: "example.test".into(),
            internal: "127.0.0.11:5061".parse().unwrap(),
            external_names: vec!["edge.example.test".into()],
            ca: String::new(),
            certificate: String::new(),
            key: String::new(),
            external_certificate: String::new(),
            external_key: String::new(),
            topology_key: STANDARD.encode([1u8; 32]),
            snapshot_key: STANDARD.encode([2u8; 32]),
        }
    }

    #[test]
    fn a_pairing_file_readable_by_others_or_damaged_is_refused_saying_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("parapet-pairing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("edge1.json");
        std::fs::write(&f, serde_json::to_string(&sample()).unwrap()).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Pairing::load(&f).unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Pairing::load(&f).unwrap().name, "edge1");
        let mut bad = sample();
        bad.topology_key = STANDARD.encode([1u8; 16]);
        std::fs::write(&f, serde_json::to_string(&bad).unwrap()).unwrap();
        assert!(Pairing::load(&f).unwrap_err().contains("32 bytes"));
        std::fs::write(&f, "{}").unwrap();
        assert!(Pairing::load(&f)
            .unwrap_err()
            .contains("not a Parapet pairing file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
