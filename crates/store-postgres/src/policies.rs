//! Policy documents, grants, user groups and sites on PostgreSQL.

use tokio_postgres::Row;

use super::{store_error, Fut, Pg, Postgres, E};
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

/// A constraint's refusal, said the way the caller should read it.
fn conflict(e: E, say: impl FnOnce() -> String) -> E {
    match store_error(e) {
        StoreError::Conflict(_) => StoreError::Conflict(say()).into(),
        other => other.into(),
    }
}

fn policy_row(r: &Row) -> Pg<(String, String, String, String)> {
    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
}

fn grant_row(r: &Row) -> Pg<GrantRow> {
    let target: String = r.try_get(3)?;
    Ok(GrantRow {
        kind: r.try_get(0)?,
        policy: r.try_get(1)?,
        target: match r.try_get::<_, &str>(2)? {
            "user" => GrantTargetRow::User(target),
            _ => GrantTargetRow::Group(target),
        },
    })
}

fn group_row(r: &Row) -> Pg<GroupRow> {
    Ok(GroupRow {
        name: r.try_get(0)?,
        priority: u32::try_from(r.try_get::<_, i64>(1)?).unwrap_or(u32::MAX),
        description: r.try_get(2)?,
    })
}

fn pair(r: &Row) -> Pg<(String, String)> {
    Ok((r.try_get(0)?, r.try_get(1)?))
}

impl Policies for Postgres {
    async fn policy_state(&self) -> Result<PolicyState> {
        // One snapshot: the rows and the counter agree.
        self.read_snapshot(|c| -> Fut<'_, PolicyState> {
            Box::pin(async move {
                let version: i64 = c
                    .query_one("SELECT value FROM meta WHERE name = 'policy_version'", &[])
                    .await?
                    .try_get(0)?;
                let policies = c
                    .query("SELECT kind, scope, name, fields FROM policies ORDER BY kind COLLATE \"C\", scope COLLATE \"C\", name COLLATE \"C\"", &[])
                    .await?
                    .iter()
                    .map(policy_row)
                    .collect::<Pg<Vec<_>>>()?
                    .into_iter()
                    .map(|(kind, scope, name, fields_json)| {
                        let scope = PolicyScope::from_columns(&scope, name).ok_or_else(|| {
                            StoreError::Db(format!("policy {kind} has an unknown scope"))
                        })?;
                        Ok(PolicyRow {
                            kind,
                            scope,
                            fields_json,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let grants = c
                    .query("SELECT kind, policy, target_kind, target FROM policy_grants ORDER BY kind COLLATE \"C\", target_kind COLLATE \"C\", target COLLATE \"C\"", &[])
                    .await?
                    .iter()
                    .map(grant_row)
                    .collect::<Pg<_>>()?;
                let groups = c
                    .query("SELECT name, priority, description FROM user_groups ORDER BY name COLLATE \"C\"", &[])
                    .await?
                    .iter()
                    .map(group_row)
                    .collect::<Pg<_>>()?;
                let members = c
                    .query("SELECT group_name, aor FROM group_members ORDER BY group_name COLLATE \"C\", aor COLLATE \"C\"", &[])
                    .await?
                    .iter()
                    .map(pair)
                    .collect::<Pg<_>>()?;
                let sites = c
                    .query("SELECT aor, site FROM user_sites ORDER BY aor COLLATE \"C\"", &[])
                    .await?
                    .iter()
                    .map(pair)
                    .collect::<Pg<_>>()?;
                Ok(PolicyState {
                    version,
                    policies,
                    grants,
                    groups,
                    members,
                    sites,
                })
            })
        })
        .await
    }

    async fn policy_version(&self) -> Result<i64> {
        self.read(|c| {
            Box::pin(async move {
                Ok(
                    c.query_one("SELECT value FROM meta WHERE name = 'policy_version'", &[])
                        .await?
                        .try_get(0)?,
                )
            })
        })
        .await
    }

    async fn put_policy(&self, p: PolicyRow) -> Result<()> {
        self.write(|tx| {
            let p = p.clone();
            Box::pin(async move {
                let (scope, name) = p.scope.columns();
                tx.execute(
                    "INSERT INTO policies (kind, scope, name, fields) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (kind, scope, name) DO UPDATE SET fields = excluded.fields",
                    &[&p.kind, &scope, &name, &p.fields_json],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_policy(&self, kind: &str, scope: PolicyScope) -> Result<bool> {
        let kind = kind.to_owned();
        self.write(|tx| {
            let (kind, scope) = (kind.clone(), scope.clone());
            Box::pin(async move {
                let (s, name) = scope.columns();
                match tx
                    .execute(
                        "DELETE FROM policies WHERE kind = $1 AND scope = $2 AND name = $3",
                        &[&kind, &s, &name],
                    )
                    .await
                {
                    Ok(n) => Ok(n == 1),
                    Err(e) => Err(conflict(e.into(), || {
                        format!("{kind} policy {name:?} is still granted; remove its grants first")
                    })),
                }
            })
        })
        .await
    }

    async fn put_grant(&self, g: GrantRow) -> Result<()> {
        self.write(|tx| {
            let g = g.clone();
            Box::pin(async move {
                let (tk, target) = target_columns(&g.target);
                // The group's row is held until commit: a removal of the
                // group waits, then takes this grant with it.
                if tk == "group"
                    && tx
                        .query_opt(
                            "SELECT 1 FROM user_groups WHERE name = $1 FOR KEY SHARE",
                            &[&target],
                        )
                        .await?
                        .is_none()
                {
                    return Err(StoreError::Conflict(format!("no group {target:?}")).into());
                }
                tx.execute(
                    "INSERT INTO policy_grants (kind, policy, target_kind, target) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (kind, target_kind, target) DO UPDATE SET policy = excluded.policy",
                    &[&g.kind, &g.policy, &tk, &target],
                )
                .await
                .map_err(|e| {
                    conflict(e.into(), || {
                        format!("no named {} policy {:?}; create it first", g.kind, g.policy)
                    })
                })?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_grant(&self, kind: &str, target: GrantTargetRow) -> Result<bool> {
        let kind = kind.to_owned();
        self.write(|tx| {
            let (kind, target) = (kind.clone(), target.clone());
            Box::pin(async move {
                let (tk, t) = target_columns(&target);
                Ok(tx
                    .execute(
                        "DELETE FROM policy_grants WHERE kind = $1 AND target_kind = $2 AND target = $3",
                        &[&kind, &tk, &t],
                    )
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn put_group(&self, g: GroupRow) -> Result<()> {
        self.write(|tx| {
            let g = g.clone();
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO user_groups (name, priority, description) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET priority = excluded.priority, description = excluded.description",
                    &[&g.name, &i64::from(g.priority), &g.description],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_group(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        // Memberships go by cascade; grants to the group in the same write.
        self.write(|tx| {
            let name = name.clone();
            Box::pin(async move {
                // The group's row first: a grant being made to it finishes
                // (and is removed below) or waits and then finds no group.
                tx.execute(
                    "SELECT 1 FROM user_groups WHERE name = $1 FOR UPDATE",
                    &[&name],
                )
                .await?;
                tx.execute(
                    "DELETE FROM policy_grants WHERE target_kind = 'group' AND target = $1",
                    &[&name],
                )
                .await?;
                Ok(tx
                    .execute("DELETE FROM user_groups WHERE name = $1", &[&name])
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn add_member(&self, group: &str, aor: &str) -> Result<()> {
        let (group, aor) = (group.to_owned(), aor.to_owned());
        self.write(|tx| {
            let (group, aor) = (group.clone(), aor.clone());
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO group_members (group_name, aor) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&group, &aor],
                )
                .await
                .map_err(|e| conflict(e.into(), || format!("no group {group:?} or no user {aor:?}")))?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_member(&self, group: &str, aor: &str) -> Result<bool> {
        let (group, aor) = (group.to_owned(), aor.to_owned());
        self.write(|tx| {
            let (group, aor) = (group.clone(), aor.clone());
            Box::pin(async move {
                Ok(tx
                    .execute(
                        "DELETE FROM group_members WHERE group_name = $1 AND aor = $2",
                        &[&group, &aor],
                    )
                    .await?
                    == 1)
            })
        })
        .await
    }

    async fn set_site(&self, aor: &str, site: Option<String>) -> Result<()> {
        let aor = aor.to_owned();
        self.write(|tx| {
            let (aor, site) = (aor.clone(), site.clone());
            Box::pin(async move {
                let done = match &site {
                    Some(s) => {
                        tx.execute(
                            "INSERT INTO user_sites (aor, site) VALUES ($1, $2)
                             ON CONFLICT (aor) DO UPDATE SET site = excluded.site",
                            &[&aor, s],
                        )
                        .await
                    }
                    None => {
                        tx.execute("DELETE FROM user_sites WHERE aor = $1", &[&aor])
                            .await
                    }
                };
                done.map_err(|e| conflict(e.into(), || format!("no user {aor:?}")))?;
                Ok(())
            })
        })
        .await
    }
}
