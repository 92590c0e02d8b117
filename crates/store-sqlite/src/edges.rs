//! The pool's paired edges on SQLite.

use rusqlite::{params, OptionalExtension};

use super::{db, Sqlite};
use store::{EdgePairings, EdgeRow, Result};

/// The columns of a paired edge, in [`row`]'s order.
const COLUMNS: &str =
    "name, internal, external_names, fingerprint, paired_at, expires_at, keys_check";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EdgeRow> {
    Ok(EdgeRow {
        name: r.get(0)?,
        internal: r.get(1)?,
        external_names: r
            .get::<_, String>(2)?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        fingerprint: r.get(3)?,
        paired_at: r.get(4)?,
        expires_at: r.get(5)?,
        keys_check: r.get(6)?,
    })
}

fn insert(c: &rusqlite::Connection, e: &EdgeRow) -> rusqlite::Result<usize> {
    c.prepare_cached(&format!(
        "INSERT INTO edges ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (fingerprint) DO NOTHING"
    ))?
    .execute(params![
        e.name,
        e.internal,
        e.external_names.join(" "),
        e.fingerprint,
        e.paired_at,
        e.expires_at,
        e.keys_check
    ])
}

/// Unpaired certificates that have expired are of no more use.
fn forget_expired(c: &rusqlite::Connection, now: i64) -> rusqlite::Result<usize> {
    c.prepare_cached("DELETE FROM edges WHERE unpaired_at IS NOT NULL AND expires_at < ?1")?
        .execute([now])
}

impl EdgePairings for Sqlite {
    async fn put_edge(&self, e: EdgeRow, now: i64) -> Result<()> {
        self.write(move |c| {
            forget_expired(c, now).map_err(db)?;
            c.prepare_cached(
                "UPDATE edges SET unpaired_at = ?2 WHERE name = ?1 AND unpaired_at IS NULL",
            )
            .and_then(|mut st| st.execute(params![e.name, now]))
            .map_err(db)?;
            insert(c, &e).map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn edges(&self) -> Result<Vec<EdgeRow>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM edges WHERE unpaired_at IS NULL ORDER BY name"
                ))
                .map_err(db)?;
            let rows = st.query_map([], row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn remove_edge(&self, name: &str, now: i64) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            forget_expired(c, now).map_err(db)?;
            c.prepare_cached(
                "UPDATE edges SET unpaired_at = ?2 WHERE name = ?1 AND unpaired_at IS NULL",
            )
            .and_then(|mut st| st.execute(params![name, now]))
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn import_edges(&self, rows: Vec<EdgeRow>) -> Result<usize> {
        self.write(move |c| {
            let mut n = 0;
            for e in &rows {
                let taken = c
                    .prepare_cached("SELECT 1 FROM edges WHERE name = ?1 AND unpaired_at IS NULL")
                    .and_then(|mut st| st.query_row([&e.name], |_| Ok(())).optional())
                    .map_err(db)?
                    .is_some();
                if !taken {
                    n += insert(c, e).map_err(db)?;
                }
            }
            Ok(n)
        })
        .await
    }
}
