//! Building a livepatch module from diff objects with the target kernel's own kbuild.
//!
//! The diff objects are linked, as prebuilt objects (`*.o_shipped`), with generated init code
//! (`klpforge_init.c`, which registers the patch from the metadata the diff recorded) into an
//! external module: `make -C <kernel build dir> M=<work dir> modules`. kbuild therefore
//! produces exactly the kernel's vermagic, `.modinfo`, modversions and
//! `.gnu.linkonce.this_module`. The result is then stripped of BTF and post-linked. The init
//! code is the same for every patch of a kernel: with an init cache it is compiled once per
//! kernel build and options and shipped to kbuild afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use klpforge_diff::klp::KLP_OBJECTS_SECTION;
use klpforge_elf::ElfFile;

use crate::config::KernelConfig;
use crate::error::{ModuleError, Result};
use crate::postlink::{post_link, PostLinkReport};
use crate::recipe;

/// The generated init code.
pub const INIT_C: &str = include_str!("c/klpforge_init.c");

/// Options of `klpforge module`.
#[derive(Debug, Clone)]
pub struct ModuleOptions {
    /// The kernel build directory (where `make modules_prepare` or a full build ran).
    pub kernel: PathBuf,
    /// Output module path.
    pub out: Option<PathBuf>,
    /// Module name (default: from the first diff object).
    pub name: Option<String>,
    /// Whether the patch replaces all earlier livepatches (`klp_patch.replace`).
    pub replace: bool,
    /// Extra make variables (`CC=...`, `LLVM=1`).
    pub make_vars: Vec<String>,
    /// Keep the work directory here instead of a temporary one.
    pub work: Option<PathBuf>,
    /// Parallel make jobs.
    pub jobs: usize,
    /// Sign the finished module with this private key and certificate (the kernel's
    /// `scripts/sign-file`, with the configuration's `CONFIG_MODULE_SIG_HASH`).
    pub sign: Option<(PathBuf, PathBuf)>,
    /// Keep the compiled init code here, per kernel build and options, and reuse it (kbuild
    /// then links it instead of compiling it again); `None`: compile it every time.
    pub init_cache: Option<PathBuf>,
    /// Answer kbuild's compiler probes from this cache ([`crate::probes`]); `None`: kbuild
    /// runs them all every time.
    pub probe_cache: Option<crate::probes::ProbeCache>,
}

/// What `klpforge module` produced.
#[derive(Debug, Clone)]
pub struct ModuleReport {
    /// The module name.
    pub name: String,
    /// The module file written.
    pub path: PathBuf,
    /// What post-link did.
    pub post_link: PostLinkReport,
    /// Warnings kbuild printed while building the module (objtool's fail the build).
    pub warnings: Vec<String>,
}

/// What the compiled init code depends on: the kernel build (its path, configuration,
/// generated headers and the time of its last module symbol table), the init source, the
/// replace flag and the make variables.
fn init_key(kernel: &Path, opts: &ModuleOptions) -> u64 {
    let mut input: Vec<u8> = Vec::new();
    let canonical = kernel
        .canonicalize()
        .unwrap_or_else(|_| kernel.to_path_buf());
    input.extend_from_slice(canonical.as_os_str().as_encoded_bytes());
    for f in [
        ".config",
        "include/generated/autoconf.h",
        "include/generated/compile.h",
        "include/generated/utsrelease.h",
    ] {
        input.extend_from_slice(f.as_bytes());
        input.extend_from_slice(&std::fs::read(kernel.join(f)).unwrap_or_default());
    }
    for f in ["Module.symvers", "vmlinux"] {
        let stamp = std::fs::metadata(kernel.join(f))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        input.extend_from_slice(&stamp.to_le_bytes());
    }
    input.extend_from_slice(INIT_C.as_bytes());
    input.push(u8::from(opts.replace));
    for v in &opts.make_vars {
        input.extend_from_slice(v.as_bytes());
        input.push(0);
    }
    xxhash_rust::xxh3::xxh3_64(&input)
}

/// Keep a freshly compiled init object for later builds (best effort: a build never fails
/// for want of a cache; written under a temporary name, then renamed into place).
fn store_init(compiled: &Path, cached: &Path) {
    let Some(dir) = cached.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::copy(compiled, &tmp).is_ok() && std::fs::rename(&tmp, cached).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The kernel's module-name limit (`MODULE_NAME_LEN - 1`).
pub const MAX_MODULE_NAME: usize = 55;

/// A valid module name derived from `raw`: `[A-Za-z0-9_]` (anything else becomes `_`), at
/// most 55 characters, never empty.
pub fn sanitize_module_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        s = "klp_patch".into();
    }
    s.truncate(MAX_MODULE_NAME);
    s
}

/// The default module name for diff objects: `klp_` and the first object's stem.
pub fn default_module_name(first: &Path) -> String {
    let stem = first
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.trim_end_matches(".diff").trim_end_matches("-diff");
    sanitize_module_name(&format!("klp_{stem}"))
}

/// Sections objtool generates. When objtool runs on the linked module (kernels with IBT or
/// Clang LTO), it skips generating each of them for the whole module if an input object
/// already has it ("file already has .return_sites, skipping"): the init code's returns then
/// go unregistered. A diff object compiled by a command that ran objtool (single-object
/// modules do) carries them, so they are removed and objtool makes them for everything.
/// (`.static_call_sites` stays: klpforge carries its entries with their klp relocations.)
pub const OBJTOOL_SECTIONS: &[&str] = &[
    ".orc_unwind",
    ".orc_unwind_ip",
    ".orc_header",
    ".return_sites",
    ".call_sites",
    ".retpoline_sites",
    ".ibt_endbr_seal",
    ".cfi_sites",
];

/// Prepare one diff object for linking: checked, and without objtool's generated sections
/// when objtool will make them for the whole linked module (see [`OBJTOOL_SECTIONS`]).
fn prepare_diff(src: &Path, dst: &Path, objtool_at_link: bool) -> Result<()> {
    let file = ElfFile::open(src).map_err(|e| e.to_string())?;
    let mut obj = file.parse().map_err(|e| e.to_string())?;
    if obj
        .section_by_name(KLP_OBJECTS_SECTION.as_bytes())
        .is_none()
    {
        return Err(format!(
            "{}: not a klpforge diff object (no {KLP_OBJECTS_SECTION} section)",
            src.display()
        )
        .into());
    }
    if objtool_at_link {
        let drop: Vec<_> = obj
            .sections()
            .filter(|(_, s)| {
                let n = s.name_lossy();
                let n = n.strip_prefix(".rela").unwrap_or(&n);
                OBJTOOL_SECTIONS.contains(&n)
            })
            .map(|(id, _)| id)
            .collect();
        obj.remove_sections_and_symbols(&drop);
    }
    klpforge_elf::write::write_file(&obj, dst).map_err(|e| format!("{}: {e}", dst.display()).into())
}

/// Link the module `layout` describes (its parts and init object in place) and return what
/// the build printed. Kbuild's commands for this kernel, learned from an earlier make run
/// ([`recipe`]), need no make; without a recipe, or when a replayed command fails, make runs
/// (its errors are kbuild's own) and, with an init cache (`cached_init`; `reused`: this
/// build shipped it), the compiled init object and a recipe proven on this run are kept.
fn link(
    kernel: &Path,
    layout: recipe::Layout<'_>,
    opts: &ModuleOptions,
    cached_init: Option<&Path>,
    reused: bool,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let recipe_file = cached_init.map(recipe::recipe_path);
    if let Some(r) = recipe_file.as_deref().filter(|_| reused) {
        if let Some(recipe) = recipe::Recipe::load(r, kernel) {
            match recipe.replay(kernel, layout) {
                Ok(out) => return Ok((out.stdout, out.stderr)),
                Err(_) => recipe::discard_outputs(layout),
            }
        }
    }
    let work = Path::new(layout.dir);
    let out = run_make(kernel, work, opts)?;
    if let (Some(c), false) = (cached_init, reused) {
        store_init(&work.join("klpforge_init.o"), c);
    }
    if let Some(r) = recipe_file {
        // Best effort: without a proven recipe, the next build runs make again.
        let strip: Vec<String> = opts
            .probe_cache
            .iter()
            .filter_map(|c| c.command_prefix(&opts.make_vars))
            .collect();
        // Replays ship the cached init object; this run may have compiled it.
        let shipped = work.join("klpforge_init.o_shipped");
        if reused || std::fs::copy(work.join("klpforge_init.o"), &shipped).is_ok() {
            let _ = recipe::learn_and_prove(kernel, layout, &strip, &r);
        }
    }
    Ok((out.stdout, out.stderr))
}

/// Run `make M=<work> modules` in the kernel build directory; the error holds the end of what
/// kbuild printed.
fn run_make(kernel: &Path, work: &Path, opts: &ModuleOptions) -> Result<std::process::Output> {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(kernel)
        .arg(format!("M={}", work.display()))
        .arg(format!("-j{}", opts.jobs.max(1)))
        .args(&opts.make_vars)
        .args(
            opts.probe_cache
                .as_ref()
                .and_then(|c| c.make_var(&opts.make_vars)),
        )
        .arg("modules");
    let out = cmd.output().map_err(|e| format!("cannot run make: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .rev()
            .take(25)
            .collect();
        return Err(format!(
            "kbuild failed to build the module (work directory {}):\n{}",
            work.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
        .into());
    }
    Ok(out)
}

/// Remove BTF from a built module: it describes the module against the kernel's BTF, which a
/// livepatch module's post-linked symbols do not match.
fn strip_btf(obj: &mut klpforge_elf::ElfObject<'_>) {
    let drop: Vec<_> = obj
        .sections()
        .filter(|(_, s)| s.name.starts_with(b".BTF"))
        .map(|(id, _)| id)
        .collect();
    obj.remove_sections_and_symbols(&drop);
}

/// Build the module.
pub fn build_module(diffs: &[PathBuf], opts: &ModuleOptions) -> Result<ModuleReport> {
    if diffs.is_empty() {
        return Err("no diff objects given".into());
    }
    let kernel = &opts.kernel;
    if !kernel.join("Makefile").exists() || !kernel.join(".config").exists() {
        return Err(format!(
            "{}: not a configured kernel build directory (no Makefile or .config)",
            kernel.display()
        )
        .into());
    }
    let config = KernelConfig::read(kernel).unwrap_or_default();
    if !config.enabled("CONFIG_LIVEPATCH") {
        return Err(format!("{}: CONFIG_LIVEPATCH is not enabled", kernel.display()).into());
    }
    let mut notes = Vec::new();
    let name = match &opts.name {
        Some(n) => {
            let s = sanitize_module_name(n);
            if &s != n {
                notes.push(format!("module name '{n}' sanitised to '{s}'"));
            }
            s
        }
        None => default_module_name(&diffs[0]),
    };
    let tmp;
    // Absolute: make runs in the kernel build directory, and the replayed commands name it.
    let requested = opts
        .work
        .as_ref()
        .map(|w| std::path::absolute(w).unwrap_or_else(|_| w.clone()));
    let work: PathBuf = match &requested {
        Some(w) if kbuild_safe(w) => {
            std::fs::create_dir_all(w).map_err(ModuleError::io(&w))?;
            w.clone()
        }
        other => {
            tmp = tempfile::Builder::new()
                .prefix("klpforge-module-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            if let Some(w) = other {
                notes.push(format!(
                    "the module was linked in {} (removed after): kbuild cannot work in {}, whose path has a character make reads as syntax",
                    tmp.path().display(),
                    w.display()
                ));
            }
            tmp.path().to_path_buf()
        }
    };
    let objtool_at_link = config.enabled("CONFIG_OBJTOOL")
        && (config.enabled("CONFIG_X86_KERNEL_IBT") || config.enabled("CONFIG_LTO_CLANG"));
    let mut parts = Vec::new();
    for (i, d) in diffs.iter().enumerate() {
        let part = format!("klpforge_part{i}.o");
        prepare_diff(d, &work.join(format!("{part}_shipped")), objtool_at_link)?;
        // modpost reads each object's .cmd file; kbuild's copy rule for shipped objects
        // writes none.
        std::fs::write(
            work.join(format!(".{part}.cmd")),
            format!("savedcmd_{part} := klpforge diff object {}\n", d.display()),
        )
        .map_err(|e| e.to_string())?;
        parts.push(part);
    }
    // The init code is the same for every patch of a kernel: compiled once, then shipped.
    let cached_init = opts
        .init_cache
        .as_deref()
        .map(|dir| dir.join(format!("{:016x}.o", init_key(kernel, opts))));
    let reused = match &cached_init {
        Some(c) if c.is_file() => {
            std::fs::copy(c, work.join("klpforge_init.o_shipped")).map_err(ModuleError::io(c))?;
            std::fs::write(
                work.join(".klpforge_init.o.cmd"),
                format!(
                    "savedcmd_klpforge_init.o := klpforge init code {}\n",
                    c.display()
                ),
            )
            .map_err(|e| e.to_string())?;
            true
        }
        _ => {
            std::fs::write(work.join("klpforge_init.c"), INIT_C).map_err(|e| e.to_string())?;
            false
        }
    };
    let kbuild = format!(
        "# Generated by klpforge.\nobj-m := {name}.o\n{name}-y := klpforge_init.o {}\nCFLAGS_klpforge_init.o := -DKLPFORGE_REPLACE={}\n",
        parts.join(" "),
        if opts.replace { "true" } else { "false" }
    );
    std::fs::write(work.join("Kbuild"), kbuild).map_err(|e| e.to_string())?;

    let objects: Vec<String> = std::iter::once("klpforge_init.o".to_string())
        .chain(parts.iter().cloned())
        .collect();
    let dir = work.to_string_lossy().into_owned();
    let layout = recipe::Layout {
        dir: &dir,
        name: &name,
        objects: &objects,
    };
    let (stdout, stderr) = link(kernel, layout, opts, cached_init.as_deref(), reused)?;
    let mut warnings = notes;
    warnings.extend(kbuild_warnings(&stdout, &stderr));
    warnings.retain(|w| !benign_objtool_warning(w));
    let objtool: Vec<&String> = warnings.iter().filter(|w| w.contains("objtool")).collect();
    if !objtool.is_empty() {
        return Err(format!(
            "objtool rejected the module (its ORC, return and call sites would be missing or wrong; work directory {}):\n{}",
            work.display(),
            objtool
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ).into());
    }
    let built = work.join(format!("{name}.ko"));
    let file = ElfFile::open(&built).map_err(|e| e.to_string())?;
    let mut obj = file.parse().map_err(|e| e.to_string())?;
    strip_btf(&mut obj);
    let report = post_link(&mut obj).map_err(|e| format!("{}: {e}", built.display()))?;
    let req = crate::verify::Requirements {
        orc: config.enabled("CONFIG_UNWINDER_ORC"),
        return_sites: config.enabled("CONFIG_MITIGATION_RETHUNK"),
    };
    crate::verify::verify_module(&obj, req).map_err(|e| format!("{}: {e}", built.display()))?;
    let dest = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.ko")));
    klpforge_elf::write::write_file(&obj, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    if let Some((key, cert)) = &opts.sign {
        sign_module(kernel, &config, key, cert, &dest)?;
    } else if config.enabled("CONFIG_MODULE_SIG_FORCE") {
        warnings.push(format!(
            "the kernel enforces module signatures (CONFIG_MODULE_SIG_FORCE) and {} is not signed: it will refuse to load it; sign it with --sign-key KEY --sign-cert CERT",
            dest.display()
        ));
    }
    Ok(ModuleReport {
        name,
        path: dest,
        post_link: report,
        warnings,
    })
}

/// objtool's IBT check flags every pointer in data to a function without ENDBR. The
/// patch metadata (`.klp_forge.funcs`) holds such pointers to the new functions, but the
/// livepatch core never branches through them indirectly: ftrace returns into the new
/// function, which needs no ENDBR. Those warnings say nothing about the module.
fn benign_objtool_warning(line: &str) -> bool {
    line.contains("objtool: .klp_forge.") && line.contains("data relocation to !ENDBR")
}

/// Sign `module` in place with the kernel's own `scripts/sign-file`, so machines that enforce
/// module signatures (Secure Boot lockdown, `MODULE_SIG_FORCE`) accept it once the key is
/// enrolled.
fn sign_module(
    kernel: &Path,
    config: &KernelConfig,
    key: &Path,
    cert: &Path,
    module: &Path,
) -> Result<()> {
    let tool = kernel.join("scripts/sign-file");
    if !tool.exists() {
        return Err(format!(
            "{}: no scripts/sign-file in the kernel build (is CONFIG_MODULE_SIG set?)",
            kernel.display()
        )
        .into());
    }
    let hash = config.value("CONFIG_MODULE_SIG_HASH").unwrap_or("sha256");
    let out = Command::new(&tool)
        .arg(hash)
        .arg(key)
        .arg(cert)
        .arg(module)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if !out.status.success() {
        return Err(format!(
            "signing {} failed: {}",
            module.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// The warning lines of a kbuild run (compiler, objtool, modpost), without duplicates.
pub fn kbuild_warnings(stdout: &[u8], stderr: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(stderr)
        .lines()
        .chain(String::from_utf8_lossy(stdout).lines())
    {
        let l = line.trim();
        let warning = l.contains("warning:") || l.starts_with("WARNING:");
        if warning && !out.iter().any(|x| x == l) {
            out.push(l.to_string());
        }
    }
    out
}

/// Whether make and kbuild can work in `dir`: they split words on whitespace and read `:`,
/// `#`, `$` and `%` in paths as their own syntax.
fn kbuild_safe(dir: &Path) -> bool {
    !dir.to_string_lossy()
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, ':' | '#' | '$' | '%' | '\\' | '"' | '\''))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached init code is per kernel build and options: a different configuration,
    /// replace flag or make variable gives another key, the same inputs the same one.
    #[test]
    fn init_cache_keys_follow_their_inputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".config"), "CONFIG_LIVEPATCH=y\n").unwrap();
        let opts = ModuleOptions {
            kernel: dir.path().to_path_buf(),
            out: None,
            name: None,
            replace: true,
            make_vars: Vec::new(),
            work: None,
            jobs: 1,
            sign: None,
            init_cache: None,
            probe_cache: None,
        };
        let base = init_key(dir.path(), &opts);
        assert_eq!(base, init_key(dir.path(), &opts));
        let no_replace = ModuleOptions {
            replace: false,
            ..opts.clone()
        };
        assert_ne!(base, init_key(dir.path(), &no_replace));
        let llvm = ModuleOptions {
            make_vars: vec!["LLVM=1".into()],
            ..opts.clone()
        };
        assert_ne!(base, init_key(dir.path(), &llvm));
        std::fs::write(
            dir.path().join(".config"),
            "CONFIG_LIVEPATCH=y\nCONFIG_X=y\n",
        )
        .unwrap();
        assert_ne!(base, init_key(dir.path(), &opts));
    }

    #[test]
    fn kbuild_warnings_are_collected_once_and_benign_objtool_ones_recognised() {
        let stderr = b"make: Entering directory '/k'\n/w/m.o: warning: objtool: .altinstr_replacement+0x0: sibling call from callable instruction with modified stack frame\n/w/m.o: warning: objtool: .klp_forge.funcs+0x38: data relocation to !ENDBR: mem_rw+0x0\nWARNING: modpost: missing MODULE_LICENSE() in /w/m.o\n/w/m.o: warning: objtool: .altinstr_replacement+0x0: sibling call from callable instruction with modified stack frame\n";
        let w = kbuild_warnings(b"  CC [M]  /w/init.o\n", stderr);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("sibling call"));
        assert!(w[2].starts_with("WARNING: modpost"));
        assert!(!benign_objtool_warning(&w[0]));
        assert!(benign_objtool_warning(&w[1]));
    }
}
