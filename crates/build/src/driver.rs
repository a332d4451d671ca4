//! `klpforge build` in translation-unit mode: from patches to a livepatch module.
//!
//! 1. Check the tree (livepatch configured, no randomising plugins, same compiler).
//! 2. Read the patches, refuse files that cannot be live-patched, add `#line` directives.
//! 3. Copy the touched files into the work directory and apply the patches there.
//! 4. Find the objects: edited `.c` files, and every object whose kbuild record depends on
//!    an edited header; find the binary each belongs to.
//! 5. Compile each object twice (original and patched) by replaying kbuild's command.
//! 6. Diff every pair, in parallel, with `sympos` from the original vmlinux.
//! 7. Assemble and post-link the module.
//!
//! The source and build trees are only read: everything is written below the work
//! directory, so an interrupted or failed build leaves nothing to restore.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use crate::compile::{compile, Variant};
use crate::fixlines::fix_lines;
use crate::kbuild::{CmdFile, KernelTree};
use crate::patch::{parse, print};

/// Options of `klpforge build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The kernel tree.
    pub tree: KernelTree,
    /// The original kernel's vmlinux (symbol positions).
    pub vmlinux: PathBuf,
    /// Module.symvers.
    pub symvers: PathBuf,
    /// The patches.
    pub patches: Vec<PathBuf>,
    /// Output module.
    pub out: Option<PathBuf>,
    /// Module name.
    pub name: Option<String>,
    /// Parallel jobs.
    pub jobs: usize,
    /// Whether the patch replaces earlier ones.
    pub replace: bool,
    /// Work directory.
    pub work: PathBuf,
    /// Skip the compiler identity check.
    pub skip_compiler_check: bool,
    /// Variables passed to make when building the module.
    pub make_vars: Vec<String>,
    /// Print progress lines.
    pub verbose: bool,
    /// Diff the whole linked vmlinux.o instead of single objects.
    pub vmlinux_mode: bool,
    /// Accept fresh copies of function-scope statics a changed function stopped using
    /// (`klpforge diff --accept-fresh-statics`).
    pub accept_fresh_statics: bool,
    /// The tree is a prepared kernel ([`crate::prepare`]): objects are compiled in it on
    /// demand, header users are found by scanning the sources, modules come from its
    /// modules directory.
    pub prepared: Option<crate::prepare::PreparedKernel>,
    /// Sign the module with this private key and certificate (`--sign-key`, `--sign-cert`).
    pub sign: Option<(PathBuf, PathBuf)>,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildResult {
    /// A module was written.
    Built(PathBuf),
    /// Nothing to patch.
    NoChange,
    /// Refused, with reasons.
    Refused(Vec<String>),
}

/// The report of a build.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildReport {
    /// Objects compiled (each twice).
    pub objects: Vec<String>,
    /// Per object: its binary, and what the diff found.
    pub diffs: BTreeMap<String, serde_json::Value>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// The module written, if any.
    pub module: Option<String>,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
}

/// Paths of the source tree a patch must not touch, with the reason.
fn refused_path(path: &str) -> Option<&'static str> {
    if path.ends_with(".S") || path.ends_with(".s") {
        return Some("assembly code has no ftrace entries and no symbols livepatch can redirect");
    }
    if path.starts_with("lib/") {
        return Some("lib/ objects are linked from an archive, only when referenced; their changes cannot be tracked reliably");
    }
    if path.contains("/vdso/") || path.contains("/vdso") && path.starts_with("arch/") {
        return Some("the vDSO is mapped into user space and is not patched by livepatch");
    }
    if path.starts_with("arch/x86/realmode/") || path.contains("/realmode/") {
        return Some("real-mode code runs before the kernel and cannot be live-patched");
    }
    if path.starts_with("arch/x86/boot/")
        || path.starts_with("scripts/")
        || path.starts_with("tools/")
    {
        return Some("not part of the running kernel");
    }
    if path.ends_with("Makefile") || path.ends_with("Kbuild") || path.contains("Kconfig") {
        return Some("a build or configuration change cannot be applied to a running kernel");
    }
    None
}

fn config_value(tree: &KernelTree, key: &str) -> Option<String> {
    klpforge_module::assemble::config_value(&tree.build, key)
}

/// Check that the tree can produce livepatches.
pub fn check_tree(opts: &BuildOptions) -> Result<(), String> {
    let tree = &opts.tree;
    if !tree.build.join(".config").exists() {
        return Err(format!(
            "{}: no .config: not a configured kernel build tree",
            tree.build.display()
        ));
    }
    for needed in [
        "CONFIG_LIVEPATCH",
        "CONFIG_DYNAMIC_FTRACE",
        "CONFIG_MODULES",
        "CONFIG_KALLSYMS",
    ] {
        if config_value(tree, needed).as_deref() != Some("y") {
            return Err(format!(
                "{needed} is not enabled in {}/.config",
                tree.build.display()
            ));
        }
    }
    for bad in [
        "CONFIG_GCC_PLUGIN_RANDSTRUCT",
        "CONFIG_RANDSTRUCT_FULL",
        "CONFIG_RANDSTRUCT_PERFORMANCE",
        "CONFIG_GCC_PLUGIN_LATENT_ENTROPY",
    ] {
        if config_value(tree, bad).as_deref() == Some("y") {
            return Err(format!(
                "{bad} is enabled: objects built again would not match the running kernel"
            ));
        }
    }
    if !opts.vmlinux.exists() {
        return Err(format!(
            "{}: the original vmlinux is needed for symbol positions",
            opts.vmlinux.display()
        ));
    }
    if !opts.skip_compiler_check {
        check_compiler(opts)?;
    }
    Ok(())
}

/// A compiler's identity in its `--version` first line or in `CONFIG_CC_VERSION_TEXT`:
/// everything after the command name (`(Debian 12.2.0-14+deb12u1) 12.2.0`), so that
/// `x86_64-linux-gnu-gcc-12` and `gcc` of one build compare equal.
pub fn compiler_identity(line: &str) -> &str {
    line.trim()
        .split_once(' ')
        .map_or("", |(_, rest)| rest.trim())
}

/// The first line of `cc --version`, if `cc` runs.
fn compiler_version(cc: &str) -> Option<String> {
    let o = Command::new(cc).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines().next().map(str::to_string)
}

/// Check that a compiler of this machine is the one that built the kernel: the compiler
/// proper of CC=... when given (the last word, after ccache or distcc), else the command
/// the kernel's configuration names, else `gcc`. Compilers compare by version and build,
/// not by command name; the vmlinux's `.comment` must name the same version.
fn check_compiler(opts: &BuildOptions) -> Result<(), String> {
    let tree = &opts.tree;
    let want = config_value(tree, "CONFIG_CC_VERSION_TEXT").unwrap_or_default();
    let named = want.split_whitespace().next().unwrap_or("gcc").to_string();
    let candidates: Vec<String> = match opts
        .make_vars
        .iter()
        .find_map(|v| v.strip_prefix("CC="))
        .and_then(|c| c.split_whitespace().last())
    {
        Some(cc) => vec![cc.to_string()],
        None => vec![named, "gcc".to_string()],
    };
    let mut seen: Vec<String> = Vec::new();
    let mut chosen: Option<(String, String)> = None;
    for cc in &candidates {
        let Some(have) = compiler_version(cc) else {
            seen.push(format!("{cc}: not found"));
            continue;
        };
        if want.is_empty() || compiler_identity(&have) == compiler_identity(&want) {
            chosen = Some((cc.clone(), have));
            break;
        }
        seen.push(format!("{cc} is '{have}'"));
    }
    let Some((cc, have)) = chosen else {
        return Err(format!(
            "compiler mismatch: the kernel was built with '{want}'; {} (use --skip-compiler-check to override)",
            seen.join(", ")
        ));
    };
    // The vmlinux records its compiler in .comment ("GCC: (Debian 12.2.0-14) 12.2.0").
    if let Some(recorded) = vmlinux_compiler(&opts.vmlinux) {
        let version = compiler_identity(&have);
        if !version.is_empty() && !recorded.contains(version) {
            return Err(format!(
                "compiler mismatch: {} was built by '{recorded}', {cc} is '{have}' (use --skip-compiler-check to override)",
                opts.vmlinux.display()
            ));
        }
    }
    Ok(())
}

/// The GCC identification recorded in an image's `.comment` section.
fn vmlinux_compiler(vmlinux: &Path) -> Option<String> {
    let file = klpforge_elf::ElfFile::open(vmlinux).ok()?;
    let obj = file.parse().ok()?;
    let sec = obj.section_by_name(b".comment")?;
    obj.section(sec)
        .bytes()
        .split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .find(|s| s.starts_with("GCC: "))
        .map(|s| s.into_owned())
}

/// A progress bar when stderr is a terminal and progress is wanted; hidden otherwise.
fn progress(opts: &BuildOptions, len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !opts.verbose || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("klpforge: {msg} [{bar:30}] {pos}/{len}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Advances a progress bar when dropped (one finished item).
struct Tick<'a>(&'a indicatif::ProgressBar);

impl Drop for Tick<'_> {
    fn drop(&mut self) {
        self.0.inc(1);
    }
}

fn step(opts: &BuildOptions, msg: &str) {
    if opts.verbose {
        eprintln!("klpforge: {msg}");
    }
    // Test hook: `KLPFORGE_PAUSE_AT=<words of a step>` stops here for a while, so tests can
    // interrupt the build at a known stage.
    if let Ok(at) = std::env::var("KLPFORGE_PAUSE_AT") {
        if !at.is_empty() && msg.starts_with(&at) {
            eprintln!("klpforge: paused at: {msg}");
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
    }
}

/// Run the whole pipeline.
pub fn build(opts: &BuildOptions) -> Result<(BuildResult, BuildReport), String> {
    let mut report = BuildReport::default();
    let t0 = Instant::now();
    check_tree(opts)?;
    let tree = &opts.tree;
    let work = &opts.work;
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;

    // Patches: refuse what cannot be patched, add #line directives.
    step(opts, "reading patches");
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut fixed_patches = Vec::new();
    for (i, p) in opts.patches.iter().enumerate() {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut patch = parse(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        for f in &patch.files {
            if f.old_path.is_empty() && f.new_path.is_empty() {
                continue; // trailing text, not a file
            }
            let Some(target) = f.target() else {
                return Err(format!(
                    "{}: deleting {} is not supported",
                    p.display(),
                    f.old_path
                ));
            };
            if f.source().is_none() {
                return Err(format!("{}: adding the new file {target} is not supported: add its code to an existing file", p.display()));
            }
            if target.starts_with("Documentation/") {
                continue;
            }
            if let Some(why) = refused_path(&target) {
                return Err(format!(
                    "{}: refusing to patch {target}: {why}",
                    p.display()
                ));
            }
            if !(target.ends_with(".c") || target.ends_with(".h")) {
                return Err(format!(
                    "{}: {target}: only C sources and headers can be live-patched",
                    p.display()
                ));
            }
            touched.insert(target);
        }
        fix_lines(&mut patch);
        let fixed = work.join(format!("patch-{i}.patch"));
        std::fs::write(&fixed, print(&patch)).map_err(|e| e.to_string())?;
        fixed_patches.push(fixed);
    }
    if touched.is_empty() {
        return Ok((BuildResult::NoChange, report));
    }

    // Private copies of the touched files, patched.
    step(opts, "applying patches to private copies");
    let src_copy = work.join("src");
    let _ = std::fs::remove_dir_all(&src_copy);
    for f in &touched {
        let from = tree.src.join(f);
        let to = src_copy.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    for p in &fixed_patches {
        // `patch -d` changes directory before it reads `-i`: both must be absolute.
        let abs = |x: &Path| std::path::absolute(x).unwrap_or_else(|_| x.to_path_buf());
        let out = Command::new("patch")
            .args(["-p1", "-s", "-f", "--no-backup-if-mismatch", "-d"])
            .arg(abs(&src_copy))
            .arg("-i")
            .arg(abs(p))
            .output()
            .map_err(|e| format!("cannot run patch: {e}"))?;
        if !out.status.success() {
            let said: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            return Err(format!(
                "the patch does not apply: {}",
                if said.is_empty() {
                    format!("patch exited with {}", out.status)
                } else {
                    said.join("; ")
                }
            ));
        }
    }
    report
        .timings
        .insert("prepare".into(), t0.elapsed().as_secs_f64());
    if opts.vmlinux_mode {
        step(
            opts,
            "building vmlinux and modules in a private copy of the tree",
        );
        let touched: Vec<String> = touched.iter().cloned().collect();
        return crate::vmlinux_mode::build_vmlinux_mode(opts, &src_copy, &touched);
    }

    // Objects.
    let t1 = Instant::now();
    step(opts, "finding affected objects");
    let mut objects: BTreeMap<String, CmdFile> = BTreeMap::new();
    let headers: BTreeSet<String> = touched
        .iter()
        .filter(|f| f.ends_with(".h"))
        .cloned()
        .collect();
    // The original vmlinux's symbols, read once (a prepared kernel needs them early).
    let mut vm_image: Option<Arc<klpforge_module::kallsyms::ImageSympos>> = None;
    if let Some(k) = &opts.prepared {
        // kbuild compiles what the patch touches (and, for headers, every source that
        // includes them) in the prepared tree, leaving the records the rest reads.
        let mut sources: BTreeSet<String> = touched
            .iter()
            .filter(|f| f.ends_with(".c"))
            .cloned()
            .collect();
        if !headers.is_empty() {
            let arch =
                kernel_srcarch(tree).ok_or("the configuration names no known architecture")?;
            let users = crate::includes::sources_including(&tree.src, &headers, arch);
            step(
                opts,
                &format!(
                    "{} source file(s) include {}",
                    users.len(),
                    headers.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            sources.extend(users);
        }
        let wanted: Vec<String> = sources
            .iter()
            .map(|f| format!("{}.o", f.trim_end_matches(".c")))
            .collect();
        step(
            opts,
            &format!(
                "compiling {} object(s) in the prepared kernel",
                wanted.len()
            ),
        );
        // Whether the patch itself edits an object's source (not only a header it includes).
        let named =
            |object: &str| touched.contains(&format!("{}.c", object.trim_end_matches(".o")));
        for (object, why) in k.compile_objects(&wanted, opts.jobs)? {
            if named(&object) && !why.contains("No rule to make target") {
                return Err(format!("{object}: kbuild did not build it: {why}"));
            }
            report.warnings.push(format!(
                "{object} is not built by this configuration (kbuild: {why})"
            ));
        }
        // kbuild compiles a single object on request even when the configuration does not
        // build it: the kernel image decides. A built-in object is part of this kernel when
        // one of its functions is in the image's symbol table.
        let image = load_image(opts)?;
        let index = image.index();
        for object in wanted {
            let Ok(cmd) = tree.cmd_file(&object) else {
                continue;
            };
            if tree.owner(&cmd).is_none() && !in_image(&tree.build.join(&object), index) {
                let why = format!(
                    "{object} is not part of this kernel: none of its functions is in {}",
                    opts.vmlinux.display()
                );
                if named(&object) {
                    return Err(why);
                }
                report.warnings.push(why);
                continue;
            }
            objects.insert(object, cmd);
        }
        if !headers.is_empty() {
            step(
                opts,
                &format!(
                    "{} object(s) of this configuration use the changed header(s)",
                    objects.len()
                ),
            );
        }
        vm_image = Some(image);
    }
    for f in touched
        .iter()
        .filter(|f| f.ends_with(".c") && opts.prepared.is_none())
    {
        let object = format!("{}.o", f.trim_end_matches(".c"));
        match tree.cmd_file(&object) {
            Ok(cmd) => {
                objects.insert(object, cmd);
            }
            // No record is no proof that the configuration does not build it (it may just
            // not have been compiled here): "nothing to patch" would be a guess.
            Err(e) => {
                return Err(format!(
                    "{f}: kbuild has no record of compiling it in {} ({e}): either this configuration does not build it, or the tree has not been built; compile it there first (make O=<build> {object}) or build the kernel",
                    tree.build.display()
                ))
            }
        }
    }
    if !headers.is_empty() && opts.prepared.is_none() {
        // The objects including a header are found from the records of a full build only.
        if !tree.build.join("vmlinux.o").exists() {
            return Err(format!(
                "{} changes header(s) {}, but {} has not been fully built (no vmlinux.o): the objects that include them cannot all be found from kbuild's records",
                opts.patches.first().map_or(String::new(), |p| p.display().to_string()),
                headers.iter().cloned().collect::<Vec<_>>().join(", "),
                tree.build.display()
            ));
        }
        objects.extend(tree.objects_depending_on(&headers)?);
    }
    if objects.is_empty() {
        return Ok((BuildResult::NoChange, report));
    }
    // Every object compiles its patched version from the work copy of its source, so a
    // patched header next to it (`#include "internal.h"`) is found first.
    for cmd in objects.values() {
        let Some(rel) = tree.source_relative(&cmd.source) else {
            return Err(format!(
                "{}: source {} is outside the source tree",
                cmd.object, cmd.source
            ));
        };
        let to = src_copy.join(&rel);
        if !to.exists() {
            std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
            std::fs::copy(tree.src.join(&rel), &to).map_err(|e| format!("{rel}: {e}"))?;
        }
    }
    report.objects = objects.keys().cloned().collect();
    report
        .timings
        .insert("find-objects".into(), t1.elapsed().as_secs_f64());

    // Compile original and patched, in parallel.
    let t2 = Instant::now();
    step(
        opts,
        &format!("compiling {} object(s) twice", objects.len()),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| e.to_string())?;
    // CC=... among the make variables replaces the recorded compiler (ccache, distcc).
    let cc: Option<String> = opts
        .make_vars
        .iter()
        .find_map(|v| v.strip_prefix("CC=").map(str::to_string));
    // Headers for patch authors (`#include "kpatch-macros.h"`), after the kernel's own.
    let include_dir = work.join("include");
    std::fs::create_dir_all(&include_dir).map_err(|e| e.to_string())?;
    for (name, text) in crate::compile::AUTHOR_HEADERS {
        std::fs::write(include_dir.join(name), text).map_err(|e| e.to_string())?;
    }
    let orig_dir = work.join("orig");
    let patched_dir = work.join("patched");
    let jobs: Vec<(String, CmdFile, bool)> = objects
        .iter()
        .flat_map(|(o, c)| [(o.clone(), c.clone(), false), (o.clone(), c.clone(), true)])
        .collect();
    // A progress bar on a terminal; the step lines alone otherwise.
    let bar = progress(opts, jobs.len() as u64, "compiling");
    let results: Vec<Result<(String, bool, crate::compile::Compiled), String>> =
        pool.install(|| {
            use rayon::prelude::*;
            jobs.par_iter()
                .map(|(o, c, patched)| {
                    let _tick = Tick(&bar);
                    let (variant, dir) = if *patched {
                        (Variant::Patched(src_copy.clone()), &patched_dir)
                    } else {
                        (Variant::Original, &orig_dir)
                    };
                    compile(tree, c, &variant, dir, cc.as_deref(), Some(&include_dir))
                        .map(|p| (o.clone(), *patched, p))
                })
                .collect()
        });
    bar.finish_and_clear();
    let mut pairs: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    for r in results {
        let (o, patched, c) = r?;
        for w in c.warnings {
            let w = format!("compiling {o}: {w}");
            if !report.warnings.contains(&w) {
                report.warnings.push(w);
            }
        }
        let p = c.path;
        let e = pairs.entry(o).or_default();
        if patched {
            e.1 = Some(p);
        } else {
            e.0 = Some(p);
        }
    }
    report
        .timings
        .insert("compile".into(), t2.elapsed().as_secs_f64());

    // Diff.
    let t3 = Instant::now();
    step(opts, "comparing");
    // Export CRCs the patch changes: the module keeps the running kernel's (it links against
    // its Module.symvers), but the author must know (a type layout may have changed).
    for object in pairs.keys() {
        let crc_work = work.join("crc").join(object);
        match crate::crcs::changed_crcs(
            tree,
            &objects[object],
            &src_copy,
            &crc_work,
            Some(&include_dir),
        ) {
            Ok(changed) if !changed.is_empty() => report.warnings.push(format!(
                "{object}: the patch changes the export CRC of {}: the module keeps the running kernel's CRCs (it links against its Module.symvers) and loads, but a changed CRC can mean a changed type layout: make sure these symbols' types did not change",
                changed.join(", ")
            )),
            Ok(_) => {}
            Err(e) => report.warnings.push(format!("cannot compare export CRCs: {e}")),
        }
    }
    let symvers = load_symvers(opts)?;
    let vm_sympos: Arc<dyn klpforge_diff::klp::SymposSource> = match vm_image {
        Some(image) => image,
        None => load_image(opts)?,
    };
    let diff_dir = work.join("diff");
    // Symbol positions: vmlinux's for vmlinux objects, the module's for module objects (its
    // symbol-table order is what kallsyms uses). A module without a readable symbol table
    // (not built, or stripped as distributions ship them) cannot give them: an error, never
    // positions counted in the object instead.
    let mut module_sympos: BTreeMap<String, Arc<dyn klpforge_diff::klp::SymposSource>> =
        BTreeMap::new();
    let mut owners: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for object in pairs.keys() {
        if let Some((name, ko)) = tree.owner(&objects[object]) {
            owners.entry(name).or_insert((object.clone(), ko));
        }
    }
    // A prepared kernel has its modules (with symbols) elsewhere, unpacked on demand.
    if let Some(k) = &opts.prepared {
        let wanted: Vec<(String, String)> = owners
            .iter()
            .filter(|(_, (_, ko))| !ko.exists())
            .map(|(name, (object, _))| (name.clone(), object.clone()))
            .collect();
        for ((name, _), found) in wanted.iter().zip(k.module_files(&wanted)) {
            if let (Some(found), Some(entry)) = (found, owners.get_mut(name)) {
                entry.1 = found;
            }
        }
    }
    for (name, (object, ko)) in owners {
        module_sympos.insert(name, module_symbols(&object, &ko)?);
    }
    let outcomes: Vec<(String, DiffRun)> = pool.install(|| {
        use rayon::prelude::*;
        pairs
            .par_iter()
            .map(|(object, (o, p))| {
                let owner = tree.owner(&objects[object]);
                let sympos = match &owner {
                    None => Some(vm_sympos.clone()),
                    Some((name, _)) => module_sympos.get(name).cloned(),
                };
                let dopts = klpforge_diff::DiffOptions {
                    objname: owner
                        .as_ref()
                        .map_or_else(|| "vmlinux".into(), |o| o.0.clone()),
                    symvers: symvers.clone(),
                    debug: false,
                    sympos,
                    accept_fresh_statics: opts.accept_fresh_statics,
                };
                let (o, p) = (o.as_ref().unwrap(), p.as_ref().unwrap());
                (object.clone(), diff_object(object, o, p, &dopts, &diff_dir))
            })
            .collect()
    });
    let (diffs, refusals) = collect_outcomes(opts, &mut report, outcomes)?;
    finish(opts, report, diffs, refusals, t3)
}

/// What diffing one object gave: the diff object (if any), the report, refusal reasons.
pub(crate) type DiffRun = Result<(Option<PathBuf>, serde_json::Value, Vec<String>), String>;

/// Module.symvers and the `sympos` source of the original vmlinux.
pub(crate) fn load_exports(
    opts: &BuildOptions,
) -> Result<
    (
        klpforge_diff::Symvers,
        Arc<dyn klpforge_diff::klp::SymposSource>,
    ),
    String,
> {
    Ok((load_symvers(opts)?, load_image(opts)?))
}

/// Module.symvers of the kernel.
fn load_symvers(opts: &BuildOptions) -> Result<klpforge_diff::Symvers, String> {
    let text = std::fs::read_to_string(&opts.symvers)
        .map_err(|e| format!("{}: {e}", opts.symvers.display()))?;
    klpforge_diff::Symvers::parse(&text).map_err(|e| format!("{}: {e}", opts.symvers.display()))
}

/// The kallsyms view of the original vmlinux.
fn load_image(opts: &BuildOptions) -> Result<Arc<klpforge_module::kallsyms::ImageSympos>, String> {
    let vm_file = klpforge_elf::ElfFile::open(&opts.vmlinux).map_err(|e| e.to_string())?;
    let vm = vm_file.parse().map_err(|e| e.to_string())?;
    Ok(Arc::new(klpforge_module::kallsyms::ImageSympos::new(&vm)))
}

/// The `sympos` source of the module `object` is linked into: its `.ko` with a full symbol
/// table (FILE symbols included), or an error saying what is missing.
pub(crate) fn module_symbols(
    object: &str,
    ko: &Path,
) -> Result<Arc<dyn klpforge_diff::klp::SymposSource>, String> {
    let file = klpforge_elf::ElfFile::open(ko).map_err(|e| {
        format!(
            "{object} is part of a module, whose symbol table is needed for symbol positions: {}: {e} (build the module, or give the unstripped one, e.g. from the distribution's -dbg package)",
            ko.display()
        )
    })?;
    let m = file.parse().map_err(|e| format!("{}: {e}", ko.display()))?;
    if !m.symbols().any(|(_, s)| s.kind() == 4) {
        return Err(format!(
            "{}: stripped module (no FILE symbols): symbol positions cannot be found; give the unstripped module (the distribution's -dbg package has it)",
            ko.display()
        ));
    }
    Ok(Arc::new(klpforge_module::kallsyms::ImageSympos::new(&m)))
}

/// Diff one pair of objects; a changed one writes its diff object below `diff_dir`.
pub(crate) fn diff_object(
    label: &str,
    orig: &Path,
    patched: &Path,
    dopts: &klpforge_diff::DiffOptions,
    diff_dir: &Path,
) -> DiffRun {
    let of = klpforge_elf::ElfFile::open(orig).map_err(|e| e.to_string())?;
    let pf = klpforge_elf::ElfFile::open(patched).map_err(|e| e.to_string())?;
    let oo = of.parse().map_err(|e| e.to_string())?;
    let po = pf.parse().map_err(|e| e.to_string())?;
    match klpforge_diff::diff(&oo, &po, dopts).map_err(|e| format!("{label}: {e}"))? {
        klpforge_diff::Outcome::Changed(obj, rep) => {
            let out = diff_dir.join(label);
            std::fs::create_dir_all(out.parent().unwrap()).map_err(|e| e.to_string())?;
            klpforge_elf::write::write_file(&obj, &out).map_err(|e| e.to_string())?;
            Ok((Some(out), serde_json::to_value(&rep).unwrap(), Vec::new()))
        }
        klpforge_diff::Outcome::NoChange(rep) => {
            Ok((None, serde_json::to_value(&rep).unwrap(), Vec::new()))
        }
        klpforge_diff::Outcome::Refused(rep) => {
            let reasons = rep
                .refusals
                .iter()
                .map(|r| format!("{label}: {}: {} ({})", r.symbol, r.reason, r.remedy))
                .collect();
            Ok((None, serde_json::to_value(&rep).unwrap(), reasons))
        }
    }
}

/// Print the findings of every diffed object and record them in the report; returns the diff
/// objects and the refusal reasons.
pub(crate) fn collect_outcomes(
    opts: &BuildOptions,
    report: &mut BuildReport,
    outcomes: Vec<(String, DiffRun)>,
) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    let mut diffs = Vec::new();
    let mut refusals = Vec::new();
    for (object, r) in outcomes {
        let (out, value, reasons) = r?;
        if opts.verbose {
            for f in value["changed_functions"].as_array().into_iter().flatten() {
                println!(
                    "{object}: changed function: {} ({})",
                    f["name"].as_str().unwrap_or(""),
                    f["reason"].as_str().unwrap_or("")
                );
            }
            for f in value["new_functions"].as_array().into_iter().flatten() {
                println!("{object}: new function: {}", f.as_str().unwrap_or(""));
            }
        }
        if let Some(ws) = value.get("warnings").and_then(|w| w.as_array()) {
            for w in ws {
                report
                    .warnings
                    .push(format!("{object}: {}", w.as_str().unwrap_or_default()));
            }
        }
        report.diffs.insert(object, value);
        refusals.extend(reasons);
        diffs.extend(out);
    }
    Ok((diffs, refusals))
}

/// End a build after diffing (started at `t_diff`): refused, nothing to patch, or the module.
pub(crate) fn finish(
    opts: &BuildOptions,
    mut report: BuildReport,
    diffs: Vec<PathBuf>,
    refusals: Vec<String>,
    t_diff: Instant,
) -> Result<(BuildResult, BuildReport), String> {
    report
        .timings
        .insert("diff".into(), t_diff.elapsed().as_secs_f64());
    if !refusals.is_empty() {
        return Ok((BuildResult::Refused(refusals), report));
    }
    if diffs.is_empty() {
        return Ok((BuildResult::NoChange, report));
    }
    let t = Instant::now();
    step(opts, "building the module");
    let mopts = klpforge_module::assemble::ModuleOptions {
        kernel: opts.tree.build.clone(),
        out: opts.out.clone(),
        name: opts.name.clone().or_else(|| {
            opts.patches
                .first()
                .and_then(|p| p.file_stem())
                .map(|s| format!("klp_{}", s.to_string_lossy()))
        }),
        replace: opts.replace,
        make_vars: module_make_vars(opts),
        work: Some(opts.work.join("module")),
        jobs: opts.jobs,
        sign: opts.sign.clone(),
    };
    let m = klpforge_module::assemble::build_module(&diffs, &mopts)?;
    report
        .warnings
        .extend(m.warnings.iter().map(|w| format!("module build: {w}")));
    report
        .timings
        .insert("module".into(), t.elapsed().as_secs_f64());
    report.module = Some(m.path.display().to_string());
    Ok((BuildResult::Built(m.path), report))
}

/// Whether one of the functions `object` defines is in the image's symbol table.
fn in_image(object: &Path, index: &klpforge_module::kallsyms::SymbolIndex) -> bool {
    let Ok(file) = klpforge_elf::ElfFile::open(object) else {
        return false;
    };
    let Ok(obj) = file.parse() else { return false };
    let found = obj.symbols().any(|(_, s)| {
        s.kind() == 2 && s.section().is_some() && !index.lookup(&s.name_lossy()).is_empty()
    });
    found
}

/// The kernel's source architecture directory (`arch/<srcarch>`), from the configuration.
fn kernel_srcarch(tree: &KernelTree) -> Option<&'static str> {
    [
        ("CONFIG_X86", "x86"),
        ("CONFIG_ARM64", "arm64"),
        ("CONFIG_PPC", "powerpc"),
        ("CONFIG_S390", "s390"),
        ("CONFIG_LOONGARCH", "loongarch"),
    ]
    .into_iter()
    .find(|(key, _)| config_value(tree, key).as_deref() == Some("y"))
    .map(|(_, arch)| arch)
}

/// make variables for the module build: the user's, and the Module.symvers given when the
/// build tree has none (modpost reads only `$(objtree)/Module.symvers` by itself; given both,
/// it would see every export twice).
fn module_make_vars(opts: &BuildOptions) -> Vec<String> {
    let mut vars = opts.make_vars.clone();
    let in_tree = opts.tree.build.join("Module.symvers");
    if !in_tree.exists() {
        let abs = std::fs::canonicalize(&opts.symvers).unwrap_or_else(|_| opts.symvers.clone());
        if !vars.iter().any(|v| v.starts_with("KBUILD_EXTRA_SYMBOLS=")) {
            vars.push(format!("KBUILD_EXTRA_SYMBOLS={}", abs.display()));
        }
    }
    vars
}

/// The default work directory for a build.
pub fn default_work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("klpforge-build-{}", std::process::id()))
}

/// Remove a work directory unless it is to be kept.
pub fn cleanup(work: &Path, keep: bool) {
    if !keep {
        let _ = std::fs::remove_dir_all(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(build: &Path, symvers: &Path) -> BuildOptions {
        BuildOptions {
            tree: KernelTree {
                src: build.to_path_buf(),
                build: build.to_path_buf(),
            },
            vmlinux: build.join("vmlinux"),
            symvers: symvers.to_path_buf(),
            patches: Vec::new(),
            out: None,
            name: None,
            jobs: 1,
            replace: true,
            work: build.join("work"),
            skip_compiler_check: true,
            make_vars: vec!["CC=gcc".into()],
            verbose: false,
            vmlinux_mode: false,
            accept_fresh_statics: false,
            prepared: None,
            sign: None,
        }
    }

    /// stock-debian.md 3: a Module.symvers given elsewhere reaches modpost when the build tree
    /// has none, and is not given twice when it has one.
    #[test]
    fn module_symvers_reaches_modpost_once() {
        let dir = std::env::temp_dir().join(format!("klpforge-symvers-{}", std::process::id()));
        let build = dir.join("build");
        std::fs::create_dir_all(&build).unwrap();
        let given = dir.join("Module.symvers");
        std::fs::write(&given, "0x1\tfoo\tvmlinux\tEXPORT_SYMBOL\t\n").unwrap();
        let vars = module_make_vars(&opts(&build, &given));
        let abs = std::fs::canonicalize(&given).unwrap();
        assert_eq!(
            vars,
            [
                "CC=gcc".to_string(),
                format!("KBUILD_EXTRA_SYMBOLS={}", abs.display())
            ]
        );
        std::fs::copy(&given, build.join("Module.symvers")).unwrap();
        assert_eq!(module_make_vars(&opts(&build, &given)), ["CC=gcc"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compilers_compare_by_identity() {
        assert_eq!(
            compiler_identity("x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"),
            compiler_identity("gcc (Debian 12.2.0-14+deb12u1) 12.2.0")
        );
        assert_ne!(
            compiler_identity("gcc (Debian 12.2.0-14) 12.2.0"),
            compiler_identity("gcc (Debian 12.2.0-14+deb12u1) 12.2.0")
        );
    }
}
