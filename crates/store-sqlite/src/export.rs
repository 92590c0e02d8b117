//! Every table read out in one snapshot, for `parapet admin
//! migrate-store` (see `store::export`).

use rusqlite::types::ValueRef;
use tokio::sync::mpsc;

use super::{db, Sqlite};
use store::export::{Batch, Value, BATCH_ROWS, TABLES};
use store::{Result, StoreError};

impl Sqlite {
    /// Sends every table, in `store::export::TABLES` order, in batches,
    /// all read in one transaction (a consistent snapshot even if
    /// something writes meanwhile). Returns how many rows each table had.
    pub async fn export(&self, out: mpsc::Sender<Batch>) -> Result<Vec<(&'static str, u64)>> {
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            let mut counts = Vec::new();
            for table in TABLES {
                counts.push((*table, export_table(&tx, table, &out)?));
            }
            tx.commit().map_err(db)?;
            Ok(counts)
        })
        .await
    }
}

fn value(v: ValueRef<'_>, table: &str, column: &str) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(String::from_utf8(t.to_vec()).map_err(|_| {
            StoreError::Db(format!("{table}.{column} holds text that is not UTF-8"))
        })?),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        ValueRef::Real(_) => {
            return Err(StoreError::Db(format!(
                "{table}.{column} holds a floating-point value, which no column of Parapet's has"
            )))
        }
    })
}

fn export_table(
    c: &rusqlite::Connection,
    table: &'static str,
    out: &mpsc::Sender<Batch>,
) -> Result<u64> {
    // Table names come from the constant list, never from input.
    let mut st = c.prepare(&format!("SELECT * FROM {table}")).map_err(db)?;
    let columns: Vec<String> = st.column_names().map(str::to_owned).collect();
    let mut rows = st.query([]).map_err(db)?;
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut count = 0u64;
    let send = |rows: Vec<Vec<Value>>| {
        out.blocking_send(Batch {
            table,
            columns: columns.clone(),
            rows,
        })
        .map_err(|_| StoreError::Closed)
    };
    let mut sent_any = false;
    while let Some(r) = rows.next().map_err(db)? {
        let mut row = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            row.push(value(r.get_ref(i).map_err(db)?, table, name)?);
        }
        batch.push(row);
        count += 1;
        if batch.len() == BATCH_ROWS {
            send(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH_ROWS),
            ))?;
            sent_any = true;
        }
    }
    if !batch.is_empty() || !sent_any {
        send(batch)?;
    }
    Ok(count)
}
