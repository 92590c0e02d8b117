//! Users' devices, TOTP second factors and enrollment codes: the cap on
//! active devices, revocation (one, all, and what a disabled account, a
//! new password and a removed user do), one use per TOTP step, single-use
//! codes.

use store::{DeviceRow, EnrollmentCodeRow, NewUser, Store, StoreError};

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

pub fn device(aor: &str, id: &str, issued_at: i64) -> DeviceRow {
    DeviceRow {
        aor: aor.into(),
        id: id.into(),
        name: format!("{id}'s name"),
        fingerprint: format!("{aor}-{id}-fp"),
        serial: format!("{id}-serial"),
        certificate: "PEM".into(),
        issued_at,
        expires_at: issued_at + 1000,
        revoked_at: None,
        revoked_reason: None,
        last_seen: None,
        user_agent: None,
    }
}

const A: &str = "sip:alice@example.test";
const B: &str = "sip:bob@example.test";

pub async fn devices_are_capped_per_user_listed_and_revoked_one_or_all<S: Store>(s: S) {
    add_user(&s, A).await;
    add_user(&s, B).await;
    s.add_device(device(A, "d1", 100), 2, None).await.unwrap();
    s.add_device(device(A, "d2", 101), 2, None).await.unwrap();
    assert!(matches!(
        s.add_device(device(A, "d3", 102), 2, None).await,
        Err(StoreError::Conflict(_))
    ));
    // Another user's cap is their own; an unknown user has none.
    s.add_device(device(B, "d1", 100), 2, None).await.unwrap();
    assert!(matches!(
        s.add_device(device("sip:nobody@example.test", "d1", 100), 2, None)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // The same id twice for one user is refused.
    let mut again = device(A, "d1", 103);
    again.fingerprint = "other".into();
    assert!(matches!(
        s.add_device(again, 10, None).await,
        Err(StoreError::Conflict(_))
    ));
    let list = s.devices(A).await.unwrap();
    assert_eq!(
        list.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d2", "d1"]
    );
    let gone = s
        .revoke_device(A, "d1", "user", 150)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.revoked_at, Some(150));
    assert_eq!(gone.revoked_reason.as_deref(), Some("user"));
    assert!(s
        .revoke_device(A, "d1", "user", 151)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .revoke_device(B, "d2", "user", 151)
        .await
        .unwrap()
        .is_none());
    // A revoked device frees its place; an expired one does too.
    s.add_device(device(A, "d3", 160), 2, None).await.unwrap();
    s.add_device(device(A, "d4", 1102), 2, None).await.unwrap();
    let active: Vec<String> = s
        .active_devices(1102)
        .await
        .unwrap()
        .into_iter()
        .map(|d| format!("{} {}", d.aor, d.id))
        .collect();
    assert_eq!(active.len(), 2, "{active:?}");
    assert!(active.contains(&format!("{A} d4")));
    assert!(active.contains(&format!("{A} d3")));
    let revoked = s.revoked_devices(1000).await.unwrap();
    assert_eq!(revoked.len(), 1);
    let all = s.revoke_devices(A, "admin", 170).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all
        .iter()
        .all(|d| d.revoked_reason.as_deref() == Some("admin")));
    assert!(s
        .touch_device(&format!("{B}-d1-fp"), 180, Some("baresip".into()))
        .await
        .unwrap());
    let b = s.devices(B).await.unwrap();
    assert_eq!(b[0].last_seen, Some(180));
    assert_eq!(b[0].user_agent.as_deref(), Some("baresip"));
}

pub async fn a_disabled_account_a_new_password_or_removal_ends_every_device<S: Store>(s: S) {
    add_user(&s, A).await;
    s.add_device(device(A, "d1", 100), 8, None).await.unwrap();
    s.set_enabled(A, false).await.unwrap();
    let d = s.devices(A).await.unwrap();
    assert_eq!(d[0].revoked_reason.as_deref(), Some("disabled"));
    // Re-enabling brings nothing back.
    s.set_enabled(A, true).await.unwrap();
    assert!(s.devices(A).await.unwrap()[0].revoked_at.is_some());
    s.add_device(device(A, "d2", 200), 8, None).await.unwrap();
    s.set_secret(A, vec![2]).await.unwrap();
    let d = s.devices(A).await.unwrap();
    assert_eq!(d[0].id, "d2");
    assert_eq!(d[0].revoked_reason.as_deref(), Some("password"));
    s.remove_user(A).await.unwrap();
    add_user(&s, A).await;
    assert!(
        s.devices(A).await.unwrap().is_empty(),
        "a new account under the address inherits nothing"
    );
}

pub async fn a_totp_step_is_used_once_and_enrolment_needs_a_pending_secret<S: Store>(s: S) {
    add_user(&s, A).await;
    assert_eq!(s.totp(A).await.unwrap(), Some(Default::default()));
    assert_eq!(s.totp(B).await.unwrap(), None);
    assert!(
        !s.confirm_totp(A, vec![1], 10).await.unwrap(),
        "nothing pending"
    );
    assert!(
        !s.set_totp_pending(B, vec![1]).await.unwrap(),
        "no such user"
    );
    assert!(s.set_totp_pending(A, vec![1]).await.unwrap());
    assert!(!s.use_totp_step(A, 9).await.unwrap(), "not confirmed yet");
    assert!(
        !s.confirm_totp(A, vec![9], 10).await.unwrap(),
        "another secret pending"
    );
    assert!(s.confirm_totp(A, vec![1], 10).await.unwrap());
    let t = s.totp(A).await.unwrap().unwrap();
    assert_eq!(
        (t.secret, t.pending, t.last_step),
        (Some(vec![1]), None, Some(10))
    );
    assert!(
        !s.use_totp_step(A, 10).await.unwrap(),
        "the confirming code again"
    );
    assert!(s.use_totp_step(A, 11).await.unwrap());
    assert!(!s.use_totp_step(A, 11).await.unwrap());
    assert!(!s.use_totp_step(A, 5).await.unwrap());
    // A new enrolment keeps the old secret until confirmed.
    assert!(s.set_totp_pending(A, vec![2]).await.unwrap());
    let t = s.totp(A).await.unwrap().unwrap();
    assert_eq!((t.secret, t.pending), (Some(vec![1]), Some(vec![2])));
    assert!(s.remove_totp(A).await.unwrap());
    assert_eq!(s.totp(A).await.unwrap(), Some(Default::default()));
}

pub async fn an_enrollment_code_works_once_for_its_user_until_it_expires<S: Store>(s: S) {
    add_user(&s, A).await;
    add_user(&s, B).await;
    let code = |hash: u8, expires_at| EnrollmentCodeRow {
        hash: vec![hash; 32],
        aor: A.into(),
        created_by: "admin".into(),
        created_at: 1,
        expires_at,
    };
    s.add_enrollment_code(code(1, 100)).await.unwrap();
    s.add_enrollment_code(code(2, 50)).await.unwrap();
    let mut other = code(3, 100);
    other.aor = "sip:nobody@example.test".into();
    assert!(matches!(
        s.add_enrollment_code(other).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        !s.use_enrollment_code(B, vec![1; 32], 10).await.unwrap(),
        "another user's"
    );
    assert!(s.use_enrollment_code(A, vec![1; 32], 10).await.unwrap());
    assert!(
        !s.use_enrollment_code(A, vec![1; 32], 10).await.unwrap(),
        "used"
    );
    assert!(
        !s.use_enrollment_code(A, vec![2; 32], 60).await.unwrap(),
        "expired"
    );
}

pub async fn a_device_is_stored_only_for_an_enabled_user_within_a_live_session<S: Store>(s: S) {
    use store::UserSessionRow;
    add_user(&s, A).await;
    let session = |id: &str| UserSessionRow {
        id: id.into(),
        hash: vec![0; 32],
        aor: A.into(),
        source: "127.0.0.1".into(),
        created_at: 1,
        expires_at: i64::MAX,
        second_factor: true,
    };
    s.add_user_session(session("s1"), 8).await.unwrap();
    s.add_device(device(A, "d1", 100), 8, Some("s1".into()))
        .await
        .unwrap();
    // Another user's session is not this user's.
    add_user(&s, B).await;
    assert!(matches!(
        s.add_device(device(B, "d1", 100), 8, Some("s1".into()))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Signed out everywhere: the session is gone, so is the right to enroll.
    s.remove_user_sessions(A).await.unwrap();
    assert!(matches!(
        s.add_device(device(A, "d2", 100), 8, Some("s1".into()))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Disabled: nothing is stored, whoever asks.
    s.set_enabled(A, false).await.unwrap();
    assert!(matches!(
        s.add_device(device(A, "d3", 100), 8, None).await,
        Err(StoreError::Conflict(m)) if m.contains("disabled")
    ));
    assert_eq!(s.devices(A).await.unwrap().len(), 1);
}
