//! The OpenAPI 3.0 document, built at request time so that its schemas are
//! as strict as the handlers: user URIs in this server's domain, names,
//! password lengths, the role names that exist, and one policy path per kind
//! with each field's exact type (from the policy crate). The e2e tests run
//! schemathesis against it and call every path it lists.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::{internal, json as respond, ApiResult, Ctx};

/// What the schemas depend on.
struct Facts<'a> {
    domain: &'a str,
    roles: Vec<String>,
}

fn s() -> Value {
    json!({ "type": "string" })
}

fn name() -> Value {
    json!({ "type": "string", "pattern": "^[a-z0-9._-]{1,64}$" })
}

fn nullable(mut v: Value) -> Value {
    v["nullable"] = json!(true);
    // OpenAPI 3.0.3: an enum must list null itself to allow it.
    if let Some(e) = v.get_mut("enum").and_then(Value::as_array_mut) {
        e.push(Value::Null);
    }
    v
}

/// One line, no control characters, at most `max` characters.
fn line(max: usize) -> Value {
    json!({ "type": "string", "maxLength": max, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$" })
}

fn obj(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": false })
}

impl Facts<'_> {
    fn escaped_domain(&self) -> String {
        self.domain.replace('.', "\\.")
    }

    fn uri(&self) -> Value {
        json!({ "type": "string", "pattern": format!("^sip:[A-Za-z0-9_~-]{{1,64}}@{}$", self.escaped_domain()) })
    }

    fn role(&self) -> Value {
        json!({ "type": "string", "enum": self.roles })
    }

    fn password(&self, min: usize) -> Value {
        json!({ "type": "string", "minLength": min, "maxLength": 1024 })
    }
}

/// An object with exactly these properties, all required but `optional`.
fn exact(props: Value, optional: &[&str]) -> Value {
    let required: Vec<&String> = props
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !optional.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": false })
}

fn int() -> Value {
    json!({ "type": "integer" })
}

fn boolean() -> Value {
    json!({ "type": "boolean" })
}

fn strings() -> Value {
    json!({ "type": "array", "items": s() })
}

fn ns() -> Value {
    json!({ "type": "string", "nullable": true })
}

fn array(item: Value) -> Value {
    json!({ "type": "array", "items": item })
}

fn user() -> Value {
    exact(
        json!({ "uri": s(), "display_name": ns(), "enabled": boolean(), "created_at": int(), "site": ns(), "groups": strings() }),
        &[],
    )
}

fn role() -> Value {
    exact(
        json!({ "name": s(), "description": s(), "operations": strings(), "site": ns(), "group": ns(), "builtin": boolean() }),
        &[],
    )
}

fn token_props() -> Value {
    json!({ "id": s(), "admin": s(), "kind": { "type": "string", "enum": ["session", "api"] }, "name": s(), "role": s(), "created_at": int(), "expires_at": int() })
}

fn policy_doc() -> Value {
    exact(
        json!({ "kind": s(), "scope": s(), "fields": { "type": "object" } }),
        &[],
    )
}

fn grant() -> Value {
    exact(json!({ "kind": s(), "policy": s(), "target": s() }), &[])
}

/// What a successful answer carries, by route.
fn response_schema(method: &str, path: &str) -> Value {
    let any = json!({});
    match (method, path) {
        ("post", "/v1/session") => exact(
            json!({ "token": s(), "id": s(), "admin": s(), "role": s(), "expires_at": int() }),
            &[],
        ),
        ("get", "/v1/me") => exact(
            json!({
                "name": s(), "role": s(), "operations": strings(), "site": ns(), "group": ns(),
                "token": exact(json!({ "id": s(), "kind": s() }), &[]),
            }),
            &[],
        ),
        ("get", "/v1/status") => exact(
            json!({
                "version": s(), "domain": s(), "listeners": strings(), "insecure_transports": boolean(),
                "warnings": strings(), "users": int(), "registrations": int(), "connections": int(), "uptime_secs": int(),
            }),
            &[],
        ),
        ("get", "/v1/security") => array(exact(
            json!({
                "group": s(), "setting": s(), "current": s(), "recommended": s(), "why": s(), "command": s(),
                "finding": boolean(), "severity": { "type": "string", "enum": ["info", "low", "medium", "high"] },
            }),
            &[],
        )),
        ("get", "/v1/lockouts") => array(exact(
            json!({ "account": s(), "source": ns(), "until": int(), "lockouts": int() }),
            &[],
        )),
        ("post", "/v1/lockouts/clear") => exact(json!({ "cleared": int() }), &[]),
        ("get", "/v1/users") => array(user()),
        ("post", "/v1/users") | ("get", "/v1/users/{uri}") => user(),
        ("post", "/v1/users/import") => exact(json!({ "imported": int() }), &[]),
        ("get", "/v1/users/{uri}/effective") => exact(
            json!({
                "user": s(),
                "policies": array(exact(json!({
                    "kind": s(),
                    "fields": array(exact(json!({ "name": s(), "value": any, "origin": s() }), &[])),
                }), &[])),
            }),
            &[],
        ),
        ("get", "/v1/groups") => array(exact(
            json!({ "name": s(), "priority": int(), "description": s(), "members": strings() }),
            &[],
        )),
        ("put", "/v1/groups/{name}") => exact(
            json!({ "name": s(), "priority": int(), "description": s() }),
            &[],
        ),
        ("get", "/v1/policy-kinds") => array(exact(
            json!({
                "kind": s(), "doc": s(),
                "fields": array(exact(json!({ "name": s(), "type": s(), "default": any, "doc": s(), "lync": ns() }), &[])),
            }),
            &[],
        )),
        ("get", "/v1/policies") => array(policy_doc()),
        ("get", "/v1/grants") => array(grant()),
        ("patch", p) if p.starts_with("/v1/policies/") => policy_doc(),
        ("put", p) if p.starts_with("/v1/grants/") => grant(),
        ("get", "/v1/operations") => array(exact(json!({ "name": s(), "doc": s() }), &[])),
        ("get", "/v1/roles") => array(role()),
        ("put", "/v1/roles/{name}") => role(),
        ("get", "/v1/admins") => array(exact(
            json!({ "name": s(), "role": s(), "enabled": boolean(), "locked_until": int(), "created_at": int() }),
            &[],
        )),
        ("post", "/v1/admins") => exact(
            json!({ "name": s(), "role": s(), "totp_secret": s(), "otpauth_uri": s(), "password": s() }),
            &["password"],
        ),
        ("patch", "/v1/admins/{name}") => exact(
            json!({ "name": s(), "password": s(), "totp_secret": s(), "otpauth_uri": s() }),
            &["password", "totp_secret", "otpauth_uri"],
        ),
        ("get", "/v1/tokens") => array(exact(token_props(), &[])),
        ("post", "/v1/tokens") => {
            let mut props = token_props();
            props["token"] = s();
            exact(props, &[])
        }
        ("get", "/v1/audit") => array(exact(
            json!({
                "seq": int(), "at": int(), "actor": s(), "source": s(), "action": s(), "object": s(),
                "outcome": { "type": "string", "enum": ["ok", "denied", "failed"] }, "detail": s(),
                "before": any, "after": any,
            }),
            &[],
        )),
        ("get", "/v1/audit/verify") => exact(
            json!({ "records": int(), "intact": boolean(), "problems": strings() }),
            &[],
        ),
        _ => any,
    }
}

struct Doc {
    paths: Map<String, Value>,
}

const ERRORS: &[&str] = &["400", "401", "403", "404", "409", "503"];

impl Doc {
    #[allow(clippy::too_many_arguments)]
    fn op(
        &mut self,
        method: &str,
        path: &str,
        summary: &str,
        permission: &str,
        params: Vec<Value>,
        body: Option<Value>,
        ok: u16,
    ) {
        let mut responses = Map::new();
        let success = if ok == 204 {
            json!({ "description": "done" })
        } else {
            json!({ "description": "success", "content": { "application/json": { "schema": response_schema(method, path) } } })
        };
        responses.insert(ok.to_string(), success);
        for code in ERRORS {
            responses.insert(
                (*code).into(),
                json!({ "description": "a problem+json error", "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } }),
            );
        }
        let mut operation = json!({
            "summary": summary,
            "operationId": format!("{method}{}", path.replace(['/', '{', '}', '-'], "_")),
            "parameters": params,
            "responses": responses,
            "x-parapet-operation": permission,
        });
        if permission.is_empty() && path == "/v1/session" && method == "post" {
            operation["security"] = json!([]);
        }
        if let Some(schema) = body {
            operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema } } });
        }
        let entry = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}));
        entry[method] = operation;
    }
}

fn path_param(n: &str, schema: Value) -> Value {
    json!({ "name": n, "in": "path", "required": true, "schema": schema })
}

fn query(n: &str, schema: Value) -> Value {
    json!({ "name": n, "in": "query", "required": false, "schema": schema })
}

fn build(f: &Facts<'_>) -> Value {
    let mut d = Doc { paths: Map::new() };
    let uri = || path_param("uri", f.uri());
    let nm = |n: &str| path_param(n, name());
    let int64 = json!({ "type": "integer", "format": "int64" });

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
            query("since", int64.clone()),
            query("until", int64),
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

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Parapet admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every /v1 path except sign-in needs `Authorization: Bearer <token>`; x-parapet-operation names the role operation each path checks. Errors are application/problem+json."
        },
        "paths": d.paths,
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

pub(crate) async fn document(State(ctx): State<Ctx>) -> ApiResult {
    let mut roles: Vec<String> = rbac::predefined().into_iter().map(|r| r.name).collect();
    roles.extend(
        store::Admins::roles(&ctx.store)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|r| r.name),
    );
    let doc = build(&Facts {
        domain: &ctx.realm,
        roles,
    });
    Ok(respond(StatusCode::OK, &doc))
}
