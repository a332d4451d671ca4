//! Kbuild's compiler probes, answered once per kernel.
//!
//! Every `make M=` of an external module evaluates the kernel's makefiles again, and with them
//! some twenty `cc-option` probes: a compile of `/dev/null` with a candidate flag, whose exit
//! status says whether the compiler takes it. On a small patch they cost a third of the
//! module build. Kbuild is given a `CC` that runs `klpforge __cc-probe`: a probe (input
//! `/dev/null`, output in kbuild's `.tmp_*` directory) is answered from the cache when the
//! same compiler, assembler and arguments were seen before; anything else is handed to the
//! real compiler unchanged.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Where probe answers are kept and the klpforge executable that answers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCache {
    /// The klpforge executable (its hidden `__cc-probe` command is the compiler kbuild runs).
    pub exe: PathBuf,
    /// The cache directory.
    pub dir: PathBuf,
}

impl ProbeCache {
    /// The `CC=` make variable that routes kbuild's compiler through the cache, for the
    /// compiler kbuild would use itself (`$(CROSS_COMPILE)gcc`). `None` when the build names
    /// its own compiler (`CC=`, `LLVM=`) or a path would not survive the shell's word
    /// splitting.
    pub fn make_var(&self, make_vars: &[String]) -> Option<String> {
        if make_vars
            .iter()
            .any(|v| v.starts_with("CC=") || v.starts_with("LLVM="))
            || std::env::var_os("LLVM").is_some()
            || std::env::var_os("CC").is_some()
        {
            return None;
        }
        let plain = |p: &Path| {
            let s = p.to_str()?;
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b))
                .then_some(s.to_string())
        };
        Some(format!(
            "CC={} __cc-probe {} $(CROSS_COMPILE)gcc",
            plain(&self.exe)?,
            plain(&self.dir)?
        ))
    }

    /// What [`ProbeCache::make_var`] puts before the compiler in every command kbuild runs
    /// (`<exe> __cc-probe <dir> `), when it routes the compiler at all.
    pub fn command_prefix(&self, make_vars: &[String]) -> Option<String> {
        self.make_var(make_vars)?;
        Some(format!(
            "{} __cc-probe {} ",
            self.exe.display(),
            self.dir.display()
        ))
    }
}

/// The executable `name` names: itself when it has a slash, else the first match on `PATH`.
pub(crate) fn resolve(name: &OsStr) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(p))
        .find(|c| c.is_file())
}

/// What identifies an executable's build: its path, size and modification time.
pub(crate) fn identity(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {} {mtime}", path.display(), meta.map_or(0, |m| m.len()))
}

/// The cache key of a compiler run, or `None` when it is not a probe: a compile (`-c`) of
/// `/dev/null` into kbuild's temporary directory (`-o .../.tmp_<pid>/...`, the part that
/// changes between runs and is left out of the key). The key covers the compiler and the
/// assembler next to it (a probe of `-Wa,` flags asks the assembler).
fn probe_key(compiler: &OsStr, args: &[OsString]) -> Option<String> {
    if !args.iter().any(|a| a == "-c") || !args.iter().any(|a| a == "/dev/null") {
        return None;
    }
    let out = args.iter().position(|a| a == "-o")?;
    let target = Path::new(args.get(out + 1)?);
    // Kbuild creates the directory first; without it the compile fails for another reason.
    if !target.components().any(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|s| s.starts_with(".tmp_"))
    }) || !target.parent().is_some_and(Path::is_dir)
    {
        return None;
    }
    let cc = resolve(compiler)?;
    let mut text = format!("cc {}\n", identity(&cc));
    let name = cc.file_name()?.to_str()?;
    if let Some(prefix) = name.strip_suffix("gcc") {
        if let Some(asm) = resolve(OsStr::new(&format!("{prefix}as"))) {
            text.push_str(&format!("as {}\n", identity(&asm)));
        }
    }
    for (i, a) in args.iter().enumerate() {
        if i == out + 1 {
            text.push_str("<out>\n");
        } else {
            text.push_str(&a.to_string_lossy());
            text.push('\n');
        }
    }
    Some(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    ))
}

/// Run `compiler args` for kbuild: a probe answered from `dir` when it was seen before (its
/// exit status), else run and its answer kept; anything else executed as is. Returns the
/// exit status to end with.
pub fn run(dir: &Path, compiler: &OsStr, args: &[OsString]) -> std::io::Result<i32> {
    let key = probe_key(compiler, args);
    if let Some(key) = &key {
        if let Some(status) = std::fs::read_to_string(dir.join(key))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            return Ok(status);
        }
    }
    let mut cmd = std::process::Command::new(compiler);
    cmd.args(args);
    let Some(key) = key else {
        use std::os::unix::process::CommandExt;
        // Only returns on failure.
        return Err(cmd.exec());
    };
    let status = cmd.status()?;
    // A probe killed by a signal says nothing about the flag: not kept.
    if let Some(code) = status.code() {
        if std::fs::create_dir_all(dir).is_ok() {
            let tmp = dir.join(format!(".{key}.{}", std::process::id()));
            if std::fs::write(&tmp, format!("{code}\n")).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join(&key));
            }
        }
    }
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_kbuild_probes_have_a_key() {
        let w = tempfile::tempdir().unwrap();
        for d in [".tmp_123", ".tmp_456", ".tmp_1"] {
            std::fs::create_dir(w.path().join(d)).unwrap();
        }
        let at = |rel: &str| w.path().join(rel).to_string_lossy().into_owned();
        let probe =
            |tmp: &str| args(&["-Werror", "-mfoo", "-c", "-x", "c", "/dev/null", "-o", tmp]);
        let a = probe_key(OsStr::new("sh"), &probe(&at(".tmp_123/tmp"))).expect("a probe");
        // Another run's temporary directory: the same probe.
        let b = probe_key(OsStr::new("sh"), &probe(&at(".tmp_456/tmp"))).expect("a probe");
        assert_eq!(a, b);
        // No directory to write into: not a probe kbuild runs.
        assert_eq!(probe_key(OsStr::new("sh"), &probe(&at(".tmp_7/tmp"))), None);
        // Another flag, another answer.
        let mut other = probe(&at(".tmp_1/tmp"));
        other[1] = "-mbar".into();
        assert_ne!(probe_key(OsStr::new("sh"), &other), Some(a.clone()));
        // Real compiles are never answered from the cache.
        assert_eq!(
            probe_key(
                OsStr::new("sh"),
                &args(&["-c", "x.c", "-o", &at(".tmp_1/x.o")])
            ),
            None
        );
        assert_eq!(
            probe_key(
                OsStr::new("sh"),
                &args(&["-c", "/dev/null", "-o", "/w/x.o"])
            ),
            None
        );
        assert_eq!(probe_key(OsStr::new("sh"), &args(&["--version"])), None);
        // An unknown compiler is not cached (it fails on its own).
        assert_eq!(
            probe_key(OsStr::new("no-such-cc-klpforge"), &probe(&at(".tmp_1/tmp"))),
            None
        );
    }

    #[test]
    fn a_probe_runs_once_then_is_answered() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let log = dir.join("ran");
        // A "compiler" that records each run and fails (exit 3).
        let cc = dir.join("fakecc");
        std::fs::write(
            &cc,
            format!("#!/bin/sh\necho run >> {}\nexit 3\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.join(".tmp_9")).unwrap();
        let out = dir.join(".tmp_9/tmp").to_string_lossy().into_owned();
        let probe = args(&["-c", "-x", "c", "/dev/null", "-o", &out]);
        let cache = dir.join("cache");
        assert_eq!(run(&cache, cc.as_os_str(), &probe).unwrap(), 3);
        assert_eq!(run(&cache, cc.as_os_str(), &probe).unwrap(), 3);
        let runs = std::fs::read_to_string(&log).unwrap();
        assert_eq!(runs.lines().count(), 1, "the second probe was answered");
    }

    #[test]
    fn make_var_routes_the_default_compiler_only() {
        let c = ProbeCache {
            exe: "/usr/bin/klpforge".into(),
            dir: "/root/.cache/klpforge/probes".into(),
        };
        if std::env::var_os("LLVM").is_none() && std::env::var_os("CC").is_none() {
            assert_eq!(
                c.make_var(&["ARCH=x86".into()]).as_deref(),
                Some("CC=/usr/bin/klpforge __cc-probe /root/.cache/klpforge/probes $(CROSS_COMPILE)gcc")
            );
        }
        assert_eq!(c.make_var(&["CC=clang".into()]), None);
        assert_eq!(c.make_var(&["LLVM=1".into()]), None);
        let spaced = ProbeCache {
            dir: "/tmp/a b".into(),
            ..c
        };
        assert_eq!(spaced.make_var(&[]), None);
    }
}
