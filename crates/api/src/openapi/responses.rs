//! What each successful answer carries: objects with exactly their
//! properties, all required unless marked optional, no others.

use serde_json::{json, Value};

use super::schema::{array, boolean, exact, int, ns, s, strings};

pub(super) fn user() -> Value {
    exact(
        json!({ "uri": s(), "display_name": ns(), "enabled": boolean(), "created_at": int(), "site": ns(), "groups": strings() }),
        &[],
    )
}

pub(super) fn role() -> Value {
    exact(
        json!({ "name": s(), "description": s(), "operations": strings(), "site": ns(), "group": ns(), "builtin": boolean() }),
        &[],
    )
}

pub(super) fn token_props() -> Value {
    json!({ "id": s(), "admin": s(), "kind": { "type": "string", "enum": ["session", "api"] }, "name": s(), "role": s(), "created_at": int(), "expires_at": int() })
}

pub(super) fn policy_doc() -> Value {
    exact(
        json!({ "kind": s(), "scope": s(), "fields": { "type": "object" } }),
        &[],
    )
}

/// A device; `issued`: as enrolment answers, with its certificate and
/// the device CA's.
fn device(issued: bool) -> Value {
    let mut props = json!({
        "id": s(), "name": s(), "issued_at": int(), "expires_at": int(),
        "revoked_at": { "type": "integer", "nullable": true },
        "revoked_reason": ns(), "last_seen": { "type": "integer", "nullable": true },
        "user_agent": ns(), "fingerprint": s(), "serial": s(),
    });
    if issued {
        props["certificate"] = s();
        props["ca_certificate"] = s();
    }
    exact(props, &[])
}

pub(super) fn contact() -> Value {
    exact(
        json!({
            "contact": s(), "relationship": { "type": "string", "enum": ["blocked", "external", "colleague", "workgroup", "personal"] },
            "display_name": ns(), "groups": strings(), "added_at": int(),
        }),
        &[],
    )
}

fn watcher() -> Value {
    exact(
        json!({ "watcher": s(), "status": { "type": "string", "enum": ["active", "pending", "rejected"] } }),
        &[],
    )
}

pub(super) fn grant() -> Value {
    exact(json!({ "kind": s(), "policy": s(), "target": s() }), &[])
}

/// What a successful answer carries, by route.
fn hold() -> Value {
    exact(
        json!({ "user": s(), "since": int(), "by": s(), "reason": s() }),
        &[],
    )
}

pub(super) fn response_schema(method: &str, path: &str) -> Value {
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
                "edges": array(exact(json!({
                    "name": s(), "internal": s(), "links": int(), "snapshot_version": int(),
                    "external_listeners": strings(),
                }), &[])),
                // On PostgreSQL only: the pool's nodes.
                "nodes": array(exact(json!({
                    "id": s(), "this": boolean(), "state": { "type": "string", "enum": ["serving", "left", "dead"] },
                    "epoch": int(), "lease_left_ms": int(), "lease_until": int(), "heartbeat_at": int(),
                    "started_at": int(), "address": s(), "policy_version": int(), "users_version": int(),
                    "applied_change": int(),
                }), &[])),
            }),
            &["nodes"],
        ),
        ("get", "/v1/edges") => array(exact(
            json!({
                "name": s(), "internal": s(), "external_names": strings(), "fingerprint": s(),
                "paired_at": int(), "expires_at": int(),
            }),
            &[],
        )),
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
        ("get", "/v1/federation/partners") => array(exact(
            json!({
                "domain": s(),
                "standing": { "type": "string", "enum": ["allowed", "discovered", "refused"] },
                "watch_listed_at": { "type": ["integer", "null"] },
                "throttled": boolean(), "users_this_hour": int(), "requests_in": int(),
                "refused_in": int(), "requests_out": int(), "connections": int(), "last_seen_at": int(),
            }),
            &[],
        )),
        ("post", "/v1/federation/partners/clear") => {
            exact(json!({ "domain": s(), "cleared": boolean() }), &[])
        }
        ("get", "/v1/federation/explain") => exact(
            json!({
                "allowed": boolean(), "direction": { "type": "string", "enum": ["in", "out", "none"] },
                "partner": s(), "rule": s(), "steps": strings(),
            }),
            &[],
        ),
        ("get", "/v1/dns-records") => {
            exact(json!({ "domain": s(), "host": s(), "zone": s() }), &[])
        }
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
        ("get", "/v1/users/{uri}/registrations") => array(exact(
            json!({
                "contact": s(), "transport": s(), "source": s(),
                "reached_by": { "type": "string", "enum": ["connection", "address"] },
                "outbound": ns(), "user_agent": ns(), "q": s(), "expires_at": int(),
            }),
            &[],
        )),
        ("get", "/v1/users/{uri}/contacts") | ("get", "/user/v1/contacts") => exact(
            json!({
                "user": s(), "groups": strings(),
                "contacts": array(contact()),
                "watchers": array(watcher()),
            }),
            &[],
        ),
        ("put", "/v1/users/{uri}/contacts/{contact}")
        | ("put", "/v1/users/{uri}/watchers/{watcher}")
        | ("put", "/user/v1/contacts/{contact}")
        | ("put", "/user/v1/watchers/{watcher}") => contact(),
        ("post", "/user/v1/session") => exact(
            json!({ "token": s(), "user": s(), "expires_at": int(), "second_factor": boolean() }),
            &[],
        ),
        ("post", "/user/v1/relay-credentials") => exact(
            json!({ "urls": strings(), "username": s(), "credential": s(), "expires_at": int() }),
            &[],
        ),
        ("get", "/user/v1/me") => exact(
            json!({
                "user": s(), "expires_at": int(), "second_factor": boolean(),
                "archiving": exact(json!({ "internal": boolean(), "external": boolean(), "retention_days": int(), "usage_retention_days": int() }), &[]),
            }),
            &[],
        ),
        ("get", "/user/v1/second-factor") => exact(
            json!({ "enrolled": boolean(), "required": boolean(), "this_session": boolean() }),
            &[],
        ),
        ("post", "/user/v1/second-factor") => {
            exact(json!({ "secret": s(), "uri": s(), "qr_svg": s() }), &[])
        }
        ("post", "/user/v1/second-factor/confirm") => exact(json!({ "enrolled": boolean() }), &[]),
        ("get", "/user/v1/devices") | ("get", "/v1/users/{uri}/devices") => array(device(false)),
        ("post", "/user/v1/devices") => device(true),
        ("post", "/user/v1/devices/bundle") => {
            let mut d = device(true);
            d["properties"]["passphrase"] = s();
            d["properties"]["pkcs12"] = s();
            if let Some(r) = d["required"].as_array_mut() {
                r.push("passphrase".into());
                r.push("pkcs12".into());
            }
            d
        }
        ("delete", "/v1/users/{uri}/devices") => exact(json!({ "revoked": boolean() }), &[]),
        ("delete", "/v1/users/{uri}/second-factor") => exact(json!({ "removed": boolean() }), &[]),
        ("post", "/v1/users/{uri}/enrollment-codes") => exact(
            json!({ "user": s(), "code": s(), "expires_at": int() }),
            &[],
        ),
        ("get", "/user/v1/watchers") => exact(json!({ "watchers": array(watcher()) }), &[]),
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
        ("get", "/v1/archive/messages") => exact(
            json!({
                "records": array(super::schema::obj(
                    &["id", "owner", "at_ms", "sender", "recipient", "federated", "result", "content_type"],
                    json!({
                        "id": int(), "owner": s(), "at_ms": int(), "sender": s(), "recipient": s(),
                        "federated": boolean(), "result": s(), "content_type": s(),
                        "body": s(), "body_base64": s(),
                    }),
                )),
                "scanned": int(),
                "next": { "type": "integer", "nullable": true },
            }),
            &[],
        ),
        ("get", "/v1/archive/holds") => array(hold()),
        ("get", "/v1/traces") => exact(
            json!({
                "messages": array(exact(
                    json!({
                        "node": s(),
                        "at_ms": int(), "direction": { "type": "string", "enum": ["in", "out"] },
                        "protocol": s(), "local": s(), "remote": s(),
                        "call_id": { "type": "string", "nullable": true },
                        "first_line": s(), "message": s(),
                    }),
                    &[],
                )),
                "bodies_shown": boolean(),
                "edges": array(exact(
                    json!({
                        "edge": s(), "messages": int(), "complete": boolean(),
                        "error": { "type": "string", "nullable": true },
                    }),
                    &[],
                )),
            }),
            &[],
        ),
        ("get", "/v1/cdrs") => exact(
            json!({
                "records": array(exact(
                    json!({
                        "id": int(), "kind": { "type": "string", "enum": store::cdr::KINDS },
                        "call_id": s(), "caller": s(), "callee": s(),
                        "caller_device": s(), "callee_device": s(), "federated": boolean(),
                        "started_ms": int(), "answered_ms": { "type": "integer", "nullable": true },
                        "ended_ms": int(), "duration_secs": int(), "status": int(), "ended_by": s(),
                        "partner": s(), "media_relayed": boolean(), "messages": int(), "detail": s(), "keep_until_ms": int(),
                    }),
                    &[],
                )),
                "next": { "type": "integer", "nullable": true },
            }),
            &[],
        ),
        ("put", "/v1/archive/holds/{uri}") => hold(),
        ("get", "/v1/audit/verify") => exact(
            json!({ "records": int(), "intact": boolean(), "problems": strings() }),
            &[],
        ),
        _ => any,
    }
}
