//! Administrators, roles, tokens and the audit log on a real database file.

use store::{
    AdminRow, AdminUpdate, AuditEntry, AuditFilter, GroupRow, NewUser, RoleRow, SignIn, Store,
    StoreError, TokenRow,
};

pub fn admin(name: &str) -> AdminRow {
    AdminRow {
        name: name.into(),
        password: "$argon2id$stub".into(),
        totp: vec![9; 40],
        totp_last_step: None,
        role: "administrator".into(),
        enabled: true,
        failed: 0,
        locked_until: 0,
        created_at: 1_700_000_000,
    }
}

pub fn entry(n: i64) -> AuditEntry {
    AuditEntry {
        at: 1_700_000_000 + n,
        actor: if n % 2 == 0 {
            "admin:root".into()
        } else {
            "admin:ops".into()
        },
        source: "127.0.0.1".into(),
        action: "users.write".into(),
        object: format!("user:sip:u{n}@example.com"),
        outcome: "ok".into(),
        detail: "added".into(),
        before: None,
        after: Some(format!("{{\"n\":{n}}}")),
    }
}

pub async fn admins_sign_in_lockout_and_replay<S: Store>(s: S) {
    s.add_admin(admin("root")).await.unwrap();
    assert!(matches!(
        s.add_admin(admin("root")).await,
        Err(StoreError::Conflict(_))
    ));
    let fail = SignIn::Failure {
        now: 1000,
        max_failures: 3,
        lock_secs: 900,
    };
    for _ in 0..2 {
        s.record_sign_in("root", fail).await.unwrap();
    }
    assert_eq!(s.admin("root").await.unwrap().unwrap().failed, 2);
    s.record_sign_in("root", fail).await.unwrap();
    let a = s.admin("root").await.unwrap().unwrap();
    assert_eq!((a.failed, a.locked_until), (0, 1900), "third failure locks");
    assert!(s
        .record_sign_in("root", SignIn::Success { step: 50 })
        .await
        .unwrap());
    assert!(
        !s.record_sign_in("root", SignIn::Success { step: 50 })
            .await
            .unwrap(),
        "same step: replay"
    );
    assert!(!s
        .record_sign_in("root", SignIn::Success { step: 49 })
        .await
        .unwrap());
    assert!(s
        .record_sign_in("root", SignIn::Success { step: 51 })
        .await
        .unwrap());
    // A new TOTP secret forgets the last step.
    let u = AdminUpdate {
        totp: Some(vec![1; 40]),
        role: Some("view-only".into()),
        ..Default::default()
    };
    assert!(s.update_admin("root", u).await.unwrap());
    let a = s.admin("root").await.unwrap().unwrap();
    assert_eq!(
        (a.totp_last_step, a.role.as_str(), a.totp),
        (None, "view-only", vec![1; 40])
    );
    assert!(!s
        .update_admin("nobody", AdminUpdate::default())
        .await
        .unwrap());
}

pub async fn roles_and_tokens<S: Store>(s: S) {
    s.put_group(GroupRow {
        name: "sales".into(),
        priority: 1,
        description: String::new(),
    })
    .await
    .unwrap();
    let role = RoleRow {
        name: "sales-desk".into(),
        description: "sales helpdesk".into(),
        ops: vec!["users.read".into(), "users.write".into()],
        site: Some("berlin".into()),
        group: Some("sales".into()),
    };
    s.put_role(role.clone()).await.unwrap();
    assert_eq!(s.roles().await.unwrap(), vec![role.clone()]);
    assert!(
        matches!(s.remove_group("sales").await, Err(StoreError::Conflict(_))),
        "a role refers to the group"
    );
    s.add_admin(AdminRow {
        role: "sales-desk".into(),
        ..admin("ops")
    })
    .await
    .unwrap();
    assert!(
        matches!(s.remove_role("sales-desk").await, Err(StoreError::Conflict(m)) if m.contains("held by 1"))
    );
    let t = TokenRow {
        id: "0123456789abcdef".into(),
        hash: vec![1; 32],
        admin: "ops".into(),
        kind: "api".into(),
        name: "ci".into(),
        role: "sales-desk".into(),
        created_at: 10,
        expires_at: 100,
    };
    s.add_token(t.clone()).await.unwrap();
    assert_eq!(s.token(&t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(s.purge_expired_tokens(99).await.unwrap(), 0);
    assert!(s.remove_admin("ops").await.unwrap());
    assert_eq!(
        s.token(&t.id).await.unwrap(),
        None,
        "tokens go with their administrator"
    );
    assert!(s.remove_role("sales-desk").await.unwrap());
}

pub async fn audited_writes_commit_with_their_record_or_not_at_all<S: Store>(s: S) {
    let e = entry(1);
    s.audited(e.clone())
        .add_user(NewUser {
            aor: "sip:a@example.com".into(),
            display_name: None,
            secret: vec![1],
            created_at: 1,
        })
        .await
        .unwrap();
    // The same user again fails: no record for it.
    assert!(s
        .audited(entry(2))
        .add_user(NewUser {
            aor: "sip:a@example.com".into(),
            display_name: None,
            secret: vec![1],
            created_at: 1
        })
        .await
        .is_err());
    let all = s
        .audit_list(AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].seq, &all[0].entry), (1, &e));
}

pub async fn audit_list_filters<S: Store>(s: S) {
    for n in 1..=10 {
        s.append_audit(entry(n)).await.unwrap();
    }
    let f = |actor: Option<&str>, object: Option<&str>, since, until, limit| AuditFilter {
        actor: actor.map(str::to_owned),
        object: object.map(str::to_owned),
        since,
        until,
        limit,
    };
    let seqs = |v: Vec<store::AuditRecord>| v.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.audit_list(f(None, None, None, None, 3)).await.unwrap()),
        vec![10, 9, 8]
    );
    assert_eq!(
        seqs(
            s.audit_list(f(Some("admin:ops"), None, None, None, 100))
                .await
                .unwrap()
        ),
        vec![9, 7, 5, 3, 1]
    );
    assert_eq!(
        seqs(
            s.audit_list(f(None, Some("user:sip:u1"), None, None, 100))
                .await
                .unwrap()
        ),
        vec![10, 1]
    );
    assert_eq!(
        seqs(
            s.audit_list(f(None, Some("user:sip:u_"), None, None, 100))
                .await
                .unwrap()
        ),
        Vec::<i64>::new(),
        "_ is literal"
    );
    assert_eq!(
        seqs(
            s.audit_list(f(None, None, Some(1_700_000_004), Some(1_700_000_006), 100))
                .await
                .unwrap()
        ),
        vec![6, 5, 4]
    );
}
