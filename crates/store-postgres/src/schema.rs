//! Schema migrations on PostgreSQL, applied in order; `parapet_schema`
//! records how far the database has come. Each step runs in one
//! transaction holding an advisory lock, so nodes starting together
//! migrate once.
//!
//! The tables and columns are SQLite's (same names, same text encodings of
//! lists), in PostgreSQL's types: a deployment moves from one to the other
//! table by table.

use store::{Result, StoreError};

/// The advisory lock key that serialises migrations ("parapet" in ASCII).
const LOCK: i64 = 0x0070_6172_6170_6574;

const STEPS: &[&str] = &[
    // 1: everything SQLite's schema 10 holds.
    r#"
    CREATE TABLE meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO meta (name, value) VALUES ('users_version', 0), ('policy_version', 0), ('audit_lock', 0);
    CREATE FUNCTION parapet_bump() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE meta SET value = value + 1 WHERE name = TG_ARGV[0];
        RETURN NULL;
    END $$;
    CREATE FUNCTION parapet_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only';
    END $$;

    CREATE TABLE users (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        aor TEXT NOT NULL UNIQUE,
        display_name TEXT,
        secret BYTEA NOT NULL,
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        created_at BIGINT NOT NULL
    );
    CREATE TRIGGER users_version AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_bump('users_version');

    CREATE TABLE bindings (
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        binding_key TEXT NOT NULL,
        contact TEXT NOT NULL,
        q INTEGER NOT NULL,
        expires_at BIGINT NOT NULL,
        call_id TEXT NOT NULL,
        cseq BIGINT NOT NULL,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        user_agent TEXT,
        PRIMARY KEY (aor, binding_key)
    );
    CREATE TABLE pending_messages (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        recipient TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        sender TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body BYTEA NOT NULL,
        received_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX pending_by_recipient ON pending_messages(recipient, id);
    CREATE INDEX pending_expiry ON pending_messages(expires_at);

    CREATE TABLE user_groups (
        name TEXT PRIMARY KEY,
        priority BIGINT NOT NULL CHECK (priority >= 0),
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
    CREATE TRIGGER user_groups_version AFTER INSERT OR UPDATE OR DELETE ON user_groups
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_bump('policy_version');
    CREATE TRIGGER group_members_version AFTER INSERT OR UPDATE OR DELETE ON group_members
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_bump('policy_version');
    CREATE TRIGGER user_sites_version AFTER INSERT OR UPDATE OR DELETE ON user_sites
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_bump('policy_version');
    CREATE TRIGGER policies_version AFTER INSERT OR UPDATE OR DELETE ON policies
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_bump('policy_version');
    CREATE TRIGGER policy_grants_version AFTER INSERT OR UPDATE OR DELETE ON policy_grants
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_bump('policy_version');

    CREATE TABLE admins (
        name TEXT PRIMARY KEY,
        password TEXT NOT NULL,
        totp BYTEA NOT NULL,
        totp_last_step BIGINT,
        role TEXT NOT NULL,
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        failed BIGINT NOT NULL DEFAULT 0,
        locked_until BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL
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
        hash BYTEA NOT NULL,
        admin TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
        name TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX admin_tokens_by_admin ON admin_tokens(admin);
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        before TEXT,
        after TEXT,
        mac BYTEA NOT NULL
    );
    CREATE INDEX audit_by_at ON audit(at);
    CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, mac BYTEA NOT NULL);
    CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION parapet_append_only();
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_append_only();

    CREATE TABLE presence_publications (
        etag TEXT PRIMARY KEY,
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        expires_at BIGINT NOT NULL,
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
        local_cseq BIGINT NOT NULL,
        remote_cseq BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX subscriptions_expiry ON subscriptions(expires_at);
    CREATE INDEX subscriptions_by_watcher ON subscriptions(watcher);
    CREATE TABLE contact_groups (
        owner TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        name TEXT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (owner, name)
    );
    CREATE TABLE contacts (
        owner TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        contact TEXT NOT NULL,
        relationship TEXT NOT NULL CHECK (relationship IN ('blocked', 'external', 'colleague', 'workgroup', 'personal')),
        display_name TEXT,
        groups TEXT NOT NULL DEFAULT '',
        added_at BIGINT NOT NULL,
        PRIMARY KEY (owner, contact)
    );
    CREATE INDEX contacts_by_contact ON contacts(contact);

    CREATE TABLE user_sessions (
        id TEXT PRIMARY KEY,
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        hash BYTEA NOT NULL,
        source TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        second_factor BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX user_sessions_by_aor ON user_sessions(aor, created_at);
    CREATE INDEX user_sessions_expiry ON user_sessions(expires_at);

    CREATE TABLE devices (
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        serial TEXT NOT NULL,
        certificate TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT,
        revoked_reason TEXT,
        last_seen BIGINT,
        user_agent TEXT,
        PRIMARY KEY (aor, id)
    );
    CREATE TABLE totp (
        aor TEXT PRIMARY KEY REFERENCES users(aor) ON DELETE CASCADE,
        secret BYTEA,
        pending BYTEA,
        last_step BIGINT
    );
    CREATE TABLE enrollment_codes (
        hash BYTEA PRIMARY KEY,
        aor TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );

    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        kind TEXT NOT NULL,
        "inner" TEXT NOT NULL,
        size BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        deleted_at BIGINT
    );
    CREATE INDEX files_by_owner ON files(owner, created_at);
    CREATE INDEX files_expiry ON files(expires_at) WHERE deleted_at IS NULL;
    CREATE TABLE file_grants (
        file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        recipient TEXT NOT NULL,
        PRIMARY KEY (file_id, recipient)
    );
    "#,
    // 2: messages' own identifiers (IMDN Message-ID), kept for as long as
    // a stored message lives, so a retried MESSAGE is stored once.
    r#"
    ALTER TABLE pending_messages ADD COLUMN message_id TEXT;
    CREATE TABLE message_ids (
        recipient TEXT NOT NULL REFERENCES users(aor) ON DELETE CASCADE,
        sender TEXT NOT NULL,
        message_id TEXT NOT NULL,
        pending_id BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (recipient, sender, message_id)
    );
    CREATE INDEX message_ids_expiry ON message_ids(expires_at);
    "#,
    // 3: the change log. Every row change to shared state appends (table,
    // key) in the same transaction, with the transaction's id: a node that
    // follows the log by transaction id (changes::Feed) misses nothing,
    // however commits interleave. A statement-level NOTIFY wakes
    // followers (a hint only: they read the log, never the payload).
    r#"
    CREATE TABLE changes (
        pos BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        at BIGINT NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    );
    CREATE INDEX changes_by_xid ON changes (xid);
    CREATE INDEX changes_by_at ON changes (at);
    CREATE FUNCTION parapet_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO changes (kind, key) VALUES (
            TG_TABLE_NAME,
            COALESCE(to_jsonb(NEW) ->> TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[0], ''));
        RETURN NULL;
    END $$;
    CREATE FUNCTION parapet_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('parapet_changes', '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER changes_notify AFTER INSERT ON changes
        FOR EACH STATEMENT EXECUTE FUNCTION parapet_changes_notify();
    CREATE TRIGGER users_change AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION parapet_change('aor');
    CREATE TRIGGER bindings_change AFTER INSERT OR UPDATE OR DELETE ON bindings
        FOR EACH ROW EXECUTE FUNCTION parapet_change('aor');
    CREATE TRIGGER pending_messages_change AFTER INSERT OR DELETE ON pending_messages
        FOR EACH ROW EXECUTE FUNCTION parapet_change('recipient');
    CREATE TRIGGER presence_publications_change AFTER INSERT OR UPDATE OR DELETE ON presence_publications
        FOR EACH ROW EXECUTE FUNCTION parapet_change('aor');
    CREATE TRIGGER subscriptions_change AFTER INSERT OR UPDATE OR DELETE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION parapet_change('id');
    CREATE TRIGGER contacts_change AFTER INSERT OR UPDATE OR DELETE ON contacts
        FOR EACH ROW EXECUTE FUNCTION parapet_change('owner');
    CREATE TRIGGER contact_groups_change AFTER INSERT OR UPDATE OR DELETE ON contact_groups
        FOR EACH ROW EXECUTE FUNCTION parapet_change('owner');
    CREATE TRIGGER user_sessions_change AFTER INSERT OR UPDATE OR DELETE ON user_sessions
        FOR EACH ROW EXECUTE FUNCTION parapet_change('aor');
    CREATE TRIGGER devices_change AFTER INSERT OR UPDATE OR DELETE ON devices
        FOR EACH ROW EXECUTE FUNCTION parapet_change('aor');
    CREATE TRIGGER policies_change AFTER INSERT OR UPDATE OR DELETE ON policies
        FOR EACH ROW EXECUTE FUNCTION parapet_change('kind');
    CREATE TRIGGER policy_grants_change AFTER INSERT OR UPDATE OR DELETE ON policy_grants
        FOR EACH ROW EXECUTE FUNCTION parapet_change('target');
    CREATE TRIGGER user_groups_change AFTER INSERT OR UPDATE OR DELETE ON user_groups
        FOR EACH ROW EXECUTE FUNCTION parapet_change('name');
    CREATE TRIGGER group_members_change AFTER INSERT OR UPDATE OR DELETE ON group_members
        FOR EACH ROW EXECUTE FUNCTION parapet_change('aor');
    CREATE TRIGGER user_sites_change AFTER INSERT OR UPDATE OR DELETE ON user_sites
        FOR EACH ROW EXECUTE FUNCTION parapet_change('aor');
    "#,
    // 4: the nodes serving from the database, their leases and epochs
    // (`nodes`). Not in the change log: nodes read it directly.
    r#"
    CREATE SEQUENCE node_epochs;
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        epoch BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('serving', 'left', 'dead')),
        address TEXT NOT NULL DEFAULT '',
        started_at TIMESTAMPTZ NOT NULL,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL,
        -- What its caches held at its last heartbeat.
        policy_version BIGINT NOT NULL DEFAULT 0,
        users_version BIGINT NOT NULL DEFAULT 0
    );
    -- Called first in every write transaction of a node: holds the node's
    -- epoch lock (shared) until the transaction ends, then checks that the
    -- node still serves under that epoch. Declaring a node dead takes the
    -- same lock exclusively, so it waits for the writes under way and
    -- every later one fails here.
    CREATE FUNCTION parapet_fence(node TEXT, want BIGINT) RETURNS void
        LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        have BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(1885434480, hashtext(node));
        SELECT epoch INTO have FROM nodes WHERE id = node AND state = 'serving';
        IF have IS DISTINCT FROM want THEN
            RAISE EXCEPTION 'node % no longer serves under epoch % (declared dead, or replaced)', node, want
                USING ERRCODE = 'PR001';
        END IF;
    END $$;
    "#,
    // 5: the sign-in lockout filter's state (as SQLite's schema 12).
    r#"
    CREATE TABLE lockouts (
        kind TEXT NOT NULL CHECK (kind IN ('pair', 'account', 'familiar')),
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        failures BIGINT NOT NULL,
        lockouts BIGINT NOT NULL,
        locked_until BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        PRIMARY KEY (kind, account, source)
    );
    "#,
    // 6: the IM archive and legal holds (as SQLite's schema 13). Not in the
    // change log: no node caches them.
    r#"
    CREATE TABLE archive (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        owner TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        federated BOOLEAN NOT NULL,
        result TEXT NOT NULL,
        key_id TEXT NOT NULL,
        sealed BYTEA NOT NULL
    );
    CREATE INDEX archive_by_owner ON archive (owner, at_ms);
    CREATE INDEX archive_by_key ON archive (key_id);
    CREATE TABLE archive_holds (
        aor TEXT PRIMARY KEY,
        since BIGINT NOT NULL,
        by_actor TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    "#,
    // 7: call detail records (as SQLite's schema 14).
    r#"
    CREATE TABLE cdrs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        call_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        caller_device TEXT NOT NULL,
        callee_device TEXT NOT NULL,
        federated BOOLEAN NOT NULL,
        started_ms BIGINT NOT NULL,
        answered_ms BIGINT NOT NULL,
        ended_ms BIGINT NOT NULL,
        status INTEGER NOT NULL,
        ended_by TEXT NOT NULL
    );
    CREATE INDEX cdrs_by_caller ON cdrs (caller, started_ms);
    CREATE INDEX cdrs_by_callee ON cdrs (callee, started_ms);
    CREATE INDEX cdrs_by_end ON cdrs (ended_ms);
    "#,
    // 8: usage records of other kinds than calls; files' SHA-256 (as
    // SQLite's schema 15).
    r#"
    ALTER TABLE cdrs ADD COLUMN kind TEXT NOT NULL DEFAULT 'call';
    ALTER TABLE cdrs ADD COLUMN partner TEXT NOT NULL DEFAULT '';
    ALTER TABLE cdrs ADD COLUMN media_relayed BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE cdrs ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cdrs ADD COLUMN detail TEXT NOT NULL DEFAULT '';
    ALTER TABLE files ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
    "#,
    // 9: each usage record says until when it is kept (as SQLite's
    // schema 16).
    r#"
    ALTER TABLE cdrs ADD COLUMN keep_until_ms BIGINT NOT NULL DEFAULT 0;
    DROP INDEX cdrs_by_end;
    CREATE INDEX cdrs_by_keep ON cdrs (keep_until_ms);
    "#,
    // 10: which key each archive key name is (as SQLite's schema 17).
    r#"
    CREATE TABLE archive_key_checks (
        id TEXT PRIMARY KEY,
        fingerprint BYTEA NOT NULL
    );
    "#,
    // 11: several nodes serving at once. Each binding names the node that
    // holds its client's flow (the others reach the client through it),
    // each subscription the node that sends its NOTIFYs,
    // and each change names the node that made it (set by the fence for
    // the rest of the transaction), so a node follows only the others'.
    r#"
    ALTER TABLE bindings ADD COLUMN node TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscriptions ADD COLUMN node TEXT NOT NULL DEFAULT '';
    ALTER TABLE changes ADD COLUMN node TEXT NOT NULL DEFAULT '';
    CREATE OR REPLACE FUNCTION parapet_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO changes (kind, key, node) VALUES (
            TG_TABLE_NAME,
            COALESCE(to_jsonb(NEW) ->> TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[0], ''),
            COALESCE(current_setting('parapet.node', true), ''));
        RETURN NULL;
    END $$;
    CREATE OR REPLACE FUNCTION parapet_fence(node TEXT, want BIGINT) RETURNS void
        LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        have BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(1885434480, hashtext(node));
        SELECT epoch INTO have FROM nodes WHERE id = node AND state = 'serving';
        IF have IS DISTINCT FROM want THEN
            RAISE EXCEPTION 'node % no longer serves under epoch % (declared dead, or replaced)', node, want
                USING ERRCODE = 'PR001';
        END IF;
        PERFORM set_config('parapet.node', node, true);
    END $$;
    -- The sign-in lockout state is followed too: failures counted on one
    -- node count on all.
    CREATE TRIGGER lockouts_change AFTER INSERT OR UPDATE OR DELETE ON lockouts
        FOR EACH ROW EXECUTE FUNCTION parapet_change('account');
    "#,
    // 12: the wake-up names the node whose change it is, so that a node
    // is not woken by its own writes (still a hint: the log decides).
    r#"
    CREATE OR REPLACE FUNCTION parapet_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('parapet_changes', COALESCE(current_setting('parapet.node', true), ''));
        RETURN NULL;
    END $$;
    "#,
    // 13: how far each node has read the change log, with its heartbeat
    // (`parapet admin status`).
    r#"
    ALTER TABLE nodes ADD COLUMN applied_change BIGINT NOT NULL DEFAULT 0;
    "#,
    // 14: the paired edges (as SQLite's schema 18), in the change log so
    // every node of a pool knows them.
    r#"
    CREATE TABLE edges (
        fingerprint TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        internal TEXT NOT NULL,
        external_names TEXT NOT NULL,
        paired_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        keys_check TEXT NOT NULL,
        unpaired_at BIGINT
    );
    CREATE UNIQUE INDEX edges_paired ON edges(name) WHERE unpaired_at IS NULL;
    CREATE TRIGGER edges_change AFTER INSERT OR UPDATE OR DELETE ON edges
        FOR EACH ROW EXECUTE FUNCTION parapet_change('name');
    "#,
    // 15: lockout rows by account: a node reads again the accounts
    // another node changed (the primary key leads with the kind, so that
    // read was the whole table).
    r#"
    CREATE INDEX lockouts_by_account ON lockouts (account);
    "#,
    // 16: in the standby mode (one node serving at a time) nothing
    // follows the change log — a node taking over loads every table at
    // its start —, so a standby-mode node's writes append nothing to it:
    // no change rows, no wake-up. (Measured with the register_cost
    // example: a quarter of the database's CPU for a registration written
    // alone, about half for grouped ones.) Each node's row records its
    // mode; the fence reads it and tells the change trigger, so writes
    // by a process that joined no pool, and by an active node, are logged
    // as before.
    r#"
    ALTER TABLE nodes ADD COLUMN active BOOLEAN NOT NULL DEFAULT true;
    CREATE OR REPLACE FUNCTION parapet_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('parapet.unfollowed', true) = 'on' THEN
            RETURN NULL;
        END IF;
        INSERT INTO changes (kind, key, node) VALUES (
            TG_TABLE_NAME,
            COALESCE(to_jsonb(NEW) ->> TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[0], ''),
            COALESCE(current_setting('parapet.node', true), ''));
        RETURN NULL;
    END $$;
    CREATE OR REPLACE FUNCTION parapet_fence(node TEXT, want BIGINT) RETURNS void
        LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        have BIGINT;
        followed BOOLEAN;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(1885434480, hashtext(node));
        SELECT epoch, active INTO have, followed FROM nodes WHERE id = node AND state = 'serving';
        IF have IS DISTINCT FROM want THEN
            RAISE EXCEPTION 'node % no longer serves under epoch % (declared dead, or replaced)', node, want
                USING ERRCODE = 'PR001';
        END IF;
        PERFORM set_config('parapet.node', node, true);
        PERFORM set_config('parapet.unfollowed', CASE WHEN followed THEN 'off' ELSE 'on' END, true);
    END $$;
    "#,
];

/// Brings the database to this build's schema; refuses a newer one.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    let setup = |what: &str, e: tokio_postgres::Error| {
        StoreError::Setup(format!(
            "database migration ({what}): {}",
            crate::describe(&e)
        ))
    };
    let tx = client.transaction().await.map_err(|e| setup("begin", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(|e| setup("lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS parapet_schema (
            id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
         INSERT INTO parapet_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .await
    .map_err(|e| setup("version table", e))?;
    let version: i32 = tx
        .query_one("SELECT version FROM parapet_schema WHERE id = 1", &[])
        .await
        .map_err(|e| setup("version", e))?
        .try_get(0)
        .map_err(|e| setup("version", e))?;
    let known = STEPS.len();
    let at = usize::try_from(version).map_err(|_| {
        StoreError::Setup(format!(
            "the database reports schema version {version}, which is not valid"
        ))
    })?;
    if at > known {
        return Err(StoreError::Setup(format!(
            "the database is at schema version {at}, newer than this build knows ({known}); run a newer Parapet"
        )));
    }
    for (i, sql) in STEPS.iter().enumerate().skip(at) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| setup(&format!("step {}", i + 1), e))?;
        let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE parapet_schema SET version = $1 WHERE id = 1", &[&v])
            .await
            .map_err(|e| setup("version", e))?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    tx.commit().await.map_err(|e| setup("commit", e))
}

/// This build's schema version (for `parapet admin status` and tests).
pub fn version() -> usize {
    STEPS.len()
}
