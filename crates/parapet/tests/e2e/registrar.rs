//! Registration with digest authentication, anti-enumeration, lockout, restart.

use crate::harness::*;

#[test]
fn sipp_registers_with_digest_authentication() {
    let s = Server::new("register");
    s.add_user("alice", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "alice",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

#[test]
fn unknown_user_fails_exactly_like_a_wrong_password() {
    let s = Server::new("enumeration");
    s.add_user("alice", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_bad_auth_once.xml",
            "alice",
            "wrong password!",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    passes!(
        s,
        s.sipp(
            "register_bad_auth_once.xml",
            "nobody",
            "wrong password!",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

#[test]
fn wrong_passwords_lock_out_that_address_only() {
    let s = Server::new("lockout");
    s.add_user("bob", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_lockout.xml",
            "bob",
            "guess guess",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // From the locked-out address even the right password is refused unchecked.
    passes!(
        s,
        s.sipp(
            "register_refused.xml",
            "bob",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // The real user, elsewhere, is not locked out.
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            "correct horse battery",
            "127.0.0.2",
            free_port(),
            &[]
        )
    );
    // The operator sees the lockout and clears it.
    let o = s.admin(&["lockout", "list"], "");
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        listed.contains("sip:bob@example.test") && listed.contains("127.0.0.1"),
        "{listed}"
    );
    let o = s.admin(
        &["lockout", "clear", "--account", "sip:bob@example.test"],
        "",
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cleared 1"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

#[test]
fn a_lockout_outlives_a_crash_and_so_does_its_clearing() {
    let mut s = Server::new("lockout-restart");
    s.add_user("bob", "correct horse battery");
    passes!(
        s,
        s.sipp(
            "register_lockout.xml",
            "bob",
            "guess guess",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    // The state is saved every second; then the server dies.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    s.kill9();
    s.start();
    // The guesser's address is still refused, unchecked, even with the
    // right password; the real user elsewhere is not.
    passes!(
        s,
        s.sipp(
            "register_refused.xml",
            "bob",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            "correct horse battery",
            "127.0.0.2",
            free_port(),
            &[]
        )
    );
    let o = s.admin(&["lockout", "list"], "");
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listed.contains("sip:bob@example.test") && listed.contains("127.0.0.1"),
        "{listed}"
    );
    // The operator's clearing is kept too.
    let o = s.admin(
        &["lockout", "clear", "--account", "sip:bob@example.test"],
        "",
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("cleared 1"));
    // Answered once saved: a crash right after loses nothing.
    s.kill9();
    s.start();
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "bob",
            "correct horse battery",
            "127.0.0.1",
            free_port(),
            &[]
        )
    );
}

#[test]
fn bindings_survive_kill_9() {
    let mut s = Server::new("restart");
    s.add_user("carol", "correct horse battery");
    let port = free_port();
    passes!(
        s,
        s.sipp(
            "register_auth.xml",
            "carol",
            "correct horse battery",
            "127.0.0.1",
            port,
            &[]
        )
    );
    s.kill9();
    s.start();
    let (ok, msgs) = s.sipp(
        "register_query.xml",
        "carol",
        "correct horse battery",
        "127.0.0.1",
        free_port(),
        &[],
    );
    assert!(ok, "{msgs}");
    let listed = format!("Contact: <sip:carol@127.0.0.1:{port}>;expires=");
    assert!(
        msgs.contains(&listed),
        "the binding made before kill -9 is listed: {msgs}"
    );
}
