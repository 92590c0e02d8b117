//! The user API's OpenAPI document (`/user/v1/openapi.json`), built like
//! the admin API's: the same schemas for contact addresses, group names
//! and entries, so both APIs accept exactly the same input.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Map};
use store::Store;

use super::schema::{contact_address, contact_group_name, decision_body, entry_body, obj, Facts};
use super::{path_param, Doc, USER_ERRORS};
use crate::{json as respond, ApiResult, Ctx};

/// Every operation acts on the signed-in user.
const SELF: &str = "self";

fn paths(d: &mut Doc, f: &Facts<'_>) {
    // `alice`, `alice@DOMAIN` or `sip:alice@DOMAIN`.
    let dom = f.escaped_domain();
    let user = json!({ "type": "string", "pattern": format!("^(sip:[A-Za-z0-9_~-]{{1,64}}@{dom}|[A-Za-z0-9_~-]{{1,64}}(@{dom})?)$") });
    d.op(
        "post",
        "/user/v1/session",
        "Sign in with your SIP address (or user name) and password, and the authenticator's code if you have set one up (a 401 with second_factor = totp asks for it); returns a session token. Failures count toward the same lockout as SIP sign-ins.",
        "",
        vec![],
        Some(obj(
            &["user", "password"],
            json!({
                "user": user,
                "password": { "type": "string", "minLength": 1, "maxLength": 1024 },
                "totp": { "type": "string", "nullable": true, "pattern": "^[0-9]{6}$", "description": "the authenticator's code, for a user who has set one up" },
            }),
        )),
        201,
    );
    d.op(
        "delete",
        "/user/v1/session",
        "Sign out (ends the session used)",
        SELF,
        vec![],
        None,
        204,
    );
    d.op(
        "get",
        "/user/v1/me",
        "Who is signed in, until when, and whether their instant messages are archived",
        SELF,
        vec![],
        None,
        200,
    );
    d.op(
        "post",
        "/user/v1/relay-credentials",
        "Credentials for the media relays (this server's and its edges'), for a web client's RTCIceServer (urls, username, credential): valid ten minutes, and only while this session lasts",
        SELF,
        vec![],
        None,
        201,
    );
    d.op(
        "get",
        "/user/v1/second-factor",
        "Whether you have an authenticator (TOTP) set up, whether your policy requires one to enroll devices, and whether this session was signed in with it",
        SELF,
        vec![],
        None,
        200,
    );
    d.op(
        "post",
        "/user/v1/second-factor",
        "Start setting up an authenticator app: a new secret, as text, an otpauth URI and a QR code (SVG); it replaces the old one once confirmed",
        SELF,
        vec![],
        None,
        201,
    );
    d.op(
        "post",
        "/user/v1/second-factor/confirm",
        "Confirm the new authenticator with the code it shows; this session then counts as signed in with it",
        SELF,
        vec![],
        Some(obj(&["code"], json!({ "code": { "type": "string", "pattern": "^[0-9]{6}$" } }))),
        200,
    );
    d.op(
        "get",
        "/user/v1/devices",
        "Your devices (their certificates): issued, expires, last seen, user agent, revoked",
        SELF,
        vec![],
        None,
        200,
    );
    d.op(
        "post",
        "/user/v1/devices",
        "Enroll a device: its certificate request (PEM, made on the device; the key never leaves it) in, its certificate out. Needs a session signed in with your authenticator where policy requires a second factor, and an enrollment code where policy allows managed devices only",
        SELF,
        vec![],
        Some(obj(
            &["name", "csr"],
            json!({
                "name": { "type": "string", "minLength": 1, "maxLength": 64 },
                "csr": { "type": "string", "minLength": 1, "maxLength": pki::csr::MAX_CSR },
                "enrollment_code": { "type": "string", "maxLength": 64, "nullable": true },
            }),
        )),
        201,
    );
    d.op(
        "post",
        "/user/v1/devices/bundle",
        "Enroll a device that cannot make a certificate request: the server makes its key and answers key and certificate in a PKCS#12 bundle (base64) under a passphrase made for this download, shown once; it keeps neither. The same policy applies as for a request",
        SELF,
        vec![],
        Some(obj(
            &["name"],
            json!({
                "name": { "type": "string", "minLength": 1, "maxLength": 64 },
                "enrollment_code": { "type": "string", "maxLength": 64, "nullable": true },
            }),
        )),
        201,
    );
    d.op(
        "delete",
        "/user/v1/devices/{id}",
        "Revoke one of your devices; its connections close at once",
        SELF,
        vec![path_param(
            "id",
            json!({ "type": "string", "pattern": "^[0-9a-f]{16}$" }),
        )],
        None,
        204,
    );
    d.op(
        "post",
        "/user/v1/sign-out-everywhere",
        "Revoke every device and end every session, this one too",
        SELF,
        vec![],
        None,
        204,
    );
    d.op(
        "get",
        "/user/v1/contacts",
        "Your contact list, contact groups and presence watchers (active, pending or rejected)",
        SELF,
        vec![],
        None,
        200,
    );
    let contact = || path_param("contact", contact_address());
    d.op(
        "put",
        "/user/v1/contacts/{contact}",
        "Add or replace a contact (relationship: blocked, external, colleague, workgroup, personal; default colleague inside the organisation, external outside)",
        SELF,
        vec![contact()],
        Some(entry_body()),
        200,
    );
    d.op(
        "delete",
        "/user/v1/contacts/{contact}",
        "Remove a contact",
        SELF,
        vec![contact()],
        None,
        204,
    );
    let group = || path_param("name", contact_group_name());
    d.op(
        "put",
        "/user/v1/contact-groups/{name}",
        "Create a contact group at the end of your list",
        SELF,
        vec![group()],
        None,
        204,
    );
    d.op(
        "delete",
        "/user/v1/contact-groups/{name}",
        "Remove a contact group (its contacts stay in the list)",
        SELF,
        vec![group()],
        None,
        204,
    );
    d.op(
        "get",
        "/user/v1/watchers",
        "Who watches your presence now, with each watcher's status",
        SELF,
        vec![],
        None,
        200,
    );
    d.op(
        "put",
        "/user/v1/watchers/{watcher}",
        "Approve a watcher (added to your contacts, at the given relationship or their current one) or deny them (blocked: they see you offline and cannot message you)",
        SELF,
        vec![path_param("watcher", contact_address())],
        Some(decision_body()),
        200,
    );
}

pub(crate) async fn user_document<S: Store>(State(ctx): State<Ctx<S>>) -> ApiResult {
    let f = Facts {
        domain: &ctx.realm,
        roles: Vec::new(),
    };
    let mut d = Doc {
        paths: Map::new(),
        errors: USER_ERRORS,
    };
    paths(&mut d, &f);
    let doc = d.document(
        "Parapet user API",
        "For users: sign in with your SIP address and password (POST /user/v1/session), then send `Authorization: Bearer <token>`. Every path acts on the signed-in user. Errors are application/problem+json.",
    );
    Ok(respond(StatusCode::OK, &doc))
}
