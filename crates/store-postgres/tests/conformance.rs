//! The store's shared test suite (`parapet-store-tests`) on PostgreSQL:
//! each case on a database of its own in a real server, reached over TLS
//! (verify-full) with SCRAM as a role with no special privileges, opened
//! as the serving node opens it: joined to the pool, every write fenced by
//! its epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use store_postgres::{Postgres, PostgresConfig};

async fn open(name: &str) -> Postgres {
    let cluster = tokio::task::spawn_blocking(store_tests::pg::cluster)
        .await
        .unwrap();
    let url = cluster.url(&cluster.database(name));
    Postgres::open(&PostgresConfig {
        audit_key: Some(store_tests::AUDIT_KEY),
        node: Some(store_postgres::NodeConfig {
            id: name.into(),
            address: String::new(),
            wait: false,
            active: false,
        }),
        ..PostgresConfig::new(url)
    })
    .await
    .unwrap()
}

store_tests::store_cases!(open);
