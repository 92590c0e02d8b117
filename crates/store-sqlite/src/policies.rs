//! Policy documents, grants, user groups and sites on SQLite.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{db, Sqlite};
use store::{
    GrantRow, GrantTargetRow, GroupRow, Policies, PolicyRow, PolicyScope, PolicyState, Result,
    StoreError,
};

fn target_columns(t: &GrantTargetRow) -> (&'static str, &str) {
    match t {
        GrantTargetRow::User(u) => ("user", u),
        GrantTargetRow::Group(g) => ("group", g),
    }
}

fn version(c: &Connection) -> Result<i64> {
    c.query_row(
        "SELECT value FROM meta WHERE name = 'policy_version'",
        [],
        |r| r.get(0),
    )
    .map_err(db)
}

/// Every row of a query without parameters.
fn rows<T>(
    c: &Connection,
    sql: &str,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare(sql).map_err(db)?;
    let rows = st.query_map([], f).map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

fn read_state(c: &Connection) -> Result<PolicyState> {
    let policies = rows(
        c,
        "SELECT kind, scope, name, fields FROM policies ORDER BY kind, scope, name",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        },
    )?
    .into_iter()
    .map(|(kind, scope, name, fields_json)| {
        let scope = PolicyScope::from_columns(&scope, name)
            .ok_or_else(|| StoreError::Db(format!("policy {kind} has an unknown scope")))?;
        Ok(PolicyRow {
            kind,
            scope,
            fields_json,
        })
    })
    .collect::<Result<_>>()?;
    let grants = rows(
        c,
        "SELECT kind, policy, target_kind, target FROM policy_grants ORDER BY kind, target_kind, target",
        |r| {
            let target: String = r.get(3)?;
            Ok(GrantRow {
                kind: r.get(0)?,
                policy: r.get(1)?,
                target: match r.get::<_, String>(2)?.as_str() {
                    "user" => GrantTargetRow::User(target),
                    _ => GrantTargetRow::Group(target),
                },
            })
        },
    )?;
    Ok(PolicyState {
        version: version(c)?,
        policies,
        grants,
        groups: rows(
            c,
            "SELECT name, priority, description FROM user_groups ORDER BY name",
            |r| {
                Ok(GroupRow {
                    name: r.get(0)?,
                    priority: r.get(1)?,
                    description: r.get(2)?,
                })
            },
        )?,
        members: rows(
            c,
            "SELECT group_name, aor FROM group_members ORDER BY group_name, aor",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
        sites: rows(c, "SELECT aor, site FROM user_sites ORDER BY aor", |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?,
    })
}

impl Policies for Sqlite {
    async fn policy_state(&self) -> Result<PolicyState> {
        // One read transaction: the rows and the counter agree.
        self.call(|c| {
            let tx = c.transaction().map_err(db)?;
            let state = read_state(&tx)?;
            tx.commit().map_err(db)?;
            Ok(state)
        })
        .await
    }

    async fn policy_version(&self) -> Result<i64> {
        self.call(|c| version(c)).await
    }

    async fn put_policy(&self, p: PolicyRow) -> Result<()> {
        self.write(move |c| {
            let (scope, name) = p.scope.columns();
            c.execute(
                "INSERT INTO policies (kind, scope, name, fields) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, scope, name) DO UPDATE SET fields = excluded.fields",
                params![p.kind, scope, name, p.fields_json],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn remove_policy(&self, kind: &str, scope: PolicyScope) -> Result<bool> {
        let kind = kind.to_owned();
        self.write(move |c| {
            let (s, name) = scope.columns();
            c.execute(
                "DELETE FROM policies WHERE kind = ?1 AND scope = ?2 AND name = ?3",
                params![kind, s, name],
            )
            .map(|n| n == 1)
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "{kind} policy {name:?} is still granted; remove its grants first"
                )),
                other => other,
            })
        })
        .await
    }

    async fn put_grant(&self, g: GrantRow) -> Result<()> {
        self.write(move |c| {
            let (tk, target) = target_columns(&g.target);
            if tk == "group" {
                let exists: Option<i64> = c
                    .query_row("SELECT 1 FROM user_groups WHERE name = ?1", [target], |r| r.get(0))
                    .optional()
                    .map_err(db)?;
                if exists.is_none() {
                    return Err(StoreError::Conflict(format!("no group {target:?}")));
                }
            }
            c.execute(
                "INSERT INTO policy_grants (kind, policy, target_kind, target) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, target_kind, target) DO UPDATE SET policy = excluded.policy",
                params![g.kind, g.policy, tk, target],
            )
            .map(|_| ())
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "no named {} policy {:?}; create it first",
                    g.kind, g.policy
                )),
                other => other,
            })
        })
        .await
    }

    async fn remove_grant(&self, kind: &str, target: GrantTargetRow) -> Result<bool> {
        let kind = kind.to_owned();
        self.write(move |c| {
            let (tk, t) = target_columns(&target);
            c.execute(
                "DELETE FROM policy_grants WHERE kind = ?1 AND target_kind = ?2 AND target = ?3",
                params![kind, tk, t],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn put_group(&self, g: GroupRow) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO user_groups (name, priority, description) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET priority = excluded.priority, description = excluded.description",
                params![g.name, g.priority, g.description],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn remove_group(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        // Memberships go by cascade; grants to the group in the same write.
        self.write(move |c| {
            c.execute(
                "DELETE FROM policy_grants WHERE target_kind = 'group' AND target = ?1",
                [&name],
            )
            .map_err(db)?;
            c.execute("DELETE FROM user_groups WHERE name = ?1", [&name])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
    }

    async fn add_member(&self, group: &str, aor: &str) -> Result<()> {
        let (group, aor) = (group.to_owned(), aor.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO group_members (group_name, aor) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![group, aor],
            )
            .map(|_| ())
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("no group {group:?} or no user {aor:?}"))
                }
                other => other,
            })
        })
        .await
    }

    async fn remove_member(&self, group: &str, aor: &str) -> Result<bool> {
        let (group, aor) = (group.to_owned(), aor.to_owned());
        self.write(move |c| {
            c.execute(
                "DELETE FROM group_members WHERE group_name = ?1 AND aor = ?2",
                params![group, aor],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn set_site(&self, aor: &str, site: Option<String>) -> Result<()> {
        let aor = aor.to_owned();
        self.write(move |c| {
            match site {
                Some(s) => c.execute(
                    "INSERT INTO user_sites (aor, site) VALUES (?1, ?2)
                     ON CONFLICT (aor) DO UPDATE SET site = excluded.site",
                    params![aor, s],
                ),
                None => c.execute("DELETE FROM user_sites WHERE aor = ?1", [&aor]),
            }
            .map(|_| ())
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("no user {aor:?}")),
                other => other,
            })
        })
        .await
    }
}
