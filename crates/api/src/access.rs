//! Who is calling, and whether their role allows what they ask. Every refusal
//! is audited.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use rbac::{Role, Target};
use store::{AuditEntry, Store};

use super::{internal, problem, Ctx};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The administrator the token belongs to.
    pub admin: String,
    /// How the audit log names them: `admin:NAME` or `admin:NAME/token:ID`.
    pub actor: String,
    pub role: Role,
    pub source: String,
    pub token_id: String,
    /// `session` or `api`.
    pub kind: String,
}

/// Who a change is recorded as in the audit log: an administrator (a
/// [`Caller`]) or a user on the user API.
pub(crate) trait Who {
    /// `admin:NAME`, `admin:NAME/token:ID` or `user:AOR`.
    fn actor(&self) -> &str;
    /// The address the request came from.
    fn source(&self) -> &str;
}

impl Who for Caller {
    fn actor(&self) -> &str {
        &self.actor
    }
    fn source(&self) -> &str {
        &self.source
    }
}

/// 401 with a Bearer challenge for `realm` (`Bearer realm="parapet-admin"`).
pub(crate) fn unauthorized_in(challenge: &'static str, detail: &str) -> Response {
    let mut r = problem(StatusCode::UNAUTHORIZED, detail);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    r
}

fn unauthorized(detail: &str) -> Response {
    unauthorized_in("Bearer realm=\"parapet-admin\"", detail)
}

const SIGN_IN_HINT: &str = "send `Authorization: Bearer <token>`: sign in with `parapet admin login` (or POST /v1/session), or use an API token from `parapet admin token create`";

impl<S: Store> FromRequestParts<Ctx<S>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx<S>) -> Result<Caller, Response> {
        let source = source_of(parts);
        let Some(given) = bearer(parts) else {
            return Err(unauthorized(SIGN_IN_HINT));
        };
        let refuse = |why: &'static str| {
            let source = source.clone();
            async move {
                ctx.record_refusal("anonymous", &source, "authenticate", "token", why)
                    .await;
                Err(unauthorized(why))
            }
        };
        let Some((id, secret)) = rbac::token::parse(given) else {
            return refuse(
                "the bearer token is malformed; sign in again with `parapet admin login`",
            )
            .await;
        };
        let row = ctx.store.token(id).await.map_err(internal)?;
        let Some(row) = row.filter(|r| rbac::token::matches(secret, &r.hash)) else {
            return refuse("the token is not valid (revoked, or never issued); sign in again with `parapet admin login`").await;
        };
        if row.expires_at <= sip_app::unix_now() {
            return refuse("the token has expired; sign in again with `parapet admin login`").await;
        }
        let admin = ctx.store.admin(&row.admin).await.map_err(internal)?;
        let Some(admin) = admin.filter(|a| a.enabled) else {
            return refuse("the administrator this token belongs to is disabled or removed").await;
        };
        let own = ctx.role(&admin.role).await?;
        let role = if row.kind == "session" {
            own
        } else {
            // An API token keeps its role only while its owner still holds it.
            let token_role = ctx.role(&row.role).await?;
            match (own, token_role) {
                (Some(o), Some(t)) if o.covers(&t) => Some(t),
                _ => None,
            }
        };
        let Some(role) = role else {
            return refuse(
                "the token's role no longer exists or exceeds its owner's role; create a new token",
            )
            .await;
        };
        let actor = if row.kind == "session" {
            format!("admin:{}", admin.name)
        } else {
            format!("admin:{}/token:{}", admin.name, row.id)
        };
        Ok(Caller {
            admin: admin.name,
            actor,
            role,
            source,
            token_id: row.id,
            kind: row.kind,
        })
    }
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

pub(crate) fn source_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string())
}

impl<S: Store> Ctx<S> {
    /// A predefined or custom role by name.
    pub(crate) async fn role(&self, name: &str) -> Result<Option<Role>, Response> {
        if let Some(r) = rbac::predefined().into_iter().find(|r| r.name == name) {
            return Ok(Some(r));
        }
        let rows = self.store.roles().await.map_err(internal)?;
        Ok(rows.into_iter().find(|r| r.name == name).map(|r| Role {
            name: r.name,
            description: r.description,
            ops: r.ops.into_iter().collect(),
            site: r.site,
            group: r.group,
            builtin: false,
        }))
    }

    /// Checks that `c` may perform `op` on `target`; a refusal is audited
    /// and answered with 403.
    pub(crate) async fn allow(
        &self,
        c: &Caller,
        op: &str,
        target: Target<'_>,
        object: &str,
    ) -> Result<(), Response> {
        if c.role.permits(op, target) {
            return Ok(());
        }
        let scoped = if c.role.is_scoped() && c.role.ops.contains(op) {
            " outside its site or group"
        } else {
            ""
        };
        let detail = format!(
            "role {} does not allow {op}{scoped} on {object}; ask an administrator for a role that does (`parapet admin role list`)",
            c.role.name
        );
        self.record_refusal(&c.actor, &c.source, op, object, &detail)
            .await;
        Err(problem(StatusCode::FORBIDDEN, detail))
    }

    /// Checks `op` on one SIP user, with their site and groups.
    pub(crate) async fn allow_user(&self, c: &Caller, op: &str, aor: &str) -> Result<(), Response> {
        if !c.role.is_scoped() {
            return self.allow(c, op, Target::Any, &format!("user:{aor}")).await;
        }
        let set = sip_app::policy_set::PolicySet::load(&self.store)
            .await
            .map_err(internal)?;
        let (site, groups) = set.placement(aor);
        let target = Target::User {
            site: site.as_deref(),
            groups: &groups,
        };
        self.allow(c, op, target, &format!("user:{aor}")).await
    }

    /// Appends a refusal to the audit log (failures to do so are logged).
    pub(crate) async fn record_refusal(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        object: &str,
        detail: &str,
    ) {
        let at = sip_app::unix_now();
        let minute = u64::try_from(at).unwrap_or(0) / 60;
        let entry = |actor: &str, action: &str, object: &str, detail: String| AuditEntry {
            at,
            actor: actor.into(),
            source: source.into(),
            action: action.into(),
            object: object.into(),
            outcome: "denied".into(),
            detail,
            before: None,
            after: None,
        };
        let mut records = Vec::with_capacity(2);
        match self.refusals.admit(source, minute) {
            super::refusals::Admit::Suppress => return,
            super::refusals::Admit::RecordAfterSummary(n) => records.push(entry(
                "anonymous",
                "refusals.summary",
                "admin-api",
                format!(
                    "{n} more refused requests from this address in an earlier minute were not recorded one by one (over {} a minute)",
                    super::refusals::PER_SOURCE
                ),
            )),
            super::refusals::Admit::Record => {}
        }
        records.push(entry(actor, action, object, detail.to_string()));
        for e in records {
            if let Err(e) = self.store.append_audit(e).await {
                tracing::error!(error = %e, "could not append to the audit log");
            }
        }
    }

    /// A store handle whose writes record this change in the audit log.
    pub(crate) fn audited(
        &self,
        c: &impl Who,
        action: &str,
        object: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> S {
        self.store.audited(AuditEntry {
            at: sip_app::unix_now(),
            actor: c.actor().to_string(),
            source: c.source().to_string(),
            action: action.into(),
            object: object.into(),
            outcome: "ok".into(),
            detail: String::new(),
            before: before.map(|v| v.to_string()),
            after: after.map(|v| v.to_string()),
        })
    }
}

/// The caller's address, for the audit log (for paths without a token).
#[derive(Debug, Clone)]
pub(crate) struct Source(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Source, Self::Rejection> {
        Ok(Source(source_of(parts)))
    }
}
