//! A real PostgreSQL server for tests: one throwaway cluster per test
//! binary, in a temporary directory, listening on 127.0.0.1 with TLS (a
//! certificate from a CA made for the run) and SCRAM, and on a Unix socket
//! for the superuser. Each test takes a database of its own, owned by a
//! role that is neither superuser nor allowed to create databases or roles
//! (the least privilege the store needs: it migrates its own schema).
//!
//! The cluster stops when the test binary exits: a watchdog shell beside
//! the postmaster waits for the test process to go, then shuts it down and
//! removes the directory. As root (CI), the server runs as the `postgres`
//! system user (`setpriv`), since PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The store's role and its password.
pub const ROLE: &str = "parapet";
const PASSWORD: &str = "parapet-test-password";

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    pub port: u16,
    /// The CA that issued the server's certificate (for `sslrootcert`).
    pub ca: PathBuf,
    /// The directory of the Unix socket.
    pub socket: PathBuf,
    bin: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The cluster of this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot start PostgreSQL for the tests: {e} (scripts/install-test-deps.sh installs it)"
        ),
    }
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PARAPET_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb".into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A command run as the user PostgreSQL runs as.
fn as_pg(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(c: &mut Command, what: &str) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> u16 {
    // Below the kernel's ephemeral range, from a start that differs per
    // process, checked free at the moment.
    let base = 20_000 + (std::process::id() % 5_000) as u16 * 2;
    (0..2_000u16)
        .map(|i| base + (i * 7) % 10_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or(base)
}

fn certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Parapet test database CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).map_err(e)?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let cert = server.signed_by(&key, &ca_cert, &ca_key).map_err(e)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    let w = |p: &Path, s: String| std::fs::write(p, s).map_err(|e| format!("{}: {e}", p.display()));
    w(&paths.0, ca_cert.pem())?;
    w(&paths.1, cert.pem())?;
    w(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!(
        "parapet-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let data = dir.join("data");
    let socket = dir.join("socket");
    std::fs::create_dir_all(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let (ca, cert, key) = certificates(&dir)?;
    if root {
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown",
        )?;
    }
    run(
        as_pg(root, &bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ]),
        "initdb",
    )?;
    run(
        Command::new("chmod").arg("0600").arg(&key),
        "chmod of the server key",
    )?;
    let port = free_port();
    let conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
         ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n\
         password_encryption = 'scram-sha-256'\nmax_connections = 300\nshared_buffers = '32MB'\n\
         synchronous_commit = on\nfsync = on\n",
        socket.display(),
        cert.display(),
        key.display()
    );
    append(&data.join("postgresql.conf"), &conf)?;
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n",
    )
    .map_err(|e| format!("pg_hba.conf: {e}"))?;
    // The postmaster, and the watchdog that stops it when we are gone.
    let postgres = if root {
        format!(
            "setpriv --reuid=postgres --regid=postgres --init-groups --reset-env {} -D {}",
            bin.join("postgres").display(),
            data.display()
        )
    } else {
        format!("{} -D {}", bin.join("postgres").display(), data.display())
    };
    let script = format!(
        "{postgres} >{log} 2>&1 & pg=$!\n\
         while kill -0 {parent} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 0.5; done\n\
         kill -INT $pg 2>/dev/null; wait $pg; rm -rf {dir}",
        log = dir.join("postgres.log").display(),
        parent = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let cluster = Cluster {
        port,
        ca,
        socket,
        bin,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.psql("postgres", "SELECT 1").is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            return Err(format!("postgres did not start in 60 s: {log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.psql(
        "postgres",
        &format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE"
        ),
    )?;
    Ok(cluster)
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Cluster {
    /// Runs SQL as the superuser over the Unix socket; returns psql's
    /// unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        run(
            Command::new(self.bin.join("psql"))
                .arg("-h")
                .arg(&self.socket)
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
                .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-q", "-c", sql]),
            "psql",
        )
    }

    /// A new, empty database owned by the store's role; `name` labels it.
    pub fn database(&self, name: &str) -> String {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let label: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        let db = format!("t{n}_{label}").to_lowercase();
        self.psql("postgres", &format!("CREATE DATABASE {db} OWNER {ROLE}"))
            .unwrap_or_else(|e| panic!("{e}"));
        db
    }

    /// The URL the store connects with: TLS verified against the test CA,
    /// SCRAM with the role's password.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{ROLE}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert={}",
            self.port,
            self.ca.display()
        )
    }
}
