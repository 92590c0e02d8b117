//! How each media stream of a description is protected, for the media
//! policy: SRTP keyed by SDES (`a=crypto`, RFC 4568) with a suite that
//! encrypts and authenticates, or DTLS-SRTP (`a=fingerprint` with a
//! SHA-2 hash and `a=setup`, RFC 5763/5764, 8842). Plain RTP, a NULL or
//! weak suite, SRTP with its encryption or authentication switched off
//! (RFC 4568 session parameters), and transports that cannot be
//! encrypted (T.38's `udptl`, MSRP over plain TCP) are not. A stream with
//! port 0 carries nothing and passes.

use crate::{Media, Session};

/// How a stream is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    /// Port 0: no media.
    Inactive,
    /// SRTP keyed in the SDP: the keys travel with the signalling, so
    /// every hop of it must be TLS (the caller checks).
    Sdes,
    /// SRTP keyed by a DTLS handshake on the media path.
    DtlsSrtp,
    /// MSRP over TLS.
    MsrpTls,
}

/// SDES suites that encrypt and authenticate well enough.
pub const SUITES: &[&str] = &[
    "AES_CM_128_HMAC_SHA1_80",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
];

/// DTLS fingerprint hashes accepted.
const HASHES: &[&str] = &["sha-256", "sha-384", "sha-512"];

/// Each media section's protection, or why it has none.
pub fn streams(s: &Session<'_>) -> Vec<Result<Protected, String>> {
    s.media.iter().map(|m| stream(s, m)).collect()
}

/// The first unprotected stream's reason, if any; else what keys the
/// streams (`sdes`: some stream is keyed by SDES).
pub fn judge(s: &Session<'_>) -> Result<Summary, String> {
    let mut summary = Summary::default();
    for (i, p) in streams(s).into_iter().enumerate() {
        match p {
            Ok(Protected::Sdes) => summary.sdes = true,
            Ok(_) => {}
            Err(why) => {
                let kind = s.media.get(i).map_or("", |m| m.kind);
                return Err(format!("the {kind} stream (m= line {}) {why}", i + 1));
            }
        }
    }
    Ok(summary)
}

/// What a protected description relies on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Keys in the SDP itself (SDES): the signalling must be TLS on every
    /// hop.
    pub sdes: bool,
}

fn stream(s: &Session<'_>, m: &Media<'_>) -> Result<Protected, String> {
    if m.port == 0 {
        return Ok(Protected::Inactive);
    }
    let proto = m.proto.to_ascii_uppercase();
    match proto.as_str() {
        "RTP/AVP" | "RTP/AVPF" => Err("is plain RTP: not encrypted".into()),
        "RTP/SAVP" | "RTP/SAVPF" => sdes(m),
        "UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF" | "TCP/DTLS/RTP/SAVP" | "TCP/DTLS/RTP/SAVPF"
        | "UDP/DTLS/SCTP" | "TCP/DTLS/SCTP" | "DTLS/SCTP" => dtls(s, m),
        "TCP/TLS/MSRP" => Ok(Protected::MsrpTls),
        "TCP/MSRP" => Err("is MSRP over plain TCP: not encrypted".into()),
        "UDPTL" | "UDP/UDPTL" => Err("is fax (T.38 over UDPTL), which cannot be encrypted".into()),
        other => Err(format!("uses {other}, which is not known to be encrypted")),
    }
}

/// `a=crypto:tag suite key-params [session-params]`: at least one line
/// with a suite of [`SUITES`] and no session parameter switching
/// protection off.
fn sdes(m: &Media<'_>) -> Result<Protected, String> {
    let mut seen = Vec::new();
    for a in m.attrs("crypto") {
        let Some(v) = a.value else { continue };
        let mut f = v.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(key)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let weakened = f.any(|p| {
            matches!(
                p,
                "UNENCRYPTED_SRTP" | "UNENCRYPTED_SRTCP" | "UNAUTHENTICATED_SRTP"
            )
        });
        if tag.bytes().all(|b| b.is_ascii_digit())
            && key.starts_with("inline:")
            && SUITES.contains(&suite)
            && !weakened
        {
            return Ok(Protected::Sdes);
        }
        seen.push(suite.to_owned());
    }
    if seen.is_empty() {
        Err("is SRTP without a key (no a=crypto)".into())
    } else {
        Err(format!(
            "offers only SRTP suites that are not allowed or are weakened ({}); allowed: {}",
            seen.join(", "),
            SUITES.join(", ")
        ))
    }
}

/// DTLS-SRTP: a fingerprint by a SHA-2 hash (the section's or the
/// session's) and a role (`a=setup`).
fn dtls(s: &Session<'_>, m: &Media<'_>) -> Result<Protected, String> {
    let fingerprints: Vec<_> = m
        .attrs("fingerprint")
        .chain(
            s.attributes
                .iter()
                .filter(|a| a.name.eq_ignore_ascii_case("fingerprint")),
        )
        .filter_map(|a| a.value)
        .collect();
    let good = fingerprints.iter().any(|v| {
        let mut f = v.split_ascii_whitespace();
        matches!(
            (f.next(), f.next(), f.next()),
            (Some(hash), Some(fp), None)
                if HASHES.contains(&hash.to_ascii_lowercase().as_str())
                    && fp.len() >= 95
                    && fp.split(':').all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
        )
    });
    if !good {
        return Err(if fingerprints.is_empty() {
            "is DTLS-SRTP without a certificate fingerprint".into()
        } else {
            format!(
                "is DTLS-SRTP whose fingerprint is not a {} hash",
                HASHES.join("/")
            )
        });
    }
    let setup = m
        .attr("setup")
        .or_else(|| s.attr("setup"))
        .and_then(|a| a.value);
    match setup {
        Some("actpass" | "active" | "passive") => Ok(Protected::DtlsSrtp),
        Some(other) => Err(format!("is DTLS-SRTP with a=setup:{other}")),
        None => Err("is DTLS-SRTP without a=setup".into()),
    }
}
