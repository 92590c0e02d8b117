//! A file as a user uploads it: the first byte picks the policy mode, the
//! rest is the content, judged under a declared name and opened if it is
//! an archive. Invariants: no panic, no hang, bounded memory (the archive
//! limits); the judgement is a function of its input.
#![no_main]

use content::files::{judge, ArchiveLimits, FileRules, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else { return };
    let rules = FileRules {
        mode: match op % 3 {
            0 => Mode::BlockListed,
            1 => Mode::AllowListed(vec![".zip".into(), ".txt".into()]),
            _ => Mode::BlockAll,
        },
        blocked: vec![".exe".into(), ".jar".into(), ".sh".into()],
    };
    let limits = ArchiveLimits {
        max_total: 8 << 20,
        max_nested: 1 << 20,
        ..ArchiveLimits::default()
    };
    let name = if op & 4 != 0 { "upload.zip" } else { "upload.txt" };
    let first = judge(&rules, &limits, name, body);
    assert_eq!(first, judge(&rules, &limits, name, body));
});
