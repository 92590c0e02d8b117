//! Schema migrations, applied in order; `PRAGMA user_version` records how far a
//! database has come. Each step runs in one transaction.

use rusqlite::Connection;

use super::db;
use store::{Result, StoreError};

const STEPS: &[&str] = &[
    // 1: users, bindings, pending messages.
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        aor TEXT NOT NULL UNIQUE,
        display_name TEXT,
        secret BLOB NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE bindings (
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        binding_key TEXT NOT NULL,
        contact TEXT NOT NULL,
        q INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        user_agent TEXT,
        PRIMARY KEY (aor, binding_key)
     );
     CREATE INDEX bindings_expiry ON bindings(expires_at);
     CREATE TABLE pending_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recipient TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        sender TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX pending_by_recipient ON pending_messages(recipient, id);
     CREATE INDEX pending_expiry ON pending_messages(expires_at);",
    // 2: a counter a running server polls to notice user changes made by the CLI.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO meta (name, value) VALUES ('users_version', 0);
     CREATE TRIGGER users_ins AFTER INSERT ON users BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'users_version'; END;
     CREATE TRIGGER users_upd AFTER UPDATE ON users BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'users_version'; END;
     CREATE TRIGGER users_del AFTER DELETE ON users BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'users_version'; END;",
    // 3: policy documents, grants, user groups and sites, and a counter that
    // moves on every change to them (the server rebuilds its snapshot).
    "CREATE TABLE user_groups (
        name TEXT PRIMARY KEY,
        priority INTEGER NOT NULL CHECK (priority >= 0),
        description TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE group_members (
        group_name TEXT NOT NULL REFERENCES user_groups(name) ON DELETE CASCADE,
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        PRIMARY KEY (group_name, aor)
     );
     CREATE INDEX group_members_by_aor ON group_members(aor);
     CREATE TABLE user_sites (
        aor TEXT PRIMARY KEY REFERENCES users(aor) ON DELETE CASCADE,
        site TEXT NOT NULL
     );
     CREATE TABLE policies (
        kind TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('global', 'site', 'named')),
        name TEXT NOT NULL,
        fields TEXT NOT NULL,
        PRIMARY KEY (kind, scope, name),
        CHECK ((scope = 'global') = (name = ''))
     );
     CREATE TABLE policy_grants (
        kind TEXT NOT NULL,
        policy_scope TEXT NOT NULL DEFAULT 'named' CHECK (policy_scope = 'named'),
        policy TEXT NOT NULL,
        target_kind TEXT NOT NULL CHECK (target_kind IN ('user', 'group')),
        target TEXT NOT NULL,
        PRIMARY KEY (kind, target_kind, target),
        FOREIGN KEY (kind, policy_scope, policy) REFERENCES policies(kind, scope, name) ON DELETE RESTRICT
     );
     INSERT INTO meta (name, value) VALUES ('policy_version', 0);
     CREATE TRIGGER user_groups_ins AFTER INSERT ON user_groups BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER user_groups_upd AFTER UPDATE ON user_groups BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER user_groups_del AFTER DELETE ON user_groups BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER group_members_ins AFTER INSERT ON group_members BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER group_members_del AFTER DELETE ON group_members BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER user_sites_ins AFTER INSERT ON user_sites BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER user_sites_upd AFTER UPDATE ON user_sites BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER user_sites_del AFTER DELETE ON user_sites BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER policies_ins AFTER INSERT ON policies BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER policies_upd AFTER UPDATE ON policies BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER policies_del AFTER DELETE ON policies BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER policy_grants_ins AFTER INSERT ON policy_grants BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER policy_grants_upd AFTER UPDATE ON policy_grants BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;
     CREATE TRIGGER policy_grants_del AFTER DELETE ON policy_grants BEGIN UPDATE meta SET value = value + 1 WHERE name = 'policy_version'; END;",
    // 4: administrators (separate from SIP users), custom roles, bearer
    // tokens (hashes only), and the append-only, hash-chained audit log.
    "CREATE TABLE admins (
        name TEXT PRIMARY KEY,
        password TEXT NOT NULL,
        totp BLOB NOT NULL,
        totp_last_step INTEGER,
        role TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        failed INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE admin_roles (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        ops TEXT NOT NULL,
        site TEXT,
        user_group TEXT REFERENCES user_groups(name) ON DELETE RESTRICT
     );
     CREATE TABLE admin_tokens (
        id TEXT PRIMARY KEY,
        hash BLOB NOT NULL,
        admin TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
        name TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX admin_tokens_by_admin ON admin_tokens(admin);
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        before TEXT,
        after TEXT,
        mac BLOB NOT NULL
     );
     CREATE INDEX audit_by_at ON audit(at);
     CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, mac BLOB NOT NULL);
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 5: presence — published documents (RFC 3903), event subscriptions
    // (RFC 6665) with their dialogs, and server-stored contact lists.
    "CREATE TABLE presence_publications (
        etag TEXT PRIMARY KEY,
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        expires_at INTEGER NOT NULL,
        document TEXT NOT NULL
     );
     CREATE INDEX presence_publications_by_aor ON presence_publications(aor);
     CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY,
        event TEXT NOT NULL CHECK (event IN ('presence', 'presence.winfo')),
        watcher TEXT NOT NULL,
        resource TEXT NOT NULL,
        call_id TEXT NOT NULL,
        remote_tag TEXT NOT NULL,
        from_value TEXT NOT NULL,
        to_value TEXT NOT NULL,
        remote_target TEXT NOT NULL,
        route_set TEXT NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT,
        local_cseq INTEGER NOT NULL,
        remote_cseq INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX subscriptions_expiry ON subscriptions(expires_at);
     CREATE TABLE contact_groups (
        owner TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        name TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (owner, name)
     );
     CREATE TABLE contacts (
        owner TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        contact TEXT NOT NULL,
        relationship TEXT NOT NULL CHECK (relationship IN ('blocked', 'external', 'colleague', 'workgroup', 'personal')),
        display_name TEXT,
        groups TEXT NOT NULL DEFAULT '',
        added_at INTEGER NOT NULL,
        PRIMARY KEY (owner, contact)
     );
     CREATE INDEX contacts_by_contact ON contacts(contact);",
    // 6: users' sign-in sessions on the user API (hashes of the secrets
    // only); they end with the user, and the store ends them when the
    // password changes or the account is disabled.
    "CREATE TABLE user_sessions (
        id TEXT PRIMARY KEY,
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        hash BLOB NOT NULL,
        source TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX user_sessions_by_aor ON user_sessions(aor, created_at);
     CREATE INDEX user_sessions_expiry ON user_sessions(expires_at);",
    // 7: bindings clustered by their key (WITHOUT ROWID) and without an
    // index on the expiry: a refreshed registration then rewrites one page
    // of the table, not a table page and two index pages. Expired bindings
    // are removed by key (the registrar knows which expired) and by a scan
    // at start. Measured in bench/README.md.
    "CREATE TABLE bindings_v7 (
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        binding_key TEXT NOT NULL,
        contact TEXT NOT NULL,
        q INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        user_agent TEXT,
        PRIMARY KEY (aor, binding_key)
     ) WITHOUT ROWID;
     INSERT INTO bindings_v7 (aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent)
        SELECT aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent FROM bindings;
     DROP TABLE bindings;
     ALTER TABLE bindings_v7 RENAME TO bindings;",
    // 8: users' devices (their certificates; revoked ones stay listed
    // until they expire), users' TOTP second factor (sealed), and
    // single-use enrollment codes (hashes only).
    "CREATE TABLE devices (
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        serial TEXT NOT NULL,
        certificate TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER,
        revoked_reason TEXT,
        last_seen INTEGER,
        user_agent TEXT,
        PRIMARY KEY (aor, id)
     );
     CREATE TABLE totp (
        aor TEXT PRIMARY KEY REFERENCES users(aor) ON DELETE CASCADE,
        secret BLOB,
        pending BLOB,
        last_step INTEGER
     );
     ALTER TABLE user_sessions ADD COLUMN second_factor INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE enrollment_codes (
        hash BLOB PRIMARY KEY,
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );",
    // 9: client version policies become ordered rules (`PRODUCT [OP
    // VERSION] ACTION`): each blocked User-Agent prefix a `block` rule,
    // then each allowed one an `allow` rule, in their order (blocked ones
    // were checked first). An entry with a character a product name cannot
    // hold (`:`, or `*` before the end) becomes the prefix before it.
    "UPDATE policies SET fields = json_set(
        json_remove(fields, '$.blocked_user_agents', '$.allowed_user_agents'),
        '$.rules',
        json((SELECT json_group_array(rule) FROM (
            SELECT rule, min(ord) AS ord FROM (
                SELECT o * 100000 + k AS ord,
                       (CASE WHEN p = 0 THEN value ELSE substr(value, 1, p - 1) || '*' END)
                         || (CASE o WHEN 0 THEN ' block' ELSE ' allow' END) AS rule
                FROM (
                    SELECT o, k, value,
                           (CASE WHEN p1 = 0 THEN p2 WHEN p2 = 0 THEN p1 ELSE min(p1, p2) END) AS p
                    FROM (
                        SELECT 0 AS o, CAST(key AS INTEGER) AS k, value,
                               instr(value, ':') AS p1,
                               instr(substr(value, 1, length(value) - 1), '*') AS p2
                        FROM json_each(policies.fields, '$.blocked_user_agents')
                        UNION ALL
                        SELECT 1, CAST(key AS INTEGER), value,
                               instr(value, ':'),
                               instr(substr(value, 1, length(value) - 1), '*')
                        FROM json_each(policies.fields, '$.allowed_user_agents')
                    )
                )
            ) GROUP BY rule ORDER BY ord
        )))
     )
     WHERE kind = 'client_version'
       AND (json_type(fields, '$.blocked_user_agents') IS NOT NULL
            OR json_type(fields, '$.allowed_user_agents') IS NOT NULL);",
    // 10: files uploaded for transfer (the bytes live in the data
    // directory, not here) and who may fetch each. Quotas sum sizes by
    // owner over time, hence the index.
    "CREATE TABLE files (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        kind TEXT NOT NULL,
        inner TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        deleted_at INTEGER
     );
     CREATE INDEX files_by_owner ON files(owner, created_at);
     CREATE INDEX files_expiry ON files(expires_at) WHERE deleted_at IS NULL;
     CREATE TABLE file_grants (
        file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        recipient TEXT NOT NULL,
        PRIMARY KEY (file_id, recipient)
     ) WITHOUT ROWID;",
    // 11: messages' own identifiers (IMDN Message-ID), kept for as long
    // as a stored message lives, so a retried MESSAGE is stored once.
    "ALTER TABLE pending_messages ADD COLUMN message_id TEXT;
     CREATE TABLE message_ids (
        recipient TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        pending_id INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (recipient, sender, message_id)
     ) WITHOUT ROWID;
     CREATE INDEX message_ids_expiry ON message_ids(expires_at);",
    // 12: the sign-in lockout filter's state, so that a restart forgives
    // no guesser. Accounts need not exist (guesses at names that do not
    // are counted too), hence no reference to users.
    "CREATE TABLE lockouts (
        kind TEXT NOT NULL CHECK (kind IN ('pair', 'account', 'familiar')),
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        window_start INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        lockouts INTEGER NOT NULL,
        locked_until INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (kind, account, source)
     ) WITHOUT ROWID;",
    // 13: the IM archive (sealed records; no reference to users: a removed
    // user's archive stays until retention or the hold says) and legal
    // holds.
    "CREATE TABLE archive (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        federated INTEGER NOT NULL,
        result TEXT NOT NULL,
        key_id TEXT NOT NULL,
        sealed BLOB NOT NULL
     );
     CREATE INDEX archive_by_owner ON archive(owner, at_ms);
     CREATE INDEX archive_by_key ON archive(key_id);
     CREATE TABLE archive_holds (
        aor TEXT PRIMARY KEY,
        since INTEGER NOT NULL,
        by_actor TEXT NOT NULL,
        reason TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 14: call detail records (no reference to users: a removed user's
    // calls stay until retention).
    "CREATE TABLE cdrs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        caller_device TEXT NOT NULL,
        callee_device TEXT NOT NULL,
        federated INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        answered_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        status INTEGER NOT NULL,
        ended_by TEXT NOT NULL
     );
     CREATE INDEX cdrs_by_caller ON cdrs(caller, started_ms);
     CREATE INDEX cdrs_by_callee ON cdrs(callee, started_ms);
     CREATE INDEX cdrs_by_end ON cdrs(ended_ms);",
    // 15: usage records of other kinds than calls; files' SHA-256.
    "ALTER TABLE cdrs ADD COLUMN kind TEXT NOT NULL DEFAULT 'call';
     ALTER TABLE cdrs ADD COLUMN partner TEXT NOT NULL DEFAULT '';
     ALTER TABLE cdrs ADD COLUMN media_relayed INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE cdrs ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE cdrs ADD COLUMN detail TEXT NOT NULL DEFAULT '';
     ALTER TABLE files ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';",
    // 16: each usage record says until when it is kept (its parties'
    // policies decide; 0: written before, stamped by the server at its
    // next retention run — store::Cdrs::cdr_stamp_unstamped).
    "ALTER TABLE cdrs ADD COLUMN keep_until_ms INTEGER NOT NULL DEFAULT 0;
     DROP INDEX cdrs_by_end;
     CREATE INDEX cdrs_by_keep ON cdrs(keep_until_ms);",
    // 17: which key each archive key name is, as the first node to use it
    // recorded (a fingerprint, never the key).
    "CREATE TABLE archive_key_checks (
        id TEXT PRIMARY KEY,
        fingerprint BLOB NOT NULL
     ) WITHOUT ROWID;",
    // 18: the paired edges (were files in the data directory, edges/,
    // which the server imports at start). An unpaired one stays, its
    // unpaired_at set, until its certificate expires: an old record
    // imported again never brings it back.
    "CREATE TABLE edges (
        fingerprint TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        internal TEXT NOT NULL,
        external_names TEXT NOT NULL,
        paired_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        keys_check TEXT NOT NULL,
        unpaired_at INTEGER
     ) WITHOUT ROWID;
     CREATE UNIQUE INDEX edges_paired ON edges(name) WHERE unpaired_at IS NULL;",
];

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    let version = usize::try_from(version).map_err(|_| {
        StoreError::Setup(format!(
            "the database reports schema version {version}, which is not valid"
        ))
    })?;
    if version > STEPS.len() {
        return Err(StoreError::Setup(format!(
            "the database is at schema version {version}, newer than this build knows ({}); run a newer Parapet",
            STEPS.len()
        )));
    }
    for (i, sql) in STEPS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, STEPS.len());
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(migrate(&mut c), Err(StoreError::Setup(m)) if m.contains("newer")));
    }

    #[test]
    fn schema_9_turns_client_version_lists_into_ordered_rules() {
        let mut c = Connection::open_in_memory().unwrap();
        for sql in &STEPS[..8] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 8).unwrap();
        c.execute_batch(
            r#"INSERT INTO policies (kind, scope, name, fields) VALUES
                ('client_version', 'global', '', '{"enabled":true,"blocked_user_agents":["sipp*","old:phone","x*y*","oldphone"],"allowed_user_agents":["baresip*"],"default_action":"block"}'),
                ('client_version', 'named', 'open', '{"default_action":"allow"}'),
                ('privacy', 'global', '', '{"blocked_user_agents":["kept"]}');"#,
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let get = |kind: &str, name: &str| -> String {
            c.query_row(
                "SELECT fields FROM policies WHERE kind = ?1 AND name = ?2",
                [kind, name],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(
            get("client_version", ""),
            r#"{"enabled":true,"default_action":"block","rules":["sipp* block","old* block","x* block","oldphone block","baresip* allow"]}"#
        );
        assert_eq!(
            get("client_version", "open"),
            r#"{"default_action":"allow"}"#
        );
        assert_eq!(get("privacy", ""), r#"{"blocked_user_agents":["kept"]}"#);
    }

    #[test]
    fn schema_7_keeps_the_bindings_of_schema_6() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        for sql in &STEPS[..6] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        c.execute_batch(
            "INSERT INTO users (aor, secret, enabled, created_at) VALUES ('sip:a@example.com', x'00', 1, 0);
             INSERT INTO bindings (aor, binding_key, contact, q, expires_at, call_id, cseq, path, source, user_agent)
                VALUES ('sip:a@example.com', 'k', '<sip:a@192.0.2.1>', 1000, 99, 'c', 2, '', 'udp:192.0.2.1:5060', 'ua');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let (key, expires, ua): (String, i64, String) = c
            .query_row(
                "SELECT binding_key, expires_at, user_agent FROM bindings WHERE aor = 'sip:a@example.com'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((key.as_str(), expires, ua.as_str()), ("k", 99, "ua"));
        let indexes: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bindings'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "clustered by its key, no expiry index");
        c.execute("DELETE FROM users WHERE aor = 'sip:a@example.com'", [])
            .unwrap();
        let left: i64 = c
            .query_row("SELECT count(*) FROM bindings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "the cascade from users still holds");
    }
}
