//! The OpenAPI 3.0 document, built at request time so that its schemas are
//! as strict as the handlers: user URIs in this server's domain, names,
//! password lengths, the role names that exist, and one policy path per kind
//! with each field's exact type (from the policy crate). The e2e tests run
//! schemathesis against it and call every path it lists.

mod paths;
mod responses;
mod schema;
mod user;

pub(crate) use user::user_document;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use store::Store;

use super::{internal, json as respond, ApiResult, Ctx};
use responses::response_schema;
use schema::{s, Facts};

pub(super) struct Doc {
    paths: Map<String, Value>,
    /// The error statuses every operation may answer.
    errors: &'static [&'static str],
}

const ERRORS: &[&str] = &["400", "401", "403", "404", "409", "503"];
/// The user API also answers 429 (a user's request rate) and 413 (a body over 256 KiB).
const USER_ERRORS: &[&str] = &["400", "401", "403", "404", "409", "413", "429", "503"];

impl Doc {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn op(
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
        for code in self.errors {
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
        if path.ends_with("/session") && method == "post" {
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

impl Doc {
    /// Adds an error status one operation may answer besides the common
    /// ones (e.g. 410 for what retention removed).
    pub(super) fn add_error(&mut self, method: &str, path: &str, code: &str) {
        if let Some(r) = self
            .paths
            .get_mut(path)
            .and_then(|p| p.get_mut(method))
            .and_then(|op| op["responses"].as_object_mut())
        {
            r.insert(
                code.into(),
                json!({ "description": "a problem+json error", "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } }),
            );
        }
    }

    /// Replaces what an operation's success answer carries (for one that
    /// is not JSON).
    pub(super) fn set_content(&mut self, method: &str, path: &str, content: Value) {
        if let Some(op) = self.paths.get_mut(path).and_then(|p| p.get_mut(method)) {
            if let Some(ok) = op["responses"]
                .as_object_mut()
                .and_then(|r| r.get_mut("200"))
            {
                ok["content"] = content;
            }
        }
    }
}

pub(super) fn path_param(n: &str, schema: Value) -> Value {
    json!({ "name": n, "in": "path", "required": true, "schema": schema })
}

pub(super) fn query(n: &str, schema: Value) -> Value {
    json!({ "name": n, "in": "query", "required": false, "schema": schema })
}

pub(super) fn required_query(n: &str, schema: Value) -> Value {
    json!({ "name": n, "in": "query", "required": true, "schema": schema })
}

fn build(f: &Facts<'_>) -> Value {
    let mut d = Doc {
        paths: Map::new(),
        errors: ERRORS,
    };
    paths::session_and_status(&mut d, f);
    paths::users_and_groups(&mut d, f);
    paths::policies(&mut d, f);
    paths::administration(&mut d, f);
    paths::archive(&mut d, f);
    d.document(
        "Parapet admin API",
        "Every /v1 path except sign-in needs `Authorization: Bearer <token>`; x-parapet-operation names the role operation each path checks. Errors are application/problem+json.",
    )
}

impl Doc {
    /// The whole document around these paths: bearer security, the
    /// problem+json schema.
    pub(super) fn document(self, title: &str, description: &str) -> Value {
        json!({
            "openapi": "3.0.3",
            "info": { "title": title, "version": env!("CARGO_PKG_VERSION"), "description": description },
            "paths": self.paths,
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
}

pub(crate) async fn document<S: Store>(State(ctx): State<Ctx<S>>) -> ApiResult {
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
