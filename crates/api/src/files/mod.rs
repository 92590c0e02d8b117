//! The file-transfer server (RCS "file transfer via HTTP", as Linphone
//! speaks it) on the user listener: `POST /files` uploads, `GET
//! /files/ID` downloads. Clients sign in with their SIP credentials (HTTP
//! Digest in the SIP realm, through the core's lockout filter) or a
//! device certificate.
//!
//! The bytes live under the data directory (`files/`), each file named by
//! its random id, written whole and fsynced before the upload is answered;
//! what is known about them (owner, name, type, size, hash, expiry, who
//! may fetch) is in the store ([`store::Files`]). Expired files' bytes are
//! deleted by [`sweep`], which also deletes bytes whose record is gone (a
//! removed user's).

mod download;
mod scan;
mod sweep;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use sip_app::authn_http::{HttpCredentials, HttpSignIn};
use sip_app::command::AdminCmd;
use store::Store;

use super::{internal, problem, Ctx};

pub(crate) use download::download;
pub(crate) use sweep::sweeper;
pub(crate) use upload::upload;

/// The file-transfer server's state.
#[derive(Debug)]
pub struct FileService {
    /// Where the bytes are (`DATA/files`), each file by its id.
    pub(crate) dir: PathBuf,
    /// Uploads in progress (`DATA/files/incoming`), renamed into `dir`
    /// when complete.
    pub(crate) incoming: PathBuf,
    /// Uploads at once; beyond, 503.
    pub(crate) uploads: tokio::sync::Semaphore,
    /// Wakes the sweeper (a user was removed).
    pub(crate) sweep_now: tokio::sync::Notify,
    /// Upload buffers kept for the next uploads (at most one per upload
    /// slot): reused memory costs no page faults.
    buffers: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Uploads at once.
const MAX_UPLOADS: usize = 16;

impl FileService {
    /// The service over `root` (the data directory's `files`), created if
    /// missing, owner-only.
    pub fn open(root: PathBuf) -> Result<Arc<FileService>, String> {
        let incoming = root.join("incoming");
        std::fs::create_dir_all(&incoming)
            .map_err(|e| format!("cannot create {}: {e}", incoming.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for d in [&root, &incoming] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot restrict {}: {e}", d.display()))?;
            }
        }
        Ok(Arc::new(FileService {
            dir: root,
            incoming,
            uploads: tokio::sync::Semaphore::new(MAX_UPLOADS),
            sweep_now: tokio::sync::Notify::new(),
            buffers: std::sync::Mutex::new(Vec::new()),
        }))
    }

    /// A buffer for an upload.
    fn buffer(&self) -> Vec<u8> {
        self.buffers
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_else(|| Vec::with_capacity(upload::SPOOL + (64 << 10)))
    }

    /// An upload's buffer back, for the next.
    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut b) = self.buffers.lock() {
            if b.len() < MAX_UPLOADS {
                b.push(buf);
            }
        }
    }

    /// A file's path by id (32 hex digits, checked by the caller).
    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }
}

/// The SHA-256 of the client certificate this connection's handshake
/// verified, put on each request by the listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerCertificate(pub(crate) [u8; 32]);

/// A signed-in user of the file server, with their file-transfer rules
/// and limits.
struct Signed {
    aor: String,
    rules: content::files::FileRules,
    limits: sip_app::policy_set::FileLimits,
}

/// Signs a request in with SIP credentials or a device certificate: the
/// file service and the user, or the answer to send (404 while file
/// transfer is off, 401 with the challenges, 403, 503).
async fn sign_in<S: Store>(
    ctx: &Ctx<S>,
    parts: &Parts,
) -> Result<(Arc<FileService>, Signed), Response> {
    let Some(files) = ctx.files.clone() else {
        return Err(problem(StatusCode::NOT_FOUND, "file transfer is off"));
    };
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .ok_or_else(|| internal("no peer address"))?;
    let uri = &parts.uri;
    let credentials = HttpCredentials {
        method: parts.method.as_str().to_owned(),
        uri: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        source: remote.0.ip(),
        device: parts.extensions.get::<PeerCertificate>().map(|d| d.0),
    };
    let outcome = ctx
        .ask(|reply| AdminCmd::HttpSignIn { credentials, reply })
        .await
        .ok_or_else(|| {
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is starting or stopping; retry in a moment",
            )
        })?;
    match outcome {
        HttpSignIn::Signed {
            aor, rules, limits, ..
        } => Ok((files, Signed { aor, rules, limits })),
        HttpSignIn::Challenge(challenges) => {
            let mut r = problem(
                StatusCode::UNAUTHORIZED,
                "sign in with your SIP user name and password (HTTP Digest), or a device certificate",
            );
            for c in challenges {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
            Err(r)
        }
        HttpSignIn::Refused {
            status,
            detail,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            let mut r = problem(status, detail);
            if let Some(s) = retry_after {
                if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Err(r)
        }
    }
}

/// Whether `id` is a file id (32 lower-case hex digits).
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The answer for a file that does not exist or is not the caller's to
/// see: the same for both.
fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such file")
}
