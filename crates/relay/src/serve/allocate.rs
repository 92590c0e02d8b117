//! An Allocate (RFC 8656 §7.2): the credentials first — a SIP user's
//! key asked of the core, or a web credential checked with the relay's
//! secret and its session asked of the store —, then the request's own
//! rules, the quotas and a UDP socket on the relay address.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use stun::attr::{self, PasswordAlgorithm};
use stun::integrity::Integrity;
use stun::{Class, Encoder, Message};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::{
    peer_reader, random_bytes, send_back, unix_now, AllocIo, Ask, Back, KeyAnswer, Settings,
    Shared, MAX_PENDING_ASKS,
};
use crate::auth::{self, Refusal};
use crate::engine::{Client, Grant};

fn error_response(m: &Message<'_>, code: u16, reason: &str) -> Vec<u8> {
    let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
    e.error(code, reason);
    e.finish_with(None, m.fingerprint_ok().is_some())
}

/// An Allocate from a client without an allocation (RFC 8656 §7.2):
/// credentials first, then the request's own rules.
pub(super) async fn allocate(
    shared: &Arc<Shared>,
    client: Client,
    m: &Message<'_>,
    back: &Back,
    unix: u64,
) {
    let s = &shared.settings;
    let ip = client.addr.ip();
    let creds = {
        let e = shared.engine();
        match auth::credentials(m, &e.nonces, &s.realm, ip, unix) {
            Ok(c) => Ok((c.username.to_owned(), c.algorithm)),
            Err(Refusal::Challenge) => Err(auth::challenge(
                m,
                401,
                "Unauthenticated",
                &s.realm,
                &e.nonces.issue(ip, unix),
            )),
            Err(Refusal::Stale) => Err(auth::challenge(
                m,
                438,
                "Stale Nonce",
                &s.realm,
                &e.nonces.issue(ip, unix),
            )),
            Err(Refusal::Bad(why)) => Err(error_response(m, 400, why)),
        }
    };
    let (username, algorithm) = match creds {
        Ok(c) => c,
        Err(response) => {
            shared.count_response(&response);
            return send_back(back, client.addr, response).await;
        }
    };
    if shared.pending.fetch_add(1, Relaxed) >= MAX_PENDING_ASKS {
        shared.pending.fetch_sub(1, Relaxed);
        shared.metrics.dropped_rate.inc();
        return;
    }
    let raw = m.raw().to_vec();
    let (shared, back) = (shared.clone(), back.clone());
    tokio::spawn(async move {
        let r = authenticated_allocate(&shared, client, &raw, &back, username, algorithm).await;
        shared.pending.fetch_sub(1, Relaxed);
        if let Some(response) = r {
            shared.count_response(&response);
            send_back(&back, client.addr, response).await;
        }
    });
}

/// Who is asking, by SIP credentials (the user's digest secret, through
/// the core's lockout and policy) or web credentials (checked with the
/// relay's secret, the session they name still signed in): the grant and
/// the integrity algorithm to answer with, or the response refusing it
/// (`Err(None)`: no answer, the core did not answer).
async fn authenticate(
    shared: &Arc<Shared>,
    m: &Message<'_>,
    ip: IpAddr,
    username: String,
    algorithm: PasswordAlgorithm,
) -> Result<(Grant, Integrity), Option<Vec<u8>>> {
    let unauthenticated = |shared: &Shared| {
        let nonce = shared.engine().nonces.issue(ip, unix_now());
        Some(auth::challenge(
            m,
            401,
            "Unauthenticated",
            &shared.settings.realm,
            &nonce,
        ))
    };
    if username.contains(':') {
        let Some(secret) = shared.settings.web_secret.clone() else {
            return Err(unauthenticated(shared));
        };
        let unix = unix_now();
        let holder =
            match crate::credentials::holder(&username, i64::try_from(unix).unwrap_or(i64::MAX)) {
                Ok(h) => h,
                Err(why) => {
                    shared.metrics.auth_failures.inc();
                    tracing::info!(source = %ip, ?why, "relay: web credentials refused");
                    return Err(unauthenticated(shared));
                }
            };
        let password = crate::credentials::password(&secret[..], &username);
        let key =
            stun::integrity::long_term_key(algorithm, &username, &shared.settings.realm, &password);
        let Ok(integrity) = m.verify(&key) else {
            shared.metrics.auth_failures.inc();
            tracing::info!(user = %holder.aor, source = %ip, "relay: wrong web credentials");
            return Err(unauthenticated(shared));
        };
        let (tx, rx) = oneshot::channel();
        let ask = Ask::Session {
            aor: holder.aor.clone(),
            session: holder.session.clone(),
            reply: tx,
        };
        shared.asks.send(ask).await.map_err(|_| None)?;
        let live = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .map_err(|_| None)?
            .map_err(|_| None)?;
        if !live {
            tracing::info!(user = %holder.aor, source = %ip, "relay: web credentials of a session that has ended");
            return Err(unauthenticated(shared));
        }
        let expires = u64::try_from(holder.expires_at).unwrap_or(0);
        let grant = Grant {
            aor: holder.aor,
            username,
            key,
            web: Some((holder.session, expires)),
        };
        return Ok((grant, integrity));
    }
    let (tx, rx) = oneshot::channel();
    shared
        .asks
        .send(Ask::Key {
            username: username.clone(),
            source: ip,
            request: m.raw().to_vec(),
            reply: tx,
        })
        .await
        .map_err(|_| None)?;
    let answer = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .map_err(|_| None)?
        .map_err(|_| None)?;
    let (aor, key) = match answer {
        KeyAnswer::Refused(why) => {
            tracing::info!(user = %username, source = %ip, why, "relay: allocation refused");
            return Err(Some(error_response(m, 403, "Forbidden")));
        }
        KeyAnswer::Unknown { aor } => (aor, None),
        KeyAnswer::Key {
            aor,
            md5,
            sha256,
            md5_allowed,
        } => {
            if algorithm == PasswordAlgorithm::Md5 && !md5_allowed {
                return Err(Some(error_response(m, 403, "Forbidden")));
            }
            (aor, Some(crate::engine::key_for(algorithm, &md5, &sha256)))
        }
    };
    // An unknown user is checked against a key no one has, so the answer
    // and its timing are those of a wrong password.
    let check_key = key.clone().unwrap_or_else(|| random_bytes::<16>().to_vec());
    let verified = m.verify(&check_key);
    let ok = verified.is_ok() && key.is_some();
    let _ = shared
        .asks
        .send(Ask::Outcome {
            aor: aor.clone(),
            source: ip,
            ok,
        })
        .await;
    let (Ok(integrity), Some(key)) = (verified, key) else {
        shared.metrics.auth_failures.inc();
        tracing::info!(user = %aor, source = %ip, "relay: wrong credentials");
        return Err(unauthenticated(shared));
    };
    let grant = Grant {
        aor,
        username,
        key,
        web: None,
    };
    Ok((grant, integrity))
}

/// The rest of an Allocate, once its user's key is known: the response
/// to send (`None`: none, the core did not answer).
async fn authenticated_allocate(
    shared: &Arc<Shared>,
    client: Client,
    raw: &[u8],
    back: &Back,
    username: String,
    algorithm: PasswordAlgorithm,
) -> Option<Vec<u8>> {
    let m = Message::parse(raw).ok()?;
    let (grant, integrity) =
        match authenticate(shared, &m, client.addr.ip(), username, algorithm).await {
            Ok(g) => g,
            Err(response) => return response,
        };
    let key = grant.key.clone();
    let signed_error = |code: u16, reason: &str| {
        let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
        e.error(code, reason);
        e.finish_with(Some((integrity, &key)), m.fingerprint_ok().is_some())
    };
    // The request's own rules (RFC 8656 §7.2 steps 2-8).
    if m.get(attr::DONT_FRAGMENT).is_some() {
        let mut e = Encoder::new(Class::Error, m.method, m.transaction_id);
        e.error(420, "Unknown Attribute");
        let _ = e.attr(attr::UNKNOWN_ATTRIBUTES, &attr::DONT_FRAGMENT.to_be_bytes());
        return Some(e.finish_with(Some((integrity, &key)), m.fingerprint_ok().is_some()));
    }
    match m
        .get(attr::REQUESTED_TRANSPORT)
        .map(attr::requested_transport)
    {
        Some(Ok(attr::TRANSPORT_UDP)) => {}
        Some(Ok(_)) => return Some(signed_error(442, "Unsupported Transport Protocol")),
        _ => {
            return Some(signed_error(
                400,
                "Bad Request: REQUESTED-TRANSPORT is needed",
            ))
        }
    }
    if m.get(attr::RESERVATION_TOKEN).is_some() {
        return Some(signed_error(508, "Insufficient Capacity"));
    }
    let even = match m.get(attr::EVEN_PORT).map(attr::even_port_reserve) {
        None => false,
        Some(Ok(false)) => true,
        // Reserving the next port is not offered.
        Some(Ok(true)) => return Some(signed_error(508, "Insufficient Capacity")),
        Some(Err(_)) => return Some(signed_error(400, "Bad Request: EVEN-PORT is malformed")),
    };
    let v4 = shared.settings.relay_ip.is_ipv4();
    if let Some(v) = m.get(attr::REQUESTED_ADDRESS_FAMILY) {
        match attr::address_family(attr::REQUESTED_ADDRESS_FAMILY, v) {
            Ok(f) if (f == 1) == v4 => {}
            Ok(_) => return Some(signed_error(440, "Address Family not Supported")),
            Err(_) => {
                return Some(signed_error(
                    400,
                    "Bad Request: REQUESTED-ADDRESS-FAMILY is malformed",
                ))
            }
        }
    }
    let requested = match m
        .get(attr::LIFETIME)
        .map(|v| attr::u32_value(attr::LIFETIME, v))
    {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => return Some(signed_error(400, "Bad Request: LIFETIME is malformed")),
    };
    let session = grant.web.as_ref().map(|(s, _)| s.as_str());
    if shared.control.revoked(&grant.aor, session, Instant::now()) {
        // Revoked this very moment: not a new allocation either.
        return Some(signed_error(403, "Forbidden"));
    }
    let (lifetime, room) = {
        let e = shared.engine();
        let lifetime = match &grant.web {
            Some((_, expires)) => e.web_lifetime(requested, *expires, unix_now()),
            None => e.lifetime(requested),
        };
        (lifetime, e.room_for(&grant.aor))
    };
    if let Err((code, reason)) = room {
        tracing::info!(user = %grant.aor, code, "relay: allocation quota");
        return Some(signed_error(code, reason));
    }
    let Some(socket) = bind_relayed(&shared.settings, even) else {
        tracing::warn!("relay: no free port in the relay range");
        return Some(signed_error(508, "Insufficient Capacity"));
    };
    let local = socket.local_addr().ok()?;
    let relayed = SocketAddr::new(shared.settings.external_ip, local.port());
    let mut e = Encoder::new(Class::Success, m.method, m.transaction_id);
    e.xor_address(attr::XOR_RELAYED_ADDRESS, relayed);
    e.xor_address(attr::XOR_MAPPED_ADDRESS, client.addr);
    e.u32(attr::LIFETIME, lifetime);
    let response = e.finish_with(Some((integrity, &key)), m.fingerprint_ok().is_some());
    let io = Arc::new(AllocIo {
        socket: Arc::new(socket),
        back: back.clone(),
        task: OnceLock::new(),
    });
    let id = {
        let mut e = shared.engine();
        // (Checked again: other Allocates may have been made meanwhile.)
        if let Err((code, reason)) = e.room_for(&grant.aor) {
            drop(e);
            return Some(signed_error(code, reason));
        }
        if let Some(r) = e.allocate_again(&client, &m) {
            return Some(r);
        }
        e.insert(
            client,
            grant,
            local,
            relayed,
            lifetime,
            (m.transaction_id, response.clone()),
            io.clone(),
            Instant::now(),
        )
    };
    let task = tokio::spawn(peer_reader(shared.clone(), id, io.clone()));
    let _ = io.task.set(task.abort_handle());
    Some(response)
}

/// A UDP socket on the relay address, on a random port of the range
/// (even when asked).
fn bind_relayed(s: &Settings, even: bool) -> Option<UdpSocket> {
    let (lo, hi) = (*s.ports.start(), *s.ports.end());
    let span = u32::from(hi - lo) + 1;
    for _ in 0..64 {
        let r = u32::from_be_bytes(random_bytes::<4>()) % span;
        let mut port = lo + r as u16;
        if even && port % 2 == 1 {
            port = if port > lo { port - 1 } else { port + 1 };
            if port > hi {
                continue;
            }
        }
        if let Ok(sock) = std::net::UdpSocket::bind(SocketAddr::new(s.relay_ip, port)) {
            if sock.set_nonblocking(true).is_ok() {
                if let Ok(sock) = UdpSocket::from_std(sock) {
                    return Some(sock);
                }
            }
        }
    }
    None
}
