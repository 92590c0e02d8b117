//! `database`, `database_pool_size` and `node_id`: the embedded database
//! or PostgreSQL, and this node's name in a pool.

use serde::Deserialize;

/// A database URL as written; its Debug form hides it (it may hold a
/// password).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// Where Parapet keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// SQLite in the data directory.
    Embedded,
    /// A PostgreSQL database shared by a pool of front ends.
    Postgres {
        url: DatabaseUrl,
        pool_size: usize,
        /// `sslmode=disable` to a TCP host: plain text on the network.
        plain_text: bool,
        /// This node's name in the pool.
        node_id: String,
        /// Every node serves at once (`pool_mode = "active"`), or one
        /// serves while the others wait as standbys (the default).
        active: bool,
        /// How long an admin API answer waits for the other serving
        /// nodes to apply a policy or user change (`pool_apply_wait_ms`).
        apply_wait_ms: u64,
        /// The address the other nodes dial this node's TLS listener at
        /// when it listens on a wildcard address (`node_address`); `None`:
        /// the address of this machine's route to the database server.
        address: Option<std::net::IpAddr>,
    },
}

/// The `database` and `database_pool_size` keys, checked.
pub fn database(url: Option<DatabaseUrl>, pool: Option<usize>) -> Result<Database, String> {
    let url = url
        .map(|u| DatabaseUrl(u.0.trim().to_owned()))
        .unwrap_or_default();
    let pool_size = pool.unwrap_or(16);
    if !(1..=512).contains(&pool_size) {
        return Err("database_pool_size must be between 1 and 512".into());
    }
    if url.0.is_empty() {
        // The pool size is PostgreSQL's; SQLite has one writer.
        return Ok(Database::Embedded);
    }
    let u = &url.0;
    if !(u.starts_with("postgres://") || u.starts_with("postgresql://") || u.contains("host=")) {
        return Err("database must be empty (the embedded SQLite database) or a PostgreSQL URL: postgres://USER:PASSWORD@HOST/DATABASE?sslrootcert=/path/to/ca.pem".into());
    }
    // What the store does with it (store-postgres's connect module):
    // plain text only when written out, never over a Unix socket.
    let socket = u.contains("host=/") || u.contains("host=%2F");
    let plain_text = u.contains("sslmode=disable") && !socket;
    Ok(Database::Postgres {
        url,
        pool_size,
        plain_text,
        node_id: host_name(),
        active: false,
        apply_wait_ms: DEFAULT_APPLY_WAIT_MS,
        address: None,
    })
}

/// `pool_apply_wait_ms` unless written: the other nodes read the
/// versions every second and report them with a heartbeat every second,
/// so a healthy node reports within about two seconds.
pub(crate) const DEFAULT_APPLY_WAIT_MS: u64 = 5_000;

/// A `pool_apply_wait_ms` as written.
pub(crate) fn check_apply_wait(ms: u64) -> Result<u64, String> {
    if ms > 60_000 {
        return Err(format!(
            "pool_apply_wait_ms = {ms}: 0 to 60000 (milliseconds an admin API answer waits for the other nodes to apply a change)"
        ));
    }
    Ok(ms)
}

/// A `pool_mode` as written: `true` for "active".
pub(crate) fn check_pool_mode(mode: &str) -> Result<bool, String> {
    match mode {
        "standby" => Ok(false),
        "active" => Ok(true),
        other => Err(format!(
            "pool_mode {other:?}: \"standby\" (one node serves, the others wait) or \"active\" (every node serves)"
        )),
    }
}

/// A `node_address` as written: an address another machine can dial.
pub(crate) fn check_node_address(a: &str) -> Result<std::net::IpAddr, String> {
    let ip: std::net::IpAddr = a.trim().parse().map_err(|_| {
        format!("node_address {a:?}: an IP address of this machine the pool's other nodes can reach, e.g. 10.0.0.11")
    })?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "node_address {a:?}: a wildcard or multicast address names no machine; write this machine's address the other nodes reach"
        ));
    }
    Ok(ip)
}

/// A `node_id` as written, checked.
pub(crate) fn check_node_id(id: &str) -> Result<String, String> {
    // It names a directory too (the node's trace ring): never "." or "..".
    if id.len() > 64
        || id.chars().all(|c| c == '.')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!(
            "node_id {id:?}: use 1 to 64 letters, digits, '.', '-' or '_'"
        ));
    }
    Ok(id.to_owned())
}

/// The machine's host name (the default node id), or "parapet" when it
/// cannot be read or is not a valid node id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| check_node_id(h.trim()).ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "parapet".to_owned())
}

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn the_database_is_embedded_or_a_postgresql_url_and_plain_text_is_noticed() {
        assert_eq!(database(None, Some(16)), Ok(Database::Embedded));
        let pg = |u: &str| database(Some(DatabaseUrl(u.into())), None);
        assert!(matches!(
            pg("postgres://p@db.example.com/p?sslrootcert=/ca.pem"),
            Ok(Database::Postgres {
                plain_text: false,
                pool_size: 16,
                ..
            })
        ));
        assert!(matches!(
            pg("postgres://p@db.example.com/p?sslmode=disable"),
            Ok(Database::Postgres {
                plain_text: true,
                ..
            })
        ));
        assert!(matches!(
            pg("host=/run/postgresql dbname=p sslmode=disable"),
            Ok(Database::Postgres {
                plain_text: false,
                ..
            })
        ));
        assert!(pg("mysql://x").unwrap_err().contains("PostgreSQL URL"));
        assert!(database(None, Some(0)).is_err());
        // A node's name: the host name unless written, checked.
        let raw = |t: &str| RawConfig::from_toml(t).unwrap().build();
        let named = raw(
            "database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\nnode_id = \"fe-2.example\"\n",
        );
        assert!(
            matches!(named, Ok(Config { database: Database::Postgres { ref node_id, .. }, .. }) if node_id == "fe-2.example")
        );
        let default = raw("database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\n");
        assert!(
            matches!(default, Ok(Config { database: Database::Postgres { ref node_id, .. }, .. }) if !node_id.is_empty())
        );
        assert!(
            raw("database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\nnode_id = \"a b\"\n")
                .unwrap_err()
                .contains("node_id")
        );
        assert!(raw("node_id = \"a\"\n")
            .unwrap_err()
            .contains("set database"));
        // A node's id names its trace ring's directory.
        for dots in [".", ".."] {
            let e = raw(&format!(
                "database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\nnode_id = \"{dots}\"\n"
            ))
            .unwrap_err();
            assert!(e.contains("node_id"), "{e}");
        }
        let pooled = raw(
            "database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\nnode_id = \"fe-2\"\n[trace]\ndir = \"/srv/traces\"\n",
        )
        .unwrap();
        assert_eq!(pooled.trace_root(), std::path::Path::new("/srv/traces"));
        assert_eq!(
            pooled.trace_ring(),
            std::path::Path::new("/srv/traces/fe-2")
        );
        let alone = raw("").unwrap();
        assert_eq!(alone.trace_ring(), alone.data_dir.join("traces"));
        assert!(raw("[trace]\ndir = \"traces\"\n")
            .unwrap_err()
            .contains("absolute"));
        // The address the other nodes dial a wildcard TLS listener at.
        let placed = raw(
            "database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\nnode_address = \"10.0.0.11\"\n",
        );
        assert!(
            matches!(placed, Ok(Config { database: Database::Postgres { address: Some(ip), .. }, .. }) if ip.to_string() == "10.0.0.11")
        );
        let unset =
            raw("database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\nnode_address = \"\"\n");
        assert!(matches!(
            unset,
            Ok(Config {
                database: Database::Postgres { address: None, .. },
                ..
            })
        ));
        for bad in ["0.0.0.0", "::", "239.1.1.1", "fe-a.example"] {
            let e = raw(&format!(
                "database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\nnode_address = \"{bad}\"\n"
            ))
            .unwrap_err();
            assert!(e.contains("node_address"), "{e}");
        }
        assert!(raw("node_address = \"10.0.0.11\"\n")
            .unwrap_err()
            .contains("set database"));
        // The URL (it may hold a password) never shows in debug output.
        let c = pg("postgres://p:secret@db.example.com/p?sslmode=disable").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn the_pool_mode_is_standby_unless_active_is_written_on_postgresql() {
        let raw = |t: &str| RawConfig::from_toml(t).unwrap().build();
        let pg = "database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\n";
        let active = |c: &str| match raw(c) {
            Ok(Config {
                database: Database::Postgres { active, .. },
                ..
            }) => Ok(active),
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        assert_eq!(active(pg), Ok(false));
        assert_eq!(active(&format!("{pg}pool_mode = \"active\"\n")), Ok(true));
        assert_eq!(active(&format!("{pg}pool_mode = \"standby\"\n")), Ok(false));
        assert!(active(&format!("{pg}pool_mode = \"both\"\n"))
            .unwrap_err()
            .contains("pool_mode"));
        assert!(active("pool_mode = \"active\"\n")
            .unwrap_err()
            .contains("PostgreSQL"));
        assert_eq!(active("pool_mode = \"standby\"\n"), Ok(false));
    }

    #[test]
    fn the_pool_apply_wait_is_five_seconds_unless_written_and_at_most_a_minute() {
        let raw = |t: &str| RawConfig::from_toml(t).unwrap().build();
        let pg = "database = \"postgres://p@db/p?sslrootcert=/ca.pem\"\n";
        let wait = |c: &str| match raw(c) {
            Ok(Config {
                database: Database::Postgres { apply_wait_ms, .. },
                ..
            }) => Ok(apply_wait_ms),
            Ok(_) => Err("embedded".to_owned()),
            Err(e) => Err(e),
        };
        assert_eq!(wait(pg), Ok(5_000));
        assert_eq!(wait(&format!("{pg}pool_apply_wait_ms = 0\n")), Ok(0));
        assert_eq!(
            wait(&format!("{pg}pool_apply_wait_ms = 60000\n")),
            Ok(60_000)
        );
        assert!(wait(&format!("{pg}pool_apply_wait_ms = 60001\n"))
            .unwrap_err()
            .contains("0 to 60000"));
        assert!(wait("pool_apply_wait_ms = 100\n")
            .unwrap_err()
            .contains("PostgreSQL"));
        assert_eq!(wait("pool_apply_wait_ms = 5000\n"), Err("embedded".into()));
    }
}
