//! The IM filter over a MESSAGE body as a client sends it: the first byte
//! picks the content type (text/plain, text/html, message/cpim) and the
//! action, the rest is the body. Invariants: no panic; a rewritten body is
//! filtered again without being refused for being unreadable (what the
//! filter writes, it reads), and `message/cpim` that parses keeps its
//! headers when rewritten.
#![no_main]

use content::im_filter::{filter_body, Action, Outcome, Rules};
use libfuzzer_sys::fuzz_target;

fn rules(action: Action) -> Rules {
    Rules {
        action,
        ignore_local: true,
        local_domains: vec!["example.test".into()],
        block_file_links: true,
        blocked_extensions: vec![".exe".into(), ".jar".into()],
        prefixes: content::im_filter::LYNC_PREFIXES.iter().map(|p| p.to_string()).collect(),
        max_links: 1000,
        allow_message: "Links were made unclickable.".into(),
        warn_message: "Careful: links.".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else { return };
    // The IMDN Message-ID a stored message is deduplicated by: bounded,
    // visible ASCII, whatever the CPIM headers say.
    if let Ok(c) = content::cpim::Cpim::parse(body) {
        if let Some(id) = c.imdn_message_id() {
            assert!(!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
    let ct = ["text/plain", "text/html;charset=utf-8", "message/cpim"][usize::from(op % 3)];
    let action = [Action::Defuse, Action::Warn, Action::Block][usize::from((op / 3) % 3)];
    let r = rules(action);
    if let Outcome::Rewritten(out) = filter_body(&r, ct, body) {
        assert!(
            !matches!(filter_body(&r, ct, &out), Outcome::Unreadable(_)),
            "the filter cannot read what it wrote"
        );
        if ct == "message/cpim" {
            let before = content::cpim::Cpim::parse(body).expect("it was read");
            let after = content::cpim::Cpim::parse(&out).expect("what it wrote reads");
            assert_eq!(before.headers, after.headers);
        }
    }
});
