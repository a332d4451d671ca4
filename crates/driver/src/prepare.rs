//! A prepared kernel: what livepatching a kernel nobody here built needs, made once and cached.
//!
//! From a kernel's source tree (only read), its configuration, `Module.symvers`, release string,
//! vmlinux with symbols and (optionally) a directory of its modules with symbols, [`prepare`]
//! makes a private `O=` object tree with `make olddefconfig` and `make modules_prepare` only
//! (seconds, not the hours of a full build), checks that kbuild reproduces the release string,
//! and records everything in `kernel.json`. Objects are then compiled in it on demand by kbuild
//! itself ([`PreparedKernel::compile_objects`]), which leaves the same `.cmd` records a full
//! build would: the rest of `klpforge build` works unchanged on it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{DriverError, Result};
pub use crate::inputs::KernelInputs;
use serde::{Deserialize, Serialize};

/// The file describing a prepared kernel, in its directory.
pub const KERNEL_JSON: &str = "kernel.json";

/// A kernel prepared by [`prepare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedKernel {
    /// Where it lives (holds `kernel.json` and `build/`).
    pub dir: PathBuf,
    /// What it was made from.
    pub inputs: KernelInputs,
    /// Sizes and modification times of the input files when it was made.
    pub fingerprint: Vec<(PathBuf, u64, i64)>,
}

impl PreparedKernel {
    /// The `O=` object tree.
    pub fn build_dir(&self) -> PathBuf {
        self.dir.join("build")
    }

    /// Read a prepared kernel's description.
    pub fn load(dir: &Path) -> Result<PreparedKernel> {
        let path = dir.join(KERNEL_JSON);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: not a prepared kernel ({e}); make one with klpforge prepare",
                dir.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()).into())
    }

    /// Compile `objects` (paths relative to the object tree) with kbuild in the prepared
    /// tree, as a full build would, leaving their `.cmd` records. Returns the objects kbuild
    /// would not build (not part of this configuration) with its message.
    pub fn compile_objects(
        &self,
        objects: &[String],
        jobs: usize,
    ) -> Result<Vec<(String, String)>> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let out = make(&self.inputs.src, &self.build_dir())
            .arg(format!("-j{}", jobs.max(1)))
            .arg("-k")
            .args(objects)
            .output()
            .map_err(DriverError::spawn("make"))?;
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut missing = Vec::new();
        for o in objects {
            let record = record_path(&self.build_dir(), o);
            if !record.exists() {
                let why = said
                    .lines()
                    .find(|l| l.contains(o.as_str()))
                    .unwrap_or("kbuild did not build it")
                    .trim()
                    .to_string();
                missing.push((o.clone(), why));
            }
        }
        if !out.status.success() && missing.is_empty() {
            return Err(format!(
                "make in the prepared kernel {} failed: {}",
                self.dir.display(),
                last_lines(&said, 15)
            )
            .into());
        }
        Ok(missing)
    }

    /// The module files of `wanted` (`(name, object)` pairs; `-` and `_` alike) among the
    /// kernel's modules with symbols, each looked for first where `object` (relative to the
    /// tree) puts it in a build tree or an installed `kernel/` tree (its directory or one
    /// above), then anywhere; the modules not unpacked yet come out of the (large) package
    /// archive in one pass.
    pub fn module_files(&self, wanted: &[(String, String)]) -> Vec<Option<PathBuf>> {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(name, object)| self.find_module(name, object).is_none())
            .map(|(name, _)| name.as_str())
            .collect();
        if let (false, Some(archive), Some(modules)) = (
            missing.is_empty(),
            self.inputs.module_archive.as_ref(),
            self.inputs.modules.as_ref(),
        ) {
            crate::distro::debian::unpack_modules(archive, modules, &self.inputs.release, &missing);
        }
        wanted
            .iter()
            .map(|(name, object)| self.find_module(name, object))
            .collect()
    }

    fn find_module(&self, name: &str, object: &str) -> Option<PathBuf> {
        let root = self.inputs.modules.as_ref()?;
        let want = name.replace('-', "_");
        for d in crate::kbuild::dirs_upward(object) {
            for base in [root.clone(), root.join("kernel")] {
                for file in [format!("{name}.ko"), format!("{want}.ko")] {
                    let p = base.join(d).join(&file);
                    if p.is_file() {
                        return Some(p);
                    }
                }
            }
        }
        walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .flatten()
            .find(|e| {
                e.file_type().is_file()
                    && e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".ko")
                        .is_some_and(|stem| stem.replace('-', "_") == want)
            })
            .map(walkdir::DirEntry::into_path)
    }
}

/// The `.cmd` record kbuild writes for `object` (relative to the object tree).
fn record_path(build: &Path, object: &str) -> PathBuf {
    let p = Path::new(object);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    build
        .join(p.parent().unwrap_or(Path::new("")))
        .join(format!(".{name}.cmd"))
}

/// `make -C SRC O=BUILD LOCALVERSION=`: kbuild in the prepared tree; the release string comes
/// from the configuration alone (no `+` for an unclean tree, no environment suffix).
fn make(src: &Path, build: &Path) -> Command {
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(src)
        .arg(format!("O={}", build.display()))
        .arg("LOCALVERSION=");
    c
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed:\n{}",
            last_lines(
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                20
            )
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn fingerprint(inputs: &KernelInputs) -> Result<Vec<(PathBuf, u64, i64)>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for p in [&inputs.config, &inputs.symvers, &inputs.vmlinux] {
        let m = std::fs::metadata(p).map_err(DriverError::io(&p))?;
        out.push((p.clone(), m.len(), m.mtime()));
    }
    Ok(out)
}

/// Set `CONFIG_LOCALVERSION` and turn `CONFIG_LOCALVERSION_AUTO` off in a configuration.
fn set_localversion(config: &str, localversion: &str) -> String {
    let mut out: String = config
        .lines()
        .filter(|l| {
            !l.starts_with("CONFIG_LOCALVERSION=")
                && !l.starts_with("CONFIG_LOCALVERSION_AUTO=")
                && !l.starts_with("# CONFIG_LOCALVERSION_AUTO is not set")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("CONFIG_LOCALVERSION=\"{localversion}\"\n"));
    out.push_str("# CONFIG_LOCALVERSION_AUTO is not set\n");
    out
}

/// Prepare `inputs` under `cache/<release>` (reused when already made from the same inputs).
/// `say` receives one line per step.
pub fn prepare(
    inputs: &KernelInputs,
    cache: &Path,
    jobs: usize,
    say: &dyn Fn(&str),
) -> Result<PreparedKernel> {
    let abs = |p: &Path| std::fs::canonicalize(p).map_err(DriverError::io(&p));
    let inputs = KernelInputs {
        src: abs(&inputs.src)?,
        config: abs(&inputs.config)?,
        symvers: abs(&inputs.symvers)?,
        release: inputs.release.clone(),
        vmlinux: abs(&inputs.vmlinux)?,
        modules: match &inputs.modules {
            // A modules directory the archive fills on demand need not exist yet.
            Some(m) if inputs.module_archive.is_some() => {
                Some(std::path::absolute(m).map_err(|e| e.to_string())?)
            }
            m => m.as_deref().map(abs).transpose()?,
        },
        module_archive: inputs.module_archive.as_deref().map(abs).transpose()?,
    };
    if inputs.release.is_empty() || inputs.release.contains('/') {
        return Err(format!("'{}' is not a kernel release string", inputs.release).into());
    }
    if !inputs.src.join("Makefile").exists() || !inputs.src.join("Kbuild").exists() {
        return Err(format!("{}: not a kernel source tree", inputs.src.display()).into());
    }
    let dir = cache.join(&inputs.release);
    let fp = fingerprint(&inputs)?;
    if let Ok(k) = PreparedKernel::load(&dir) {
        if k.inputs == inputs && k.fingerprint == fp {
            say(&format!("prepared kernel {} (cached)", dir.display()));
            return Ok(k);
        }
        say(&format!(
            "{}: made from other inputs: preparing again",
            dir.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let build = dir.join("build");
    std::fs::create_dir_all(&build).map_err(DriverError::io(&build))?;

    // The release string: the source's version and the configuration's local version.
    let version = run(
        make(&inputs.src, &build).arg("-s").arg("kernelversion"),
        "make kernelversion",
    )?;
    let version = version.trim();
    let Some(localversion) = inputs.release.strip_prefix(version) else {
        return Err(format!(
            "release {} is not of the source tree {} (version {version}): give the source of exactly this kernel",
            inputs.release,
            inputs.src.display()
        ).into());
    };
    let config =
        std::fs::read_to_string(&inputs.config).map_err(DriverError::io(&inputs.config))?;
    std::fs::write(
        build.join(".config"),
        set_localversion(&config, localversion),
    )
    .map_err(|e| e.to_string())?;
    say("make olddefconfig");
    run(
        make(&inputs.src, &build).arg("olddefconfig"),
        "make olddefconfig",
    )?;
    say("make modules_prepare (objtool, modpost and the generated headers)");
    run(
        make(&inputs.src, &build)
            .arg(format!("-j{}", jobs.max(1)))
            .arg("modules_prepare"),
        "make modules_prepare",
    )?;
    let made = std::fs::read_to_string(build.join("include/config/kernel.release"))
        .map_err(|e| format!("make modules_prepare wrote no kernel.release: {e}"))?;
    if made.trim() != inputs.release {
        return Err(format!(
            "kbuild makes release '{}' from this source and configuration, not '{}': the module's vermagic would not match",
            made.trim(),
            inputs.release
        ).into());
    }
    std::fs::copy(&inputs.symvers, build.join("Module.symvers"))
        .map_err(DriverError::io(&inputs.symvers))?;
    let k = PreparedKernel {
        dir: dir.clone(),
        inputs,
        fingerprint: fp,
    };
    let text = serde_json::to_string_pretty(&k).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(KERNEL_JSON), text).map_err(|e| e.to_string())?;
    say(&format!("prepared kernel {}", dir.display()));
    Ok(k)
}

/// The default cache of prepared kernels: `$XDG_CACHE_HOME/klpforge/kernels` or
/// `~/.cache/klpforge/kernels`.
pub fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("klpforge").join("kernels")
}

/// Where compiled module init code is kept per kernel build (`.../klpforge/init`, beside the
/// prepared kernels; see `klpforge_module::assemble::ModuleOptions::init_cache`).
pub fn init_cache() -> PathBuf {
    default_cache().with_file_name("init")
}

/// Kbuild's compiler probes answered by the klpforge executable `exe` from
/// `.../klpforge/probes` (see [`klpforge_module::probes`]).
pub fn probe_cache(exe: PathBuf) -> klpforge_module::probes::ProbeCache {
    klpforge_module::probes::ProbeCache {
        exe,
        dir: default_cache().with_file_name("probes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localversion_replaces_the_configured_one() {
        let c =
            "CONFIG_A=y\nCONFIG_LOCALVERSION=\"-old\"\nCONFIG_LOCALVERSION_AUTO=y\nCONFIG_B=m\n";
        let out = set_localversion(c, "+deb12-amd64");
        assert_eq!(
            out,
            "CONFIG_A=y\nCONFIG_B=m\nCONFIG_LOCALVERSION=\"+deb12-amd64\"\n# CONFIG_LOCALVERSION_AUTO is not set\n"
        );
    }

    #[test]
    fn records_sit_beside_their_objects() {
        assert_eq!(
            record_path(Path::new("/b"), "fs/proc/meminfo.o"),
            PathBuf::from("/b/fs/proc/.meminfo.o.cmd")
        );
    }
}
