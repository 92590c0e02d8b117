//! Filling an empty database with the tables another back end exported
//! (`parapet admin migrate-store`, see `store::export`): one transaction,
//! so a migration that fails leaves the database as empty as it was.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::{describe, Postgres};
use store::export::{Batch, Value, TABLES};
use store::{Result, StoreError};

fn setup(m: String) -> StoreError {
    StoreError::Setup(m)
}

fn pg(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| StoreError::Db(format!("{what}: {}", describe(&e)))
}

/// One value as the column's type wants it.
fn param(v: &Value, ty: &str, table: &str, column: &str) -> Result<Box<dyn ToSql + Sync + Send>> {
    let wrong = || {
        setup(format!(
            "{table}.{column}: a {} value does not fit PostgreSQL's {ty}",
            match v {
                Value::Null => "null",
                Value::Int(_) => "integer",
                Value::Text(_) => "text",
                Value::Bytes(_) => "binary",
            }
        ))
    };
    Ok(match (ty, v) {
        ("bigint", Value::Int(i)) => Box::new(*i),
        ("bigint", Value::Null) => Box::new(None::<i64>),
        ("integer", Value::Int(i)) => Box::new(i32::try_from(*i).map_err(|_| wrong())?),
        ("integer", Value::Null) => Box::new(None::<i32>),
        ("boolean", Value::Int(i)) => Box::new(*i != 0),
        ("boolean", Value::Null) => Box::new(None::<bool>),
        ("text", Value::Text(t)) => Box::new(t.clone()),
        ("text", Value::Null) => Box::new(None::<String>),
        ("bytea", Value::Bytes(b)) => Box::new(b.clone()),
        ("bytea", Value::Null) => Box::new(None::<Vec<u8>>),
        _ => return Err(wrong()),
    })
}

impl Postgres {
    /// Imports every batch `input` brings into this database, which must
    /// hold no data yet (schema only), in one transaction; returns how
    /// many rows each table received. The identity sequences continue
    /// after the imported ids.
    pub async fn import(
        &self,
        mut input: mpsc::Receiver<Batch>,
    ) -> Result<Vec<(&'static str, u64)>> {
        let mut object = self
            .pool
            .get()
            .await
            .map_err(|e| super::store_error(e.into()))?;
        let tx = object.transaction().await.map_err(pg("begin"))?;
        for table in TABLES.iter().filter(|t| **t != "meta") {
            let n: i64 = tx
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(pg(table))?;
            if n > 0 {
                return Err(StoreError::Conflict(format!(
                    "the database already holds data ({n} rows in {table}); migrate into a new, empty database"
                )));
            }
        }
        let mut types: HashMap<&'static str, HashMap<String, String>> = HashMap::new();
        let mut counts: Vec<(&'static str, u64)> = TABLES.iter().map(|t| (*t, 0)).collect();
        let mut meta: Vec<Batch> = Vec::new();
        let mut arrived: Vec<&'static str> = Vec::new();
        while let Some(batch) = input.recv().await {
            if !TABLES.contains(&batch.table) {
                return Err(setup(format!("unknown table {}", batch.table)));
            }
            if !arrived.contains(&batch.table) {
                arrived.push(batch.table);
            }
            if !types.contains_key(batch.table) {
                let rows = tx
                    .query(
                        "SELECT column_name, data_type FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = $1",
                        &[&batch.table],
                    )
                    .await
                    .map_err(pg(batch.table))?;
                let mut cols = HashMap::new();
                for r in rows {
                    cols.insert(
                        r.try_get::<_, String>(0).map_err(pg(batch.table))?,
                        r.try_get::<_, String>(1).map_err(pg(batch.table))?,
                    );
                }
                types.insert(batch.table, cols);
            }
            let cols = &types[batch.table];
            let mut column_types = Vec::with_capacity(batch.columns.len());
            for c in &batch.columns {
                column_types.push(
                    cols.get(c)
                        .ok_or_else(|| setup(format!("{}.{c} has no column here", batch.table)))?,
                );
            }
            if batch.rows.is_empty() {
                continue;
            }
            // The counters are set last: the rows written here move them.
            if batch.table == "meta" {
                meta.push(batch);
                continue;
            }
            insert(&tx, &batch, &column_types).await?;
            if let Some(c) = counts.iter_mut().find(|(t, _)| *t == batch.table) {
                c.1 += batch.rows.len() as u64;
            }
        }
        // An export that stopped part-way (its sender gone) leaves tables
        // out: nothing is committed then.
        if let Some(missing) = TABLES.iter().find(|t| !arrived.contains(t)) {
            return Err(setup(format!(
                "the export ended before table {missing}: nothing was moved"
            )));
        }
        for batch in &meta {
            let cols = &types["meta"];
            let column_types: Vec<&String> = batch
                .columns
                .iter()
                .map(|c| {
                    cols.get(c)
                        .ok_or_else(|| setup(format!("meta.{c} has no column here")))
                })
                .collect::<Result<_>>()?;
            insert(&tx, batch, &column_types).await?;
            if let Some(c) = counts.iter_mut().find(|(t, _)| *t == "meta") {
                c.1 += batch.rows.len() as u64;
            }
        }
        // Ids go on after every id used: for stored messages, also those
        // delivered since whose identifiers are remembered (SQLite never
        // reused them either).
        for (table, used) in [
            ("users", "SELECT max(id) FROM users"),
            (
                "pending_messages",
                "SELECT GREATEST((SELECT max(id) FROM pending_messages), (SELECT max(pending_id) FROM message_ids))",
            ),
            ("archive", "SELECT max(id) FROM archive"),
            ("cdrs", "SELECT max(id) FROM cdrs"),
        ] {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(({used}), 0) + 1, false)"
                ),
                &[],
            )
            .await
            .map_err(pg(table))?;
        }
        // The rows came in as changes; nobody follows a database that was
        // empty a moment ago.
        tx.execute("DELETE FROM changes", &[])
            .await
            .map_err(pg("changes"))?;
        tx.commit().await.map_err(pg("commit"))?;
        Ok(counts)
    }
}

/// Inserts one batch's rows (`column_types`: PostgreSQL's type of each).
async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &Batch,
    column_types: &[&String],
) -> Result<()> {
    let names: Vec<String> = batch.columns.iter().map(|c| format!("\"{c}\"")).collect();
    let values: Vec<String> = (1..=batch.columns.len()).map(|i| format!("${i}")).collect();
    let sql = match batch.table {
        // The counters exist already: take the exported values.
        "meta" => "INSERT INTO meta (name, value) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            .to_string(),
        // Identity columns keep their exported ids.
        "users" | "pending_messages" | "archive" | "cdrs" => format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
            batch.table,
            names.join(", "),
            values.join(", ")
        ),
        _ => format!(
            "INSERT INTO {} ({}) VALUES ({})",
            batch.table,
            names.join(", "),
            values.join(", ")
        ),
    };
    if batch.table == "meta" && batch.columns != ["name", "value"] {
        return Err(setup("meta's columns are not (name, value)".into()));
    }
    let st = tx.prepare(&sql).await.map_err(pg(batch.table))?;
    for row in &batch.rows {
        let params = row
            .iter()
            .zip(&batch.columns)
            .zip(column_types)
            .map(|((v, c), ty)| param(v, ty, batch.table, c))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(&st, &refs).await.map_err(pg(batch.table))?;
    }
    Ok(())
}
