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
    // process, each call in this process past the last one's (clusters
    // starting at once must not pick the same), checked free at the moment.
    static TURN: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 2_500) * 4;
    (0..2_000)
        .map(|_| {
            let i = TURN.fetch_add(1, Ordering::Relaxed);
            u16::try_from(base + (i * 7) % 10_000).unwrap_or(20_000)
        })
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or(20_000)
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

/// A new directory for one or two clusters, with the test CA's
/// certificates, owned by the user PostgreSQL runs as.
struct Prepared {
    dir: PathBuf,
    root: bool,
    bin: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn prepare() -> Result<Prepared, String> {
    let bin = bin_dir()?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!(
        "parapet-pg-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (ca, cert, key) = certificates(&dir)?;
    Ok(Prepared {
        dir,
        root,
        bin,
        ca,
        cert,
        key,
    })
}

impl Prepared {
    fn own(&self, path: &Path) -> Result<(), String> {
        if self.root {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(path),
                "chown",
            )?;
        }
        Ok(())
    }

    /// The settings every test cluster has, for a cluster on `port` with
    /// its socket in `socket`.
    fn conf(&self, port: u16, socket: &Path) -> String {
        format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n\
             password_encryption = 'scram-sha-256'\nmax_connections = 300\nshared_buffers = '32MB'\n\
             synchronous_commit = on\nfsync = on\n",
            socket.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    /// Starts the postmaster on `data` beside a watchdog that stops it
    /// when the test process is gone and then removes `remove`.
    fn launch(&self, data: &Path, log: &Path, remove: &Path) -> Result<(), String> {
        let postgres = if self.root {
            format!(
                "setpriv --reuid=postgres --regid=postgres --init-groups --reset-env {} -D {}",
                self.bin.join("postgres").display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {}",
                self.bin.join("postgres").display(),
                data.display()
            )
        };
        let script = format!(
            "{postgres} >{log} 2>&1 & pg=$!\n\
             while kill -0 {parent} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 0.5; done\n\
             kill -INT $pg 2>/dev/null; wait $pg; rm -rf {remove}",
            log = log.display(),
            parent = std::process::id(),
            remove = remove.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("starting postgres: {e}"))
    }

    fn cluster(&self, port: u16, socket: PathBuf) -> Cluster {
        Cluster {
            port,
            ca: self.ca.clone(),
            socket,
            bin: self.bin.clone(),
        }
    }
}

fn wait_up(cluster: &Cluster, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.psql("postgres", "SELECT 1").is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("postgres did not start in 60 s: {log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

const HBA: &str = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n";

/// initdb, the settings, the postmaster; returns the cluster and its data
/// directory. When it stops, its watchdog removes `remove`.
fn primary(
    p: &Prepared,
    name: &str,
    extra_conf: &str,
    extra_hba: &str,
    remove: &Path,
) -> Result<(Cluster, PathBuf), String> {
    let data = p.dir.join(name);
    let socket = p.dir.join(format!("{name}-socket"));
    std::fs::create_dir_all(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    p.own(&p.dir)?;
    run(
        as_pg(p.root, &p.bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
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
        Command::new("chmod").arg("0600").arg(&p.key),
        "chmod of the server key",
    )?;
    let port = free_port();
    append(
        &data.join("postgresql.conf"),
        &(p.conf(port, &socket) + extra_conf),
    )?;
    std::fs::write(data.join("pg_hba.conf"), format!("{HBA}{extra_hba}"))
        .map_err(|e| format!("pg_hba.conf: {e}"))?;
    let log = p.dir.join(format!("{name}.log"));
    p.launch(&data, &log, remove)?;
    let cluster = p.cluster(port, socket);
    wait_up(&cluster, &log)?;
    Ok((cluster, data))
}

fn start() -> Result<Cluster, String> {
    let p = prepare()?;
    // Alone: the whole directory goes with it.
    let (cluster, _) = primary(&p, "data", "", "", &p.dir)?;
    cluster.psql(
        "postgres",
        &format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE"
        ),
    )?;
    Ok(cluster)
}

/// A primary and its synchronous standby: a COMMIT on the primary returns
/// only once the standby has it. Made afresh for each caller (a failover
/// test spends it).
#[derive(Debug)]
pub struct Pair {
    pub primary: Cluster,
    pub standby: Cluster,
    primary_data: PathBuf,
    standby_data: PathBuf,
}

/// Starts a [`Pair`]; panics with the reason when it cannot.
pub fn pair() -> Pair {
    start_pair().unwrap_or_else(|e| panic!("cannot start a PostgreSQL primary and standby: {e}"))
}

fn start_pair() -> Result<Pair, String> {
    let p = prepare()?;
    let (primary, primary_data) = primary(
        &p,
        "primary",
        "wal_level = replica\nmax_wal_senders = 4\n",
        "local replication all trust\n",
        // The standby removes the whole directory when it stops.
        &p.dir.join("primary"),
    )?;
    primary.psql(
        "postgres",
        &format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE"
        ),
    )?;
    let data = p.dir.join("standby");
    let socket = p.dir.join("standby-socket");
    std::fs::create_dir_all(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    p.own(&socket)?;
    run(
        as_pg(p.root, &p.bin.join("pg_basebackup"))
            .arg("-h")
            .arg(&primary.socket)
            .args(["-p", &primary.port.to_string(), "-U", "postgres", "-D"])
            .arg(&data)
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]),
        "pg_basebackup",
    )?;
    let port = free_port();
    // postgresql.auto.conf (written by -R) is read last: the standby's own
    // port and socket, the name the primary waits for, and no standby of
    // its own to wait for once promoted (there is no third server here).
    append(
        &data.join("postgresql.auto.conf"),
        &format!(
            "port = {port}\nunix_socket_directories = '{}'\nsynchronous_standby_names = ''\nprimary_conninfo = 'host={} port={} user=postgres application_name=standby1'\n",
            socket.display(),
            primary.socket.display(),
            primary.port
        ),
    )?;
    let log = p.dir.join("standby.log");
    // The standby outlives the primary in a failover test: it removes the
    // whole directory when it stops.
    p.launch(&data, &log, &p.dir)?;
    let standby = p.cluster(port, socket);
    wait_up(&standby, &log)?;
    // Only now that the standby streams does the primary wait for it (a
    // COMMIT before would wait for ever).
    primary.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'standby1'",
    )?;
    primary.psql("postgres", "SELECT pg_reload_conf()")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while primary
        .psql("postgres", "SELECT sync_state FROM pg_stat_replication")
        .map(|s| s.trim() != "sync")
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            return Err("the standby did not become synchronous in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Pair {
        primary,
        standby,
        primary_data,
        standby_data: data,
    })
}

/// The postmaster's pid of the cluster in `data`.
fn postmaster(data: &Path) -> String {
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(!pid.is_empty(), "no postmaster in {}", data.display());
    pid
}

impl Pair {
    /// The URL naming both servers; the store connects to whichever
    /// accepts writes.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{ROLE}:{PASSWORD}@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write&sslmode=verify-full&sslrootcert={}",
            self.primary.port,
            self.standby.port,
            self.primary.ca.display()
        )
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the standby's WAL
    /// receiver: meanwhile it takes nothing from the primary.
    pub fn receiving(&self, on: bool) {
        let pid = postmaster(&self.standby_data);
        let signal = if on { "-CONT" } else { "-STOP" };
        let status = Command::new("pkill")
            .args([signal, "-P", &pid, "-f", "walreceiver"])
            .status()
            .unwrap();
        assert!(status.success(), "no walreceiver under {pid}");
    }

    /// SIGKILL to the primary's postmaster and every process of it (its
    /// backends would otherwise go on serving the connections they have
    /// for a moment): the machine is gone.
    pub fn kill_primary(&self) {
        let pid = postmaster(&self.primary_data);
        // Stopped first, so that it forks nothing while its children go.
        run(Command::new("kill").args(["-STOP", &pid]), "kill -STOP").unwrap();
        let _ = Command::new("pkill").args(["-9", "-P", &pid]).status();
        run(Command::new("kill").args(["-9", &pid]), "kill -9").unwrap();
    }

    /// The standby becomes the primary (waits until it accepts writes).
    pub fn promote(&self) {
        self.standby
            .psql("postgres", "SELECT pg_promote(true, 60)")
            .unwrap();
    }
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

    /// Starts SQL as the superuser over the Unix socket and returns without
    /// waiting (a session holding a lock while a test goes on); the caller
    /// waits for the child.
    pub fn psql_start(&self, db: &str, sql: &str) -> std::process::Child {
        Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.socket)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-q", "-c", sql])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("psql: {e}"))
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
