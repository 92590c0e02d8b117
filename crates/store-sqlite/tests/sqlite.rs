//! What only SQLite shows: group commit, an open error that names the
//! file, a write acknowledged before `kill -9` still there after it, and a
//! second process on the same file. The shared cases are in
//! conformance.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use store::{Messages, StoreError, Users};
use store_sqlite::{Sqlite, SqliteConfig};
use store_tests::core::{message, user};

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parapet-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("parapet.db")
}

#[tokio::test]
async fn concurrent_writes_commit_together_and_a_failure_stays_its_own() {
    let s = Sqlite::open(&SqliteConfig {
        queue: 64,
        ..SqliteConfig::new(temp_db("group"))
    })
    .unwrap();
    let commits = store_tests::core::concurrent_writes_fail_alone(s).await;
    // 200 writes arrived together: far fewer commits than writes.
    assert!(
        (1..=100).contains(&commits),
        "{commits} commits for 200 writes"
    );
}

#[test]
fn open_explains_a_missing_directory() {
    let r = Sqlite::open(&SqliteConfig::new("/nonexistent-parapet-dir/x/parapet.db"));
    match r {
        Err(StoreError::Setup(m)) => assert!(
            m.contains("/nonexistent-parapet-dir/x/parapet.db") && m.contains("writable"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

/// The child half of `acknowledged_writes_survive_kill_9`: writes messages and
/// prints the id of each once the store has acknowledged it, until killed.
#[tokio::test]
#[ignore = "run only as the child process of acknowledged_writes_survive_kill_9"]
async fn child_writer() {
    let path = std::env::var("PARAPET_STORE_CHILD_DB").expect("started by the parent test");
    let s = Sqlite::open(&SqliteConfig::new(path)).unwrap();
    s.add_user(user("sip:bob@example.com")).await.unwrap();
    for i in 0.. {
        let id = s
            .enqueue_message(message("sip:bob@example.com", &format!("m{i}")))
            .await
            .unwrap()
            .id;
        println!("ACK {id}");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let path = temp_db("kill9");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PARAPET_STORE_CHILD_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 50 {
        let line = lines.next().expect("child output").unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.parse::<i64>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let s = Sqlite::open(&SqliteConfig::new(&path)).unwrap();
    let stored: Vec<i64> = s
        .pending_messages("sip:bob@example.com", 100_000)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    for id in acked {
        assert!(
            stored.contains(&id),
            "acknowledged message {id} lost after kill -9"
        );
    }
}

#[tokio::test]
async fn users_version_moves_on_every_change_from_any_connection() {
    let path = temp_db("version");
    let s = Sqlite::open(&SqliteConfig::new(&path)).unwrap();
    let other = Sqlite::open(&SqliteConfig::new(&path)).unwrap(); // as the CLI would
    store_tests::core::users_version_moves_on_every_change_from_any_handle(s, other).await;
}

/// Whether `needle` occurs in any file of `dir` (the database, its WAL).
fn found_in(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            hits.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    hits
}

#[tokio::test]
async fn a_purged_archive_record_leaves_no_byte_in_the_file_or_its_wal() {
    use store::{Archive, ArchiveRow};
    let path = temp_db("archive-purge");
    let dir = path.parent().unwrap().to_path_buf();
    let s = Sqlite::open(&SqliteConfig::new(path)).unwrap();
    let rec = |owner: &str, marker: &str| ArchiveRow {
        id: 0,
        owner: owner.into(),
        at_ms: 1_000,
        sender: "sip:a@example.test".into(),
        recipient: "sip:b@example.test".into(),
        federated: false,
        result: "delivered".into(),
        key_id: "d1".into(),
        // Long enough to spill onto an overflow page.
        sealed: marker.repeat(400).into_bytes(),
    };
    s.archive_put(vec![rec("sip:gone@example.test", "PURGED-MARKER-")])
        .await
        .unwrap();
    s.archive_put(vec![rec("sip:kept@example.test", "KEPT-MARKER-")])
        .await
        .unwrap();
    assert!(!found_in(&dir, b"PURGED-MARKER-PURGED-MARKER-").is_empty());
    let n = s
        .archive_purge(vec!["sip:gone@example.test".into()], 2_000)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        found_in(&dir, b"PURGED-MARKER-"),
        Vec::<String>::new(),
        "the purged record's bytes are still on disk"
    );
    assert_eq!(
        found_in(&dir, b"sip:gone@example.test"),
        Vec::<String>::new()
    );
    // What was not purged is still there and readable.
    assert!(!found_in(&dir, b"KEPT-MARKER-KEPT-MARKER-").is_empty());
    let left = s
        .archive_find(store::ArchiveFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
}
