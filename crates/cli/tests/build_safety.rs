//! `klpforge build` never changes the user's trees: not when it succeeds, not when a patch
//! does not apply, not when the module step fails, not when it is interrupted (SIGINT,
//! SIGTERM, SIGKILL) at any stage. A small fake kernel tree is made at test time: a source
//! tree, a build tree with kbuild-style `.cmd` records, a `.config`, a linked "vmlinux" and a
//! Module.symvers. The module step then fails (there is no kernel Makefile), which is itself
//! one of the failure cases; the real kernel is exercised by the end-to-end test.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use klpforge_testkit::{toolchain, ScratchDir};

const SOURCE: &str = "\
int shown;
static int __attribute__((noinline)) helper(int x) { return x + shown; }
int show(int x)
{
\treturn helper(x) + 1;
}
";

const PATCH: &str = "\
--- a/fs/show.c
+++ b/fs/show.c
@@ -3,4 +3,4 @@ static int __attribute__((noinline)) helper(int x) { return x + shown; }
 int show(int x)
 {
-\treturn helper(x) + 1;
+\treturn helper(x) + 2;
 }
";

const BAD_PATCH: &str = "\
--- a/fs/show.c
+++ b/fs/show.c
@@ -3,4 +3,4 @@
 int show(int y)
 {
-\treturn y;
+\treturn y + 2;
 }
";

/// Every file under `root` with its size, mtime and content hash.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let content = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            let hash = xxhash(&content);
            out.insert(p, (m.len(), m.mtime(), m.mtime_nsec(), hash));
        }
    }
    out
}

fn xxhash(b: &[u8]) -> u64 {
    // FNV-1a: enough to notice a change.
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

struct FakeKernel {
    _scratch: ScratchDir,
    root: PathBuf,
    src: PathBuf,
    build: PathBuf,
}

fn fake_kernel() -> Option<FakeKernel> {
    fake_kernel_with(SOURCE, None, "gcc", "")
}

/// A fake kernel whose `fs/show.c` is `source`, with `header` (name, text) beside it, and
/// whose configuration names its compiler `cc_name` (the identity is this machine's gcc's).
fn fake_kernel_with(
    source: &str,
    header: Option<(&str, &str)>,
    cc_name: &str,
    extra_cflags: &str,
) -> Option<FakeKernel> {
    let tc = toolchain("x86_64")?;
    let scratch = ScratchDir::new("build-safety").unwrap();
    let root = scratch.path().to_path_buf();
    let src = root.join("linux");
    let build = src.join("build");
    std::fs::create_dir_all(src.join("fs")).unwrap();
    std::fs::create_dir_all(build.join("fs")).unwrap();
    std::fs::write(src.join("fs/show.c"), source).unwrap();
    if let Some((name, text)) = header {
        std::fs::write(src.join("fs").join(name), text).unwrap();
    }
    let flags = tc.kernel_cflags();
    let command = format!(
        "gcc -Wp,-MMD,fs/.show.o.d {} {extra_cflags} -c -o fs/show.o ../fs/show.c",
        flags.join(" ")
    );
    let cmd = format!(
        "savedcmd_fs/show.o := {command}\n\nsource_fs/show.o := ../fs/show.c\n\ndeps_fs/show.o := \\\n  ../fs/show.c \\\n\nfs/show.o: $(deps_fs/show.o)\n"
    );
    std::fs::write(build.join("fs/.show.o.cmd"), cmd).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(&build)
        .status()
        .unwrap();
    assert!(st.success());
    let cc = Command::new("gcc").arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&cc.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    // The same compiler under the configuration's command name.
    let version = match version.split_once(' ') {
        Some((_, rest)) => format!("{cc_name} {rest}"),
        None => version,
    };
    std::fs::write(
        build.join(".config"),
        format!("CONFIG_LIVEPATCH=y\nCONFIG_DYNAMIC_FTRACE=y\nCONFIG_MODULES=y\nCONFIG_KALLSYMS=y\nCONFIG_CC_VERSION_TEXT=\"{version}\"\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("start.s"),
        ".globl _start\n_start: ret\n.globl __fentry__\n__fentry__: ret\n.section .note.GNU-stack,\"\",@progbits\n",
    )
    .unwrap();
    let st = Command::new("gcc")
        .args(["-c", "-o"])
        .arg(root.join("start.o"))
        .arg(root.join("start.s"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new(tc.ld())
        .arg("-o")
        .arg(build.join("vmlinux"))
        .arg(build.join("fs/show.o"))
        .arg(root.join("start.o"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        build.join("Module.symvers"),
        "0x1\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n",
    )
    .unwrap();
    Some(FakeKernel {
        _scratch: scratch,
        root,
        src,
        build,
    })
}

fn run_klpforge_build(
    k: &FakeKernel,
    patch: &str,
    extra_env: &[(&str, &str)],
) -> std::process::Child {
    let p = k.root.join("change.patch");
    std::fs::write(&p, patch).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_klpforge"));
    c.arg("build")
        .arg("--src")
        .arg(&k.src)
        .arg("--build")
        .arg(&k.build)
        .arg("--work")
        .arg(k.root.join("work"))
        .arg("-o")
        .arg(k.root.join("out.ko"))
        .arg(&p)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

#[test]
fn trees_are_untouched_whatever_happens() {
    let Some(k) = fake_kernel() else { return };
    let before = snapshot(&k.src);

    // The module step fails (no kernel Makefile): exit 1, trees untouched, and the diff
    // did run (the error is about the kernel build directory).
    let out = run_klpforge_build(&k, PATCH, &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a configured kernel build directory"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("changed function: show"));
    assert_eq!(snapshot(&k.src), before, "tree changed by a failed build");

    // A patch that does not apply.
    let out = run_klpforge_build(&k, BAD_PATCH, &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the patch does not apply"), "{stderr}");
    assert_eq!(
        snapshot(&k.src),
        before,
        "tree changed by a patch that does not apply"
    );

    // Interrupted in every stage, by SIGINT, SIGTERM and SIGKILL (the pause hook that stops
    // the build at a stage exists with the test-hooks feature only).
    if !cfg!(feature = "test-hooks") {
        klpforge_testkit::skip(
            "test-hooks",
            "skipping the interruption tests: build with --features klpforge/test-hooks",
        );
        return;
    }
    let stages = [
        "reading patches",
        "applying patches",
        "finding affected",
        "compiling",
        "comparing",
        "building the module",
    ];
    for (i, stage) in stages.iter().enumerate() {
        let signal = ["-INT", "-TERM", "-KILL"][i % 3];
        let mut child = run_klpforge_build(&k, PATCH, &[("KLPFORGE_PAUSE_AT", stage)]);
        // Wait until it reports the pause.
        let started = std::time::Instant::now();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("paused at") {
                    return true;
                }
            }
            false
        });
        while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "{stage}: not interrupted");
        assert!(reader.join().unwrap(), "{stage}: never paused");
        assert_eq!(
            snapshot(&k.src),
            before,
            "tree changed by {signal} during '{stage}'"
        );
    }
}

#[test]
fn line_shift_only_patch_has_nothing_to_patch() {
    let Some(k) = fake_kernel() else { return };
    let patch = "--- a/fs/show.c\n+++ b/fs/show.c\n@@ -1,4 +1,6 @@\n int shown;\n+\n+\n static int __attribute__((noinline)) helper(int x) { return x + shown; }\n int show(int x)\n {\n";
    let out = run_klpforge_build(&k, patch, &[])
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nothing to patch"));
}

#[test]
fn unpatchable_files_are_refused_up_front() {
    let Some(k) = fake_kernel() else { return };
    for (path, why) in [
        ("arch/x86/entry/entry_64.S", "assembly"),
        ("lib/string.c", "lib/"),
        ("arch/x86/entry/vdso/vma.c", "vDSO"),
    ] {
        let patch = format!("--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n");
        let out = run_klpforge_build(&k, &patch, &[])
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{path}: {stderr}");
        assert!(
            stderr.contains(&format!("refusing to patch {path}")) && stderr.contains(why),
            "{stderr}"
        );
    }
}

const LOCAL_INCLUDE_SOURCE: &str = "\
#include \"show.h\"
int shown;
int show(int x)
{
\treturn x + SHOW_BASE;
}
";

const LOCAL_INCLUDE_PATCH: &str = "\
--- a/fs/show.c
+++ b/fs/show.c
@@ -2,5 +2,5 @@
 int shown;
 int show(int x)
 {
-\treturn x + SHOW_BASE;
+\treturn x + SHOW_BASE + 1;
 }
";

/// `klpforge build` run from the fake kernel's parent with relative paths only.
fn build_relative(k: &FakeKernel, work: &str, patch: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_klpforge"))
        .current_dir(&k.root)
        .args([
            "build",
            "--src",
            "linux",
            "--build",
            "linux/build",
            "--work",
            work,
        ])
        .args(["-o", "out.ko", patch])
        .output()
        .unwrap()
}

/// Three failures a user of a stock distribution kernel hit (stock-debian.md 1, 2 and 8):
/// a relative `--work` (patch -d changed directory before reading its input), a source that
/// includes a header beside it with no -I for its directory (in-tree builds), and the kernel's
/// compiler configured under another command name (`x86_64-linux-gnu-gcc-12` for `gcc`).
/// The build must reach the module step, which fails here only for want of a kernel Makefile.
#[test]
fn relative_work_local_includes_and_compiler_names_work() {
    let Some(k) = fake_kernel_with(
        LOCAL_INCLUDE_SOURCE,
        Some(("show.h", "#define SHOW_BASE 41\n")),
        "x86_64-linux-gnu-gcc-12",
        "",
    ) else {
        return;
    };
    let before = snapshot(&k.src);
    std::fs::write(k.root.join("local.patch"), LOCAL_INCLUDE_PATCH).unwrap();
    let out = build_relative(&k, "rel-work", "local.patch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("not a configured kernel build directory"),
        "did not reach the module step:\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains("changed function: show"),
        "{stdout}{stderr}"
    );
    assert_eq!(snapshot(&k.src), before);
    // A patch that does not apply says why (patch's own message reaches the user).
    std::fs::write(k.root.join("bad.patch"), BAD_PATCH).unwrap();
    let out = build_relative(&k, "rel-work2", "bad.patch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the patch does not apply: ") && stderr.contains("hunk"),
        "{stderr}"
    );
}

/// A work directory whose path has a space (and a quote) in it: the replayed compile commands
/// quote every path klpforge puts in them, so the build reaches the module step.
#[test]
fn work_directory_with_a_space_works() {
    let Some(k) = fake_kernel() else { return };
    std::fs::write(k.root.join("show.patch"), PATCH).unwrap();
    let out = build_relative(&k, "work dir's copy", "show.patch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("changed function: show"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("not a configured kernel build directory"),
        "did not reach the module step:\n{stdout}{stderr}"
    );
}

/// What a partial tree cannot tell must be an error that says what is missing, never a
/// "nothing to patch" (stock-debian.md 4, 5, 6 and 7): a source with no kbuild record, a
/// header change in a tree that was not fully built, and an object kbuild compiled for a
/// module whose symbol table is not there.
#[test]
fn missing_records_and_module_symbols_are_errors() {
    let Some(k) = fake_kernel() else { return };
    std::fs::write(k.src.join("fs/other.c"), "int other(void) { return 1; }\n").unwrap();
    let other = "--- a/fs/other.c\n+++ b/fs/other.c\n@@ -1 +1 @@\n-int other(void) { return 1; }\n+int other(void) { return 2; }\n";
    let out = run_klpforge_build(&k, other, &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fs/other.c: kbuild has no record of compiling it"),
        "{stderr}"
    );
    std::fs::write(k.src.join("fs/show.h"), "#define X 1\n").unwrap();
    let header = "--- a/fs/show.h\n+++ b/fs/show.h\n@@ -1 +1 @@\n-#define X 1\n+#define X 2\n";
    let out = run_klpforge_build(&k, header, &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has not been fully built"), "{stderr}");

    // kbuild compiled fs/show.o for the module `showmod`, which was never linked.
    let Some(m) = fake_kernel_with(
        SOURCE,
        None,
        "gcc",
        "-DMODULE -DKBUILD_MODNAME='\"showmod\"'",
    ) else {
        return;
    };
    let out = run_klpforge_build(&m, PATCH, &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fs/show.o is part of a module, whose symbol table is needed")
            && stderr.contains("showmod.ko"),
        "{stderr}"
    );
    // The module as distributions ship it: stripped of its local and FILE symbols.
    let st = Command::new("objcopy")
        .arg("--strip-unneeded")
        .arg(m.build.join("fs/show.o"))
        .arg(m.build.join("fs/showmod.ko"))
        .status()
        .unwrap();
    assert!(st.success());
    let out = run_klpforge_build(&m, PATCH, &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stripped module (no FILE symbols)") && stderr.contains("-dbg"),
        "{stderr}"
    );
}
