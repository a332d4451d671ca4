//! The binary `scripts/install` builds (statically linked where it can be, with flags no other
//! test build uses) answers as the binary under test does: on every pair of the shared corpus,
//! the same exit status, messages, JSON report and diff object, byte for byte.
//!
//! `scripts/test` installs it and names it in `KLPFORGE_INSTALLED`; without that variable the
//! test skips (a failure under `KLPFORGE_REQUIRE_ALL=1`).

use std::path::{Path, PathBuf};
use std::process::Command;

use klpforge_testkit::{corpus_dir, load_expectations, skip, ScratchDir};

/// Everything one `klpforge diff` run answers.
struct Answer {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    json: Option<Vec<u8>>,
    object: Option<Vec<u8>>,
}

fn answer(bin: &Path, orig: &Path, patched: &Path, dir: &Path) -> Answer {
    let (out, json) = (dir.join("out.o"), dir.join("report.json"));
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&json);
    let o = Command::new(bin)
        .arg("diff")
        .arg(orig)
        .arg(patched)
        .arg(&out)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    Answer {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        json: std::fs::read(&json).ok(),
        object: std::fs::read(&out).ok(),
    }
}

#[test]
fn installed_binary_answers_as_the_tested_one() {
    let Some(installed) = std::env::var_os("KLPFORGE_INSTALLED").map(PathBuf::from) else {
        skip(
            "installed",
            "skipping the installed-binary check: KLPFORGE_INSTALLED not set (scripts/test sets it after scripts/install)",
        );
        return;
    };
    assert!(
        installed.is_file(),
        "KLPFORGE_INSTALLED={}: no such file",
        installed.display()
    );
    let Some(corpus) = corpus_dir() else {
        return;
    };
    let scratch = ScratchDir::new("installed").unwrap();
    let (ours, theirs) = (
        scratch.path().join("tested"),
        scratch.path().join("installed"),
    );
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    let mut pairs = 0;
    for e in load_expectations(&corpus).unwrap() {
        let Ok(pair) = e.find_pair(&corpus) else {
            continue;
        };
        let tested = answer(
            Path::new(env!("CARGO_BIN_EXE_klpforge")),
            &pair.orig,
            &pair.patched,
            &ours,
        );
        let shipped = answer(&installed, &pair.orig, &pair.patched, &theirs);
        let name = format!("{}/{}", e.arch, e.test);
        assert!(
            tested.code.is_some(),
            "{name}: the tested binary ended by a signal"
        );
        assert_eq!(
            (&tested.code, &tested.stdout, &tested.stderr),
            (&shipped.code, &shipped.stdout, &shipped.stderr),
            "{name}: the installed binary's exit status or messages differ"
        );
        assert!(
            tested.json == shipped.json,
            "{name}: the installed binary's JSON report differs"
        );
        assert!(
            tested.object == shipped.object,
            "{name}: the installed binary's diff object differs"
        );
        pairs += 1;
    }
    assert!(pairs > 0, "no corpus pair found in {}", corpus.display());
}
