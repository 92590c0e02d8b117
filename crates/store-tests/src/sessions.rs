//! Users' sign-in sessions: lookup with the account's state, the cap per
//! user, expiry, and the sessions a password change, a disabled account or
//! a removed user ends.

use store::{NewUser, Store, StoreError, UserSessionRow};

async fn add_user(s: &impl Store, aor: &str) {
    s.add_user(NewUser {
        aor: aor.into(),
        display_name: None,
        secret: vec![1],
        created_at: 1,
    })
    .await
    .unwrap();
}

fn session(id: &str, aor: &str, created_at: i64) -> UserSessionRow {
    UserSessionRow {
        id: id.into(),
        hash: vec![7; 32],
        aor: aor.into(),
        source: "127.0.0.1".into(),
        created_at,
        expires_at: created_at + 100,
        second_factor: false,
    }
}

pub async fn sessions_are_found_with_their_accounts_state_and_capped_per_user<S: Store>(s: S) {
    add_user(&s, "sip:alice@example.com").await;
    add_user(&s, "sip:bob@example.com").await;
    for i in 0..5 {
        s.add_user_session(
            session(&format!("a{i}"), "sip:alice@example.com", 10 + i),
            3,
        )
        .await
        .unwrap();
    }
    s.add_user_session(session("b0", "sip:bob@example.com", 10), 3)
        .await
        .unwrap();
    // The two oldest of alice's went; bob's is untouched.
    assert!(s.user_session("a0").await.unwrap().is_none());
    assert!(s.user_session("a1").await.unwrap().is_none());
    let (row, enabled) = s.user_session("a4").await.unwrap().unwrap();
    assert_eq!(row, session("a4", "sip:alice@example.com", 14));
    assert!(enabled);
    assert!(s.user_session("b0").await.unwrap().is_some());
    // A session for nobody is refused.
    let e = s
        .add_user_session(session("x", "sip:nobody@example.com", 1), 3)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert!(s.remove_user_session("a4").await.unwrap());
    assert!(!s.remove_user_session("a4").await.unwrap());
    // a2 (expiring at 12 + 100) and bob's (10 + 100).
    assert_eq!(s.purge_expired_user_sessions(112).await.unwrap(), 2);
    assert!(s.user_session("b0").await.unwrap().is_none());
    assert!(s.user_session("a3").await.unwrap().is_some());
    assert_eq!(
        s.remove_user_sessions("sip:alice@example.com")
            .await
            .unwrap(),
        1
    );
}

pub async fn a_new_password_a_disabled_account_or_a_removed_user_ends_sessions<S: Store>(s: S) {
    let aor = "sip:alice@example.com";
    add_user(&s, aor).await;
    s.add_user_session(session("p", aor, 1), 8).await.unwrap();
    assert!(s.set_secret(aor, vec![2]).await.unwrap());
    assert!(s.user_session("p").await.unwrap().is_none());

    s.add_user_session(session("d", aor, 2), 8).await.unwrap();
    // Enabling does nothing to sessions; disabling ends them.
    assert!(s.set_enabled(aor, true).await.unwrap());
    assert!(s.user_session("d").await.unwrap().is_some());
    assert!(s.set_enabled(aor, false).await.unwrap());
    assert!(s.user_session("d").await.unwrap().is_none());
    // While disabled, a session row (made before the check) reads disabled.
    s.add_user_session(session("e", aor, 3), 8).await.unwrap();
    assert!(!s.user_session("e").await.unwrap().unwrap().1);

    assert!(s.remove_user(aor).await.unwrap());
    assert!(s.user_session("e").await.unwrap().is_none());
}
