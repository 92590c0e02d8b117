//! The IM filter's cost per message at the default policy (`cargo bench
//! -p parapet-content`): typical messages without links, with one link,
//! non-ASCII text, and CPIM around text. Prints the median of 15 runs of
//! 20,000 filterings each, in nanoseconds per message, and the spread.
//! Measurement only; no assertion (the machines are shared and noisy).

use std::hint::black_box;
use std::time::Instant;

use content::im_filter::{filter_body, Action, Rules};

fn default_rules() -> Rules {
    Rules {
        action: Action::Defuse,
        ignore_local: true,
        local_domains: vec!["example.test".into()],
        block_file_links: true,
        blocked_extensions: vec![".exe".into(), ".jar".into(), ".msi".into(), ".bat".into()],
        prefixes: content::im_filter::LYNC_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .collect(),
        max_links: 1000,
        allow_message: "Links in this message were made unclickable.".into(),
        warn_message: "This message contains links; open them only if you trust the sender.".into(),
    }
}

fn main() {
    let rules = default_rules();
    let cpim = b"From: <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\nDateTime: 2026-12-05T09:00:00Z\r\n\r\nContent-Type: text/plain;charset=utf-8\r\n\r\nAre we still on for the review at three? I booked the small room.";
    let cases: [(&str, &str, &[u8]); 4] = [
        (
            "plain, no link",
            "text/plain",
            b"Are we still on for the review at three? I booked the small room.",
        ),
        (
            "plain, one link",
            "text/plain",
            b"The draft is at https://docs.partner.example/review/q4 - comments by Friday please.",
        ),
        (
            "non-ASCII, no link",
            "text/plain;charset=utf-8",
            "Grüße aus München — wir sehen uns um drei im kleinen Raum.".as_bytes(),
        ),
        ("CPIM, no link", "message/cpim", cpim),
    ];
    const N: u32 = 20_000;
    for (label, ct, body) in cases {
        let mut runs: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..N {
                    black_box(filter_body(black_box(&rules), ct, black_box(body)));
                }
                t.elapsed().as_nanos() as f64 / f64::from(N)
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        println!(
            "{label:20} median {:7.0} ns/message (runs {:.0}-{:.0})",
            runs[7], runs[0], runs[14]
        );
    }
}
