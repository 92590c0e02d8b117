#![allow(clippy::unwrap_used)]
use std::io::{Cursor, Write};

use super::*;
use zip::write::SimpleFileOptions;

fn block_list() -> FileRules {
    FileRules {
        mode: Mode::BlockListed,
        blocked: [".exe", ".jar", ".sh", ".msi", ".js", ".bat"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

fn allow_list() -> FileRules {
    FileRules {
        mode: Mode::AllowListed(vec![
            ".pdf".into(),
            ".png".into(),
            ".txt".into(),
            ".zip".into(),
        ]),
        blocked: block_list().blocked,
    }
}

/// A zip of (name, content) entries, deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

const PE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00this program cannot be run in DOS mode";
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj\n";

fn refused(r: Result<Accepted, FileRefusal>) -> FileRefusal {
    r.expect_err("should be refused")
}

#[test]
fn names_are_normalised_before_they_are_judged() {
    let r = block_list();
    for name in [
        "setup.exe",
        "Setup.EXE",
        "invoice.exe.pdf",
        "invoice.pdf.exe",
        "report.exe.",
        "report.exe .. ",
        "photo\u{202E}gpj.exe",
        "ｓｅｔｕｐ．ｅｘｅ",
        "C:\\Users\\eve\\payload.exe",
        "../../payload.exe",
        "notes.txt:hidden.exe",
        "run.sh",
    ] {
        assert!(
            matches!(judge_name(&r, name), Err(FileRefusal::Blocked { .. })),
            "{name:?} passed"
        );
    }
    for name in [
        "report.pdf",
        "a.tar.gz",
        ".profile",
        "exe",
        "my.exe-notes.txt",
    ] {
        assert_eq!(judge_name(&r, name), Ok(()), "{name:?}");
    }
    assert_eq!(
        normalised_names("dir/Photo\u{202E}GPJ.exe :x.js."),
        ["photogpj.exe", "x.js"]
    );
}

#[test]
fn allow_lists_and_block_all_decide_by_the_last_extension() {
    let r = allow_list();
    assert_eq!(judge_name(&r, "scan.PDF"), Ok(()));
    for name in ["scan.docx", "scan", "scan.pdf.exe", "scan.exe.pdf"] {
        assert!(judge_name(&r, name).is_err(), "{name}");
    }
    let none = FileRules {
        mode: Mode::BlockAll,
        blocked: Vec::new(),
    };
    assert_eq!(judge_name(&none, "a.txt"), Err(FileRefusal::BlockAll));
}

#[test]
fn content_decides_what_a_name_hides() {
    let limits = ArchiveLimits::default();
    // An executable renamed .pdf is an executable.
    assert_eq!(
        refused(judge(&block_list(), &limits, "manual.pdf", PE)),
        FileRefusal::Content {
            name: "manual.pdf".into(),
            ext: ".exe"
        }
    );
    for (bytes, ext) in [
        (&b"\x7fELF\x02\x01\x01"[..], ".exe"),
        (&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1][..], ".exe"),
        (&b"#!/bin/sh\nrm -rf ~\n"[..], ".sh"),
    ] {
        assert_eq!(
            refused(judge(&block_list(), &limits, "notes.txt", bytes)),
            FileRefusal::Content {
                name: "notes.txt".into(),
                ext
            }
        );
    }
    // HTML passes a block-list without .html, but not an allow-list.
    let html = b"<!DOCTYPE html><script>alert(1)</script>";
    assert_eq!(
        judge(&block_list(), &limits, "page.txt", html)
            .unwrap()
            .kind,
        Kind::Html
    );
    assert!(judge(&allow_list(), &limits, "page.txt", html).is_err());
    let svg = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
    assert_eq!(detect(svg), Kind::Svg);
    assert_eq!(
        judge(&allow_list(), &limits, "a.pdf", PDF).unwrap().kind,
        Kind::Pdf
    );
    assert_eq!(detect(b"\x89PNG\r\n\x1a\n...."), Kind::Png);
    assert_eq!(detect(b"plain text"), Kind::Unknown);
}

#[test]
fn every_name_and_content_inside_archives_is_judged_recursively() {
    let limits = ArchiveLimits::default();
    let r = block_list();
    let fine = zip_of(&[("docs/a.pdf", PDF), ("readme.txt", b"hello")]);
    let ok = judge(&r, &limits, "docs.zip", &fine).unwrap();
    assert_eq!((ok.kind, ok.entries), (Kind::Zip, 2));
    let named = zip_of(&[("a.pdf", PDF), ("tools/setup.exe", b"x")]);
    assert!(matches!(
        refused(judge(&r, &limits, "docs.zip", &named)),
        FileRefusal::Blocked { ext, .. } if ext == ".exe"
    ));
    let renamed = zip_of(&[("notes.txt", PE)]);
    assert!(matches!(
        refused(judge(&r, &limits, "docs.zip", &renamed)),
        FileRefusal::Content { ext: ".exe", .. }
    ));
    // A zip in a zip, and one named otherwise.
    let inner = zip_of(&[("payload.exe", b"x")]);
    for name in ["inner.zip", "inner.dat"] {
        let outer = zip_of(&[("readme.txt", b"hi"), (name, &inner)]);
        assert!(
            matches!(
                refused(judge(&r, &limits, "outer.zip", &outer)),
                FileRefusal::Blocked { ref name, .. } if name.contains("payload.exe")
            ),
            "{name}"
        );
    }
    // A Java archive renamed .zip is a .jar.
    let jar = zip_of(&[
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
        ("a/B.class", b"\xca\xfe\xba\xbe"),
    ]);
    assert!(judge(&r, &limits, "library.zip", &jar).is_err());
    // Nested too deep.
    let mut deep = zip_of(&[("a.txt", b"x")]);
    for _ in 0..3 {
        deep = zip_of(&[("next.zip", &deep)]);
    }
    assert!(matches!(
        refused(judge(&r, &limits, "deep.zip", &deep)),
        FileRefusal::Archive(why) if why.contains("nested")
    ));
    // Not a zip after all.
    assert!(matches!(
        refused(judge(&r, &limits, "x.zip", b"PK\x03\x04 truncated")),
        FileRefusal::Archive(_)
    ));
    // Allow-list mode: the archive itself must be allowed, its entries
    // are held to the block-list.
    assert!(judge(&allow_list(), &limits, "docs.zip", &fine).is_ok());
    assert!(judge(&allow_list(), &limits, "docs.zip", &named).is_err());
}

#[test]
fn a_zip_bomb_is_refused_quickly_in_bounded_memory() {
    // 64 MiB of zeros deflates to about 64 KiB; at most 100 times the
    // file's size (plus 1 MiB) is decompressed before it is refused.
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file("zeros.bin", opts).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        w.write_all(&chunk).unwrap();
    }
    let bomb = w.finish().unwrap().into_inner();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let started = std::time::Instant::now();
    assert!(matches!(
        refused(judge(&block_list(), &ArchiveLimits::default(), "bomb.zip", &bomb)),
        FileRefusal::Archive(why) if why.contains("zip bomb")
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Too many entries.
    let many: Vec<(String, &[u8])> = (0..20).map(|i| (format!("f{i}.txt"), &b"x"[..])).collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let limits = ArchiveLimits {
        max_entries: 10,
        ..ArchiveLimits::default()
    };
    assert!(matches!(
        refused(judge(&block_list(), &limits, "many.zip", &zip_of(&refs))),
        FileRefusal::Archive(why) if why.contains("entries")
    ));
}

#[test]
fn the_strictest_rules_win_and_a_meeting_never_widens_them() {
    let limits = ArchiveLimits::default();
    let open = FileRules {
        mode: Mode::BlockListed,
        blocked: Vec::new(),
    };
    let strict = allow_list();
    // Open for the sender, an allow-list for a recipient: refused.
    assert!(judge_all(std::slice::from_ref(&open), &limits, "a.docx", b"x").is_ok());
    assert!(judge_all(&[open.clone(), strict.clone()], &limits, "a.docx", b"x").is_err());
    assert_eq!(
        judge_all(&[], &limits, "a.txt", b"x"),
        Err(FileRefusal::BlockAll)
    );
    // Whatever the organiser's setting, what a participant's policy
    // forbids stays forbidden; the organiser can only turn sharing off.
    assert!(meeting_allows(
        true,
        &[open.clone(), strict.clone()],
        &limits,
        "a.docx",
        b"x"
    )
    .is_err());
    assert_eq!(
        meeting_allows(false, std::slice::from_ref(&open), &limits, "a.txt", b"x"),
        Err(FileRefusal::MeetingOff)
    );
    assert!(meeting_allows(true, &[open, strict], &limits, "a.txt", b"x").is_ok());
}

#[test]
fn a_recorded_judgement_decides_as_the_bytes_would() {
    // A permissive sender accepts; what was recorded then decides for a
    // stricter recipient exactly as the bytes would.
    let limits = ArchiveLimits::default();
    let open = FileRules {
        mode: Mode::BlockListed,
        blocked: vec![],
    };
    let inner = zip_of(&[("tool.ps1", b"x"), ("bin", PE)]);
    let outer = zip_of(&[("readme.txt", b"hi"), ("more.zip", &inner)]);
    let cases: Vec<(&str, &[u8])> = vec![
        ("docs.zip", &outer),
        ("manual.pdf", PE),
        ("a.pdf", PDF),
        ("notes.txt", b"hello"),
    ];
    let stricter = [
        block_list(),
        allow_list(),
        FileRules {
            mode: Mode::BlockListed,
            blocked: vec![".ps1".into()],
        },
        FileRules {
            mode: Mode::BlockAll,
            blocked: vec![],
        },
    ];
    for (name, bytes) in cases {
        let accepted = judge(&open, &limits, name, bytes).unwrap();
        let kind = accepted.kind.extension().unwrap_or("");
        for rules in &stricter {
            assert_eq!(
                judge_recorded(rules, name, kind, &accepted.inner).is_ok(),
                judge(rules, &limits, name, bytes).is_ok(),
                "{name} under {rules:?}"
            );
        }
    }
    let accepted = judge(&open, &limits, "docs.zip", &outer).unwrap();
    assert_eq!(
        accepted.inner,
        vec![".exe", ".ps1", ".txt", ".zip"],
        "names and contents inside, sorted"
    );
}
