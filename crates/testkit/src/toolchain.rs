//! Discovery of the gcc toolchains used to build test objects.
//!
//! Each supported architecture maps to one gcc (the host `gcc` for x86_64, a
//! Debian-style `<triple>-gcc` cross compiler otherwise). A toolchain counts as
//! available only when that gcc is on `PATH`, targets the expected machine and
//! really compiles a small freestanding C file with the kernel-like flags of
//! [`Toolchain::kernel_cflags`]. Missing toolchains are reported with one line
//! on stderr per architecture and process, and callers skip their cases.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::note_once;

/// Every architecture name klpforge knows, in the order tests iterate them.
pub const ARCHES: [&str; 5] = ["x86_64", "aarch64", "ppc64le", "s390x", "loongarch64"];

/// A gcc toolchain (compiler plus binutils) for one target architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// klpforge's name of the architecture (one of [`ARCHES`]).
    pub arch: &'static str,
    /// The gcc driver, resolved on `PATH`.
    pub gcc: PathBuf,
    /// Prefix of the binutils of the same target: `""` for the host
    /// toolchain, `"aarch64-linux-gnu-"` and the like for cross toolchains.
    pub prefix: String,
    /// Whether the target is big-endian (only s390x among the supported ones).
    pub big_endian: bool,
}

/// A set of compiler flags that is kept or dropped as a whole while probing.
struct FlagGroup {
    flags: &'static [&'static str],
    /// Part of the ftrace instrumentation (`-pg`, `-mfentry`, patchable entries…).
    ftrace: bool,
}

/// Static description of one architecture's toolchain.
struct ArchSpec {
    arch: &'static str,
    /// Binutils prefix for the cross toolchain.
    cross_prefix: &'static str,
    /// First component of `gcc -dumpmachine`.
    machine: &'static str,
    big_endian: bool,
    groups: &'static [FlagGroup],
}

/// Flags shared by every architecture; all of them must be accepted.
const COMMON_CFLAGS: &[&str] = &[
    "-std=gnu11",
    "-O2",
    "-ffreestanding",
    "-nostdinc",
    "-ffunction-sections",
    "-fdata-sections",
    "-fno-pic",
    "-fno-common",
    "-fno-stack-protector",
    "-fno-strict-aliasing",
    "-fno-asynchronous-unwind-tables",
    "-c",
];

const fn group(flags: &'static [&'static str]) -> FlagGroup {
    FlagGroup {
        flags,
        ftrace: false,
    }
}

const fn ftrace(flags: &'static [&'static str]) -> FlagGroup {
    FlagGroup {
        flags,
        ftrace: true,
    }
}

const SPECS: [ArchSpec; 5] = [
    ArchSpec {
        arch: "x86_64",
        cross_prefix: "x86_64-linux-gnu-",
        machine: "x86_64",
        big_endian: false,
        groups: &[
            group(&["-mcmodel=kernel", "-mno-red-zone"]),
            group(&["-fno-jump-tables"]),
            ftrace(&["-pg", "-mfentry", "-mrecord-mcount"]),
        ],
    },
    ArchSpec {
        arch: "aarch64",
        cross_prefix: "aarch64-linux-gnu-",
        machine: "aarch64",
        big_endian: false,
        groups: &[
            group(&["-mcmodel=small"]),
            group(&["-mgeneral-regs-only"]),
            ftrace(&["-fpatchable-function-entry=2"]),
        ],
    },
    ArchSpec {
        arch: "ppc64le",
        cross_prefix: "powerpc64le-linux-gnu-",
        machine: "powerpc64le",
        big_endian: false,
        groups: &[
            group(&["-mcmodel=medium"]),
            group(&["-mno-altivec", "-mno-vsx"]),
            ftrace(&["-mprofile-kernel"]),
            ftrace(&["-pg"]),
        ],
    },
    ArchSpec {
        arch: "s390x",
        cross_prefix: "s390x-linux-gnu-",
        machine: "s390x",
        big_endian: true,
        groups: &[
            group(&["-m64", "-march=z10"]),
            ftrace(&["-pg", "-mfentry"]),
            ftrace(&["-mrecord-mcount"]),
            ftrace(&["-mnop-mcount"]),
        ],
    },
    ArchSpec {
        arch: "loongarch64",
        cross_prefix: "loongarch64-linux-gnu-",
        machine: "loongarch64",
        big_endian: false,
        groups: &[
            group(&["-mcmodel=normal"]),
            ftrace(&["-fpatchable-function-entry=2"]),
        ],
    },
];

/// The source compiled to decide whether a toolchain and its flags work. It
/// uses gcc's own freestanding headers, static data and a switch, like the
/// fixtures do.
const PROBE_SOURCE: &str = r#"
#include <stddef.h>
#include <stdint.h>
static int probe_data[4] = { 1, 2, 3, 4 };
const char *probe_string = "probe";
int probe_fn(int x)
{
	switch (x) {
	case 0: return probe_data[0];
	case 1: return 17;
	case 2: return 23;
	case 3: return 42;
	case 4: return (int)sizeof(size_t);
	case 5: return (int)sizeof(uint64_t);
	default: return probe_data[x & 3];
	}
}
"#;

fn spec(arch: &str) -> Option<&'static ArchSpec> {
    SPECS.iter().find(|s| s.arch == arch)
}

/// Whether `spec` describes the machine this process runs on (so the plain
/// `gcc` is its compiler).
fn is_host(spec: &ArchSpec) -> bool {
    let host = match std::env::consts::ARCH {
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => other,
    };
    host == spec.arch
}

/// Looks `name` up in the directories of `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `gcc` with `args`, compiling [`PROBE_SOURCE`] from stdin to
/// `/dev/null`. Returns gcc's stderr on failure.
fn probe_compile<S: AsRef<OsStr>>(gcc: &Path, args: &[S]) -> Result<(), String> {
    let mut child = Command::new(gcc)
        .args(args)
        .args(["-x", "c", "-", "-o", "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", gcc.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows up as a failing exit status below.
        let _ = stdin.write_all(PROBE_SOURCE.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {}: {e}", gcc.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Runs `gcc <arg>` and returns its trimmed stdout.
fn gcc_query(gcc: &Path, arg: &str) -> Result<String, String> {
    let out = Command::new(gcc)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", gcc.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} {arg}` failed: {}",
            gcc.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The outcome of probing one gcc's flags; leaked once per gcc so that the
/// flag lists can be handed out as `&'static str`.
struct FlagSet {
    /// gcc's freestanding header directory (`-print-file-name=include`).
    include_dir: &'static str,
    /// All accepted flags, in order.
    kernel: Vec<&'static str>,
    /// The accepted flags minus the ftrace instrumentation.
    no_ftrace: Vec<&'static str>,
}

/// Probes (once per gcc path) which of the architecture's flags the compiler
/// accepts.
fn flag_set(gcc: &Path, arch: &str) -> Result<&'static FlagSet, String> {
    static CACHE: OnceLock<Mutex<HashMap<(PathBuf, String), &'static FlagSet>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (gcc.to_path_buf(), arch.to_string());
    if let Some(set) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(set);
    }
    let set: &'static FlagSet = Box::leak(Box::new(probe_flags(gcc, arch)?));
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, set);
    Ok(set)
}

fn probe_flags(gcc: &Path, arch: &str) -> Result<FlagSet, String> {
    let include = gcc_query(gcc, "-print-file-name=include")?;
    if !Path::new(&include).join("stddef.h").is_file() {
        return Err(format!(
            "{} has no freestanding headers (`-print-file-name=include` gave {include})",
            gcc.display()
        ));
    }
    let include_dir: &'static str = Box::leak(include.into_boxed_str());
    let mut base: Vec<&'static str> = COMMON_CFLAGS.to_vec();
    base.extend(["-isystem", include_dir]);
    probe_compile(gcc, &base).map_err(|e| {
        format!(
            "{} cannot compile a trivial C file: {}",
            gcc.display(),
            e.lines().next().unwrap_or("")
        )
    })?;

    let groups: &[FlagGroup] = spec(arch).map(|s| s.groups).unwrap_or(&[]);
    let all: Vec<&'static str> = groups
        .iter()
        .flat_map(|g| g.flags.iter().copied())
        .collect();
    let mut full = base.clone();
    full.extend(&all);
    let accepted: Vec<&FlagGroup> = if probe_compile(gcc, &full).is_ok() {
        groups.iter().collect()
    } else {
        // Keep each group that still compiles on top of the ones kept so far.
        let mut kept = Vec::new();
        let mut flags = base.clone();
        for g in groups {
            let mut trial = flags.clone();
            trial.extend(g.flags);
            match probe_compile(gcc, &trial) {
                Ok(()) => {
                    flags = trial;
                    kept.push(g);
                }
                Err(e) => note_once(
                    &format!("flags:{}:{}", gcc.display(), g.flags.join(" ")),
                    &format!(
                        "{arch}: {} refuses {}; dropped ({})",
                        gcc.display(),
                        g.flags.join(" "),
                        e.lines().next().unwrap_or("")
                    ),
                ),
            }
        }
        kept
    };
    let mut kernel = base.clone();
    let mut no_ftrace = base;
    for g in accepted {
        kernel.extend(g.flags);
        if !g.ftrace {
            no_ftrace.extend(g.flags);
        }
    }
    Ok(FlagSet {
        include_dir,
        kernel,
        no_ftrace,
    })
}

impl Toolchain {
    /// Path of the binutils program `tool` (`"ld"`, `"objcopy"`, …) for this
    /// target: `prefix + tool`, resolved on `PATH` when found there (otherwise
    /// the bare name, so that running it reports the missing program).
    pub fn binutil(&self, tool: &str) -> PathBuf {
        let name = format!("{}{tool}", self.prefix);
        find_in_path(&name).unwrap_or_else(|| PathBuf::from(name))
    }

    /// The linker for this target.
    pub fn ld(&self) -> PathBuf {
        self.binutil("ld")
    }

    /// Link `inputs` with this target's `ld` into `out`: a relocatable object
    /// (`ld -r`, as kbuild makes `vmlinux.o` and modules) or, with
    /// `relocatable` false, a linked image (like `vmlinux`; the missing entry
    /// point is only warned about). Panics with ld's messages when it fails:
    /// for tests.
    pub fn link(&self, out: &Path, relocatable: bool, inputs: &[&Path]) -> PathBuf {
        let mut cmd = Command::new(self.ld());
        if relocatable {
            cmd.arg("-r");
        }
        let o = cmd.arg("-o").arg(out).args(inputs).output();
        match o {
            Ok(o) if o.status.success() => out.to_path_buf(),
            Ok(o) => panic!(
                "{} failed: {}",
                self.ld().display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run {}: {e}", self.ld().display()),
        }
    }

    /// `readelf` for this target (any readelf reads any ELF, but the
    /// target's one knows its relocation names).
    pub fn readelf(&self) -> PathBuf {
        self.binutil("readelf")
    }

    /// `objdump` for this target (needed to disassemble its code).
    pub fn objdump(&self) -> PathBuf {
        self.binutil("objdump")
    }

    /// gcc's own freestanding header directory (`stddef.h`, `stdint.h`, …),
    /// which [`kernel_cflags`](Self::kernel_cflags) adds with `-isystem`
    /// because `-nostdinc` removes it. Empty if this gcc does not work.
    pub fn include_dir(&self) -> PathBuf {
        match flag_set(&self.gcc, self.arch) {
            Ok(set) => PathBuf::from(set.include_dir),
            Err(_) => PathBuf::new(),
        }
    }

    /// Kernel-like compiler flags for this target, ending in `-c`, verified
    /// against this gcc (flags it refuses are dropped, with a note on stderr).
    ///
    /// Common to all targets: `-std=gnu11 -O2 -ffreestanding -nostdinc
    /// -ffunction-sections -fdata-sections -fno-pic -fno-common
    /// -fno-stack-protector -fno-strict-aliasing
    /// -fno-asynchronous-unwind-tables -c -isystem <gcc include dir>`, then
    ///
    /// * x86_64: `-mcmodel=kernel -mno-red-zone -fno-jump-tables -pg -mfentry
    ///   -mrecord-mcount`
    /// * aarch64: `-mcmodel=small -mgeneral-regs-only
    ///   -fpatchable-function-entry=2`
    /// * ppc64le: `-mcmodel=medium -mno-altivec -mno-vsx -mprofile-kernel -pg`
    /// * s390x: `-m64 -march=z10 -pg -mfentry -mrecord-mcount -mnop-mcount`
    /// * loongarch64: `-mcmodel=normal -fpatchable-function-entry=2`
    ///
    /// Fixture sources may include gcc's freestanding headers only. Extra
    /// flags appended after these win (`-O1`, `-fcommon`, …).
    pub fn kernel_cflags(&self) -> Vec<&'static str> {
        match flag_set(&self.gcc, self.arch) {
            Ok(set) => set.kernel.clone(),
            Err(_) => COMMON_CFLAGS.to_vec(),
        }
    }

    /// [`kernel_cflags`](Self::kernel_cflags) without the ftrace
    /// instrumentation flags (`-pg`, `-mfentry`, `-mrecord-mcount`,
    /// `-mnop-mcount`, `-mprofile-kernel`, `-fpatchable-function-entry=2`),
    /// which cannot be switched off by appending flags.
    pub fn kernel_cflags_without_ftrace(&self) -> Vec<&'static str> {
        match flag_set(&self.gcc, self.arch) {
            Ok(set) => set.no_ftrace.clone(),
            Err(_) => COMMON_CFLAGS.to_vec(),
        }
    }
}

/// Finds and checks the toolchain of one architecture (uncached).
fn probe(spec: &'static ArchSpec) -> Result<Toolchain, String> {
    // The host compiler is plain `gcc`; cross compilers follow the Debian
    // naming `<triple>-gcc`, packaged as `gcc-<triple>`.
    let (gcc_name, prefix, package) = if is_host(spec) {
        ("gcc".to_string(), String::new(), "gcc".to_string())
    } else {
        let triple = spec.cross_prefix.trim_end_matches('-');
        (
            format!("{triple}-gcc"),
            spec.cross_prefix.to_string(),
            format!("gcc-{triple}"),
        )
    };
    let gcc = find_in_path(&gcc_name)
        .ok_or_else(|| format!("{gcc_name} not installed (apt-get install {package})"))?;
    let machine = gcc_query(&gcc, "-dumpmachine")?;
    if machine.split('-').next() != Some(spec.machine) {
        return Err(format!(
            "{gcc_name} targets {machine}, not {}",
            spec.machine
        ));
    }
    let tc = Toolchain {
        arch: spec.arch,
        gcc,
        prefix,
        big_endian: spec.big_endian,
    };
    flag_set(&tc.gcc, tc.arch).map_err(|e| e.replace(&tc.gcc.display().to_string(), &gcc_name))?;
    Ok(tc)
}

/// The toolchain for `arch` (one of [`ARCHES`]), or `None` when its gcc is
/// not installed or does not work. In that case one line such as
/// `skipping s390x cases: s390x-linux-gnu-gcc not installed (apt-get install
/// gcc-s390x-linux-gnu)` is printed to stderr, once per architecture and
/// process. The probe runs once per process.
pub fn toolchain(arch: &str) -> Option<Toolchain> {
    static PROBED: [OnceLock<Option<Toolchain>>; ARCHES.len()] =
        [const { OnceLock::new() }; ARCHES.len()];
    let Some(index) = SPECS.iter().position(|s| s.arch == arch) else {
        // Not a missing tool but a name this kit does not know: a note, never a CI failure.
        note_once(
            &format!("arch:{arch}"),
            &format!(
                "skipping {arch} cases: unknown architecture (known: {})",
                ARCHES.join(" ")
            ),
        );
        return None;
    };
    PROBED[index]
        .get_or_init(|| match probe(&SPECS[index]) {
            Ok(tc) => Some(tc),
            Err(reason) => {
                crate::skip(arch, &format!("skipping {arch} cases: {reason}"));
                None
            }
        })
        .clone()
}

/// All toolchains that are installed and working, in [`ARCHES`] order.
pub fn available_toolchains() -> Vec<Toolchain> {
    ARCHES.iter().filter_map(|arch| toolchain(arch)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_cover_all_arches() {
        let names: Vec<&str> = SPECS.iter().map(|s| s.arch).collect();
        assert_eq!(names, ARCHES);
    }

    #[test]
    fn unknown_arch_is_none() {
        assert!(toolchain("vax").is_none());
    }

    #[test]
    fn host_toolchain_has_all_kernel_flags() {
        // The host gcc is required for the whole test suite on x86_64.
        if std::env::consts::ARCH != "x86_64" {
            return;
        }
        let tc = toolchain("x86_64").expect("host gcc must work");
        assert_eq!(tc.prefix, "");
        assert!(!tc.big_endian);
        let flags = tc.kernel_cflags();
        for f in [
            "-mcmodel=kernel",
            "-pg",
            "-mfentry",
            "-mrecord-mcount",
            "-c",
            "-nostdinc",
        ] {
            assert!(flags.contains(&f), "{f} missing from {flags:?}");
        }
        let no_ftrace = tc.kernel_cflags_without_ftrace();
        assert!(!no_ftrace.contains(&"-pg"));
        assert!(no_ftrace.contains(&"-mcmodel=kernel"));
        assert!(tc.include_dir().join("stddef.h").is_file());
        assert!(tc.readelf().is_file(), "{:?}", tc.readelf());
    }

    #[test]
    fn available_toolchains_are_consistent() {
        for tc in available_toolchains() {
            let spec = spec(tc.arch).unwrap();
            assert_eq!(tc.big_endian, spec.big_endian);
            // Every flag of the table was accepted by the installed compilers
            // this was verified against; a dropped flag would show up here.
            let expected: Vec<&str> = spec
                .groups
                .iter()
                .flat_map(|g| g.flags.iter().copied())
                .collect();
            let flags = tc.kernel_cflags();
            for f in expected {
                assert!(
                    flags.contains(&f),
                    "{}: {f} dropped from {flags:?}",
                    tc.arch
                );
            }
            assert!(tc.ld().is_file(), "{}: {:?}", tc.arch, tc.ld());
            assert!(tc.objdump().is_file(), "{}: {:?}", tc.arch, tc.objdump());
            // Probing again gives the cached value.
            assert_eq!(toolchain(tc.arch).as_ref(), Some(&tc));
        }
    }
}
