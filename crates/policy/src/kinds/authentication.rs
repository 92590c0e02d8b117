//! How users prove who they are, and the security filter's thresholds.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "authentication",
    doc: "Sign-in methods, second factor, lockout thresholds and endpoint limits.",
    check_fields: no_cross_rules,
    fields: &[
        FieldSpec {
            name: "methods",
            ty: T::Set { of: METHODS, min: 1 },
            default: D::List(&["digest-sha256", "digest-md5", "client-certificate"]),
            doc: "Sign-in methods allowed: digest-sha256, digest-md5 (for clients without SHA-256, such as JsSIP, SIP.js and baresip; accepted over TLS and WSS only unless the configuration's digest_md5_unencrypted says otherwise), client-certificate.",
            lync: Some("NTLM, Kerberos, TLS-DSK certificates"),
        },
        FieldSpec {
            name: "second_factor",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Require a TOTP code (after the password) before a user may enroll a device on the user page; with methods = client-certificate only, every SIP client then signs in with a certificate issued after password and TOTP.",
            lync: Some("passive (WS-Federation) sign-in only, desktop client only"),
        },
        FieldSpec {
            name: "lockout_threshold",
            ty: T::Int { min: 1, max: 1000 },
            default: D::Int(5),
            doc: "Failed sign-ins from one address for one account, within the window, before that address is refused for that account.",
            lync: Some("none without the Security Filter add-on"),
        },
        FieldSpec {
            name: "lockout_account_threshold",
            ty: T::Int { min: 1, max: 100_000 },
            default: D::Int(50),
            doc: "Failed sign-ins for one account from all unfamiliar addresses, within the window, before unfamiliar addresses are refused.",
            lync: None,
        },
        FieldSpec {
            name: "lockout_window_secs",
            ty: T::Int { min: 60, max: 86_400 },
            default: D::Int(600),
            doc: "The window failed sign-ins are counted in, in seconds.",
            lync: Some("30 minutes (PIN policy)"),
        },
        FieldSpec {
            name: "max_endpoints",
            ty: T::Int { min: 1, max: 64 },
            default: D::Int(8),
            doc: "Devices a user may have registered at once.",
            lync: None,
        },
        FieldSpec {
            name: "client_certificate_days",
            ty: T::Int { min: 1, max: 365 },
            default: D::Int(180),
            doc: "Validity of device certificates issued to users, in days.",
            lync: None,
        },
        FieldSpec {
            name: "managed_devices",
            ty: T::Bool,
            default: D::Bool(false),
            doc: "Enrolling a device needs a single-use enrollment code from an administrator or device management (parapet admin device enrollment-code URI).",
            lync: Some("none (the client version policy was the only device control)"),
        },
        FieldSpec {
            name: "max_devices",
            ty: T::Int { min: 1, max: 64 },
            default: D::Int(8),
            doc: "Device certificates a user may hold at once (neither revoked nor expired).",
            lync: None,
        },
    ],
};

const METHODS: &[&str] = &["digest-sha256", "digest-md5", "client-certificate"];
