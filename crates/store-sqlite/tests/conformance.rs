//! The store's shared test suite (`parapet-store-tests`) on SQLite: each
//! case on a fresh database file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use store_sqlite::{Sqlite, SqliteConfig};

async fn open(name: &str) -> Sqlite {
    let dir = std::env::temp_dir().join(format!("parapet-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = SqliteConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        ..SqliteConfig::new(dir.join("parapet.db"))
    };
    tokio::task::spawn_blocking(move || Sqlite::open(&cfg))
        .await
        .unwrap()
        .unwrap()
}

store_tests::store_cases!(open);
