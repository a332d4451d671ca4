//! `klpforge module`, `klpforge post-link` and `klpforge convert`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit::Exit;

use anyhow::{anyhow, Context as _, Result};
use clap::Args;
use klpforge_diff::Symvers;
use klpforge_elf::ElfFile;
use klpforge_module::assemble::{build_module, ModuleOptions};
use klpforge_module::kallsyms::SymbolIndex;

/// Arguments of `klpforge module`.
#[derive(Args, Debug)]
pub struct ModuleArgs {
    /// Diff objects written by `klpforge diff`.
    #[arg(required = true)]
    pub diffs: Vec<PathBuf>,
    /// The kernel build directory (configured and built; `O=` directory for out-of-tree builds).
    #[arg(long, value_name = "DIR")]
    pub kernel: PathBuf,
    /// Output module (default: NAME.ko in the current directory).
    #[arg(short = 'o', long = "output", value_name = "OUT.ko")]
    pub out: Option<PathBuf>,
    /// Module name (default: klp_ plus the first diff object's name), sanitised to
    /// [A-Za-z0-9_] and 55 characters.
    #[arg(long)]
    pub name: Option<String>,
    /// Do not replace earlier livepatches (klp_patch.replace = false).
    #[arg(long)]
    pub no_replace: bool,
    /// Keep kbuild's work directory here.
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    /// Parallel make jobs (default: the number of CPUs).
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub sign: crate::sign::SignArgs,
    /// Variables passed to make (CC=..., LLVM=1).
    #[arg(long = "make-var", value_name = "VAR=VALUE")]
    pub make_vars: Vec<String>,
}

/// Arguments of `klpforge post-link`.
#[derive(Args, Debug)]
pub struct PostLinkArgs {
    /// The linked module (rewritten in place unless -o is given).
    pub module: PathBuf,
    /// Write the result here instead.
    #[arg(short = 'o', long = "output")]
    pub out: Option<PathBuf>,
}

/// Arguments of `klpforge convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The livepatch module built by kbuild (rewritten in place unless -o is given).
    pub module: PathBuf,
    /// The target's linked image: vmlinux, or the module being patched (with --objname).
    #[arg(long, value_name = "FILE")]
    pub vmlinux: PathBuf,
    /// Module.symvers: exports of vmlinux stay normal relocations (default: the exports
    /// recorded in the target image's __ksymtab_* symbols).
    #[arg(long, value_name = "FILE")]
    pub symvers: Option<PathBuf>,
    /// The object being patched: vmlinux or a module name.
    #[arg(long, default_value = "vmlinux")]
    pub objname: String,
    /// Write the result here instead.
    #[arg(short = 'o', long = "output")]
    pub out: Option<PathBuf>,
}

/// Run `klpforge module`.
pub fn run_module(args: ModuleArgs) -> Result<ExitCode> {
    let opts = ModuleOptions {
        kernel: args.kernel,
        out: args.out,
        name: args.name,
        replace: !args.no_replace,
        make_vars: args.make_vars,
        work: args.work,
        jobs: crate::jobs(args.jobs),
        sign: args.sign.key_and_cert()?,
        init_cache: Some(klpforge_driver::prepare::init_cache()),
        probe_cache: std::env::current_exe()
            .ok()
            .map(klpforge_driver::prepare::probe_cache),
    };
    let report = build_module(&args.diffs, &opts).map_err(|e| anyhow!(e))?;
    for w in &report.warnings {
        eprintln!("klpforge: warning: kbuild: {w}");
    }
    for (sec, n) in &report.post_link.klp_sections {
        println!("{sec}: {n} klp relocation(s)");
    }
    println!(
        "module {} written to {}",
        report.name,
        report.path.display()
    );
    Ok(Exit::Success.into())
}

/// Run `klpforge post-link`.
pub fn run_post_link(args: PostLinkArgs) -> Result<ExitCode> {
    let file = ElfFile::open(&args.module)?;
    let mut obj = file.parse()?;
    let report = klpforge_module::postlink::post_link(&mut obj)
        .map_err(|e| anyhow!("{}: {e}", args.module.display()))?;
    let dest = args.out.unwrap_or_else(|| args.module.clone());
    klpforge_elf::write::write_file(&obj, &dest).map_err(|e| anyhow!("{}: {e}", dest.display()))?;
    if report.already_done {
        println!("{}: already post-linked; checked", args.module.display());
    }
    for (sec, n) in &report.klp_sections {
        println!("{sec}: {n} klp relocation(s)");
    }
    Ok(Exit::Success.into())
}

/// Run `klpforge convert`.
pub fn run_convert(args: ConvertArgs) -> Result<ExitCode> {
    let symvers = match &args.symvers {
        Some(p) => Symvers::parse(
            &std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?,
        )
        .map_err(|e| anyhow!("{}: {e}", p.display()))?,
        None => Symvers::default(),
    };
    let target_file = ElfFile::open(&args.vmlinux)?;
    let target = target_file.parse()?;
    let index = SymbolIndex::new(&target);
    // Without Module.symvers, the target's own export table says what is exported.
    let symvers = if args.symvers.is_none() && args.objname == "vmlinux" {
        Symvers::from_names(index.exported_names(), "vmlinux")
    } else {
        symvers
    };
    let file = ElfFile::open(&args.module)?;
    let mut obj = file.parse()?;
    let report = klpforge_module::convert::convert(&mut obj, &index, &args.objname, &symvers)
        .map_err(|e| {
            anyhow!(
                "{}: {}",
                args.module.display(),
                e.to_string().replace('\n', "; ")
            )
        })?;
    let dest = args.out.unwrap_or_else(|| args.module.clone());
    klpforge_elf::write::write_file(&obj, &dest).map_err(|e| anyhow!("{}: {e}", dest.display()))?;
    for (name, klp) in &report.converted {
        println!("{name} -> {klp}");
    }
    println!(
        "{} klp relocation(s) written to {}",
        report.relocations,
        dest.display()
    );
    Ok(Exit::Success.into())
}
