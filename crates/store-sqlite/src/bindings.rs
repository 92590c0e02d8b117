//! Registrar bindings on SQLite.

use rusqlite::{params, Row};

use super::{db, Sqlite};
use rusqlite::Connection;

use store::{Binding, BindingChange, Bindings, Result};

/// Path values are stored one per line; a Path value cannot contain a newline.
fn row(r: &Row<'_>) -> rusqlite::Result<Binding> {
    let path: String = r.get(7)?;
    Ok(Binding {
        aor: r.get(0)?,
        key: r.get(1)?,
        contact: r.get(2)?,
        q: r.get(3)?,
        expires_at: r.get(4)?,
        call_id: r.get(5)?,
        cseq: r.get(6)?,
        path: path
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        source: r.get(8)?,
        user_agent: r.get(9)?,
        node: String::new(),
    })
}

impl Bindings for Sqlite {
    async fn upsert_binding(&self, b: Binding) -> Result<()> {
        self.write(move |c| upsert(c, &b)).await
    }

    async fn remove_binding(&self, aor: &str, key: &str) -> Result<bool> {
        let (aor, key) = (aor.to_owned(), key.to_owned());
        self.write(move |c| remove(c, &aor, &key)).await
    }

    async fn remove_binding_from(&self, aor: &str, key: &str, source: &str) -> Result<bool> {
        let (aor, key, source) = (aor.to_owned(), key.to_owned(), source.to_owned());
        self.write(move |c| {
            c.prepare_cached(
                "DELETE FROM bindings WHERE aor = ?1 AND binding_key = ?2 AND source = ?3",
            )
            .and_then(|mut st| st.execute([&aor, &key, &source]))
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn apply_bindings(&self, changes: Vec<BindingChange>) -> Result<()> {
        self.write(move |c| {
            for change in &changes {
                match change {
                    BindingChange::Upsert(b) => upsert(c, b)?,
                    BindingChange::Remove { aor, key } => {
                        remove(c, aor, key)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn remove_all_bindings(&self, aor: &str) -> Result<usize> {
        let aor = aor.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM bindings WHERE aor = ?1", [aor])
                .map_err(db)
        })
        .await
    }

    async fn live_bindings(&self, now: i64) -> Result<Vec<Binding>> {
        self.call(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent
                     FROM bindings WHERE expires_at > ?1 ORDER BY aor, binding_key",
                )
                .map_err(db)?;
            let rows = stmt.query_map([now], row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn bindings_of(&self, aor: &str, now: i64) -> Result<Vec<Binding>> {
        let aor = aor.to_owned();
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent
                     FROM bindings WHERE aor = ?1 AND expires_at > ?2 ORDER BY binding_key",
                )
                .map_err(db)?;
            let rows = stmt.query_map(rusqlite::params![aor, now], row).map_err(db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
        })
        .await
    }

    async fn remove_expired_bindings(
        &self,
        keys: Vec<(String, String)>,
        now: i64,
    ) -> Result<usize> {
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "DELETE FROM bindings WHERE aor = ?1 AND binding_key = ?2 AND expires_at <= ?3",
                )
                .map_err(db)?;
            let mut n = 0;
            for (aor, key) in &keys {
                n += st.execute(params![aor, key, now]).map_err(db)?;
            }
            Ok(n)
        })
        .await
    }

    async fn purge_expired_bindings(&self, now: i64) -> Result<usize> {
        self.write(move |c| {
            c.execute("DELETE FROM bindings WHERE expires_at <= ?1", [now])
                .map_err(db)
        })
        .await
    }
}

fn upsert(c: &Connection, b: &Binding) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO bindings (aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (aor, binding_key) DO UPDATE SET contact = excluded.contact, q = excluded.q,
           expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq,
           path = excluded.path, source = excluded.source, user_agent = excluded.user_agent",
    )
    .and_then(|mut st| {
        st.execute(params![
            b.aor,
            b.key,
            b.contact,
            b.q,
            b.expires_at,
            b.call_id,
            b.cseq,
            b.path.join("\n"),
            b.source,
            b.user_agent
        ])
    })
    .map(|_| ())
    .map_err(db)
}

fn remove(c: &Connection, aor: &str, key: &str) -> Result<bool> {
    c.prepare_cached("DELETE FROM bindings WHERE aor = ?1 AND binding_key = ?2")
        .and_then(|mut st| st.execute([aor, key]))
        .map(|n| n == 1)
        .map_err(db)
}
