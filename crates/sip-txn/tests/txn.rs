//! Transaction state machines driven with a fake clock: every instant is computed
//! from a fixed origin, so timer behaviour is exact and repeatable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::build::ResponseBuilder;
use sip::{parse_datagram, Limits, Message, RequestFields, ResponseFields};
use sip_txn::{
    service_unavailable, Action, ClientEvent, Config, Reliability, ServerEvent, TxnLayer,
};

const UDP: Reliability = Reliability::Unreliable;
const TCP: Reliability = Reliability::Reliable;

fn msg(s: String) -> Message {
    parse_datagram(Bytes::from(s), &Limits::DEFAULT).unwrap()
}

fn request(method: &str, branch: Option<&str>) -> Message {
    let via = match branch {
        Some(b) => format!("SIP/2.0/UDP 192.0.2.1:5060;branch={b}"),
        None => "SIP/2.0/UDP 192.0.2.1:5060".to_string(),
    };
    msg(format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\nCall-ID: call-1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn response(status: u16, method: &str, branch: &str, to_tag: Option<&str>) -> Message {
    let to = match to_tag {
        Some(t) => format!("<sip:bob@example.com>;tag={t}"),
        None => "<sip:bob@example.com>".into(),
    };
    msg(format!(
        "SIP/2.0 {status} Whatever\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: {to}\r\nCall-ID: call-1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

struct Harness {
    t0: Instant,
    layer: TxnLayer<&'static str>,
    out: Vec<Action<&'static str>>,
}

impl Harness {
    fn new() -> Self {
        let t0 = Instant::now();
        Harness {
            t0,
            layer: TxnLayer::new(Config::default(), t0),
            out: Vec::new(),
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    fn recv(&mut self, m: &Message, r: Reliability, ms: u64) -> ServerEvent {
        let f = RequestFields::extract(m).unwrap();
        let now = self.at(ms);
        self.layer
            .on_request(m, &f, "peer", r, now, &mut self.out)
            .unwrap()
    }
    fn recv_resp(&mut self, m: &Message, ms: u64) -> ClientEvent {
        let f = ResponseFields::extract(m).unwrap();
        let now = self.at(ms);
        self.layer.on_response(m, &f, now, &mut self.out)
    }
    fn poll(&mut self, ms: u64) {
        let now = self.at(ms);
        self.layer.poll(now, &mut self.out);
    }
    fn take(&mut self) -> Vec<Action<&'static str>> {
        std::mem::take(&mut self.out)
    }
    fn sends(&mut self) -> Vec<String> {
        self.take()
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { bytes, .. } => Some(String::from_utf8_lossy(&bytes).into_owned()),
                _ => None,
            })
            .collect()
    }
    /// Polls every 10 ms from `from` to `to` and records when sends happen.
    fn send_times(&mut self, from: u64, to: u64) -> Vec<u64> {
        let mut times = Vec::new();
        let mut ms = from;
        while ms <= to {
            self.poll(ms);
            for a in self.take() {
                if matches!(a, Action::Send { .. }) {
                    times.push(ms);
                }
                self.out.push(a);
            }
            self.out.retain(|a| !matches!(a, Action::Send { .. }));
            ms += 10;
        }
        times
    }
}

#[test]
fn non_invite_server_over_udp_absorbs_and_lingers_for_timer_j() {
    let mut h = Harness::new();
    let req = request("MESSAGE", Some("z9hG4bKm1"));
    let ServerEvent::New(id) = h.recv(&req, UDP, 0) else {
        panic!()
    };
    assert!(h.sends().is_empty(), "no automatic response to non-INVITE");
    assert_eq!(h.recv(&req, UDP, 100), ServerEvent::Retransmission(id));
    assert!(h.sends().is_empty(), "Trying absorbs silently");
    let ok = ResponseBuilder::new(&req, 200, "OK").to_tag("s1").finish();
    assert!(h.layer.respond(id, 200, ok.clone(), h.at(200), &mut h.out));
    // Completed: out of the table at once, only the response kept.
    assert!(h
        .out
        .iter()
        .any(|a| matches!(a, Action::Terminated { id: t } if *t == id)));
    assert_eq!(h.sends().len(), 1);
    assert!(
        h.layer.is_empty(),
        "a completed transaction is not in progress"
    );
    assert_eq!(h.layer.completed_len(), 1);
    assert_eq!(h.recv(&req, UDP, 1000), ServerEvent::Answered);
    assert_eq!(h.sends(), vec![String::from_utf8_lossy(&ok).into_owned()]);
    assert!(
        !h.layer.respond(id, 200, ok, h.at(1100), &mut h.out),
        "a second final response is refused"
    );
    h.poll(200 + 31_990);
    assert_eq!(h.layer.completed_len(), 1, "timer J is 64*T1");
    assert_eq!(h.recv(&req, UDP, 200 + 31_995), ServerEvent::Answered);
    h.poll(200 + 32_010);
    assert_eq!(h.layer.completed_len(), 0);
    assert_eq!(h.layer.completed_bytes(), 0);
    assert!(matches!(h.recv(&req, UDP, 40_000), ServerEvent::New(_)));
}

#[test]
fn completed_transactions_are_bounded_in_bytes_and_the_oldest_go_first() {
    let t0 = Instant::now();
    let mut layer: TxnLayer<()> = TxnLayer::new(
        Config {
            max_completed_bytes: 20_000,
            ..Config::default()
        },
        t0,
    );
    let mut out = Vec::new();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let reqs: Vec<Message> = (0..200)
        .map(|i| request("REGISTER", Some(&format!("z9hG4bKb{i}"))))
        .collect();
    for (i, m) in reqs.iter().enumerate() {
        let f = RequestFields::extract(m).unwrap();
        let ms = i as u64 * 10;
        let Ok(ServerEvent::New(id)) = layer.on_request(m, &f, (), UDP, at(ms), &mut out) else {
            panic!("request {i} refused: completed transactions must not fill the table")
        };
        let ok = ResponseBuilder::new(m, 200, "OK").to_tag("s").finish();
        assert!(layer.respond(id, 200, ok, at(ms), &mut out));
        assert!(
            layer.completed_bytes() <= 20_000,
            "{}",
            layer.completed_bytes()
        );
    }
    assert!(layer.is_empty());
    let kept = layer.completed_len();
    assert!(kept > 10 && kept < 200, "{kept}");
    assert_eq!(layer.completed_evicted(), 200 - kept as u64);
    // The newest are still answered from memory; the oldest went first and
    // are new requests again.
    let recv = |layer: &mut TxnLayer<()>, m: &Message, ms: u64, out: &mut Vec<Action<()>>| {
        let f = RequestFields::extract(m).unwrap();
        layer.on_request(m, &f, (), UDP, at(ms), out).unwrap()
    };
    assert_eq!(
        recv(&mut layer, &reqs[199], 2_000, &mut out),
        ServerEvent::Answered
    );
    assert_eq!(
        recv(&mut layer, &reqs[200 - kept], 2_000, &mut out),
        ServerEvent::Answered
    );
    assert!(matches!(
        recv(&mut layer, &reqs[199 - kept], 2_000, &mut out),
        ServerEvent::New(_)
    ));
    assert!(matches!(
        recv(&mut layer, &reqs[0], 2_000, &mut out),
        ServerEvent::New(_)
    ));
    // Timer J still ends the rest, oldest first.
    let first = 200 - kept;
    let j = |i: usize| i as u64 * 10 + 32_000;
    layer.poll(at(j(first)), &mut out);
    assert_eq!(layer.completed_len(), kept - 1);
    assert!(matches!(
        recv(&mut layer, &reqs[first], j(first), &mut out),
        ServerEvent::New(_)
    ));
    assert_eq!(
        recv(&mut layer, &reqs[199], j(first), &mut out),
        ServerEvent::Answered
    );
    layer.poll(at(2_000 + 32_000), &mut out);
    assert_eq!(layer.completed_len(), 0);
    assert_eq!(layer.completed_bytes(), 0);
}

#[test]
fn only_transactions_in_progress_count_toward_a_full_table() {
    let t0 = Instant::now();
    let mut layer: TxnLayer<()> = TxnLayer::new(
        Config {
            max_transactions: 2,
            ..Config::default()
        },
        t0,
    );
    let mut out = Vec::new();
    // A thousand requests answered at once: never full.
    for i in 0..1000 {
        let m = request("MESSAGE", Some(&format!("z9hG4bKq{i}")));
        let f = RequestFields::extract(&m).unwrap();
        let Ok(ServerEvent::New(id)) = layer.on_request(&m, &f, (), UDP, t0, &mut out) else {
            panic!("request {i} refused")
        };
        let ok = ResponseBuilder::new(&m, 202, "Accepted").finish();
        assert!(layer.respond(id, 202, ok, t0, &mut out));
    }
    assert_eq!(layer.completed_len(), 1000);
    // Two left unanswered fill it.
    for (i, b) in ["z9hG4bKp1", "z9hG4bKp2", "z9hG4bKp3"].iter().enumerate() {
        let m = request("MESSAGE", Some(b));
        let f = RequestFields::extract(&m).unwrap();
        assert_eq!(
            layer.on_request(&m, &f, (), UDP, t0, &mut out).is_err(),
            i == 2
        );
    }
}

#[test]
fn a_challenge_sent_and_forgotten_keeps_nothing() {
    let mut h = Harness::new();
    let req = request("REGISTER", Some("z9hG4bKr1"));
    let ServerEvent::New(id) = h.recv(&req, UDP, 0) else {
        panic!()
    };
    let challenge = ResponseBuilder::new(&req, 401, "Unauthorized")
        .to_tag("s1")
        .finish();
    assert!(h
        .layer
        .respond_and_forget(id, 401, challenge, h.at(10), &mut h.out));
    assert!(h
        .out
        .iter()
        .any(|a| matches!(a, Action::Terminated { id: t } if *t == id)));
    assert_eq!(h.sends().len(), 1);
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.completed_len(), 0);
    // A retransmission is a new request for the TU, not absorbed.
    assert!(matches!(h.recv(&req, UDP, 500), ServerEvent::New(n) if n != id));
    // No timer of the forgotten transaction fires later.
    h.poll(40_000);
    assert!(h.sends().is_empty());
}

#[test]
fn an_abandoned_server_transaction_is_gone_at_once() {
    let mut h = Harness::new();
    let req = request("REGISTER", Some("z9hG4bKr2"));
    let ServerEvent::New(id) = h.recv(&req, UDP, 0) else {
        panic!()
    };
    h.layer.abandon(id, &mut h.out);
    assert!(h
        .take()
        .iter()
        .any(|a| matches!(a, Action::Terminated { id: t } if *t == id)));
    assert!(h.layer.is_empty());
    assert!(matches!(h.recv(&req, UDP, 500), ServerEvent::New(n) if n != id));
}

#[test]
fn non_invite_server_over_tcp_ends_at_once() {
    let mut h = Harness::new();
    let req = request("OPTIONS", Some("z9hG4bKo1"));
    let ServerEvent::New(id) = h.recv(&req, TCP, 0) else {
        panic!()
    };
    let ok = ResponseBuilder::new(&req, 200, "OK").finish();
    h.layer.respond(id, 200, ok, h.at(0), &mut h.out);
    h.poll(10);
    assert!(h.layer.is_empty());
}

#[test]
fn invite_server_sends_trying_then_retransmits_final_with_timer_g_until_ack() {
    let mut h = Harness::new();
    let inv = request("INVITE", Some("z9hG4bKi1"));
    let ServerEvent::New(id) = h.recv(&inv, UDP, 0) else {
        panic!()
    };
    let sent = h.sends();
    assert!(sent[0].starts_with("SIP/2.0 100 Trying\r\n"), "{sent:?}");
    assert!(
        sent[0].contains("\r\nTo: <sip:bob@example.com>\r\n"),
        "100 Trying carries no To tag"
    );
    assert_eq!(h.recv(&inv, UDP, 50), ServerEvent::Retransmission(id));
    assert!(h.sends()[0].starts_with("SIP/2.0 100"));
    let busy = ResponseBuilder::new(&inv, 486, "Busy Here")
        .to_tag("s1")
        .finish();
    h.layer.respond(id, 486, busy, h.at(100), &mut h.out);
    assert_eq!(h.sends().len(), 1);
    // Timer G: T1, then doubling to T2.
    let times = h.send_times(110, 8_000);
    assert_eq!(times, vec![600, 1_600, 3_600, 7_600]);
    let ack = request("ACK", Some("z9hG4bKi1"));
    assert_eq!(h.recv(&ack, UDP, 8_000), ServerEvent::AckAbsorbed(id));
    assert!(
        h.send_times(8_010, 12_000).is_empty(),
        "ACK stops retransmissions"
    );
    h.poll(8_000 + 5_010); // timer I = T4
    assert!(h.layer.is_empty());
}

#[test]
fn invite_server_without_ack_times_out_with_timer_h() {
    let mut h = Harness::new();
    let inv = request("INVITE", Some("z9hG4bKi2"));
    let ServerEvent::New(id) = h.recv(&inv, UDP, 0) else {
        panic!()
    };
    h.take();
    h.layer.respond(
        id,
        404,
        ResponseBuilder::new(&inv, 404, "Not Found").finish(),
        h.at(0),
        &mut h.out,
    );
    h.take();
    let times = h.send_times(10, 31_990);
    assert_eq!(
        times,
        vec![500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    h.poll(32_010);
    let actions = h.take();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Timeout { id: t } if *t == id)),
        "{actions:?}"
    );
    assert!(h.layer.is_empty());
}

#[test]
fn invite_server_accepted_state_rfc6026() {
    let mut h = Harness::new();
    let inv = request("INVITE", Some("z9hG4bKi3"));
    let ServerEvent::New(id) = h.recv(&inv, UDP, 0) else {
        panic!()
    };
    h.take();
    let ok = ResponseBuilder::new(&inv, 200, "OK").to_tag("s1").finish();
    h.layer.respond(id, 200, ok.clone(), h.at(0), &mut h.out);
    assert_eq!(h.sends().len(), 1);
    assert_eq!(h.recv(&inv, UDP, 500), ServerEvent::Retransmission(id));
    assert!(
        h.sends().is_empty(),
        "INVITE retransmissions are absorbed in Accepted"
    );
    assert!(
        h.layer.respond(id, 200, ok, h.at(600), &mut h.out),
        "2xx retransmissions pass"
    );
    let ack = request("ACK", Some("z9hG4bKnewbranch"));
    assert_eq!(h.recv(&ack, UDP, 700), ServerEvent::AckForTu);
    h.poll(32_010);
    assert!(h.layer.is_empty(), "timer L");
}

#[test]
fn cancel_finds_its_invite_and_is_its_own_transaction() {
    let mut h = Harness::new();
    let inv = request("INVITE", Some("z9hG4bKc1"));
    let ServerEvent::New(inv_id) = h.recv(&inv, UDP, 0) else {
        panic!()
    };
    let cancel = request("CANCEL", Some("z9hG4bKc1"));
    let f = RequestFields::extract(&cancel).unwrap();
    assert_eq!(h.layer.cancel_target(&f), Some(inv_id));
    assert!(h.layer.is_proceeding(inv_id));
    let ServerEvent::New(cancel_id) = h.recv(&cancel, UDP, 10) else {
        panic!()
    };
    assert_ne!(cancel_id, inv_id);
    let other = request("CANCEL", Some("z9hG4bKother"));
    assert_eq!(
        h.layer
            .cancel_target(&RequestFields::extract(&other).unwrap()),
        None
    );
}

#[test]
fn rfc2543_requests_match_without_a_branch() {
    let mut h = Harness::new();
    let inv = request("INVITE", None);
    let ServerEvent::New(id) = h.recv(&inv, UDP, 0) else {
        panic!()
    };
    assert_eq!(h.recv(&inv, UDP, 100), ServerEvent::Retransmission(id));
    h.layer.respond(
        id,
        480,
        ResponseBuilder::new(&inv, 480, "Unavailable")
            .to_tag("x")
            .finish(),
        h.at(100),
        &mut h.out,
    );
    let ack = request("ACK", None);
    assert_eq!(h.recv(&ack, UDP, 200), ServerEvent::AckAbsorbed(id));
    // The bare magic cookie is not an RFC 3261 branch either (RFC 4475 §3.2.1).
    let bare = request("OPTIONS", Some("z9hG4bK"));
    let ServerEvent::New(b) = h.recv(&bare, UDP, 300) else {
        panic!()
    };
    assert_eq!(h.recv(&bare, UDP, 400), ServerEvent::Retransmission(b));
}

#[test]
fn non_invite_client_retransmits_with_timer_e_and_times_out_with_f() {
    let mut h = Harness::new();
    let id = h
        .layer
        .send_request(
            request("MESSAGE", Some("z9hG4bKc2")),
            "peer",
            UDP,
            h.at(0),
            &mut h.out,
        )
        .unwrap();
    assert_eq!(h.sends().len(), 1);
    let times = h.send_times(10, 31_990);
    assert_eq!(
        times,
        vec![500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    h.poll(32_010);
    let a = h.take();
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Timeout { id: t } if *t == id)));
    assert!(h.layer.is_empty());
}

#[test]
fn non_invite_client_provisional_then_final() {
    let mut h = Harness::new();
    let id = h
        .layer
        .send_request(
            request("MESSAGE", Some("z9hG4bKc3")),
            "peer",
            UDP,
            h.at(0),
            &mut h.out,
        )
        .unwrap();
    h.take();
    assert_eq!(
        h.recv_resp(&response(100, "MESSAGE", "z9hG4bKc3", None), 100),
        ClientEvent::Deliver(id)
    );
    // In Proceeding, Timer E fires at T2 intervals (the one armed at T1 first).
    let times = h.send_times(110, 9_000);
    assert_eq!(times, vec![500, 4_500, 8_500]);
    assert_eq!(
        h.recv_resp(&response(200, "MESSAGE", "z9hG4bKc3", Some("b")), 9_000),
        ClientEvent::Deliver(id)
    );
    // Ended with its final response: no slot held for timer K; a
    // retransmitted response is a stray for the TU to drop.
    assert!(h
        .out
        .iter()
        .any(|a| matches!(a, Action::Terminated { id: t } if *t == id)));
    assert!(h.layer.is_empty());
    assert_eq!(
        h.recv_resp(&response(200, "MESSAGE", "z9hG4bKc3", Some("b")), 9_100),
        ClientEvent::Stray
    );
    assert!(
        h.send_times(9_010, 15_000).is_empty(),
        "no retransmission after the final response"
    );
}

#[test]
fn invite_client_timer_a_doubles_and_b_times_out() {
    let mut h = Harness::new();
    let id = h
        .layer
        .send_request(
            request("INVITE", Some("z9hG4bKc4")),
            "peer",
            UDP,
            h.at(0),
            &mut h.out,
        )
        .unwrap();
    h.take();
    let times = h.send_times(10, 31_990);
    assert_eq!(times, vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    h.poll(32_010);
    assert!(h
        .take()
        .iter()
        .any(|a| matches!(a, Action::Timeout { id: t } if *t == id)));
}

#[test]
fn invite_client_acks_non_2xx_and_reacks_retransmissions() {
    let mut h = Harness::new();
    let id = h
        .layer
        .send_request(
            request("INVITE", Some("z9hG4bKc5")),
            "peer",
            UDP,
            h.at(0),
            &mut h.out,
        )
        .unwrap();
    h.take();
    assert_eq!(
        h.recv_resp(&response(180, "INVITE", "z9hG4bKc5", Some("b1")), 100),
        ClientEvent::Deliver(id)
    );
    assert!(
        h.send_times(110, 5_000).is_empty(),
        "a provisional stops timer A"
    );
    assert_eq!(
        h.recv_resp(&response(486, "INVITE", "z9hG4bKc5", Some("b1")), 5_000),
        ClientEvent::Deliver(id)
    );
    let ack = h.sends();
    assert_eq!(ack.len(), 1);
    let a = msg(ack[0].clone());
    let f = RequestFields::extract(&a).unwrap();
    assert_eq!(f.method, sip::Method::Ack);
    assert_eq!(f.cseq.seq, 1);
    assert_eq!(f.cseq.method, sip::Method::Ack);
    assert_eq!(f.to.tag(), Some("b1"));
    assert_eq!(f.top_via.branch(), Some("z9hG4bKc5"));
    assert_eq!(f.request_uri.as_sip().unwrap().raw, "sip:bob@example.com");
    assert_eq!(
        h.recv_resp(&response(486, "INVITE", "z9hG4bKc5", Some("b1")), 5_500),
        ClientEvent::Absorbed(id)
    );
    assert_eq!(h.sends(), ack, "the same ACK again");
    h.poll(5_000 + 32_010); // timer D
    assert!(h.layer.is_empty());
}

#[test]
fn invite_client_accepted_passes_forked_2xx() {
    let mut h = Harness::new();
    let id = h
        .layer
        .send_request(
            request("INVITE", Some("z9hG4bKc6")),
            "peer",
            TCP,
            h.at(0),
            &mut h.out,
        )
        .unwrap();
    h.take();
    assert!(
        h.send_times(10, 2_000).is_empty(),
        "no retransmission over TCP"
    );
    assert_eq!(
        h.recv_resp(&response(200, "INVITE", "z9hG4bKc6", Some("x")), 2_000),
        ClientEvent::Deliver(id)
    );
    assert_eq!(
        h.recv_resp(&response(200, "INVITE", "z9hG4bKc6", Some("y")), 2_100),
        ClientEvent::Deliver(id)
    );
    assert!(
        h.sends().is_empty(),
        "the TU acknowledges 2xx, not the transaction"
    );
    h.poll(2_000 + 32_010); // timer M
    assert!(h.layer.is_empty());
}

#[test]
fn full_table_is_refused_with_a_stateless_503() {
    let t0 = Instant::now();
    let mut layer: TxnLayer<()> = TxnLayer::new(
        Config {
            max_transactions: 2,
            ..Config::default()
        },
        t0,
    );
    let mut out = Vec::new();
    for (i, b) in ["z9hG4bKf1", "z9hG4bKf2", "z9hG4bKf3"].iter().enumerate() {
        let m = request("OPTIONS", Some(b));
        let f = RequestFields::extract(&m).unwrap();
        let r = layer.on_request(&m, &f, (), UDP, t0, &mut out);
        assert_eq!(r.is_err(), i == 2);
        if r.is_err() {
            let resp = String::from_utf8(service_unavailable(&m, 5).to_vec()).unwrap();
            assert!(resp.starts_with("SIP/2.0 503 "));
            assert!(resp.contains("\r\nRetry-After: 5\r\n"));
        }
    }
    assert_eq!(layer.len(), 2);
}

#[test]
fn stale_ids_are_refused() {
    let mut h = Harness::new();
    let req = request("OPTIONS", Some("z9hG4bKs1"));
    let ServerEvent::New(id) = h.recv(&req, TCP, 0) else {
        panic!()
    };
    h.layer.respond(
        id,
        200,
        ResponseBuilder::new(&req, 200, "OK").finish(),
        h.at(0),
        &mut h.out,
    );
    h.poll(10);
    assert!(!h.layer.respond(id, 200, Bytes::new(), h.at(20), &mut h.out));
    let ServerEvent::New(id2) = h.recv(&req, TCP, 30) else {
        panic!()
    };
    assert_ne!(id, id2, "a reused slot gets a new generation");
    assert_eq!(h.layer.dest(id), None);
}

#[test]
fn transactions_the_tu_never_finishes_are_abandoned() {
    let mut h = Harness::new();
    let ServerEvent::New(msg_id) = h.recv(&request("MESSAGE", Some("z9hG4bKa1")), UDP, 0) else {
        panic!()
    };
    let ServerEvent::New(inv_id) = h.recv(&request("INVITE", Some("z9hG4bKa2")), UDP, 0) else {
        panic!()
    };
    let cid = h
        .layer
        .send_request(
            request("INVITE", Some("z9hG4bKa3")),
            "peer",
            TCP,
            h.at(0),
            &mut h.out,
        )
        .unwrap();
    h.take();
    assert_eq!(
        h.recv_resp(&response(180, "INVITE", "z9hG4bKa3", Some("r")), 10),
        ClientEvent::Deliver(cid)
    );
    h.poll(32_010);
    let a = h.take();
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Timeout { id } if *id == msg_id)),
        "non-INVITE after 64*T1"
    );
    assert_eq!(h.layer.len(), 2);
    h.poll(300_020);
    let a = h.take();
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Timeout { id } if *id == inv_id)));
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Timeout { id } if *id == cid)));
    assert!(h.layer.is_empty());
}
