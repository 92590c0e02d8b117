//! The routes, with their request schemas (one function per area).

use serde_json::{json, Map, Value};

use super::schema::{
    contact_address, contact_group_name, decision_body, entry_body, line, name, nullable, obj, s,
    Facts,
};
use super::{path_param, query, Doc};

/// Sign-in, the caller, status, security view and lockouts.
pub(super) fn session_and_status(d: &mut Doc, f: &Facts<'_>) {
    d.op(
        "post",
        "/v1/session",
        "Sign in with password and TOTP code; returns a session token",
        "",
        vec![],
        Some(obj(
            &["name", "password", "code"],
            json!({ "name": s(), "password": s(), "code": s() }),
        )),
        201,
    );
    d.op(
        "delete",
        "/v1/session",
        "Sign out (revokes the token used)",
        "",
        vec![],
        None,
        204,
    );
    d.op(
        "get",
        "/v1/me",
        "The caller's administrator, role and operations",
        "",
        vec![],
        None,
        200,
    );
    d.op(
        "put",
        "/v1/me/password",
        "Change one's own password",
        "",
        vec![],
        Some(obj(
            &["current", "new"],
            json!({ "current": s(), "new": f.password(12) }),
        )),
        204,
    );
    d.op(
        "get",
        "/v1/status",
        "Server status and warnings",
        "status.read",
        vec![],
        None,
        200,
    );
    d.op("get", "/v1/security", "Every security-relevant setting: current, recommended, why, the command that changes it, and whether it is a finding", "security.read", vec![], None, 200);
    d.op(
        "get",
        "/v1/dns-records",
        "The DNS records (NAPTR, SRV, A/AAAA, as zone-file lines) to publish so that clients and partners find this server",
        "status.read",
        vec![],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/lockouts",
        "Active sign-in lockouts",
        "lockouts.read",
        vec![],
        None,
        200,
    );
    // IPv6 sources are accepted too. The document says only ipv4: an anyOf of
    // the two formats sends schemathesis 4.32 on CPython 3.11 into an
    // interpreter error ("AST constructor recursion depth mismatch").
    let ip =
        json!({ "type": "string", "format": "ipv4", "description": "an IPv4 or IPv6 address" });
    d.op(
        "post",
        "/v1/lockouts/clear",
        "Clear lockouts (all, or by account and/or source address)",
        "lockouts.clear",
        vec![query("account", f.uri()), query("source", ip)],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/federation/partners",
        "Partners this server has dealt with since it started: standing under the policy, counters, throttling and the watch list",
        "policies.read",
        vec![],
        None,
        200,
    );
    let domain = json!({
        "type": "string", "maxLength": 253,
        "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
    });
    d.op(
        "post",
        "/v1/federation/partners/clear",
        "Take a partner off the watch list (and forget its counts this hour)",
        "lockouts.clear",
        vec![super::required_query("domain", domain)],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/federation/explain",
        "How the federation policy would decide a request between a local user and a partner's (presence: from watches to), every rule in order",
        "policies.read",
        vec![
            super::required_query("from", f.uri()),
            super::required_query("to", f.uri()),
            super::required_query(
                "modality",
                json!({ "type": "string", "enum": ["im", "presence", "calls"] }),
            ),
        ],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/edges",
        "The pool's paired edges: name, internal listener, external names, certificate fingerprint",
        "edges.read",
        vec![],
        None,
        200,
    );
    let edge_name = json!({ "type": "string", "pattern": "^[a-z0-9-]{1,32}$" });
    // IPv6 ([addr]:port) is accepted too; the document says IPv4 only, as
    // for lockout sources.
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let port = "([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
    let hostport = json!({
        "type": "string",
        "pattern": format!("^{octet}(\\.{octet}){{3}}:{port}$"),
        "description": "IP:port",
    });
    let host = json!({
        "type": "string", "maxLength": 253,
        "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$",
        "description": "a host name or an IP address",
    });
    let pair = obj(
        &["name", "internal", "external_names"],
        json!({
            "name": edge_name,
            "internal": hostport,
            "external_names": { "type": "array", "items": host, "minItems": 1, "maxItems": 8 },
            "front_end": hostport,
        }),
    );
    d.op(
        "post",
        "/v1/edges",
        "Pair an edge: issues its internal and external certificates and returns its pairing file (which holds its keys and the pool's topology key: store it with mode 0600)",
        "edges.write",
        vec![],
        Some(pair),
        201,
    );
    d.op(
        "delete",
        "/v1/edges/{name}",
        "Unpair an edge: its certificate is no longer accepted",
        "edges.write",
        vec![path_param("name", edge_name)],
        None,
        200,
    );
}

/// SIP users, their effective policy, groups and members.
pub(super) fn users_and_groups(d: &mut Doc, f: &Facts<'_>) {
    let uri = || path_param("uri", f.uri());
    let nm = |n: &str| path_param(n, name());
    d.op(
        "get",
        "/v1/users",
        "SIP users (within the role's scope)",
        "users.read",
        vec![],
        None,
        200,
    );
    let new_user = obj(
        &["uri", "password"],
        json!({ "uri": f.uri(), "password": f.password(8), "display_name": nullable(line(128)) }),
    );
    d.op(
        "post",
        "/v1/users",
        "Add a SIP user",
        "users.write",
        vec![],
        Some(new_user.clone()),
        201,
    );
    d.op(
        "post",
        "/v1/users/import",
        "Import users, all or nothing",
        "users.write",
        vec![],
        Some(obj(
            &["users"],
            json!({ "users": { "type": "array", "maxItems": 100000, "items": new_user } }),
        )),
        201,
    );
    d.op(
        "get",
        "/v1/users/{uri}",
        "One SIP user",
        "users.read",
        vec![uri()],
        None,
        200,
    );
    d.op(
        "delete",
        "/v1/users/{uri}",
        "Remove a SIP user with their registrations and messages",
        "users.write",
        vec![uri()],
        None,
        204,
    );
    d.op(
        "put",
        "/v1/users/{uri}/password",
        "Set a SIP user's password",
        "users.write",
        vec![uri()],
        Some(obj(&["password"], json!({ "password": f.password(8) }))),
        204,
    );
    d.op(
        "put",
        "/v1/users/{uri}/enabled",
        "Enable or disable a SIP user",
        "users.write",
        vec![uri()],
        Some(obj(
            &["enabled"],
            json!({ "enabled": { "type": "boolean" } }),
        )),
        204,
    );
    d.op(
        "put",
        "/v1/users/{uri}/site",
        "Set a user's home site (null or absent: clear it)",
        "users.write",
        vec![uri()],
        Some(obj(&[], json!({ "site": nullable(name()) }))),
        204,
    );
    let kinds: Vec<&str> = policy::spec::kinds().iter().map(|k| k.name).collect();
    d.op(
        "get",
        "/v1/users/{uri}/effective",
        "The user's effective policy, each field with its origin",
        "users.read, policies.read",
        vec![
            uri(),
            query("kind", json!({ "type": "string", "enum": kinds })),
        ],
        None,
        200,
    );

    d.op(
        "get",
        "/v1/users/{uri}/devices",
        "The user's devices (certificates): id, name, issued, expires, last seen, user agent, revocation",
        "users.read",
        vec![uri()],
        None,
        200,
    );
    d.op(
        "delete",
        "/v1/users/{uri}/devices",
        "Revoke every device of the user; their connections close at once",
        "users.write",
        vec![uri()],
        None,
        200,
    );
    d.op(
        "delete",
        "/v1/users/{uri}/devices/{id}",
        "Revoke one device of the user; its connections close at once",
        "users.write",
        vec![
            uri(),
            path_param(
                "id",
                json!({ "type": "string", "pattern": "^[0-9a-f]{16}$" }),
            ),
        ],
        None,
        204,
    );
    d.op(
        "post",
        "/v1/users/{uri}/enrollment-codes",
        "A single-use code that lets the user enroll one device where policy allows managed devices only (shown once)",
        "users.write",
        vec![uri()],
        Some(obj(
            &[],
            json!({ "expires_secs": { "type": "integer", "minimum": 60, "maximum": 2_592_000, "nullable": true } }),
        )),
        201,
    );
    // No body at all is the default lifetime (the handler takes an empty
    // request), so the document says the body is optional.
    d.paths["/v1/users/{uri}/enrollment-codes"]["post"]["requestBody"]["required"] = json!(false);
    d.op(
        "delete",
        "/v1/users/{uri}/second-factor",
        "Remove the user's authenticator (TOTP), e.g. after a lost phone",
        "users.write",
        vec![uri()],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/users/{uri}/registrations",
        "The user's registered devices now: contact, transport, source address, how the server reaches each (its connection or its address), RFC 5626 instance, user agent, q and expiry",
        "users.read",
        vec![uri()],
        None,
        200,
    );

    let contact = || path_param("contact", contact_address());
    let group_name = contact_group_name();
    let group = || path_param("name", group_name.clone());
    d.op(
        "get",
        "/v1/users/{uri}/contacts",
        "The user's contact list, contact groups and presence watchers (active, pending or rejected)",
        "contacts.read",
        vec![uri()],
        None,
        200,
    );
    d.op(
        "put",
        "/v1/users/{uri}/contacts/{contact}",
        "Add or change a contact (relationship: blocked, external, colleague, workgroup, personal); adding a pending watcher approves them, adding them as blocked denies them",
        "contacts.write",
        vec![uri(), contact()],
        Some(entry_body()),
        200,
    );
    d.op(
        "delete",
        "/v1/users/{uri}/contacts/{contact}",
        "Remove a contact",
        "contacts.write",
        vec![uri(), contact()],
        None,
        204,
    );
    d.op(
        "put",
        "/v1/users/{uri}/watchers/{watcher}",
        "Decide on a watcher: approve (added to the contacts, at the given relationship or their current one, colleague or external for a new entry) or deny (blocked); the entry's name and groups stay",
        "contacts.write",
        vec![uri(), path_param("watcher", contact_address())],
        Some(decision_body()),
        200,
    );
    d.op(
        "put",
        "/v1/users/{uri}/contact-groups/{name}",
        "Create a contact group at the end of the user's list",
        "contacts.write",
        vec![uri(), group()],
        None,
        204,
    );
    d.op(
        "delete",
        "/v1/users/{uri}/contact-groups/{name}",
        "Remove a contact group (its contacts stay in the list)",
        "contacts.write",
        vec![uri(), group()],
        None,
        204,
    );
    d.op(
        "get",
        "/v1/groups",
        "User groups with their members",
        "groups.read",
        vec![],
        None,
        200,
    );
    d.op("put", "/v1/groups/{name}", "Create or update a group", "groups.write", vec![nm("name")], Some(obj(&[], json!({ "priority": { "type": "integer", "minimum": 0, "maximum": 1000000 }, "description": line(200) }))), 200);
    d.op(
        "delete",
        "/v1/groups/{name}",
        "Remove a group with its memberships and grants",
        "groups.write",
        vec![nm("name")],
        None,
        204,
    );
    d.op(
        "put",
        "/v1/groups/{name}/members/{uri}",
        "Add a member",
        "groups.write",
        vec![nm("name"), uri()],
        None,
        204,
    );
    d.op(
        "delete",
        "/v1/groups/{name}/members/{uri}",
        "Remove a member",
        "groups.write",
        vec![nm("name"), uri()],
        None,
        204,
    );
}

/// Policy kinds, documents and grants (one path per kind).
pub(super) fn policies(d: &mut Doc, f: &Facts<'_>) {
    d.op(
        "get",
        "/v1/policy-kinds",
        "Policy kinds with their fields, types, defaults and docs",
        "policies.read",
        vec![],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/policies",
        "Every policy document",
        "policies.read",
        vec![],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/grants",
        "Grants of named policies",
        "policies.read",
        vec![],
        None,
        200,
    );
    let scope = path_param(
        "scope",
        json!({ "type": "string", "pattern": "^(global|site:[a-z0-9._-]{1,64}|named:[a-z0-9._-]{1,64})$" }),
    );
    let target = path_param(
        "target",
        json!({ "type": "string", "pattern": format!("^(user:sip:[A-Za-z0-9_~-]{{1,64}}@{}|group:[a-z0-9._-]{{1,64}})$", f.escaped_domain()) }),
    );
    for k in policy::spec::kinds() {
        let props: Map<String, Value> = k
            .fields
            .iter()
            .map(|fs| (fs.name.to_string(), fs.ty.json_schema()))
            .collect();
        let names: Vec<&str> = k.fields.iter().map(|fs| fs.name).collect();
        let patch = obj(
            &[],
            json!({
                "set": { "type": "object", "properties": props, "additionalProperties": false },
                "unset": { "type": "array", "items": { "type": "string", "enum": names } },
            }),
        );
        let p = format!("/v1/policies/{}/{{scope}}", k.name);
        d.op(
            "patch",
            &p,
            &format!(
                "Set or unset fields of a {} document (scope: global, site:NAME, named:NAME)",
                k.name
            ),
            &format!("policies.write.{}", k.name),
            vec![scope.clone()],
            Some(patch),
            200,
        );
        d.op(
            "delete",
            &p,
            &format!("Remove a {} document", k.name),
            &format!("policies.write.{}", k.name),
            vec![scope.clone()],
            None,
            204,
        );
        let g = format!("/v1/grants/{}/{{target}}", k.name);
        d.op(
            "put",
            &g,
            &format!("Grant a named {} policy to user:URI or group:NAME", k.name),
            &format!("policies.grant.{}", k.name),
            vec![target.clone()],
            Some(obj(&["policy"], json!({ "policy": name() }))),
            200,
        );
        d.op(
            "delete",
            &g,
            &format!("Revoke a {} grant", k.name),
            &format!("policies.grant.{}", k.name),
            vec![target.clone()],
            None,
            204,
        );
    }
}

/// Operations, roles, administrators, tokens and the audit log.
pub(super) fn administration(d: &mut Doc, f: &Facts<'_>) {
    let nm = |n: &str| path_param(n, name());
    let ops = rbac::ops::all();
    d.op(
        "get",
        "/v1/operations",
        "The operation catalog",
        "roles.read",
        vec![],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/roles",
        "Predefined and custom roles",
        "roles.read",
        vec![],
        None,
        200,
    );
    let predefined: Vec<String> = rbac::predefined().into_iter().map(|r| r.name).collect();
    let role_name = path_param(
        "name",
        json!({ "allOf": [name(), { "not": { "enum": predefined } }] }),
    );
    let role_body = obj(
        &["operations"],
        json!({
            "description": line(200),
            "operations": { "type": "array", "minItems": 1, "items": { "type": "string", "enum": ops } },
            "site": nullable(name()),
            "group": nullable(name()),
        }),
    );
    d.op(
        "put",
        "/v1/roles/{name}",
        "Create or update a custom role",
        "roles.write",
        vec![role_name.clone()],
        Some(role_body),
        200,
    );
    d.op(
        "delete",
        "/v1/roles/{name}",
        "Remove a custom role",
        "roles.write",
        vec![role_name],
        None,
        204,
    );
    d.op(
        "get",
        "/v1/admins",
        "Administrators",
        "admins.read",
        vec![],
        None,
        200,
    );
    d.op(
        "post",
        "/v1/admins",
        "Create an administrator; returns the TOTP secret (and a generated password) once",
        "admins.write",
        vec![],
        Some(obj(
            &["name", "role"],
            json!({ "name": name(), "role": f.role(), "password": nullable(f.password(12)) }),
        )),
        201,
    );
    d.op("patch", "/v1/admins/{name}", "Change an administrator's role or state, or reset their password or TOTP", "admins.write", vec![nm("name")], Some(obj(&[], json!({ "role": nullable(f.role()), "enabled": nullable(json!({ "type": "boolean" })), "reset_password": { "type": "boolean" }, "reset_totp": { "type": "boolean" } }))), 200);
    d.op(
        "delete",
        "/v1/admins/{name}",
        "Remove an administrator and their tokens",
        "admins.write",
        vec![nm("name")],
        None,
        204,
    );
    d.op(
        "get",
        "/v1/tokens",
        "Live tokens (one's own; everyone's with admins.read)",
        "",
        vec![],
        None,
        200,
    );
    d.op("post", "/v1/tokens", "Create an API token (returned once)", "tokens.write", vec![], Some(obj(&["name", "expires_in_days"], json!({ "name": name(), "role": nullable(f.role()), "expires_in_days": { "type": "integer", "minimum": 1, "maximum": 366 } }))), 201);
    d.op(
        "delete",
        "/v1/tokens/{id}",
        "Revoke a token (others' need admins.write)",
        "",
        vec![path_param(
            "id",
            json!({ "type": "string", "pattern": "^[0-9a-f]{16}$" }),
        )],
        None,
        204,
    );
    d.op(
        "get",
        "/v1/audit",
        "Audit records, newest first",
        "audit.read",
        vec![
            query("actor", line(200)),
            query("object", line(200)),
            query("since", json!({ "type": "integer", "format": "int64" })),
            query("until", json!({ "type": "integer", "format": "int64" })),
            query(
                "limit",
                json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
            ),
        ],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/audit/verify",
        "Check the audit chain",
        "audit.read",
        vec![],
        None,
        200,
    );
}

/// The IM archive (search, export, legal holds) and call detail records.
pub(super) fn archive(d: &mut Doc, f: &Facts<'_>) {
    let seconds = json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": 253_402_300_799i64 });
    let filters = |extra: Vec<Value>| {
        let mut v = vec![
            query("user", f.uri()),
            query(
                "counterpart",
                json!({ "type": "string", "pattern": "^sip:[!-~]{1,252}$" }),
            ),
            query("since", seconds.clone()),
            query("until", seconds.clone()),
            query("text", nonempty(line(200))),
            query(
                "after",
                json!({ "type": "integer", "format": "int64", "minimum": 0 }),
            ),
        ];
        v.extend(extra);
        v
    };
    d.op(
        "get",
        "/v1/archive/messages",
        "Archived instant messages, oldest first (audited); next continues a search",
        "archive.read",
        filters(vec![query(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
        )]),
        None,
        200,
    );
    d.op(
        "get",
        "/v1/archive/export",
        "Every matching archived message, streamed as JSON lines or mbox (audited)",
        "archive.read",
        filters(vec![query(
            "format",
            json!({ "type": "string", "enum": ["jsonl", "mbox"] }),
        )]),
        None,
        200,
    );
    d.set_content(
        "get",
        "/v1/archive/export",
        json!({
            "application/jsonl": { "schema": { "type": "string" } },
            "application/mbox": { "schema": { "type": "string" } },
        }),
    );
    d.op(
        "get",
        "/v1/archive/files/{id}",
        "The content of a file an archived message offered, kept where the owner's archiving policy says file_content (audited); 410 when retention removed it",
        "archive.read",
        vec![path_param(
            "id",
            json!({ "type": "integer", "format": "int64", "minimum": 1 }),
        )],
        None,
        200,
    );
    d.set_content(
        "get",
        "/v1/archive/files/{id}",
        json!({ "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } }),
    );
    d.add_error("get", "/v1/archive/files/{id}", "410");
    d.op(
        "get",
        "/v1/cdrs",
        "Usage records (calls, IM conversations, files offered, sign-ins and sign-outs), oldest first (audited); next continues",
        "cdrs.read",
        vec![
            query("user", f.uri()),
            query(
                "kind",
                json!({ "type": "string", "enum": store::cdr::KINDS }),
            ),
            query("since", seconds.clone()),
            query("until", seconds.clone()),
            query(
                "after",
                json!({ "type": "integer", "format": "int64", "minimum": 0 }),
            ),
            query(
                "limit",
                json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
            ),
        ],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/traces",
        "SIP messages of a call (call_id) or of a user's calls (user), oldest first, or the newest; bodies only with traces.read_content (audited)",
        "traces.read",
        vec![
            query("call_id", json!({ "type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$" })),
            query("user", f.uri()),
            query("since", seconds.clone()),
            query("until", seconds.clone()),
            query(
                "limit",
                json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
            ),
        ],
        None,
        200,
    );
    d.op(
        "get",
        "/v1/archive/holds",
        "Users on legal hold",
        "archive.read",
        vec![],
        None,
        200,
    );
    d.op(
        "put",
        "/v1/archive/holds/{uri}",
        "Place a legal hold: the user's archived messages are kept past retention",
        "archive.hold",
        vec![path_param("uri", f.uri())],
        Some(obj(&["reason"], json!({ "reason": nonempty(line(500)) }))),
        200,
    );
    d.op(
        "delete",
        "/v1/archive/holds/{uri}",
        "Release a legal hold",
        "archive.hold",
        vec![path_param("uri", f.uri())],
        None,
        204,
    );
}

fn nonempty(mut v: Value) -> Value {
    v["minLength"] = json!(1);
    v
}
