//! The stages both build modes share (translation-unit mode in [`crate::driver`], vmlinux
//! mode in [`crate::vmlinux_mode`]): the kernel's exports and symbol positions, the diff of
//! one pair of objects, collecting what the diffs found, and finishing with the module.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{DriverError, Result};
use crate::options::{BuildOptions, BuildReport, BuildResult};

/// What diffing one object gave: the diff object (if any), the report, refusal reasons.
pub(crate) type DiffRun = Result<(Option<PathBuf>, klpforge_diff::Report, Vec<String>)>;

/// Module.symvers and the `sympos` source of the original vmlinux.
pub(crate) fn load_exports(
    opts: &BuildOptions,
) -> Result<(
    klpforge_diff::Symvers,
    Arc<dyn klpforge_diff::klp::SymposSource>,
)> {
    Ok((load_symvers(opts)?, load_image(opts)?))
}

/// Module.symvers of the kernel.
pub(crate) fn load_symvers(opts: &BuildOptions) -> Result<klpforge_diff::Symvers> {
    let text = std::fs::read_to_string(&opts.symvers).map_err(DriverError::io(&opts.symvers))?;
    klpforge_diff::Symvers::parse(&text)
        .map_err(|e| format!("{}: {e}", opts.symvers.display()).into())
}

/// The kallsyms view of the original vmlinux.
pub(crate) fn load_image(
    opts: &BuildOptions,
) -> Result<Arc<klpforge_module::kallsyms::ImageSympos>> {
    let vm_file = klpforge_elf::ElfFile::open(&opts.vmlinux).map_err(|e| e.to_string())?;
    let vm = vm_file.parse().map_err(|e| e.to_string())?;
    Ok(Arc::new(klpforge_module::kallsyms::ImageSympos::new(&vm)))
}

/// The `sympos` source of the module `object` is linked into: its `.ko` with a full symbol
/// table (FILE symbols included), or an error saying what is missing.
pub(crate) fn module_symbols(
    object: &str,
    ko: &Path,
) -> Result<Arc<dyn klpforge_diff::klp::SymposSource>> {
    let file = klpforge_elf::ElfFile::open(ko).map_err(|e| {
        format!(
            "{object} is part of a module, whose symbol table is needed for symbol positions: {}: {e} (build the module, or give the unstripped one, e.g. from the distribution's -dbg package)",
            ko.display()
        )
    })?;
    let m = file.parse().map_err(|e| format!("{}: {e}", ko.display()))?;
    if !m
        .symbols()
        .any(|(_, s)| s.kind() == klpforge_elf::elf::STT_FILE.0)
    {
        return Err(format!(
            "{}: stripped module (no FILE symbols): symbol positions cannot be found; give the unstripped module (the distribution's -dbg package has it)",
            ko.display()
        ).into());
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
            Ok((Some(out), rep, Vec::new()))
        }
        klpforge_diff::Outcome::NoChange(rep) => Ok((None, rep, Vec::new())),
        klpforge_diff::Outcome::Refused(rep) => {
            let reasons = rep
                .refusals
                .iter()
                .map(|r| format!("{label}: {}: {} ({})", r.symbol, r.reason, r.remedy))
                .collect();
            Ok((None, rep, reasons))
        }
    }
}

/// Print the findings of every diffed object and record them in the report; returns the diff
/// objects and the refusal reasons.
pub(crate) fn collect_outcomes(
    opts: &BuildOptions,
    report: &mut BuildReport,
    outcomes: Vec<(String, DiffRun)>,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let mut diffs = Vec::new();
    let mut refusals = Vec::new();
    for (object, r) in outcomes {
        let (out, diff, reasons) = r?;
        for f in &diff.changed_functions {
            opts.progress.finding(&format!(
                "{object}: changed function: {} ({})",
                f.name, f.reason
            ));
        }
        for f in &diff.new_functions {
            opts.progress
                .finding(&format!("{object}: new function: {f}"));
        }
        for w in &diff.warnings {
            report.warnings.push(format!("{object}: {w}"));
        }
        report.diffs.insert(object, diff);
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
) -> Result<(BuildResult, BuildReport)> {
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
    opts.progress.step("building the module");
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
        init_cache: Some(crate::prepare::init_cache()),
        probe_cache: opts.probe_answerer.clone().map(crate::prepare::probe_cache),
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
pub(crate) fn in_image(object: &Path, index: &klpforge_module::kallsyms::SymbolIndex) -> bool {
    let Ok(file) = klpforge_elf::ElfFile::open(object) else {
        return false;
    };
    let Ok(obj) = file.parse() else { return false };
    let found = obj.symbols().any(|(_, s)| {
        s.kind() == klpforge_elf::elf::STT_FUNC.0
            && s.section().is_some()
            && !index.lookup(&s.name_lossy()).is_empty()
    });
    found
}

/// make variables for the module build: the user's, and the Module.symvers given when the
/// build tree has none (modpost reads only `$(objtree)/Module.symvers` by itself; given both,
/// it would see every export twice).
pub(crate) fn module_make_vars(opts: &BuildOptions) -> Vec<String> {
    let mut vars = opts.make_vars.clone();
    vars.extend(cross_make_vars(opts, std::env::consts::ARCH));
    let in_tree = opts.tree.build.join("Module.symvers");
    if !in_tree.exists() {
        let abs = std::fs::canonicalize(&opts.symvers).unwrap_or_else(|_| opts.symvers.clone());
        if !vars.iter().any(|v| v.starts_with("KBUILD_EXTRA_SYMBOLS=")) {
            vars.push(format!("KBUILD_EXTRA_SYMBOLS={}", abs.display()));
        }
    }
    vars
}

/// `ARCH=` and `CROSS_COMPILE=` for a kernel of another architecture than `host` (Rust's
/// name: `x86_64`, `powerpc64`, ...), as kbuild needs them to link a module there: the
/// architecture from the configuration, the prefix from the compiler it names
/// (`powerpc64le-linux-gnu-gcc` gives `powerpc64le-linux-gnu-`). The user's own win.
pub(crate) fn cross_make_vars(opts: &BuildOptions, host: &str) -> Vec<String> {
    let Some(srcarch) = crate::preflight::kernel_srcarch(&opts.tree) else {
        return Vec::new();
    };
    let host_srcarch = match host {
        "x86_64" | "x86" => "x86",
        "aarch64" => "arm64",
        "powerpc64" | "powerpc" => "powerpc",
        "s390x" => "s390",
        "loongarch64" => "loongarch",
        other => other,
    };
    let given = |key: &str| opts.make_vars.iter().any(|v| v.starts_with(key));
    let mut vars = Vec::new();
    if srcarch == host_srcarch {
        return vars;
    }
    if !given("ARCH=") {
        vars.push(format!("ARCH={srcarch}"));
    }
    let cc = crate::preflight::config(&opts.tree)
        .value("CONFIG_CC_VERSION_TEXT")
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    if let Some(prefix) = cc.strip_suffix("gcc").filter(|p| p.ends_with('-')) {
        if !given("CROSS_COMPILE=") {
            vars.push(format!("CROSS_COMPILE={prefix}"));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kbuild::KernelTree;

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
            progress: std::sync::Arc::new(crate::progress::Silent),
            vmlinux_mode: false,
            accept_fresh_statics: false,
            prepared: None,
            sign: None,
            probe_answerer: None,
        }
    }

    /// stock-debian.md 3: a Module.symvers given elsewhere reaches modpost when the build tree
    /// has none, and is not given twice when it has one.
    #[test]
    fn cross_kernels_get_arch_and_cross_compile() {
        let dir = std::env::temp_dir().join(format!("klpforge-cross-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(".config"),
            "CONFIG_CC_VERSION_TEXT=\"powerpc64le-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0\"\nCONFIG_PPC=y\n",
        )
        .unwrap();
        let o = opts(&dir, &dir.join("Module.symvers"));
        assert_eq!(
            cross_make_vars(&o, "x86_64"),
            ["ARCH=powerpc", "CROSS_COMPILE=powerpc64le-linux-gnu-"]
        );
        assert!(
            cross_make_vars(&o, "powerpc64").is_empty(),
            "a native build"
        );
        // The user's own settings win.
        let mut o = o;
        o.make_vars = vec!["ARCH=powerpc".into(), "CROSS_COMPILE=ccache-ppc-".into()];
        assert!(cross_make_vars(&o, "x86_64").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

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
}
