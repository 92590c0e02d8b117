#![allow(clippy::unwrap_used)]
use super::*;

fn rules(action: Action) -> Rules {
    Rules {
        action,
        ignore_local: true,
        local_domains: vec!["example.test".into()],
        block_file_links: true,
        blocked_extensions: vec![".exe".into(), ".jar".into()],
        prefixes: LYNC_PREFIXES.iter().map(|p| p.to_string()).collect(),
        max_links: 3,
        allow_message: "Links were made unclickable.".into(),
        warn_message: "Careful: links.".into(),
    }
}

fn rewritten(v: Verdict) -> String {
    match v {
        Verdict::Rewritten(t) => t,
        other => panic!("not rewritten: {other:?}"),
    }
}

#[test]
fn each_action_gives_the_exact_text_delivered() {
    let msg = "see http://evil.example/x and www.other.example.";
    assert_eq!(
        rewritten(filter_text(&rules(Action::Defuse), msg)),
        "Links were made unclickable.\nsee _http://evil.example/x and _www.other.example."
    );
    assert_eq!(
        rewritten(filter_text(&rules(Action::Warn), msg)),
        "Careful: links.\nsee http://evil.example/x and www.other.example."
    );
    assert_eq!(
        filter_text(&rules(Action::Block), msg),
        Verdict::Blocked(Refusal::Links)
    );
    // Without a notice, the text alone.
    let mut quiet = rules(Action::Defuse);
    quiet.allow_message.clear();
    assert_eq!(
        rewritten(filter_text(&quiet, "mailto:eve@evil.example")),
        "_mailto:eve@evil.example"
    );
}

#[test]
fn text_without_links_and_links_to_our_own_domain_pass_unchanged() {
    for text in [
        "hello, how are you?",
        "the hypertext (http) protocol",
        "meet at sip:bob@example.test or http://wiki.example.test/page",
        "awww that is sweet",
        "",
        "héllo wörld",
    ] {
        assert_eq!(
            filter_text(&rules(Action::Block), text),
            Verdict::Unchanged,
            "{text}"
        );
    }
    // Unless the policy examines those too.
    let mut all = rules(Action::Block);
    all.ignore_local = false;
    assert_eq!(
        filter_text(&all, "http://wiki.example.test/page"),
        Verdict::Blocked(Refusal::Links)
    );
    // A look-alike of our domain is not ours.
    assert_eq!(
        filter_text(&rules(Action::Block), "http://example.test.evil.example/"),
        Verdict::Blocked(Refusal::Links)
    );
    assert_eq!(
        filter_text(&rules(Action::Block), "http://badexample.test/"),
        Verdict::Blocked(Refusal::Links)
    );
}

#[test]
fn disguised_links_are_found_after_normalisation() {
    let defuse = rules(Action::Defuse);
    // Full-width letters (NFKC folds them), a zero-width space inside the
    // scheme, a right-to-left override, upper case.
    for (text, delivered) in [
        ("ｈｔｔｐ://evil.example", "_http://evil.example"),
        ("ht\u{200B}tp://evil.example", "_http://evil.example"),
        ("\u{202E}http://evil.example", "_http://evil.example"),
        ("HTTPS://Evil.Example/a", "_HTTPS://Evil.Example/a"),
        ("(www.evil.example)", "(_www.evil.example)"),
        (
            "<a href=\"http://evil.example\">x</a>",
            "<a _href=\"_http://evil.example\">x</a>",
        ),
    ] {
        assert_eq!(
            rewritten(filter_text(&defuse, text)),
            format!("Links were made unclickable.\n{delivered}"),
            "{text:?}"
        );
    }
}

#[test]
fn internationalised_hosts_are_shown_as_punycode() {
    let warn = rules(Action::Warn);
    assert_eq!(
        rewritten(filter_text(&warn, "log in at https://exаmple.test/login")),
        "Careful: links.\nlog in at https://xn--exmple-4nf.test/login"
    );
    assert_eq!(
        rewritten(filter_text(&warn, "www.bücher.example ok")),
        "Careful: links.\nwww.xn--bcher-kva.example ok"
    );
}

#[test]
fn too_many_links_and_links_to_blocked_files_are_refused_whatever_the_action() {
    assert_eq!(
        filter_text(
            &rules(Action::Defuse),
            "http://a.example http://b.example http://c.example http://d.example"
        ),
        Verdict::Blocked(Refusal::TooManyLinks { found: 4, max: 3 })
    );
    for text in [
        "get http://evil.example/tool.exe",
        "get http://evil.example/tool.EXE?x=1#y",
        "get http://evil.example/dir/tool.exe.",
        "get http://evil.example/tool%2Eexe",
        "get www.evil.example/app.jar",
        "file:///C:/Users/x/run.exe",
    ] {
        assert!(
            matches!(
                filter_text(&rules(Action::Warn), text),
                Verdict::Blocked(Refusal::FileLink(_))
            ),
            "{text}"
        );
    }
    // A host that looks like a file is not one.
    assert!(matches!(
        filter_text(&rules(Action::Warn), "http://setup.exe/"),
        Verdict::Rewritten(_)
    ));
    let mut no_files = rules(Action::Warn);
    no_files.block_file_links = false;
    assert!(matches!(
        filter_text(&no_files, "http://evil.example/tool.exe"),
        Verdict::Rewritten(_)
    ));
}

#[test]
fn bodies_are_read_by_content_type() {
    let r = rules(Action::Defuse);
    assert_eq!(
        filter_body(&r, "text/plain;charset=UTF-8", b"http://evil.example"),
        Outcome::Rewritten(b"Links were made unclickable.\n_http://evil.example".to_vec())
    );
    assert_eq!(
        filter_body(
            &r,
            "application/im-iscomposing+xml",
            b"<x>http://evil.example</x>"
        ),
        Outcome::Unchanged
    );
    assert!(matches!(
        filter_body(&r, "text/plain;charset=iso-8859-1", b"x"),
        Outcome::Unreadable(_)
    ));
    assert!(matches!(
        filter_body(&r, "text/plain", b"\xff\xfe"),
        Outcome::Unreadable(_)
    ));
    // Inside CPIM: the inner text is filtered, the wrapper kept.
    let cpim = b"From: <sip:a@example.test>\r\nTo: <sip:b@example.test>\r\n\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\nhttp://evil.example";
    let Outcome::Rewritten(out) = filter_body(&r, "Message/CPIM", cpim) else {
        panic!("not rewritten");
    };
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "From: <sip:a@example.test>\r\nTo: <sip:b@example.test>\r\n\r\nContent-Type: text/plain\r\nContent-Length: 49\r\n\r\nLinks were made unclickable.\n_http://evil.example"
    );
    assert!(matches!(
        filter_body(&r, "message/cpim", b"From: a\r\nhttp://evil.example"),
        Outcome::Unreadable(_)
    ));
    let nested = b"From: <sip:a@example.test>\r\n\r\nContent-Type: message/cpim\r\n\r\nFrom: b\r\n\r\nContent-Type: text/plain\r\n\r\nhttp://evil.example";
    assert!(matches!(
        filter_body(&r, "message/cpim", nested),
        Outcome::Unreadable(_)
    ));
}

#[test]
fn the_strictest_of_two_policies_wins() {
    let mut a = rules(Action::Defuse);
    a.max_links = 10;
    let mut b = rules(Action::Warn);
    b.blocked_extensions = vec![".zip".into()];
    b.ignore_local = false;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let s = strictest(Some(a.clone()), Some(b)).unwrap();
    assert_eq!(s.action, Action::Warn);
    assert_eq!(s.warn_message, "Careful: links.");
    assert_eq!(s.max_links, 3);
    assert!(!s.ignore_local);
    assert!(s.blocked_extensions.contains(&".zip".to_string()));
    assert!(s.blocked_extensions.contains(&".exe".to_string()));
    // The same rules twice are those rules, not a copy.
    let same = strictest(Some(a.clone()), Some(Arc::new(Rules::clone(&a)))).unwrap();
    assert!(Arc::ptr_eq(&same, &a));
    assert_eq!(strictest(Some(a.clone()), None), Some(a.clone()));
    assert_eq!(strictest(None, Some(a.clone())), Some(a));
    assert_eq!(strictest(None, None), None);
}

#[test]
fn pathological_input_is_bounded_and_never_panics() {
    let r = rules(Action::Defuse);
    // Many prefixes glued together, every kind of boundary.
    let many = "http:".repeat(20_000);
    assert!(matches!(
        filter_text(&r, &many),
        Verdict::Rewritten(_) | Verdict::Blocked(_)
    ));
    for text in [
        "%",
        "http://%",
        "http://[",
        "http://@",
        "www",
        "mailto:",
        "h\u{0301}ttp://x",
        "http://é%C3",
    ] {
        let _ = filter_text(&r, text);
        let _ = file_extension(text);
        let _ = host_range(text);
    }
}
