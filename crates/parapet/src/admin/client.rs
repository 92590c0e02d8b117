//! The HTTP client of the admin API, and where the session token is kept.

use std::io::Read;
use std::path::PathBuf;

use serde_json::{json, Value};

pub(super) fn session_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PARAPET_ADMIN_SESSION") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("parapet/session"))
}

pub(super) fn token() -> Result<String, String> {
    if let Ok(t) = std::env::var("PARAPET_ADMIN_TOKEN") {
        return Ok(t.trim().to_owned());
    }
    let path = session_file()
        .ok_or("no session: run `parapet admin login` (or set PARAPET_ADMIN_TOKEN)")?;
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .map_err(|_| "not signed in: run `parapet admin login --name NAME` (or set PARAPET_ADMIN_TOKEN to an API token)".to_string())
}

pub(super) fn save_session(token: &str) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path =
        session_file().ok_or("cannot tell where to keep the session: set PARAPET_ADMIN_SESSION")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(token.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) struct Client {
    pub(super) server: String,
    pub(super) token: Option<String>,
}

impl Client {
    /// Calls the API; a refusal becomes an error carrying the server's detail.
    pub(super) async fn call(
        &self,
        method: &'static str,
        path: String,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let server = self.server.clone();
        let token = self.token.clone();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let auth = token.map(|t| format!("Bearer {t}"));
            let unreachable = |e: ureq::Error| format!("cannot reach the server at {server}: {e} (is `parapet serve` running? see --server)");
            let resp = match method {
                "GET" | "DELETE" => {
                    let mut r = if method == "GET" { agent.get(&url) } else { agent.delete(&url) };
                    if let Some(a) = &auth {
                        r = r.header("Authorization", a);
                    }
                    r.call()
                }
                _ => {
                    let mut r = match method {
                        "PUT" => agent.put(&url),
                        "PATCH" => agent.patch(&url),
                        _ => agent.post(&url),
                    };
                    if let Some(a) = &auth {
                        r = r.header("Authorization", a);
                    }
                    r.header("Content-Type", "application/json").send(body.unwrap_or(json!({})).to_string())
                }
            };
            let mut resp = resp.map_err(unreachable)?;
            let status = resp.status().as_u16();
            if let Some(nodes) = resp.headers().get("parapet-not-applied").and_then(|v| v.to_str().ok()) {
                // The change is made and answered for; the operator is told
                // which nodes of the pool had not applied it yet.
                eprintln!("warning: done, but not yet applied on node(s) {nodes} of the pool when the server answered (see `parapet admin status`; pool_apply_wait_ms is how long it waits)");
            }
            let text = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
            let v: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).map_err(|_| format!("unexpected answer from {server}: {text}"))? };
            if status >= 400 {
                let detail = v.get("detail").and_then(|d| d.as_str()).unwrap_or("");
                return Err(format!("the server refused ({status}): {detail}"));
            }
            Ok(v)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

impl Client {
    /// GETs `path` and copies the answer into `sink` as it comes, counting
    /// records (lines, or mbox `From ` separators) and saying on standard
    /// error, each second, how many so far. Returns how many.
    pub(super) async fn download(
        &self,
        path: String,
        mut sink: Box<dyn std::io::Write + Send>,
        unit: Unit,
    ) -> Result<u64, String> {
        let mbox = unit == Unit::Mbox;
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let server = self.server.clone();
        let token = self.token.clone();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let mut r = agent.get(&url);
            if let Some(t) = &token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            let mut resp = r.call().map_err(|e| {
                format!("cannot reach the server at {server}: {e} (is `parapet serve` running? see --server)")
            })?;
            let status = resp.status().as_u16();
            if status >= 400 {
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let detail = v.get("detail").and_then(|d| d.as_str()).unwrap_or(&text);
                return Err(format!("the server refused ({status}): {detail}"));
            }
            let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
            let mut buf = vec![0u8; 64 * 1024];
            let mut records = 0u64;
            // How much of "From " the current line began with so far
            // (None: it does not); a separator may straddle two reads.
            let mut matched: Option<usize> = Some(0);
            let mut last = std::time::Instant::now();
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            loop {
                let n = reader.read(&mut buf).map_err(|e| format!("the export was cut short: {e}"))?;
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                for &b in chunk {
                    if mbox {
                        matched = match matched {
                            _ if b == b'\n' => Some(0),
                            Some(k) if b"From ".get(k) == Some(&b) => {
                                if k + 1 == 5 {
                                    records += 1;
                                    None
                                } else {
                                    Some(k + 1)
                                }
                            }
                            _ => None,
                        };
                    } else if b == b'\n' && unit == Unit::Lines {
                        records += 1;
                    }
                }
                if unit == Unit::Bytes {
                    records += n as u64;
                }
                sink.write_all(chunk).map_err(|e| format!("writing the export: {e}"))?;
                if progress && last.elapsed() >= std::time::Duration::from_secs(1) {
                    last = std::time::Instant::now();
                    let what = if unit == Unit::Bytes { "bytes" } else { "messages" };
                    eprint!("\rexported {records} {what}...");
                }
            }
            sink.flush().map_err(|e| format!("writing the export: {e}"))?;
            if progress {
                eprint!("\r");
            }
            Ok(records)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// What a download counts as it goes (for its progress and its end):
/// lines (JSON lines), mbox messages, or bytes (a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Lines,
    Mbox,
    Bytes,
}

pub(super) fn read_stdin_line(what: &str) -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("reading the {what} from standard input: {e}"))?;
    Ok(s.lines().next().unwrap_or("").to_owned())
}

pub(super) fn secret_input(from_stdin: bool, prompt: &str) -> Result<String, String> {
    if from_stdin {
        return read_stdin_line("password");
    }
    crate::read_password(false, prompt)
}
