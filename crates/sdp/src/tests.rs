#![allow(clippy::unwrap_used)]
use super::protection::{judge, streams, Protected, Summary};
use super::*;

const FP: &str = "sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3C:1D:A2:DE:F2:37:0A:F2:6B:15:1D:01";

fn lines(l: &[&str]) -> String {
    let mut s = l.join("\r\n");
    s.push_str("\r\n");
    s
}

/// An offer as baresip makes it with `mediaenc=srtp-mand`.
fn sdes_offer(suite: &str) -> String {
    lines(&[
        "v=0",
        "o=- 1000 2000 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 10000 RTP/SAVP 0 8 101",
        "b=AS:64",
        "a=rtpmap:0 PCMU/8000",
        &format!("a=crypto:1 {suite} inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"),
        "a=sendrecv",
    ])
}

#[test]
fn a_plain_offer_reads_into_sections_and_addresses() {
    let body = lines(&[
        "v=0",
        "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 6000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "m=video 0 RTP/AVP 96",
        "c=IN IP6 2001:db8::1",
    ]);
    let s = Session::parse(body.as_bytes()).unwrap();
    assert_eq!(
        s.connection,
        Some(Address::Ip("127.0.0.1".parse().unwrap()))
    );
    assert_eq!(s.media.len(), 2);
    assert_eq!(
        (s.media[0].kind, s.media[0].port, s.media[0].proto),
        ("audio", 6000, "RTP/AVP")
    );
    assert_eq!(s.media[0].formats, ["0"]);
    assert_eq!(
        s.media[0].attr("rtpmap").unwrap().value,
        Some("0 PCMU/8000")
    );
    assert_eq!(
        s.media[1].connections,
        [Address::Ip("2001:db8::1".parse().unwrap())]
    );
    // LF alone is accepted too.
    let lf = body.replace("\r\n", "\n");
    assert_eq!(Session::parse(lf.as_bytes()).unwrap(), s);
    // Plain RTP is not protected; the disabled video does not count.
    assert_eq!(
        judge(&s).unwrap_err(),
        "the audio stream (m= line 1) is plain RTP: not encrypted"
    );
    assert_eq!(streams(&s)[1], Ok(Protected::Inactive));
}

#[test]
fn the_grammar_is_strict() {
    let ok = sdes_offer("AES_CM_128_HMAC_SHA1_80");
    assert!(Session::parse(ok.as_bytes()).is_ok());
    for (broken, what) in [
        (ok.replacen("v=0", "v=1", 1), "version"),
        (ok.replacen("v=0\r\n", "", 1), "no v="),
        (ok.replacen("s=-\r\n", "", 1), "no s="),
        (ok.replacen("t=0 0\r\n", "", 1), "no t="),
        (ok.replacen("t=0 0", "x=0 0", 1), "unknown type"),
        (
            ok.replacen("c=IN IP4 192.0.2.10", "c=IN IP4 2001:db8::1", 1),
            "family mismatch",
        ),
        (
            ok.replacen("c=IN IP4 192.0.2.10", "c=IN IP5 192.0.2.10", 1),
            "address type",
        ),
        (
            ok.replacen("c=IN IP4 192.0.2.10", "c=IN IP4 bad_host!", 1),
            "host name",
        ),
        (ok.replacen("m=audio 10000", "m=audio 70000", 1), "port"),
        (
            ok.replacen(
                "m=audio 10000 RTP/SAVP 0 8 101",
                "m=audio 10000 RTP/SAVP",
                1,
            ),
            "no formats",
        ),
        (
            ok.replacen(
                "o=- 1000 2000 IN IP4 192.0.2.10",
                "o=- x 2000 IN IP4 192.0.2.10",
                1,
            ),
            "origin",
        ),
        (
            ok.replacen("a=sendrecv", "a=send recv", 1),
            "attribute name",
        ),
        (ok.replacen("a=sendrecv", "a sendrecv", 1), "not type=value"),
        (
            ok.replacen("b=AS:64\r\n", "b=AS:64\r\n\r\n", 1),
            "empty line inside",
        ),
        (ok.replacen("s=-", "s=-\r\nt=0 0\r\ns=again", 1), "order"),
        (ok.replacen("a=sendrecv", "a=send\u{0}recv", 1), "NUL"),
        (
            ok.replacen(
                "c=IN IP4 192.0.2.10\r\n",
                "c=IN IP4 192.0.2.10\r\nc=IN IP4 192.0.2.12\r\n",
                1,
            ),
            "two session c=",
        ),
    ] {
        assert!(
            Session::parse(broken.as_bytes()).is_err(),
            "{what}: {broken}"
        );
    }
    assert_eq!(Session::parse(b"\xff").unwrap_err(), SdpError::NotUtf8);
}

#[test]
fn descriptions_are_bounded() {
    let big = format!(
        "{}{}",
        sdes_offer("AES_CM_128_HMAC_SHA1_80"),
        "a=x\r\n".repeat(20_000)
    );
    assert_eq!(
        Session::parse(big.as_bytes()).unwrap_err(),
        SdpError::TooLarge
    );
    let many = format!(
        "{}{}",
        sdes_offer("AES_CM_128_HMAC_SHA1_80"),
        "m=audio 0 RTP/AVP 0\r\n".repeat(40)
    );
    assert_eq!(
        Session::parse(many.as_bytes()).unwrap_err(),
        SdpError::TooLarge
    );
    let long = sdes_offer("AES_CM_128_HMAC_SHA1_80")
        .replace("a=sendrecv", &format!("a=x:{}", "y".repeat(5000)));
    assert!(matches!(
        Session::parse(long.as_bytes()),
        Err(SdpError::Line { .. })
    ));
}

#[test]
fn sdes_needs_an_allowed_suite_not_switched_off() {
    for suite in [
        "AES_CM_128_HMAC_SHA1_80",
        "AEAD_AES_128_GCM",
        "AEAD_AES_256_GCM",
    ] {
        let o = sdes_offer(suite);
        let s = Session::parse(o.as_bytes()).unwrap();
        assert_eq!(judge(&s), Ok(Summary { sdes: true }), "{suite}");
    }
    for suite in [
        "NULL_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
        "F8_128_HMAC_SHA1_80",
    ] {
        let o = sdes_offer(suite);
        let s = Session::parse(o.as_bytes()).unwrap();
        let why = judge(&s).unwrap_err();
        assert!(
            why.contains("not allowed or are weakened"),
            "{suite}: {why}"
        );
    }
    let off = sdes_offer("AES_CM_128_HMAC_SHA1_80").replace("|1:32", "|1:32 UNENCRYPTED_SRTP");
    assert!(judge(&Session::parse(off.as_bytes()).unwrap()).is_err());
    let none = sdes_offer("AES_CM_128_HMAC_SHA1_80").replace(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n",
        "",
    );
    assert_eq!(
        judge(&Session::parse(none.as_bytes()).unwrap()).unwrap_err(),
        "the audio stream (m= line 1) is SRTP without a key (no a=crypto)"
    );
    // One good line among weaker ones is enough (the answer picks).
    let two = sdes_offer("AES_CM_128_HMAC_SHA1_32").replace(
        "a=sendrecv",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\na=sendrecv",
    );
    assert!(judge(&Session::parse(two.as_bytes()).unwrap()).is_ok());
}

#[test]
fn dtls_srtp_needs_a_sha2_fingerprint_and_a_role() {
    let webrtc = |fp: &str, setup: &str| {
        lines(&[
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1",
            &format!("a=fingerprint:{fp}"),
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            "a=candidate:1 1 udp 2122260223 192.0.2.7 54400 typ host",
            setup,
            "a=rtpmap:111 opus/48000/2",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "c=IN IP4 0.0.0.0",
            setup,
        ])
    };
    let good = webrtc(FP, "a=setup:actpass");
    let s = Session::parse(good.as_bytes()).unwrap();
    assert_eq!(judge(&s), Ok(Summary { sdes: false }));
    assert_eq!(
        streams(&s),
        [Ok(Protected::DtlsSrtp), Ok(Protected::DtlsSrtp)]
    );
    let sha1 = webrtc(
        "sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB",
        "a=setup:actpass",
    );
    assert!(judge(&Session::parse(sha1.as_bytes()).unwrap())
        .unwrap_err()
        .contains("not a sha-256/sha-384/sha-512 hash"));
    let holdconn = webrtc(FP, "a=setup:holdconn");
    assert!(judge(&Session::parse(holdconn.as_bytes()).unwrap()).is_err());
    let nofp = good.replace(&format!("a=fingerprint:{FP}\r\n"), "");
    assert!(judge(&Session::parse(nofp.as_bytes()).unwrap())
        .unwrap_err()
        .contains("without a certificate fingerprint"));
}

#[test]
fn transports_that_cannot_be_encrypted_are_named() {
    let fax = lines(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=image 4000 udptl t38",
    ]);
    assert!(judge(&Session::parse(fax.as_bytes()).unwrap())
        .unwrap_err()
        .contains("T.38"));
    let msrp = fax.replace("m=image 4000 udptl t38", "m=message 7654 TCP/MSRP *");
    assert!(judge(&Session::parse(msrp.as_bytes()).unwrap())
        .unwrap_err()
        .contains("plain TCP"));
    let msrps = fax.replace("m=image 4000 udptl t38", "m=message 7654 TCP/TLS/MSRP *");
    assert!(judge(&Session::parse(msrps.as_bytes()).unwrap()).is_ok());
    let odd = fax.replace("m=image 4000 udptl t38", "m=audio 4000 RTP/XYZ 0");
    assert!(judge(&Session::parse(odd.as_bytes()).unwrap())
        .unwrap_err()
        .contains("not known to be encrypted"));
}

#[test]
fn media_addresses_are_connections_candidates_and_rtcp_not_related_or_named() {
    let body = lines(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.2",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=audio 4000 UDP/TLS/RTP/SAVP 0",
        "c=IN IP4 198.51.100.4",
        "a=rtcp:4001 IN IP4 198.51.100.5",
        "a=candidate:1 1 udp 2130706431 10.0.0.2 4000 typ host",
        "a=candidate:2 1 udp 1694498815 203.0.113.7 61000 typ srflx raddr 10.0.0.2 rport 4000",
        "a=candidate:3 1 udp 2130706431 f7c3.local 4000 typ host",
        "a=candidate:4 1 udp 16777215 2001:db8::9 50000 typ relay raddr 203.0.113.7 rport 61000",
        "a=candidate:5 1 udp 1 192.0.2.1 4000 typ host",
    ]);
    let s = Session::parse(body.as_bytes()).unwrap();
    let got: Vec<String> = s.media_addresses().iter().map(|a| a.to_string()).collect();
    assert_eq!(
        got,
        [
            "192.0.2.1",
            "198.51.100.4",
            "198.51.100.5",
            "10.0.0.2",
            "203.0.113.7",
            "2001:db8::9"
        ]
    );
}
