//! `klpforge build --mode vmlinux`: the upstream approach, diffing the whole linked
//! `vmlinux.o` and the linked objects of changed modules, for builds where per-object
//! diffing does not fit (Clang LTO, where code only takes its final shape at link time).
//!
//! The user's trees are still only read. The build tree is copied into the work directory
//! (the source tree next to it as hard links, which is safe: sources are never written, and
//! patched files are written as new files); the patch is applied to the copy and kbuild
//! rebuilds incrementally there, with `-ffunction-sections -fdata-sections`. The original
//! `vmlinux.o` is the user's when it was built with those flags, otherwise a second copy is
//! built with them. Symbol positions come from the original vmlinux as in `tu` mode.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{DriverError, Result};
use crate::options::{BuildOptions, BuildReport, BuildResult};
use crate::stages::{collect_outcomes, diff_object, finish, load_exports, module_symbols};

/// One linked object to compare.
struct LinkedPair {
    /// Its name in the build tree (`vmlinux.o`, `fs/xfs/xfs.o`).
    label: String,
    /// The original build.
    orig: PathBuf,
    /// The patched build.
    patched: PathBuf,
    /// The livepatch object name (`vmlinux` or the module's).
    objname: String,
    /// Where its symbols' kallsyms positions come from.
    sympos: Option<Arc<dyn klpforge_diff::klp::SymposSource>>,
}

/// Whether a linked object was built with function sections (many `.text.*` sections).
fn has_function_sections(obj: &Path) -> bool {
    let Ok(file) = klpforge_elf::ElfFile::open(obj) else {
        return false;
    };
    let Ok(o) = file.parse() else { return false };
    o.sections()
        .filter(|(_, s)| s.name.starts_with(b".text."))
        .count()
        > 100
}

fn run(cmd: &mut Command, what: &str, log: &Path) -> Result<()> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    let _ = std::fs::write(log, &text);
    if !out.status.success() {
        let t = String::from_utf8_lossy(&text);
        let tail: Vec<&str> = t.lines().rev().take(15).collect();
        return Err(format!(
            "{what} failed (log {}):\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
        .into());
    }
    Ok(())
}

/// A private copy of the kernel tree: sources hard-linked, the build tree copied. Only the
/// layout kbuild itself recommends is supported: the build tree inside the source tree (for
/// example `O=build`); in-tree builds are copied whole (objects next to sources cannot be
/// hard links: the compiler rewrites them in place).
fn copy_tree(opts: &BuildOptions, dest: &Path) -> Result<PathBuf> {
    let src = &opts.tree.src;
    let build = &opts.tree.build;
    let rel_build = build
        .strip_prefix(src)
        .map_err(|_| {
            format!(
                "--mode vmlinux needs the build tree inside the source tree (O=<src>/build); {} is not inside {}",
                build.display(),
                src.display()
            )
        })?
        .to_path_buf();
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest.parent().unwrap()).map_err(|e| e.to_string())?;
    if rel_build.as_os_str().is_empty() {
        run(
            Command::new("cp").arg("-a").arg(src).arg(dest),
            "copying the tree",
            &dest.with_extension("cp.log"),
        )?;
    } else {
        run(
            Command::new("cp").arg("-al").arg(src).arg(dest),
            "linking the source tree",
            &dest.with_extension("cp.log"),
        )?;
        let b = dest.join(&rel_build);
        std::fs::remove_dir_all(&b).map_err(DriverError::io(&b))?;
        run(
            Command::new("cp").arg("-a").arg(build).arg(&b),
            "copying the build tree",
            &dest.with_extension("cp.log"),
        )?;
    }
    Ok(dest.join(rel_build))
}

/// Build `vmlinux.o` (and modules) in a copied tree.
fn make(copy_src: &Path, copy_build: &Path, opts: &BuildOptions, log: &Path) -> Result<()> {
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(copy_src);
    if copy_build != copy_src {
        cmd.arg(format!(
            "O={}",
            copy_build
                .strip_prefix(copy_src)
                .unwrap_or(copy_build)
                .display()
        ));
    }
    cmd.arg(format!("-j{}", opts.jobs.max(1)))
        .arg("KCFLAGS=-ffunction-sections -fdata-sections")
        .args(&opts.make_vars)
        // `vmlinux.o` alone does not descend into the source directories; the incremental
        // `vmlinux` build does, and leaves vmlinux.o behind. `modules` relinks the module
        // objects whose members changed.
        .arg("vmlinux")
        .arg("modules");
    run(&mut cmd, "building vmlinux and modules", log)
}

/// Run the vmlinux-mode pipeline.
pub fn build_vmlinux_mode(
    opts: &BuildOptions,
    patched_sources: &Path,
    touched: &[String],
) -> Result<(BuildResult, BuildReport)> {
    let mut report = BuildReport::default();
    let work = &opts.work;
    let t0 = Instant::now();
    // Original vmlinux.o: the user's if it has function sections, else a rebuilt copy.
    let user_vo = opts.tree.build.join("vmlinux.o");
    let orig_vo = if user_vo.exists() && has_function_sections(&user_vo) {
        user_vo
    } else {
        opts.progress.finding("the original vmlinux.o lacks function sections: rebuilding a copy with them (a full kernel build)");
        let b = copy_tree(opts, &work.join("orig-tree"))?;
        make(
            &work.join("orig-tree"),
            &b,
            opts,
            &work.join("orig-make.log"),
        )?;
        b.join("vmlinux.o")
    };
    report
        .timings
        .insert("original".into(), t0.elapsed().as_secs_f64());

    let t1 = Instant::now();
    let tree = work.join("patched-tree");
    let b = copy_tree(opts, &tree)?;
    for f in touched {
        let to = tree.join(f);
        // Replace the hard link with a new file: the user's copy is never written.
        let _ = std::fs::remove_file(&to);
        std::fs::copy(patched_sources.join(f), &to).map_err(|e| format!("{f}: {e}"))?;
    }
    make(&tree, &b, opts, &work.join("patched-make.log"))?;
    report
        .timings
        .insert("patched build".into(), t1.elapsed().as_secs_f64());

    let t2 = Instant::now();
    let (symvers, vm_sympos) = load_exports(opts)?;
    // The linked objects to compare: vmlinux.o, and every module object that changed.
    let mut pairs = vec![LinkedPair {
        label: "vmlinux.o".into(),
        orig: orig_vo.clone(),
        patched: b.join("vmlinux.o"),
        objname: "vmlinux".into(),
        sympos: Some(vm_sympos),
    }];
    let orig_build = orig_vo.parent().unwrap_or(Path::new(".")).to_path_buf();
    if let Ok(order) = std::fs::read_to_string(orig_build.join("modules.order")) {
        for m in order.lines().map(str::trim).filter(|m| !m.is_empty()) {
            let (o, p) = (orig_build.join(m), b.join(m));
            let (Ok(ob), Ok(pb)) = (std::fs::read(&o), std::fs::read(&p)) else {
                continue;
            };
            if ob == pb {
                continue;
            }
            let name = Path::new(m)
                .file_stem()
                .map(|s| s.to_string_lossy().replace('-', "_"))
                .unwrap_or_default();
            let sympos = Some(module_symbols(
                m,
                &opts.tree.build.join(m.replace(".o", ".ko")),
            )?);
            pairs.push(LinkedPair {
                label: m.to_string(),
                orig: o,
                patched: p,
                objname: name,
                sympos,
            });
        }
    }
    let diff_dir = work.join("diff");
    let mut outcomes = Vec::new();
    for pair in pairs {
        report.objects.push(pair.label.clone());
        let dopts = klpforge_diff::DiffOptions {
            objname: pair.objname,
            symvers: symvers.clone(),
            debug: false,
            sympos: pair.sympos,
            accept_fresh_statics: opts.accept_fresh_statics,
            // The whole vmlinux.o: every user of a global symbol is compared.
            whole: true,
        };
        let run = diff_object(&pair.label, &pair.orig, &pair.patched, &dopts, &diff_dir);
        outcomes.push((pair.label, run));
    }
    let (diffs, refusals) = collect_outcomes(opts, &mut report, outcomes)?;
    finish(opts, report, diffs, refusals, t2)
}
