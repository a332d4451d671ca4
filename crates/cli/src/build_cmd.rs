//! `klpforge fix-lines`: the patch-rewriting step of `klpforge build`, on its own.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit::Exit;

use anyhow::{anyhow, Context as _, Result};
use clap::Args;

/// Arguments of `klpforge fix-lines`.
#[derive(Args, Debug)]
pub struct FixLinesArgs {
    /// The patch to rewrite.
    pub patch: PathBuf,
    /// Write the result here (default: standard output).
    #[arg(short = 'o', long = "output")]
    pub out: Option<PathBuf>,
}

/// Run `klpforge fix-lines`.
pub fn run_fix_lines(args: FixLinesArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.patch)
        .with_context(|| format!("{}: cannot read", args.patch.display()))?;
    let mut patch = klpforge_driver::patch::parse(&text)
        .map_err(|e| anyhow!("{}: {e}", args.patch.display()))?;
    let n = klpforge_driver::fixlines::fix_lines(&mut patch);
    let out = klpforge_driver::patch::print(&patch);
    match &args.out {
        Some(p) => {
            std::fs::write(p, out).with_context(|| format!("{}: cannot write", p.display()))?;
            eprintln!("{n} #line directive(s) inserted");
        }
        None => print!("{out}"),
    }
    Ok(Exit::Success.into())
}

/// Arguments of `klpforge build`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 = module built; 3 = nothing to patch; 4 = refused (reasons printed); \
1 = error; 2 = usage error.\n\nThe source and build trees are only read: objects are compiled by replaying \
kbuild's recorded commands into the work directory, so an interrupted or failed build leaves them untouched."
)]
pub struct BuildArgs {
    /// Patches to apply (unified diffs, -p1).
    #[arg(required = true)]
    pub patches: Vec<PathBuf>,
    /// The kernel: a distribution's by name (debian:<release>, or running: fetched and
    /// prepared once, then cached), or a prepared kernel's directory or release string (see
    /// klpforge prepare). Replaces --src, --build, --vmlinux and --symvers.
    #[arg(long, value_name = "DIR|RELEASE", conflicts_with_all = ["build", "vmlinux", "symvers"])]
    pub kernel: Option<String>,
    /// The kernel source tree.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub src: PathBuf,
    /// The build (O=) tree (default: the source tree).
    #[arg(long, value_name = "DIR")]
    pub build: Option<PathBuf>,
    /// The original kernel's vmlinux, for symbol positions (default: BUILD/vmlinux).
    #[arg(long, value_name = "FILE")]
    pub vmlinux: Option<PathBuf>,
    /// Module.symvers (default: BUILD/Module.symvers).
    #[arg(long, value_name = "FILE")]
    pub symvers: Option<PathBuf>,
    /// Output module.
    #[arg(short = 'o', long = "output", value_name = "OUT.ko")]
    pub out: Option<PathBuf>,
    /// Module name (default: klp_ plus the first patch's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Parallel jobs (default: the number of CPUs).
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Do not replace earlier livepatches.
    #[arg(long)]
    pub no_replace: bool,
    /// Work directory for intermediate files (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    pub keep: bool,
    /// tu: compile only the affected objects (default). vmlinux: rebuild vmlinux.o in a
    /// private copy of the tree and diff it whole (the upstream approach, for LTO builds;
    /// vmlinux only, the build tree must be inside the source tree).
    #[arg(long, default_value = "tu", value_parser = ["tu", "vmlinux"])]
    pub mode: String,
    /// Write a machine-readable report.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Do not check that the compiler is the one that built the kernel.
    #[arg(long)]
    pub skip_compiler_check: bool,
    /// Accept a changed function that stopped using a function-scope static of the running
    /// kernel (its state is not carried over) with a warning instead of refusing it.
    #[arg(long)]
    pub accept_fresh_statics: bool,
    #[command(flatten)]
    pub sign: crate::sign::SignArgs,
    /// Variables for make when building the module (CC=..., LLVM=1).
    #[arg(long = "make-var", value_name = "VAR=VALUE")]
    pub make_vars: Vec<String>,
}

/// Run `klpforge build`.
pub fn run_build(args: BuildArgs) -> Result<ExitCode> {
    use klpforge_driver::driver::{build, cleanup, default_work_dir, BuildOptions, BuildResult};
    let prepared = match &args.kernel {
        Some(k) if k == "running" || k.contains(':') => Some(prepare_distro(
            k,
            &cache_root(None),
            crate::jobs(args.jobs),
        )?),
        Some(k) => Some(find_prepared(k)?),
        None => None,
    };
    let (src, build_dir) = match &prepared {
        Some(k) => (k.inputs.src.clone(), k.build_dir()),
        None => {
            let src = std::fs::canonicalize(&args.src)
                .with_context(|| format!("{}", args.src.display()))?;
            let build_dir = match &args.build {
                Some(b) => std::fs::canonicalize(b).with_context(|| format!("{}", b.display()))?,
                None => src.clone(),
            };
            (src, build_dir)
        }
    };
    // Absolute: later steps run tools in other directories (patch -d, make -C).
    let work = args.work.clone().unwrap_or_else(default_work_dir);
    let work = std::path::absolute(&work).with_context(|| format!("{}", work.display()))?;
    let opts = BuildOptions {
        tree: klpforge_driver::kbuild::KernelTree {
            src,
            build: build_dir.clone(),
        },
        vmlinux: prepared.as_ref().map_or_else(
            || {
                args.vmlinux
                    .clone()
                    .unwrap_or_else(|| build_dir.join("vmlinux"))
            },
            |k| k.inputs.vmlinux.clone(),
        ),
        symvers: prepared.as_ref().map_or_else(
            || {
                args.symvers
                    .clone()
                    .unwrap_or_else(|| build_dir.join("Module.symvers"))
            },
            |k| k.inputs.symvers.clone(),
        ),
        patches: args.patches.clone(),
        out: args.out.clone(),
        name: args.name.clone(),
        jobs: crate::jobs(args.jobs),
        replace: !args.no_replace,
        work: work.clone(),
        skip_compiler_check: args.skip_compiler_check,
        make_vars: args.make_vars.clone(),
        progress: std::sync::Arc::new(crate::progress::CliProgress::default()),
        vmlinux_mode: args.mode == "vmlinux",
        accept_fresh_statics: args.accept_fresh_statics,
        prepared,
        sign: args.sign.key_and_cert()?,
        probe_answerer: std::env::current_exe().ok(),
    };
    let result = build(&opts);
    let keep = args.keep || args.work.is_some();
    let (outcome, report) = match result {
        Ok(r) => r,
        Err(e) => {
            cleanup(&work, keep);
            return Err(anyhow!(e));
        }
    };
    for w in &report.warnings {
        eprintln!("klpforge: warning: {w}");
    }
    let times: Vec<String> = report
        .timings
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}s"))
        .collect();
    let changed = report
        .diffs
        .values()
        .filter(|d| d.result == klpforge_diff::DiffResult::Changed)
        .count();
    println!(
        "objects recompiled: {}; functionally changed: {changed}; time: {}",
        report.objects.len(),
        times.join(", ")
    );
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("{}", p.display()))?;
    }
    cleanup(&work, keep);
    Ok(match outcome {
        BuildResult::Built(path) => {
            println!("livepatch module written to {}", path.display());
            Exit::Success.into()
        }
        BuildResult::NoChange => {
            println!("no functional change: nothing to patch");
            Exit::NoChange.into()
        }
        BuildResult::Refused(reasons) => {
            for r in reasons {
                eprintln!("klpforge: refused: {r}");
            }
            Exit::Refused.into()
        }
    })
}

/// A prepared kernel named on the command line: a directory holding `kernel.json`, or a
/// release string in the default cache.
fn find_prepared(spec: &str) -> Result<klpforge_driver::prepare::PreparedKernel> {
    use klpforge_driver::prepare::{default_cache, PreparedKernel, KERNEL_JSON};
    let as_dir = PathBuf::from(spec);
    let dir = if as_dir.join(KERNEL_JSON).exists() {
        as_dir
    } else {
        default_cache().join(spec)
    };
    PreparedKernel::load(&dir).map_err(|e| anyhow!(e))
}

/// Arguments of `klpforge prepare`.
#[derive(Args, Debug)]
#[command(
    after_help = "Makes a private O= object tree of the kernel with `make olddefconfig` and `make modules_prepare` \
only (no kernel build), checks that it reproduces the release string, and caches it. `klpforge build --kernel RELEASE` \
then compiles only what a patch touches in it. The source tree is only read. With --kernel, the files come from \
the distribution's packages (downloaded and unpacked into the cache, never installed): debian:<release>, or running \
for this machine's kernel."
)]
pub struct PrepareArgs {
    /// A distribution kernel: debian:<release>, or running.
    #[arg(long, value_name = "DISTRO:RELEASE|running", conflicts_with_all = ["src", "config", "symvers", "release", "vmlinux", "modules"])]
    pub kernel: Option<String>,
    /// The kernel source tree (the distribution's source package, unpacked).
    #[arg(long, value_name = "DIR", required_unless_present = "kernel")]
    pub src: Option<PathBuf>,
    /// The kernel's configuration (/boot/config-RELEASE or the headers' .config).
    #[arg(long, value_name = "FILE", required_unless_present = "kernel")]
    pub config: Option<PathBuf>,
    /// The kernel's Module.symvers.
    #[arg(long, value_name = "FILE", required_unless_present = "kernel")]
    pub symvers: Option<PathBuf>,
    /// The kernel's release string (uname -r).
    #[arg(long, required_unless_present = "kernel")]
    pub release: Option<String>,
    /// The kernel's vmlinux with symbols (the distribution's debug package has it).
    #[arg(long, value_name = "FILE", required_unless_present = "kernel")]
    pub vmlinux: Option<PathBuf>,
    /// A directory of the kernel's modules with symbols (searched by name).
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// The cache of prepared kernels and downloaded packages (default: ~/.cache/klpforge).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Parallel jobs (default: the number of CPUs).
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
}

/// The cache root: prepared kernels in `kernels/`, distribution packages by distribution.
fn cache_root(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        klpforge_driver::prepare::default_cache()
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
    })
}

/// Prepare a distribution kernel by name (fetching its packages as needed).
fn prepare_distro(
    spec: &str,
    cache: &std::path::Path,
    jobs: usize,
) -> Result<klpforge_driver::prepare::PreparedKernel> {
    let say = |s: &str| eprintln!("klpforge: {s}");
    let inputs = klpforge_driver::distro::resolve(spec, cache, &say).map_err(|e| anyhow!(e))?;
    klpforge_driver::prepare::prepare(&inputs, &cache.join("kernels"), jobs, &say)
        .map_err(|e| anyhow!(e))
}

/// Run `klpforge prepare`: prints the prepared kernel's directory on standard output.
pub fn run_prepare(args: PrepareArgs) -> Result<ExitCode> {
    use klpforge_driver::prepare::{prepare, KernelInputs};
    let cache = cache_root(args.cache);
    let k = match &args.kernel {
        Some(spec) => prepare_distro(spec, &cache, crate::jobs(args.jobs))?,
        None => {
            let need = |v: Option<PathBuf>, what: &str| {
                v.ok_or_else(|| anyhow!("--{what} is required without --kernel"))
            };
            let inputs = KernelInputs {
                src: need(args.src, "src")?,
                config: need(args.config, "config")?,
                symvers: need(args.symvers, "symvers")?,
                release: args
                    .release
                    .ok_or_else(|| anyhow!("--release is required"))?,
                vmlinux: need(args.vmlinux, "vmlinux")?,
                modules: args.modules,
                module_archive: None,
            };
            prepare(
                &inputs,
                &cache.join("kernels"),
                crate::jobs(args.jobs),
                &|s| eprintln!("klpforge: {s}"),
            )
            .map_err(|e| anyhow!(e))?
        }
    };
    println!("{}", k.dir.display());
    Ok(Exit::Success.into())
}
