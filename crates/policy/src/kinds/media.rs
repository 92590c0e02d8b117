//! Calls' media. Encrypted always by default (SRTP keyed by DTLS-SRTP, or
//! by SDES over TLS signalling); plain RTP only where an administrator
//! says so, and then the security check reports it.

use crate::spec::{no_cross_rules, Builtin as D, FieldSpec, KindSpec};
use crate::value::FieldType as T;

pub static SPEC: KindSpec = KindSpec {
    name: "media",
    doc: "Calls' media: whether every stream must be encrypted (SRTP).",
    check_fields: no_cross_rules,
    fields: &[FieldSpec {
        name: "encryption",
        ty: T::Choice(&["required", "optional"]),
        default: D::Text("required"),
        doc: "required: every audio and video stream offered or answered through the server is SRTP, keyed by DTLS-SRTP or by SDES (a=crypto, only when the signalling is TLS on every hop), with AES_CM_128_HMAC_SHA1_80 or AEAD_AES_128/256_GCM; anything else is refused with 488. optional: plain RTP is let through too. A call is held to the strictest policy of its users.",
        lync: Some("RequireEncryption by default; SupportEncryption let plain RTP through"),
    }],
};
