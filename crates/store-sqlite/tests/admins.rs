//! The audit log on a database file someone with SQL access tampers with,
//! and a store opened without the audit key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use store::{AuditLog, StoreError};
use store_sqlite::{Sqlite, SqliteConfig};
use store_tests::admins::entry;

fn open(name: &str) -> (Sqlite, PathBuf) {
    let dir = std::env::temp_dir().join(format!("parapet-admins-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("parapet.db");
    let cfg = SqliteConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        ..SqliteConfig::new(&path)
    };
    (Sqlite::open(&cfg).unwrap(), path)
}

/// Without a key there is no audit at all.
#[tokio::test]
async fn no_audit_without_its_key() {
    let dir = std::env::temp_dir().join(format!("parapet-admins-{}-nokey", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nokey = Sqlite::open(&SqliteConfig::new(dir.join("p.db"))).unwrap();
    assert!(matches!(
        nokey.append_audit(entry(1)).await,
        Err(StoreError::Setup(_))
    ));
}

/// Tampering as someone with SQL access to the file would: triggers dropped,
/// rows changed or deleted. Each kind is detected.
#[tokio::test]
async fn audit_tampering_is_detected() {
    let (s, path) = open("tamper");
    for n in 1..=6 {
        s.append_audit(entry(n)).await.unwrap();
    }
    let report = s.audit_verify().await.unwrap();
    assert_eq!(
        (report.records, report.problems.len()),
        (6, 0),
        "{report:?}"
    );

    let raw = rusqlite::Connection::open(&path).unwrap();
    assert!(
        raw.execute("UPDATE audit SET detail = 'x' WHERE seq = 2", [])
            .is_err(),
        "append-only"
    );
    assert!(
        raw.execute("DELETE FROM audit WHERE seq = 2", []).is_err(),
        "append-only"
    );
    raw.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();

    raw.execute(
        "UPDATE audit SET actor = 'admin:someone-else' WHERE seq = 3",
        [],
    )
    .unwrap();
    let r = s.audit_verify().await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("record 3 does not match")),
        "{r:?}"
    );

    let (s, path) = open("tamper-delete");
    for n in 1..=6 {
        s.append_audit(entry(n)).await.unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 4;")
        .unwrap();
    let r = s.audit_verify().await.unwrap();
    assert!(
        r.problems.iter().any(|p| p == "records 4 to 4 are missing"),
        "{r:?}"
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("record 5 does not match")),
        "{r:?}"
    );

    // Cutting off the tail (and fixing the head by hand) is caught by the head's MAC.
    let (s, path) = open("tamper-tail");
    for n in 1..=6 {
        s.append_audit(entry(n)).await.unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 6; UPDATE audit_head SET seq = 5;").unwrap();
    let r = s.audit_verify().await.unwrap();
    assert_eq!(r.records, 5);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("removed from the end")),
        "{r:?}"
    );
}
