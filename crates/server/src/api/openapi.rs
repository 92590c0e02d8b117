//! The OpenAPI 3.0 document, built from one table of the routes, kept in step
//! with the router in `mod.rs` by hand (no test checks the two agree yet).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::json as respond;

/// (method, path, summary, required operation, request body schema, success status)
type Route = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<fn() -> Value>,
    u16,
);

fn obj(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": false })
}

fn s() -> Value {
    json!({ "type": "string" })
}

const ROUTES: &[Route] = &[
    (
        "post",
        "/v1/session",
        "Sign in with password and TOTP code; returns a session token",
        "",
        Some(|| {
            obj(
                &["name", "password", "code"],
                json!({ "name": s(), "password": s(), "code": s() }),
            )
        }),
        201,
    ),
    (
        "delete",
        "/v1/session",
        "Sign out (revokes the session token used)",
        "",
        None,
        204,
    ),
    (
        "get",
        "/v1/me",
        "The caller's administrator, role and operations",
        "",
        None,
        200,
    ),
    (
        "put",
        "/v1/me/password",
        "Change one's own password",
        "",
        Some(|| obj(&["current", "new"], json!({ "current": s(), "new": s() }))),
        204,
    ),
    (
        "get",
        "/v1/status",
        "Server status and warnings",
        "status.read",
        None,
        200,
    ),
    (
        "get",
        "/v1/lockouts",
        "Active sign-in lockouts",
        "lockouts.read",
        None,
        200,
    ),
    (
        "post",
        "/v1/lockouts/clear",
        "Clear lockouts (all, or by account and/or source)",
        "lockouts.clear",
        None,
        200,
    ),
    (
        "get",
        "/v1/users",
        "SIP users (within the role's scope)",
        "users.read",
        None,
        200,
    ),
    (
        "post",
        "/v1/users",
        "Add a SIP user",
        "users.write",
        Some(|| {
            obj(
                &["uri", "password"],
                json!({ "uri": s(), "password": s(), "display_name": s() }),
            )
        }),
        201,
    ),
    (
        "post",
        "/v1/users/import",
        "Import users from TSV lines, all or nothing",
        "users.write",
        Some(|| obj(&["tsv"], json!({ "tsv": s() }))),
        201,
    ),
    (
        "get",
        "/v1/users/{uri}",
        "One SIP user",
        "users.read",
        None,
        200,
    ),
    (
        "delete",
        "/v1/users/{uri}",
        "Remove a SIP user with their registrations and messages",
        "users.write",
        None,
        204,
    ),
    (
        "put",
        "/v1/users/{uri}/password",
        "Set a SIP user's password",
        "users.write",
        Some(|| obj(&["password"], json!({ "password": s() }))),
        204,
    ),
    (
        "put",
        "/v1/users/{uri}/enabled",
        "Enable or disable a SIP user",
        "users.write",
        Some(|| obj(&["enabled"], json!({ "enabled": { "type": "boolean" } }))),
        204,
    ),
    (
        "put",
        "/v1/users/{uri}/site",
        "Set (or clear with null) a user's home site",
        "users.write",
        Some(|| {
            obj(
                &["site"],
                json!({ "site": { "type": "string", "nullable": true } }),
            )
        }),
        204,
    ),
    (
        "get",
        "/v1/users/{uri}/effective",
        "The user's effective policy, each field with its origin",
        "users.read, policies.read",
        None,
        200,
    ),
    (
        "get",
        "/v1/groups",
        "User groups with their members",
        "groups.read",
        None,
        200,
    ),
    (
        "put",
        "/v1/groups/{name}",
        "Create or update a group",
        "groups.write",
        Some(|| {
            obj(
                &[],
                json!({ "priority": { "type": "integer", "minimum": 0, "maximum": 1000000 }, "description": s() }),
            )
        }),
        200,
    ),
    (
        "delete",
        "/v1/groups/{name}",
        "Remove a group with its memberships and grants",
        "groups.write",
        None,
        204,
    ),
    (
        "put",
        "/v1/groups/{name}/members/{uri}",
        "Add a member",
        "groups.write",
        None,
        204,
    ),
    (
        "delete",
        "/v1/groups/{name}/members/{uri}",
        "Remove a member",
        "groups.write",
        None,
        204,
    ),
    (
        "get",
        "/v1/policy-kinds",
        "Policy kinds with their fields, types, defaults and docs",
        "policies.read",
        None,
        200,
    ),
    (
        "get",
        "/v1/policies",
        "Every policy document",
        "policies.read",
        None,
        200,
    ),
    (
        "patch",
        "/v1/policies/{kind}/{scope}",
        "Set or unset fields of a document (scope: global, site:NAME, named:NAME)",
        "policies.write.KIND",
        Some(|| {
            obj(
                &[],
                json!({ "set": { "type": "object", "additionalProperties": true }, "unset": { "type": "array", "items": s() } }),
            )
        }),
        200,
    ),
    (
        "delete",
        "/v1/policies/{kind}/{scope}",
        "Remove a document",
        "policies.write.KIND",
        None,
        204,
    ),
    (
        "get",
        "/v1/grants",
        "Grants of named policies",
        "policies.read",
        None,
        200,
    ),
    (
        "put",
        "/v1/grants/{kind}/{target}",
        "Grant a named policy to user:URI or group:NAME",
        "policies.grant.KIND",
        Some(|| obj(&["policy"], json!({ "policy": s() }))),
        200,
    ),
    (
        "delete",
        "/v1/grants/{kind}/{target}",
        "Revoke a grant",
        "policies.grant.KIND",
        None,
        204,
    ),
    (
        "get",
        "/v1/operations",
        "The operation catalog",
        "roles.read",
        None,
        200,
    ),
    (
        "get",
        "/v1/roles",
        "Predefined and custom roles",
        "roles.read",
        None,
        200,
    ),
    (
        "put",
        "/v1/roles/{name}",
        "Create or update a custom role",
        "roles.write",
        Some(|| {
            obj(
                &["operations"],
                json!({ "description": s(), "operations": { "type": "array", "items": s() }, "site": { "type": "string", "nullable": true }, "group": { "type": "string", "nullable": true } }),
            )
        }),
        200,
    ),
    (
        "delete",
        "/v1/roles/{name}",
        "Remove a custom role",
        "roles.write",
        None,
        204,
    ),
    (
        "get",
        "/v1/admins",
        "Administrators",
        "admins.read",
        None,
        200,
    ),
    (
        "post",
        "/v1/admins",
        "Create an administrator; returns the TOTP secret (and a generated password) once",
        "admins.write",
        Some(|| {
            obj(
                &["name", "role"],
                json!({ "name": s(), "role": s(), "password": s() }),
            )
        }),
        201,
    ),
    (
        "patch",
        "/v1/admins/{name}",
        "Change an administrator's role or state, or reset their password or TOTP",
        "admins.write",
        Some(|| {
            obj(
                &[],
                json!({ "role": s(), "enabled": { "type": "boolean" }, "reset_password": { "type": "boolean" }, "reset_totp": { "type": "boolean" } }),
            )
        }),
        200,
    ),
    (
        "delete",
        "/v1/admins/{name}",
        "Remove an administrator and their tokens",
        "admins.write",
        None,
        204,
    ),
    (
        "get",
        "/v1/tokens",
        "Live tokens (one's own; everyone's with admins.read)",
        "",
        None,
        200,
    ),
    (
        "post",
        "/v1/tokens",
        "Create an API token (returned once)",
        "tokens.write",
        Some(|| {
            obj(
                &["name", "expires_in_days"],
                json!({ "name": s(), "role": s(), "expires_in_days": { "type": "integer", "minimum": 1, "maximum": 366 } }),
            )
        }),
        201,
    ),
    (
        "delete",
        "/v1/tokens/{id}",
        "Revoke a token (others' need admins.write)",
        "",
        None,
        204,
    ),
    (
        "get",
        "/v1/audit",
        "Audit records, newest first",
        "audit.read",
        None,
        200,
    ),
    (
        "get",
        "/v1/audit/verify",
        "Check the audit chain",
        "audit.read",
        None,
        200,
    ),
];

fn query_params(method: &str, path: &str) -> Vec<Value> {
    let q = |name: &str, ty: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": ty } });
    match (method, path) {
        ("post", "/v1/lockouts/clear") => vec![q("account", "string"), q("source", "string")],
        ("get", "/v1/users/{uri}/effective") => vec![q("kind", "string")],
        ("get", "/v1/audit") => vec![
            q("actor", "string"),
            q("object", "string"),
            q("since", "integer"),
            q("until", "integer"),
            q("limit", "integer"),
        ],
        _ => vec![],
    }
}

pub(crate) fn build() -> Value {
    let problem = json!({ "description": "a problem+json error", "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } });
    let mut paths = serde_json::Map::new();
    for &(method, path, summary, op, req, ok) in ROUTES {
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(query_params(method, path));
        let mut responses = serde_json::Map::new();
        let success = if ok == 204 {
            json!({ "description": "done" })
        } else {
            json!({ "description": "success", "content": { "application/json": { "schema": {} } } })
        };
        responses.insert(ok.to_string(), success);
        for code in ["400", "401", "403", "404", "409", "503"] {
            responses.insert(code.into(), problem.clone());
        }
        let mut operation = json!({
            "summary": summary,
            "operationId": format!("{method}{}", path.replace(['/', '{', '}', '-'], "_")),
            "parameters": params,
            "responses": responses,
            "x-parapet-operation": op,
        });
        if path == "/v1/session" && method == "post" {
            operation["security"] = json!([]);
        }
        if let Some(schema) = req {
            operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema() } } });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Parapet admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every /v1 path except sign-in needs `Authorization: Bearer <token>`; x-parapet-operation names the role operation each path checks."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": { "type": s(), "title": s(), "status": { "type": "integer" }, "detail": s() }
                }
            }
        },
        "security": [{ "bearer": [] }],
    })
}

pub(crate) async fn document() -> Response {
    respond(StatusCode::OK, &build())
}
