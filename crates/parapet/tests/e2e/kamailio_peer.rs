//! A partner that is not Parapet: Kamailio (Debian's, with its TLS module)
//! as the server of kamailio.test, federating with example.test over
//! mutual TLS (tests/kamailio/peer.cfg), with Parapet's front end or its
//! edge facing it. A SIPp user behind Kamailio and a SIPp user at Parapet
//! message each other across it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::edge::Edge;
use crate::federation::{alice_sends_to, both_ways, last_status, policy, Meet, A_EDGE};
use crate::harness::{free_port, register_and_listen, scenario, Server};

const K: &str = "kamailio.test";

struct Kamailio(Child);

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Kamailio forks its workers: the whole process group goes (killing
        // the main process alone left them running after every test).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// A CA and a certificate for kamailio.test (URI and DNS names), as PEM
/// files in `dir`: (ca, cert, key).
fn kamailio_pki(dir: &Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "kamailio.test test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(vec![K.to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::URI(format!("sip:{K}").try_into().unwrap()));
    leaf.distinguished_name.push(DnType::CommonName, K);
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p.display().to_string()
    };
    (
        write("kamailio-ca.pem", ca_cert.pem()),
        write("kamailio.pem", cert.pem()),
        write("kamailio-key.pem", key.serialize_pem()),
    )
}

fn start_kamailio(dir: &Path, vars: &[(&str, String)], tls_port: u16) -> Kamailio {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kamailio/peer.cfg"),
    )
    .unwrap();
    let cfg = vars.iter().fold(template, |t, (k, v)| t.replace(k, v));
    let path = dir.join("kamailio.cfg");
    std::fs::write(&path, cfg).unwrap();
    let run = dir.join("kamrun");
    std::fs::create_dir_all(&run).unwrap();
    use std::os::unix::process::CommandExt;
    let child = Command::new("kamailio")
        .process_group(0)
        .arg("-f")
        .arg(&path)
        .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
        .arg(&run)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("kamailio.log")).unwrap())
        .spawn()
        .expect("kamailio is installed (scripts/install-test-deps.sh)");
    let k = Kamailio(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "kamailio did not start:\n{}",
            std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    k
}

/// A SIPp process against Kamailio's UDP port.
fn sipp(
    dir: &Path,
    name: &str,
    port: u16,
    kamailio_udp: u16,
    fields: &str,
    service: &str,
) -> Child {
    let csv = dir.join(format!("{name}-{port}.csv"));
    std::fs::write(&csv, format!("SEQUENTIAL\n{fields}\n")).unwrap();
    Command::new("sipp")
        .arg("-sf")
        .arg(scenario(name))
        .arg("-inf")
        .arg(&csv)
        .args([
            "-s", service, "-m", "1", "-l", "1", "-t", "u1", "-nostdin", "-timeout", "20s",
        ])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-trace_msg",
            "-message_file",
        ])
        .arg(dir.join(format!("{name}-{port}.msg")))
        .arg(format!("127.0.0.1:{kamailio_udp}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp is installed")
}

fn finish(dir: &Path, mut c: Child, name: &str, port: u16) -> (bool, String) {
    let ok = c.wait().map(|s| s.success()).unwrap_or(false);
    (
        ok,
        std::fs::read_to_string(dir.join(format!("{name}-{port}.msg"))).unwrap_or_default(),
    )
}

both_ways!(a_kamailio_peer_federates_with_parapet_over_mutual_tls);

fn a_kamailio_peer_federates_with_parapet_over_mutual_tls(meet: Meet) {
    let name = match meet {
        Meet::Direct => "kampeer",
        Meet::Edges => "kampeer-e",
    };
    let mut a = Server::org(&format!("{name}-a"), "example.test", "");
    let dir = a.dir.clone();
    let (k_ca, k_cert, k_key) = kamailio_pki(&dir);
    let (k_tls, k_udp, carol_port) = (free_port(), free_port(), free_port());
    let federation = format!(
        "[federation]\ntrusted_cas = [\"{k_ca}\"]\nroutes = {{ \"{K}\" = \"127.0.0.1:{k_tls}\" }}\n"
    );
    // Where Kamailio reaches example.test: its front end, or its edge
    // (then the front end trusts no partner at all).
    let (door, edge) = match meet {
        Meet::Direct => {
            a.extra_config = federation;
            a.kill9();
            a.start();
            (format!("127.0.0.1:{}", a.tls), None)
        }
        Meet::Edges => {
            let e = Edge::pair_and_start_with(
                &a,
                &format!("{name}-edge"),
                A_EDGE.0,
                A_EDGE.1,
                &federation,
            );
            (e.outbound(), Some(e))
        }
    };
    a.add_user("alice", "correct horse battery");
    let _k = start_kamailio(
        &dir,
        &[
            ("KAM_UDP", k_udp.to_string()),
            ("KAM_TLS", k_tls.to_string()),
            ("CERT_FILE", k_cert),
            ("KEY_FILE", k_key),
            (
                "CA_FILE",
                a.data_dir().join("pki/ca.pem").display().to_string(),
            ),
            ("PARAPET_ADDR", door),
            ("USER_PORT", carol_port.to_string()),
        ],
        k_tls,
    );
    policy(
        &a,
        &[
            "federation",
            "global",
            "enabled=true",
            &format!("allowed_domains={K}"),
        ],
    );
    policy(&a, &["external_access", "global", "federation=true"]);
    policy(&a, &["privacy", "global", "strangers_may_im=everyone"]);
    crate::federation::settle_with_edges(edge.is_some());

    // carol@kamailio.test -> alice@example.test: Kamailio relays over TLS
    // with its certificate; Parapet delivers to alice.
    let alice = register_and_listen(&a, "alice", "correct horse battery");
    let port = free_port();
    let run = sipp(
        &dir,
        "message_send_noauth.xml",
        port,
        k_udp,
        &format!("{K};carol;example.test"),
        "alice",
    );
    let (ok, msgs) = finish(&dir, run, "message_send_noauth.xml", port);
    assert!(
        ok,
        "carol's MESSAGE through Kamailio failed:\n{msgs}\nkamailio:\n{}\nparapet:\n{}\nedge:\n{}",
        std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default(),
        a.log(),
        edge.as_ref().map(Edge::log).unwrap_or_default()
    );
    let (ok, received) = alice.finish();
    assert!(ok, "alice did not receive carol's MESSAGE:\n{received}");
    assert!(
        received.contains("From: <sip:carol@kamailio.test>"),
        "{received}"
    );

    // alice -> carol@kamailio.test: Parapet connects to Kamailio, presenting
    // its certificate, and Kamailio hands the MESSAGE to carol.
    let carol = sipp(&dir, "receive_message.xml", carol_port, k_udp, K, "carol");
    std::thread::sleep(Duration::from_millis(300));
    let t = alice_sends_to(&a, "carol", K);
    assert!(
        last_status(&t).contains("200"),
        "{}\nkamailio:\n{}\nparapet:\n{}",
        last_status(&t),
        std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default(),
        a.log()
    );
    let (ok, received) = finish(&dir, carol, "receive_message.xml", carol_port);
    assert!(ok, "carol did not receive alice's MESSAGE:\n{received}");
    assert!(
        received.contains("From: <sip:alice@example.test>"),
        "{received}"
    );
}
