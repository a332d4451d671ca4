//! `klpforge diff`: compare two builds of an object and extract the changed functions.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit::Exit;

use anyhow::{Context as _, Result};
use clap::Args;
use klpforge_diff::{diff, DiffOptions, Outcome, Report, Symvers};
use klpforge_elf::ElfFile;

/// Arguments of `klpforge diff`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 = OUT written; 3 = no functional change (OUT not written); \
4 = the change cannot be live-patched (reasons printed); 1 = bad input or other error; 2 = usage error."
)]
pub struct DiffArgs {
    /// The object as built from the original source (with -ffunction-sections -fdata-sections).
    pub orig: PathBuf,
    /// The same object built from the patched source.
    pub patched: PathBuf,
    /// Where to write the diff object.
    pub out: PathBuf,
    /// Module.symvers of the kernel build: which references stay normal relocations. Without
    /// it every undefined global counts as exported by vmlinux.
    #[arg(long, value_name = "FILE")]
    pub symvers: Option<PathBuf>,
    /// The object being patched: `vmlinux` or a module name.
    #[arg(long, value_name = "NAME", default_value = "vmlinux")]
    pub objname: String,
    /// The linked image of the patched object (vmlinux or the module's .ko): klp symbol
    /// positions (sympos) are taken from its kallsyms order instead of the original object.
    #[arg(long, value_name = "FILE")]
    pub vmlinux: Option<PathBuf>,
    /// Write a machine-readable report.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print correlation and cloning decisions on stderr.
    #[arg(long)]
    pub debug: bool,
    /// Accept a changed function that stopped using a function-scope static of the running
    /// kernel (its state is not carried over) with a warning instead of refusing it.
    #[arg(long)]
    pub accept_fresh_statics: bool,
    /// The objects are whole linked images (vmlinux.o, a module linked with ld -r), holding
    /// every user of their global symbols. Without it they count as one compilation unit, and
    /// changed global read-only data is refused (other objects may read it)
    #[arg(long)]
    pub whole: bool,
}

fn print_report(report: &Report) {
    for f in &report.changed_functions {
        println!("changed function: {}", f.name);
    }
    for f in &report.new_functions {
        println!("new function: {}", f);
    }
    for c in &report.callbacks {
        println!("callback: {c}");
    }
    for w in &report.warnings {
        eprintln!("klpforge: warning: {w}");
    }
    for r in &report.refusals {
        eprintln!(
            "klpforge: refused: {}: {} ({})",
            r.symbol, r.reason, r.remedy
        );
    }
}

/// Run `klpforge diff`.
pub fn run(args: DiffArgs) -> Result<ExitCode> {
    let symvers = match &args.symvers {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            Symvers::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Symvers::assume_all_vmlinux(),
    };
    let image = match &args.vmlinux {
        Some(p) => {
            let f = ElfFile::open(p)?;
            let obj = f.parse()?;
            Some(
                std::sync::Arc::new(klpforge_module::kallsyms::ImageSympos::new(&obj))
                    as std::sync::Arc<dyn klpforge_diff::klp::SymposSource>,
            )
        }
        None => None,
    };
    let opts = DiffOptions {
        objname: args.objname.clone(),
        symvers,
        debug: args.debug,
        sympos: image,
        accept_fresh_statics: args.accept_fresh_statics,
        whole: args.whole,
    };
    let orig_file = ElfFile::open(&args.orig)?;
    let patched_file = ElfFile::open(&args.patched)?;
    // Side by side only for large inputs (a vmlinux.o): threads cost more than a small pair.
    let large = std::fs::metadata(&args.orig).map_or(0, |m| m.len()) > 4 << 20;
    let (orig, patched) = if large {
        rayon::join(|| orig_file.parse(), || patched_file.parse())
    } else {
        (orig_file.parse(), patched_file.parse())
    };
    let (orig, patched) = (orig?, patched?);
    let outcome = diff(&orig, &patched, &opts).map_err(|e| {
        anyhow::anyhow!("{} vs {}: {e}", args.orig.display(), args.patched.display())
    })?;
    // The process ends after the report: the system reclaims the two models (for a kernel,
    // hundreds of thousands of allocations) faster than freeing them one by one.
    std::mem::forget(orig);
    std::mem::forget(patched);
    let (report, code) = match outcome {
        Outcome::Changed(obj, report) => {
            klpforge_elf::write::write_file(&obj, &args.out)
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.out.display()))?;
            (report, Exit::Success)
        }
        Outcome::NoChange(report) => {
            println!("no functional change: nothing to patch");
            (report, Exit::NoChange)
        }
        Outcome::Refused(report) => (report, Exit::Refused),
    };
    print_report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(code.into())
}
