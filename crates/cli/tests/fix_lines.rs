//! `klpforge fix-lines`: patches that `patch -p1` and `git apply` both accept, and that keep
//! `__LINE__` of every unchanged line.

use std::path::Path;
use std::process::Command;

use klpforge_testkit::ScratchDir;

const ORIG: &str = "\
#include \"x.h\"

int a(void)
{
\treturn __LINE__;
}

#define TWICE(x) \\
\t((x) + \\
\t (x))

int b(int v)
{
\tint r = v;
\tr += 1;
\treturn r + __LINE__;
}

int c(void)
{
\treturn __LINE__;
}
";

/// Adds lines in a(), removes one in b(), edits inside a continued macro.
const PATCHED: &str = "\
#include \"x.h\"

int a(void)
{
\tint extra = 1;
\tint more = 2;
\treturn __LINE__ + extra + more;
}

#define TWICE(x) \\
\t((x) + \\
\t (x) + 0 + \\
\t 0)

int b(int v)
{
\tint r = v;
\treturn r + __LINE__;
}

int c(void)
{
\treturn __LINE__;
}
";

fn run(dir: &Path, cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// The `__LINE__` values of every `return` line of a preprocessed file, by function.
fn lines_of(dir: &Path, file: &str) -> Vec<String> {
    let o = run(dir, "gcc", &["-E", "-P", file]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("return"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn fixed_patches_apply_and_keep_line_numbers() {
    let scratch = ScratchDir::new("fix-lines").unwrap();
    let root = scratch.path();
    for (dir, text) in [("a", ORIG), ("b", PATCHED)] {
        std::fs::create_dir_all(root.join(dir).join("src")).unwrap();
        std::fs::write(root.join(dir).join("src/f.c"), text).unwrap();
        std::fs::write(root.join(dir).join("src/x.h"), "").unwrap();
        std::fs::write(root.join(dir).join("README"), "one\ntwo\n").unwrap();
    }
    std::fs::write(root.join("b/README"), "one\nnew\ntwo\n").unwrap();
    let diff = run(root, "diff", &["-Nupr", "a", "b"]);
    let patch = root.join("change.patch");
    std::fs::write(&patch, &diff.stdout).unwrap();
    let fixed = root.join("fixed.patch");
    let o = Command::new(env!("CARGO_BIN_EXE_klpforge"))
        .args(["fix-lines"])
        .arg(&patch)
        .arg("-o")
        .arg(&fixed)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&fixed).unwrap();
    assert!(text.contains("+#line "), "{text}");
    // The README hunk is untouched.
    assert!(text.contains(" one\n+new\n two\n"), "{text}");

    // A pristine tree: the original files, under git.
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::write(tree.join("src/f.c"), ORIG).unwrap();
    std::fs::write(tree.join("src/x.h"), "").unwrap();
    std::fs::write(tree.join("README"), "one\ntwo\n").unwrap();
    assert!(run(&tree, "git", &["init", "-q"]).status.success());
    let check = run(
        &tree,
        "git",
        &["apply", "--check", "-v", fixed.to_str().unwrap()],
    );
    assert!(
        check.status.success(),
        "git apply: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dry = run(
        &tree,
        "patch",
        &["-p1", "--dry-run", "-i", fixed.to_str().unwrap()],
    );
    assert!(
        dry.status.success(),
        "patch: {}",
        String::from_utf8_lossy(&dry.stdout)
    );
    let before = lines_of(&tree, "src/f.c");
    let applied = run(
        &tree,
        "patch",
        &["-p1", "-s", "-i", fixed.to_str().unwrap()],
    );
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stdout)
    );
    let after = lines_of(&tree, "src/f.c");
    // The changed line in a() is new code with a new number; b() and c() keep theirs.
    assert_eq!(before.len(), after.len());
    assert_eq!(before[0], "return 5;");
    assert_eq!(after[0], "return 7 + extra + more;");
    assert_eq!(before[1..], after[1..], "lines below the edits moved");
    // Without fix-lines they would have moved.
    let unfixed = lines_of(&root.join("b"), "src/f.c");
    assert_ne!(unfixed[1], before[1], "the test patch should shift lines");
}

#[test]
fn shared_e2e_patches_stay_well_formed() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/e2e/patches");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        klpforge_testkit::skip(
            "shared-e2e-patches",
            &format!("skipping: {} not found", dir.display()),
        );
        return;
    };
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let mut p = klpforge_driver::patch::parse(&text).unwrap();
        klpforge_driver::fixlines::fix_lines(&mut p);
        let printed = klpforge_driver::patch::print(&p);
        // What we print parses again with consistent counts, and has the same preamble.
        let again = klpforge_driver::patch::parse(&printed).unwrap();
        assert_eq!(again, p, "{}", e.path().display());
        assert!(printed.starts_with("E2E-EXPECT:"));
    }
}
