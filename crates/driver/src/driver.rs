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
use crate::error::{DriverError, Result};
use crate::fixlines::fix_lines;
use crate::kbuild::CmdFile;
pub use crate::options::{BuildOptions, BuildReport, BuildResult};
use crate::patch::{parse, print};
pub use crate::preflight::{check_tree, compiler_identity};
use crate::preflight::{kernel_srcarch, refused_path};
use crate::stages::{
    collect_outcomes, diff_object, finish, in_image, load_image, load_symvers, module_symbols,
    DiffRun,
};

/// Reports one finished item of the current stage when dropped.
struct Tick<'a>(&'a dyn crate::progress::Progress);

impl Drop for Tick<'_> {
    fn drop(&mut self) {
        self.0.item_done();
    }
}

pub(crate) fn step(opts: &BuildOptions, msg: &str) {
    opts.progress.step(msg);
}
/// Run the whole pipeline.
pub fn build(opts: &BuildOptions) -> Result<(BuildResult, BuildReport)> {
    let mut report = BuildReport::default();
    let t0 = Instant::now();
    check_tree(opts)?;
    let work = &opts.work;
    std::fs::create_dir_all(work).map_err(DriverError::io(&work))?;
    let patches = read_patches(opts)?;
    if patches.touched.is_empty() {
        return Ok((BuildResult::NoChange, report));
    }
    let src_copy = apply_patches(opts, &patches)?;
    let layouts = layout_warnings(opts, &patches.touched, &src_copy);
    report
        .timings
        .insert("prepare".into(), t0.elapsed().as_secs_f64());
    if opts.vmlinux_mode {
        step(
            opts,
            "building vmlinux and modules in a private copy of the tree",
        );
        let touched: Vec<String> = patches.touched.iter().cloned().collect();
        return crate::vmlinux_mode::build_vmlinux_mode(opts, &src_copy, &touched).map(
            |(result, mut report)| {
                report.warnings.splice(0..0, layouts);
                (result, report)
            },
        );
    }
    report.warnings.extend(layouts);

    let t1 = Instant::now();
    step(opts, "finding affected objects");
    let found = find_objects(opts, &patches.touched, &mut report)?;
    if found.objects.is_empty() {
        return Ok((BuildResult::NoChange, report));
    }
    copy_sources(opts, &found.objects, &src_copy)?;
    report.objects = found.objects.keys().cloned().collect();
    report
        .timings
        .insert("find-objects".into(), t1.elapsed().as_secs_f64());

    let t2 = Instant::now();
    step(
        opts,
        &format!("compiling {} object(s) twice", found.objects.len()),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| e.to_string())?;
    let include_dir = author_headers(work)?;
    let pairs = compile_pairs(
        opts,
        &found.objects,
        &src_copy,
        &include_dir,
        &pool,
        &mut report,
    )?;
    report
        .timings
        .insert("compile".into(), t2.elapsed().as_secs_f64());

    let t3 = Instant::now();
    step(opts, "comparing");
    check_crcs(
        opts,
        &found.objects,
        &pairs,
        &src_copy,
        &include_dir,
        &mut report,
    );
    let outcomes = diff_pairs(opts, &found.objects, &pairs, found.image, &pool)?;
    let (diffs, refusals) = collect_outcomes(opts, &mut report, outcomes)?;
    finish(opts, report, diffs, refusals, t3)
}

/// The patches, checked and rewritten with `#line` directives into the work directory.
struct Patches {
    /// The files they change (relative to the source tree).
    touched: BTreeSet<String>,
    /// The rewritten patches.
    fixed: Vec<PathBuf>,
}

/// Read the patches, refuse what cannot be live-patched, add `#line` directives.
fn read_patches(opts: &BuildOptions) -> Result<Patches> {
    let work = &opts.work;
    step(opts, "reading patches");
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut fixed_patches = Vec::new();
    for (i, p) in opts.patches.iter().enumerate() {
        let text = std::fs::read_to_string(p).map_err(DriverError::io(&p))?;
        let mut patch = parse(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        for f in &patch.files {
            if f.old_path.is_empty() && f.new_path.is_empty() {
                continue; // trailing text, not a file
            }
            let Some(target) = f.target() else {
                return Err(
                    format!("{}: deleting {} is not supported", p.display(), f.old_path).into(),
                );
            };
            if f.source().is_none() {
                return Err(format!("{}: adding the new file {target} is not supported: add its code to an existing file", p.display()).into());
            }
            if target.starts_with("Documentation/") {
                continue;
            }
            if let Some(why) = refused_path(&target) {
                return Err(format!("{}: refusing to patch {target}: {why}", p.display()).into());
            }
            if !(target.ends_with(".c") || target.ends_with(".h")) {
                return Err(format!(
                    "{}: {target}: only C sources and headers can be live-patched",
                    p.display()
                )
                .into());
            }
            touched.insert(target);
        }
        fix_lines(&mut patch);
        let fixed = work.join(format!("patch-{i}.patch"));
        std::fs::write(&fixed, print(&patch)).map_err(|e| e.to_string())?;
        fixed_patches.push(fixed);
    }
    Ok(Patches {
        touched,
        fixed: fixed_patches,
    })
}

/// Private copies of the touched files, patched; returns their root.
/// One warning per `struct`/`union` definition the patches change in a touched C source or
/// header ([`crate::layouts`]): existing objects keep their old layout.
fn layout_warnings<'a>(
    opts: &BuildOptions,
    touched: impl IntoIterator<Item = &'a String>,
    src_copy: &Path,
) -> Vec<String> {
    let mut out = Vec::new();
    for f in touched {
        if !crate::fixlines::is_c_source(f) {
            continue;
        }
        let (Ok(before), Ok(after)) = (
            std::fs::read_to_string(opts.tree.src.join(f)),
            std::fs::read_to_string(src_copy.join(f)),
        ) else {
            continue;
        };
        for name in crate::layouts::changed_definitions(&before, &after) {
            out.push(format!(
                "{f}: the patch changes the definition of {name}: objects the running kernel already has (allocated, embedded or static) keep the old layout; unless every member keeps its offset and the size stays, keep the old definition and put new fields in shadow variables (klp_shadow_*)"
            ));
        }
    }
    out
}

fn apply_patches(opts: &BuildOptions, patches: &Patches) -> Result<PathBuf> {
    let (tree, work, touched, fixed_patches) =
        (&opts.tree, &opts.work, &patches.touched, &patches.fixed);
    step(opts, "applying patches to private copies");
    let src_copy = work.join("src");
    let _ = std::fs::remove_dir_all(&src_copy);
    for f in touched {
        let from = tree.src.join(f);
        let to = src_copy.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(&from, &to).map_err(DriverError::io(&from))?;
    }
    for p in fixed_patches {
        // `patch -d` changes directory before it reads `-i`: both must be absolute.
        let abs = |x: &Path| std::path::absolute(x).unwrap_or_else(|_| x.to_path_buf());
        let out = Command::new("patch")
            .args(["-p1", "-s", "-f", "--no-backup-if-mismatch", "-d"])
            .arg(abs(&src_copy))
            .arg("-i")
            .arg(abs(p))
            .output()
            .map_err(DriverError::spawn("patch"))?;
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
            )
            .into());
        }
    }
    Ok(src_copy)
}

/// The objects to compile, with kbuild's records, and the image's symbols when finding them
/// needed those (a prepared kernel).
struct Found {
    objects: BTreeMap<String, CmdFile>,
    image: Option<Arc<klpforge_module::kallsyms::ImageSympos>>,
}

/// The objects of the edited `.c` files and of every source including an edited header.
fn find_objects(
    opts: &BuildOptions,
    touched: &BTreeSet<String>,
    report: &mut BuildReport,
) -> Result<Found> {
    let tree = &opts.tree;
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
                return Err(format!("{object}: kbuild did not build it: {why}").into());
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
                    return Err(why.into());
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
                ).into())
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
            ).into());
        }
        objects.extend(tree.objects_depending_on(&headers)?);
    }
    Ok(Found {
        objects,
        image: vm_image,
    })
}

/// Every object compiles its patched version from the work copy of its source, so a patched
/// header next to it (`#include "internal.h"`) is found first: copy the sources not copied yet.
fn copy_sources(
    opts: &BuildOptions,
    objects: &BTreeMap<String, CmdFile>,
    src_copy: &Path,
) -> Result<()> {
    let tree = &opts.tree;
    // Every object compiles its patched version from the work copy of its source, so a
    // patched header next to it (`#include "internal.h"`) is found first.
    for cmd in objects.values() {
        let Some(rel) = tree.source_relative(&cmd.source) else {
            return Err(format!(
                "{}: source {} is outside the source tree",
                cmd.object, cmd.source
            )
            .into());
        };
        let to = src_copy.join(&rel);
        if !to.exists() {
            std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
            std::fs::copy(tree.src.join(&rel), &to).map_err(|e| format!("{rel}: {e}"))?;
        }
    }
    Ok(())
}

/// klpforge's headers for patch authors (`#include "kpatch-macros.h"`), written into the
/// work directory; returns it (searched after the kernel's own include directories).
fn author_headers(work: &Path) -> Result<PathBuf> {
    let include_dir = work.join("include");
    std::fs::create_dir_all(&include_dir).map_err(|e| e.to_string())?;
    for (name, text) in crate::compile::AUTHOR_HEADERS {
        std::fs::write(include_dir.join(name), text).map_err(|e| e.to_string())?;
    }
    Ok(include_dir)
}

/// The original and the patched build of one object.
pub(crate) struct ObjectPair {
    /// The original object.
    pub orig: PathBuf,
    /// The patched object.
    pub patched: PathBuf,
}

/// Compile every object twice (original and patched), in parallel.
fn compile_pairs(
    opts: &BuildOptions,
    objects: &BTreeMap<String, CmdFile>,
    src_copy: &Path,
    include_dir: &Path,
    pool: &rayon::ThreadPool,
    report: &mut BuildReport,
) -> Result<BTreeMap<String, ObjectPair>> {
    let (tree, work) = (&opts.tree, &opts.work);
    // CC=... among the make variables replaces the recorded compiler (ccache, distcc).
    let cc: Option<String> = opts
        .make_vars
        .iter()
        .find_map(|v| v.strip_prefix("CC=").map(str::to_string));
    let orig_dir = work.join("orig");
    let patched_dir = work.join("patched");
    // (object, record, patched?)
    let jobs: Vec<(String, CmdFile, bool)> = objects
        .iter()
        .flat_map(|(o, c)| [(o.clone(), c.clone(), false), (o.clone(), c.clone(), true)])
        .collect();
    let bar = &*opts.progress;
    bar.begin_items("compiling", jobs.len() as u64);
    let results: Vec<Result<(String, bool, crate::compile::Compiled)>> = pool.install(|| {
        use rayon::prelude::*;
        jobs.par_iter()
            .map(|(o, c, patched)| {
                let _tick = Tick(bar);
                let (variant, dir) = if *patched {
                    (Variant::Patched(src_copy.to_path_buf()), &patched_dir)
                } else {
                    (Variant::Original, &orig_dir)
                };
                compile(tree, c, &variant, dir, cc.as_deref(), Some(include_dir))
                    .map(|p| (o.clone(), *patched, p))
            })
            .collect()
    });
    bar.end_items();
    let mut halves: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    for r in results {
        let (o, patched, c) = r?;
        for w in c.warnings {
            let w = format!("compiling {o}: {w}");
            if !report.warnings.contains(&w) {
                report.warnings.push(w);
            }
        }
        let p = c.path;
        let e = halves.entry(o).or_default();
        if patched {
            e.1 = Some(p);
        } else {
            e.0 = Some(p);
        }
    }
    halves
        .into_iter()
        .map(|(object, halves)| match halves {
            (Some(orig), Some(patched)) => Ok((object, ObjectPair { orig, patched })),
            _ => Err(format!("{object}: one of its two builds is missing").into()),
        })
        .collect()
}

/// Export CRCs the patch changes: the module keeps the running kernel's (it links against
/// its Module.symvers), but the author must know (a type layout may have changed).
fn check_crcs(
    opts: &BuildOptions,
    objects: &BTreeMap<String, CmdFile>,
    pairs: &BTreeMap<String, ObjectPair>,
    src_copy: &Path,
    include_dir: &Path,
    report: &mut BuildReport,
) {
    let (tree, work) = (&opts.tree, &opts.work);
    // Export CRCs the patch changes: the module keeps the running kernel's (it links against
    // its Module.symvers), but the author must know (a type layout may have changed).
    for object in pairs.keys() {
        let crc_work = work.join("crc").join(object);
        match crate::crcs::changed_crcs(
            tree,
            &objects[object],
            src_copy,
            &crc_work,
            Some(include_dir),
        ) {
            Ok(changed) if !changed.is_empty() => report.warnings.push(format!(
                "{object}: the patch changes the export CRC of {}: the module keeps the running kernel's CRCs (it links against its Module.symvers) and loads, but a changed CRC can mean a changed type layout: make sure these symbols' types did not change",
                changed.join(", ")
            )),
            Ok(_) => {}
            Err(e) => report.warnings.push(format!("cannot compare export CRCs: {e}")),
        }
    }
}

/// Diff every pair, in parallel, with the symbol positions of the binary each belongs to.
fn diff_pairs(
    opts: &BuildOptions,
    objects: &BTreeMap<String, CmdFile>,
    pairs: &BTreeMap<String, ObjectPair>,
    image: Option<Arc<klpforge_module::kallsyms::ImageSympos>>,
    pool: &rayon::ThreadPool,
) -> Result<Vec<(String, DiffRun)>> {
    let (tree, work) = (&opts.tree, &opts.work);
    let symvers = load_symvers(opts)?;
    let vm_sympos: Arc<dyn klpforge_diff::klp::SymposSource> = match image {
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
            .map(|(object, pair)| {
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
                    // One compilation unit: other objects may use its global symbols.
                    whole: false,
                };
                (
                    object.clone(),
                    diff_object(object, &pair.orig, &pair.patched, &dopts, &diff_dir),
                )
            })
            .collect()
    });
    Ok(outcomes)
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
