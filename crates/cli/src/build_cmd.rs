//! `klpforge fix-lines`: the patch-rewriting step of `klpforge build`, on its own.

use std::path::PathBuf;
use std::process::ExitCode;

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
    let mut patch = klpforge_build::patch::parse(&text)
        .map_err(|e| anyhow!("{}: {e}", args.patch.display()))?;
    let n = klpforge_build::fixlines::fix_lines(&mut patch);
    let out = klpforge_build::patch::print(&patch);
    match &args.out {
        Some(p) => {
            std::fs::write(p, out).with_context(|| format!("{}: cannot write", p.display()))?;
            eprintln!("{n} #line directive(s) inserted");
        }
        None => print!("{out}"),
    }
    Ok(ExitCode::SUCCESS)
}
