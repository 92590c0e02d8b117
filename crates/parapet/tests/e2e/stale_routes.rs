//! Routes a client kept from before a restart: the Record-Route flow
//! tokens of a dialog name a connection of the process that signed them,
//! never the connection that happens to have the same number in the next.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use auth::digest::{expected_response, ha1, Algorithm};

use crate::harness::*;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A user's client on one TLS connection to the server.
struct Client {
    user: &'static str,
    conn: Tls,
    /// Bytes read past the last message.
    rest: Vec<u8>,
    n: u32,
}

impl Client {
    fn connect(s: &Server, user: &'static str) -> Client {
        Client {
            user,
            conn: s.tls_to(s.tls),
            rest: Vec::new(),
            n: 0,
        }
    }

    fn local(&self) -> String {
        self.conn.sock.local_addr().unwrap().to_string()
    }

    /// The next message on the connection (head and body), or `None` if
    /// nothing came within `wait`.
    fn read(&mut self, wait: Duration) -> Option<String> {
        self.conn.sock.set_read_timeout(Some(wait)).unwrap();
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = self.rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.rest[..end]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if self.rest.len() >= end + 4 + len {
                    let msg: Vec<u8> = self.rest.drain(..end + 4 + len).collect();
                    return Some(String::from_utf8_lossy(&msg).to_string());
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            match self.conn.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.rest.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("{}: {e}", self.user),
            }
        }
    }

    /// The next request on the connection (responses to this client's own
    /// requests skipped), or `None` if none came within `wait`.
    fn next_request(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let m = self.read(left)?;
            if !m.starts_with("SIP/2.0 ") {
                return Some(m);
            }
        }
    }

    /// The next response, skipping provisional ones.
    fn final_response(&mut self) -> String {
        loop {
            let m = self
                .read(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("{}: no response", self.user));
            if m.starts_with("SIP/2.0 1") {
                continue;
            }
            assert!(m.starts_with("SIP/2.0 "), "{}: {m}", self.user);
            return m;
        }
    }

    fn send(&mut self, text: &str) {
        self.conn.write_all(text.as_bytes()).unwrap();
    }

    /// Sends `method` to `uri` (From: this user), answering one digest
    /// challenge; returns the final response.
    fn request(&mut self, method: &str, uri: &str, to: &str, extra: &str, body: &str) -> String {
        let mut auth = String::new();
        for _ in 0..2 {
            self.n += 1;
            let (local, user, n) = (self.local(), self.user, self.n);
            self.send(&format!(
                "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK{user}{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag={user}t\r\nTo: <{to}>\r\n\
                 Call-ID: {user}-{}@stale\r\nCSeq: {n} {method}\r\n\
                 Contact: <sip:{user}@{local};transport=tls>\r\n{extra}{auth}\
                 Content-Length: {}\r\n\r\n{body}",
                if method == "REGISTER" { "reg" } else { "call" },
                body.len()
            ));
            let resp = self.final_response();
            let (header, nonce) = match resp.split(' ').nth(1) {
                Some("401") => ("Authorization", challenge(&resp, "WWW-Authenticate")),
                Some("407") => (
                    "Proxy-Authorization",
                    challenge(&resp, "Proxy-Authenticate"),
                ),
                _ => return resp,
            };
            auth = digest(header, self.user, method, uri, &nonce);
        }
        panic!("{}: challenged twice for {method}", self.user)
    }

    fn register(&mut self) {
        let resp = self.request(
            "REGISTER",
            &format!("sip:{DOMAIN}"),
            &format!("sip:{}@{DOMAIN}", self.user),
            "Expires: 600\r\n",
            "",
        );
        assert!(resp.starts_with("SIP/2.0 200 "), "{}: {resp}", self.user);
    }
}

fn password(user: &str) -> &'static str {
    match user {
        "alice" => "correct horse battery",
        "bob" => "battery staple horse",
        _ => "staple horse correct",
    }
}

/// A `header` line answering `nonce` for `user`'s `method` to `uri`.
fn digest(header: &str, user: &str, method: &str, uri: &str, nonce: &str) -> String {
    let h = ha1(Algorithm::Sha256, user, DOMAIN, password(user));
    let response = expected_response(
        Algorithm::Sha256,
        &h,
        nonce,
        "00000001",
        "c0ffee",
        "auth",
        method,
        uri,
    );
    format!(
        "{header}: Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, \
         nc=00000001, cnonce=\"c0ffee\"\r\n"
    )
}

/// The SHA-256 challenge's nonce in `header` of a 401 or 407.
fn challenge(resp: &str, header: &str) -> String {
    resp.lines()
        .filter_map(|l| l.strip_prefix(&format!("{header}: ")))
        .find(|c| c.contains("SHA-256"))
        .and_then(|c| c.split("nonce=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("no SHA-256 challenge: {resp}"))
        .to_string()
}

/// An offer SDES-protected media (the signalling is TLS on every hop).
const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 \
inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoZ\r\n";

/// `caller` calls `callee` (both connected and registered) in dialog
/// `call_id`; returns the route set the callee's copy of the INVITE
/// carries (RFC 3261 §12.1.2: its Record-Route as is), whose second entry
/// has a token naming the caller's connection.
fn call_route(s: &Server, caller: &mut Client, callee: &mut Client, call_id: &str) -> String {
    caller.n += 1;
    let (local, n, from, to) = (caller.local(), caller.n, caller.user, callee.user);
    let invite = |auth: &str, n: u32| {
        format!(
            "INVITE sip:{to}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKinv{n}{to}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}@{DOMAIN}>;tag={from}call\r\nTo: <sip:{to}@{DOMAIN}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {n} INVITE\r\nContact: <sip:{from}@{local};transport=tls>\r\n\
             Content-Type: application/sdp\r\n{auth}Content-Length: {}\r\n\r\n{OFFER}",
            OFFER.len()
        )
    };
    caller.send(&invite("", n));
    let resp = caller.final_response();
    assert!(resp.starts_with("SIP/2.0 407 "), "{resp}");
    caller.send(&format!(
        "ACK sip:{to}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKinv{n}{to}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from}@{DOMAIN}>;tag={from}call\r\nTo: <sip:{to}@{DOMAIN}>;tag={}\r\n\
         Call-ID: {call_id}\r\nCSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n",
        resp.split("tag=").last().unwrap_or("").lines().next().unwrap_or("")
    ));
    let nonce = challenge(&resp, "Proxy-Authenticate");
    let auth = digest(
        "Proxy-Authorization",
        from,
        "INVITE",
        &format!("sip:{to}@{DOMAIN}"),
        &nonce,
    );
    caller.send(&invite(&auth, n + 1));
    let offered = callee
        .read(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{to} got no INVITE; server:\n{}", s.log()));
    assert!(offered.starts_with("INVITE "), "{offered}");
    let route: Vec<&str> = offered
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    assert_eq!(route.len(), 2, "{offered}");
    assert!(
        route[1].contains("@"),
        "a token names {from}'s connection: {offered}"
    );
    route.join(", ")
}

/// A MESSAGE from `from` along `route`, in dialog `call_id` (it has a To
/// tag), to `to`'s contact.
fn send_along(c: &mut Client, route: &str, call_id: &str, from: &str, to: &str, body: &str) {
    let local = c.local();
    let branch: String = call_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    c.send(&format!(
        "MESSAGE sip:{to}@{local} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK{branch}m\r\n\
         Route: {route}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@{DOMAIN}>;tag={from}call\r\n\
         To: <sip:{to}@{DOMAIN}>;tag={to}call\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
}

#[test]
fn a_dialog_route_from_before_a_restart_reaches_no_other_users_connection() {
    let mut s = Server::with_config("stale-route", "digest_algorithms = [\"SHA-256\"]");
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, password(u));
    }
    // alice (the first connection) calls bob; bob's copy of the INVITE
    // carries the route set, with a token naming alice's connection.
    let mut alice = Client::connect(&s, "alice");
    alice.register();
    let mut bob = Client::connect(&s, "bob");
    bob.register();
    let route = call_route(&s, &mut alice, &mut bob, "call-stale@alice");

    // The server restarts; carol is now the first to connect.
    s.kill9();
    drop((alice, bob));
    s.start();
    let mut carol = Client::connect(&s, "carol");
    carol.register();
    let mut bob = Client::connect(&s, "bob");
    bob.register();

    // bob goes on with the dialog he knew: a MESSAGE along its route set.
    send_along(
        &mut bob,
        &route,
        "call-stale@alice",
        "bob",
        "alice",
        "the door code is 4711",
    );
    let seen = carol.next_request(Duration::from_secs(2));
    assert!(
        seen.is_none(),
        "carol received bob's message to alice: {seen:?}"
    );
    let answer = bob.final_response();
    assert!(answer.starts_with("SIP/2.0 430 Flow Failed"), "{answer}");
}

#[test]
fn a_route_learnt_in_one_dialog_steers_no_request_of_another() {
    let s = Server::with_config("borrowed-route", "digest_algorithms = [\"SHA-256\"]");
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, password(u));
    }
    let mut alice = Client::connect(&s, "alice");
    alice.register();
    let mut carol = Client::connect(&s, "carol");
    carol.register();
    // alice calls carol: carol learns a token naming alice's connection.
    let route = call_route(&s, &mut alice, &mut carol, "call-1@alice");
    // Within that dialog, carol reaches alice along it...
    send_along(
        &mut carol,
        &route,
        "call-1@alice",
        "carol",
        "alice",
        "hello",
    );
    let got = alice
        .next_request(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("alice got nothing in her own dialog:\n{}", s.log()));
    assert!(
        got.starts_with("MESSAGE ") && got.ends_with("hello"),
        "{got}"
    );
    // ...but the same route in a dialog of carol's making, posing as bob
    // (no credentials: in a dialog none are asked), goes nowhere.
    send_along(
        &mut carol,
        &route,
        "made-up@carol",
        "bob",
        "alice",
        "bob here: the door code is 4711",
    );
    let seen = alice.next_request(Duration::from_secs(2));
    assert!(seen.is_none(), "alice received a forged message: {seen:?}");
    let answer = loop {
        let m = carol.final_response();
        if m.contains("made-up@carol") {
            break m;
        }
    };
    assert!(answer.starts_with("SIP/2.0 404 "), "{answer}");
}
