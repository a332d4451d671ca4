//! C fixture cases compiled by the real gcc.
//!
//! A case is a directory holding `orig.c` and, for two-object cases,
//! `patched.c`. Either file may carry directive comments, one per line:
//!
//! ```c
//! //# arch: x86_64 aarch64
//! //# cflags: -fcommon
//! //# skip: waiting for the s390x backend
//! //# expect: changed foo
//! ```
//!
//! A directive line starts (after optional indentation) with `//#`, then
//! `key: value`. Keys are made of ASCII letters, digits, `_` and `-`. The keys
//! understood here are:
//!
//! * `arch:` space-separated architectures the case applies to (default: all);
//! * `cflags:` extra compiler flags, split on whitespace and appended to the
//!   toolchain's kernel flags (so they win over them);
//! * `skip:` a reason; the case is skipped everywhere with that message.
//!
//! Every other key is kept, in order, for later consumers (see
//! [`FixtureCase::directives`]).
//!
//! Both files of a case are compiled under the same file name, `<case>.c`,
//! so that `orig` and `patched` objects carry identical `STT_FILE` symbols and
//! `__FILE__` strings, as kernel objects built from one path do.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::toolchain::{Toolchain, ARCHES};

/// One `//# key: value` directive comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The key, without the colon (`"arch"`, `"expect"`, …).
    pub key: String,
    /// The value, trimmed (may be empty).
    pub value: String,
    /// The file the directive was found in.
    pub file: PathBuf,
    /// 1-based line number within `file`.
    pub line: usize,
}

/// A fixture case: a directory with `orig.c` and optionally `patched.c`.
#[derive(Clone, Debug)]
pub struct FixtureCase {
    /// The case's name: its directory's file name.
    pub name: String,
    /// The case directory.
    pub dir: PathBuf,
    /// Path of `orig.c`.
    pub orig: PathBuf,
    /// Path of `patched.c`, if the case has one.
    pub patched: Option<PathBuf>,
    /// All directives, `orig.c`'s first, each file's in line order.
    pub directives: Vec<Directive>,
}

/// The objects built from a [`FixtureCase`] for one toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCase {
    /// `out_dir/<case>.<arch>.orig.o`.
    pub orig: PathBuf,
    /// `out_dir/<case>.<arch>.patched.o`, when the case has `patched.c`.
    pub patched: Option<PathBuf>,
}

/// Parses the directive comments of one file's `text`; `file` is recorded in
/// each [`Directive`] and used in error messages. A `//#` line that is not
/// `key: value` with a well-formed key is an error.
pub fn parse_directives(text: &str, file: &Path) -> Result<Vec<Directive>> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let Some(rest) = raw.trim_start().strip_prefix("//#") else {
            continue;
        };
        let Some((key, value)) = rest.split_once(':') else {
            bail!(
                "{}:{line}: malformed directive `{}` (expected `//# key: value`)",
                file.display(),
                raw.trim()
            );
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!(
                "{}:{line}: bad directive key `{key}` in `{}`",
                file.display(),
                raw.trim()
            );
        }
        out.push(Directive {
            key: key.to_string(),
            value: value.trim().to_string(),
            file: file.to_path_buf(),
            line,
        });
    }
    Ok(out)
}

impl FixtureCase {
    /// Loads the case in `dir` (which must contain `orig.c`) and checks its
    /// known directives (`arch:` names must be in [`ARCHES`]).
    pub fn load(dir: &Path) -> Result<FixtureCase> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("fixture directory {} has no UTF-8 name", dir.display()))?
            .to_string();
        let orig = dir.join("orig.c");
        if !orig.is_file() {
            bail!("fixture case {} has no orig.c", dir.display());
        }
        let patched = Some(dir.join("patched.c")).filter(|p| p.is_file());
        let mut directives = Vec::new();
        for file in std::iter::once(&orig).chain(patched.as_ref()) {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            directives.extend(parse_directives(&text, file)?);
        }
        for d in directives.iter().filter(|d| d.key == "arch") {
            if d.value.is_empty() {
                bail!("{}:{}: empty `arch:` directive", d.file.display(), d.line);
            }
            for arch in d.value.split_whitespace() {
                if !ARCHES.contains(&arch) {
                    bail!(
                        "{}:{}: unknown architecture `{arch}` (known: {})",
                        d.file.display(),
                        d.line,
                        ARCHES.join(" ")
                    );
                }
            }
        }
        Ok(FixtureCase {
            name,
            dir: dir.to_path_buf(),
            orig,
            patched,
            directives,
        })
    }

    /// The values of all directives with `key`, in order.
    pub fn directives<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.directives
            .iter()
            .filter(move |d| d.key == key)
            .map(|d| d.value.as_str())
    }

    /// The architectures named by `arch:` directives (several directives
    /// accumulate), or `None` when the case applies to all of them.
    pub fn arches(&self) -> Option<Vec<&str>> {
        let mut arches: Vec<&str> = Vec::new();
        let mut any = false;
        for value in self.directives("arch") {
            any = true;
            arches.extend(value.split_whitespace());
        }
        any.then_some(arches)
    }

    /// Extra compiler flags from the `cflags:` directives, split on
    /// whitespace (no quoting), in order.
    pub fn cflags(&self) -> Vec<&str> {
        self.directives("cflags")
            .flat_map(|v| v.split_whitespace())
            .collect()
    }

    /// Why this case does not run on `arch`, if it does not: a `skip:`
    /// directive, or an `arch:` list without `arch`.
    pub fn skip_reason(&self, arch: &str) -> Option<String> {
        if let Some(reason) = self.directives("skip").next() {
            return Some(format!("skip: {reason}"));
        }
        match self.arches() {
            Some(arches) if !arches.contains(&arch) => {
                Some(format!("only for {}", arches.join(" ")))
            }
            _ => None,
        }
    }

    /// Whether the case runs on `tc`'s architecture; when it does not, prints
    /// `skipping case <name> on <arch>: <reason>` to stderr.
    pub fn runs_on(&self, tc: &Toolchain) -> bool {
        match self.skip_reason(tc.arch) {
            Some(reason) => {
                eprintln!("skipping case {} on {}: {reason}", self.name, tc.arch);
                false
            }
            None => true,
        }
    }

    /// Compiles `orig.c` (and `patched.c`) with `tc`'s kernel flags plus the
    /// case's `cflags:` into `out_dir/<case>.<arch>.{orig,patched}.o`.
    ///
    /// This does not look at `arch:`/`skip:`; see [`runs_on`](Self::runs_on).
    /// A compiler error is reported with the fixture file and gcc's stderr.
    pub fn compile(&self, tc: &Toolchain, out_dir: &Path) -> Result<CompiledCase> {
        self.compile_with(tc, out_dir, &[])
    }

    /// The case's `variant: NAME[@ARCH,...] FLAGS...` directives that apply to `arch`: each
    /// is one more run of the case with FLAGS appended after `cflags:` (for example
    /// `variant: os -Os`, or `variant: nosse@x86_64 -mno-sse -mno-sse2`).
    pub fn variants(&self, arch: &str) -> Vec<(String, Vec<String>)> {
        self.directives
            .iter()
            .filter(|d| d.key == "variant" && d.file == self.orig)
            .filter_map(|d| {
                let mut words = d.value.split_whitespace();
                let head = words.next()?;
                let (name, arches) = match head.split_once('@') {
                    Some((n, a)) => (n, Some(a)),
                    None => (head, None),
                };
                if arches.is_some_and(|a| !a.split(',').any(|x| x == arch)) {
                    return None;
                }
                Some((name.to_string(), words.map(str::to_string).collect()))
            })
            .collect()
    }

    /// As [`compile`](Self::compile), with `extra` flags appended after the case's `cflags:`.
    pub fn compile_with(
        &self,
        tc: &Toolchain,
        out_dir: &Path,
        extra: &[String],
    ) -> Result<CompiledCase> {
        let mut flags: Vec<&str> = tc.kernel_cflags();
        flags.extend(self.cflags());
        flags.extend(extra.iter().map(String::as_str));
        let file_name = format!("{}.c", self.name);
        let build = |src: &Path, which: &str| -> Result<PathBuf> {
            let text = std::fs::read_to_string(src)
                .with_context(|| format!("reading {}", src.display()))?;
            let stem = format!("{}.{}.{which}", self.name, tc.arch);
            compile_staged(
                tc,
                &text,
                &file_name,
                out_dir,
                &stem,
                &flags,
                src,
                Some(&self.dir),
            )
        };
        let orig = build(&self.orig, "orig")?;
        let patched = match &self.patched {
            Some(p) => Some(build(p, "patched")?),
            None => None,
        };
        Ok(CompiledCase { orig, patched })
    }
}

/// Loads every case below `dir`: each immediate subdirectory containing
/// `orig.c`, sorted by name. Subdirectories without any `.c` file are ignored;
/// one with `patched.c` but no `orig.c` is an error.
pub fn load_cases(dir: &Path) -> Result<Vec<FixtureCase>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading fixture dir {}", dir.display()))?;
    let mut cases = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading fixture dir {}", dir.display()))?
            .path();
        if !path.is_dir() {
            continue;
        }
        if path.join("orig.c").is_file() {
            cases.push(FixtureCase::load(&path)?);
        } else if path.join("patched.c").exists() {
            bail!(
                "fixture case {} has patched.c but no orig.c",
                path.display()
            );
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// Compiles the C `source` with `tc`'s kernel flags followed by
/// `extra_flags` into `out_dir/<name>.<arch>.o` and returns that path.
///
/// The source is written below `out_dir` and compiled under the file name
/// `<stem>.c`, where `stem` is `name` up to its first `.`; so `foo.orig` and
/// `foo.patched` produce objects with the same `STT_FILE` symbol.
pub fn compile_c_source(
    tc: &Toolchain,
    source: &str,
    name: &str,
    out_dir: &Path,
    extra_flags: &[&str],
) -> Result<PathBuf> {
    let mut flags = tc.kernel_cflags();
    flags.extend_from_slice(extra_flags);
    compile_c_source_with_flags(tc, source, name, out_dir, &flags)
}

/// Like [`compile_c_source`], but with exactly `flags` (which must contain
/// `-c`, and the `-isystem` of [`Toolchain::include_dir`] if the source
/// includes headers under `-nostdinc`): for builds that need less than the
/// kernel flags, such as [`Toolchain::kernel_cflags_without_ftrace`].
pub fn compile_c_source_with_flags(
    tc: &Toolchain,
    source: &str,
    name: &str,
    out_dir: &Path,
    flags: &[&str],
) -> Result<PathBuf> {
    let stem = name.split('.').next().unwrap_or(name);
    let file_name = format!("{stem}.c");
    let object_stem = format!("{name}.{}", tc.arch);
    let origin = out_dir.join(format!("{object_stem}.src")).join(&file_name);
    compile_staged(
        tc,
        source,
        &file_name,
        out_dir,
        &object_stem,
        flags,
        &origin,
        None,
    )
}

/// Writes `source` to `out_dir/<object_stem>.src/<file_name>`, compiles it
/// from there into `out_dir/<object_stem>.o` and returns the object path.
/// `origin` names the source in error messages; `quote_dir` is searched for
/// `#include "..."` files.
#[allow(clippy::too_many_arguments)]
fn compile_staged(
    tc: &Toolchain,
    source: &str,
    file_name: &str,
    out_dir: &Path,
    object_stem: &str,
    flags: &[&str],
    origin: &Path,
    quote_dir: Option<&Path>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out_dir = out_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", out_dir.display()))?;
    let stage = out_dir.join(format!("{object_stem}.src"));
    std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    std::fs::write(stage.join(file_name), source)
        .with_context(|| format!("writing {}", stage.join(file_name).display()))?;
    let object = out_dir.join(format!("{object_stem}.o"));
    let _ = std::fs::remove_file(&object);

    let mut cmd = Command::new(&tc.gcc);
    cmd.current_dir(&stage).args(flags);
    if let Some(dir) = quote_dir {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        cmd.arg("-iquote").arg(dir);
    }
    cmd.arg(file_name).arg("-o").arg(&object);
    let output = cmd
        .output()
        .with_context(|| format!("running {}", tc.gcc.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed to compile {} for {} (staged as {}): {}\ncommand: {:?}\n{}",
            tc.gcc.display(),
            origin.display(),
            tc.arch,
            stage.join(file_name).display(),
            output.status,
            cmd,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    if !object.is_file() {
        bail!(
            "{} succeeded but wrote no {} (are `-c` and the flags right? {:?})",
            tc.gcc.display(),
            object.display(),
            flags
        );
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;
    use crate::toolchain::available_toolchains;

    #[test]
    fn directives_with_lines_and_unknown_keys() {
        let text = "\
int x;
//# arch: x86_64 aarch64
  //#cflags:-O1 -fcommon
/* //# not: a directive, the line does not start with it */
//# expect: changed foo
//# skip:
// # spaced: not a directive either
//# expect:   new bar  
";
        let file = Path::new("case/orig.c");
        let d = parse_directives(text, file).unwrap();
        let summary: Vec<(&str, &str, usize)> = d
            .iter()
            .map(|d| (d.key.as_str(), d.value.as_str(), d.line))
            .collect();
        assert_eq!(
            summary,
            [
                ("arch", "x86_64 aarch64", 2),
                ("cflags", "-O1 -fcommon", 3),
                ("expect", "changed foo", 5),
                ("skip", "", 6),
                ("expect", "new bar", 8),
            ]
        );
        assert!(d.iter().all(|d| d.file == file));
    }

    #[test]
    fn malformed_directives_are_errors() {
        let e = parse_directives("\n\n//# no colon here\n", Path::new("p.c")).unwrap_err();
        assert!(e.to_string().contains("p.c:3"), "{e}");
        let e = parse_directives("//# bad key: x\n", Path::new("p.c")).unwrap_err();
        assert!(e.to_string().contains("bad directive key"), "{e}");
        let e = parse_directives("//#: x\n", Path::new("p.c")).unwrap_err();
        assert!(e.to_string().contains("p.c:1"), "{e}");
    }

    fn write_case(root: &Path, name: &str, orig: &str, patched: Option<&str>) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("orig.c"), orig).unwrap();
        if let Some(p) = patched {
            std::fs::write(dir.join("patched.c"), p).unwrap();
        }
    }

    #[test]
    fn load_cases_sorted_and_directives_accumulate() {
        let root = ScratchDir::new("load-cases").unwrap();
        write_case(&root, "zeta", "int z;\n", None);
        write_case(
            &root,
            "alpha",
            "//# arch: x86_64\n//# expect: a\nint a;\n",
            Some("int a;\n//# arch: s390x\n//# cflags: -O1\n//# expect: b\n"),
        );
        write_case(&root, "Mid", "//# skip: not yet\n", None);
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("stray.c"), "int s;\n").unwrap();
        let cases = load_cases(&root).unwrap();
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Mid", "alpha", "zeta"]);

        let alpha = &cases[1];
        assert!(alpha.patched.is_some());
        assert!(cases[2].patched.is_none());
        assert_eq!(alpha.directives("expect").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(alpha.arches(), Some(vec!["x86_64", "s390x"]));
        assert_eq!(alpha.cflags(), ["-O1"]);
        let lines: Vec<(String, usize)> = alpha
            .directives
            .iter()
            .map(|d| {
                (
                    d.file.file_name().unwrap().to_string_lossy().into_owned(),
                    d.line,
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("orig.c".into(), 1),
                ("orig.c".into(), 2),
                ("patched.c".into(), 2),
                ("patched.c".into(), 3),
                ("patched.c".into(), 4)
            ]
        );
        assert_eq!(alpha.skip_reason("x86_64"), None);
        assert_eq!(
            alpha.skip_reason("aarch64").as_deref(),
            Some("only for x86_64 s390x")
        );
        assert_eq!(
            cases[0].skip_reason("x86_64").as_deref(),
            Some("skip: not yet")
        );
        assert_eq!(cases[2].arches(), None);
        assert_eq!(cases[2].skip_reason("ppc64le"), None);
    }

    #[test]
    fn load_cases_rejects_bad_cases() {
        let root = ScratchDir::new("bad-cases").unwrap();
        write_case(&root, "typo", "//# arch: x86-64\n", None);
        let e = load_cases(&root).unwrap_err();
        assert!(
            e.to_string().contains("unknown architecture `x86-64`"),
            "{e}"
        );

        let root = ScratchDir::new("bad-cases2").unwrap();
        std::fs::create_dir_all(root.join("half")).unwrap();
        std::fs::write(root.join("half/patched.c"), "").unwrap();
        assert!(load_cases(&root).is_err());
    }

    #[test]
    fn compile_errors_carry_gcc_stderr_and_file() {
        let Some(tc) = available_toolchains().into_iter().next() else {
            return;
        };
        let root = ScratchDir::new("compile-error").unwrap();
        write_case(
            &root,
            "broken",
            "int ok;\nint broken(void) { return nosuchvar; }\n",
            None,
        );
        let case = FixtureCase::load(&root.join("broken")).unwrap();
        let e = case
            .compile(&tc, &root.join("out"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuchvar"), "{e}");
        assert!(e.contains("broken/orig.c"), "{e}");
    }

    #[test]
    fn orig_and_patched_share_the_source_file_name() {
        let Some(tc) = available_toolchains().into_iter().next() else {
            return;
        };
        let root = ScratchDir::new("same-name").unwrap();
        write_case(
            &root,
            "pair",
            "const char *where(void) { return __FILE__; }\n",
            Some("const char *where(void) { return __FILE__ \"!\"; }\n"),
        );
        let case = FixtureCase::load(&root.join("pair")).unwrap();
        let out = case.compile(&tc, &root.join("out")).unwrap();
        assert_eq!(
            out.orig,
            root.canonicalize()
                .unwrap()
                .join("out")
                .join(format!("pair.{}.orig.o", tc.arch))
        );
        let patched = out.patched.unwrap();
        for obj in [&out.orig, &patched] {
            let bytes = std::fs::read(obj).unwrap();
            assert!(
                bytes.windows(7).any(|w| w == b"pair.c\0"),
                "{} lacks the file name pair.c",
                obj.display()
            );
            assert!(!bytes.windows(6).any(|w| w == b"orig.c"));
        }
    }

    #[test]
    fn compile_c_source_names() {
        let Some(tc) = available_toolchains().into_iter().next() else {
            return;
        };
        let root = ScratchDir::new("csource").unwrap();
        let obj = compile_c_source(&tc, "int v = 3;\n", "gen.orig", &root, &["-O1"]).unwrap();
        assert_eq!(
            obj.file_name().unwrap().to_string_lossy(),
            format!("gen.orig.{}.o", tc.arch)
        );
        assert!(root
            .join(format!("gen.orig.{}.src/gen.c", tc.arch))
            .is_file());
        let e = compile_c_source(&tc, "int v = ;\n", "bad", &root, &[]).unwrap_err();
        assert!(e.to_string().contains("error"), "{e}");
    }
}
