//! `klpforge-fuzz`: run a fuzzing campaign against the ELF reader or the differ.
//!
//! ```text
//! klpforge-fuzz <reader|differ|all> --executions N [--seed S] [--jobs J] [--crash-dir DIR] [--corpus DIR]
//! klpforge-fuzz reader --replay FILE.o
//! klpforge-fuzz differ --replay ORIG.o PATCHED.o
//! ```
//!
//! Prints one summary line per target and exits with status 1 if any execution crashed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use klpforge_fuzz::alloc::LimitAlloc;
use klpforge_fuzz::{Config, Seeds, Target};

#[global_allocator]
static ALLOC: LimitAlloc = LimitAlloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    /// The ELF reader, a walk of the model and the writer.
    Reader,
    /// The whole differ on mutated pairs, then the writer.
    Differ,
    /// Both, one after the other.
    All,
}

/// Fuzz the ELF reader or the whole differ with mutated corpus objects; a panic is a crash.
#[derive(Parser, Debug)]
#[command(name = "klpforge-fuzz", version)]
struct Cli {
    /// What to fuzz.
    #[arg(value_enum)]
    target: Which,
    /// Executions per target.
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    executions: u64,
    /// Campaign seed (decimal or 0x-prefixed hexadecimal).
    #[arg(long, default_value = "1", value_parser = parse_u64)]
    seed: u64,
    /// Number of the first execution (with --executions 1, reruns one execution).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Worker threads [default: the number of CPUs].
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Where crashing inputs are saved [default: <workspace>/target/fuzz-crashes].
    #[arg(long)]
    crash_dir: Option<PathBuf>,
    /// The peer corpus [default: $KLPFORGE_CORPUS, else ../shared/corpus/kpatch-unit next to
    /// the workspace].
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Inputs saved per panic location.
    #[arg(long, default_value_t = 5)]
    saved_per_site: usize,
    /// An execution running longer than this many seconds is a crash.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Largest single allocation in MiB; a larger one is a crash (saved, then abort).
    #[arg(long, default_value_t = 1024)]
    max_alloc_mib: usize,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 10)]
    progress: u64,
    /// Print each execution's number on stderr before running it.
    #[arg(long)]
    trace: bool,
    /// Run the target once on saved files instead (reader: FILE; differ: ORIG PATCHED),
    /// panicking as the code does; RUST_BACKTRACE=1 shows where.
    #[arg(long, num_args = 1..=2, value_name = "FILE")]
    replay: Vec<PathBuf>,
    /// With --replay: minimise the crash against these seeds (one per replayed file) and
    /// save the result next to it as `*.min.*`.
    #[arg(long, num_args = 1..=2, value_name = "SEED", requires = "replay")]
    minimize: Vec<PathBuf>,
}

/// Minimise a crash, save the files as `*.min.*` and describe what is left.
fn minimize(
    target: Target,
    paths: &[PathBuf],
    files: Vec<Vec<u8>>,
    seeds: &[PathBuf],
) -> Result<bool> {
    let bases = seeds
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let min = klpforge_fuzz::minimize::minimize(target, files, &bases)?;
    println!("minimised: panic at {}: {}", min.location, min.message);
    for ((path, bytes), (base, hunks)) in paths.iter().zip(&min.files).zip(&min.changes) {
        let name = path.to_string_lossy();
        let out = match [".ORIG.o", ".PATCHED.o", ".o"]
            .iter()
            .find_map(|s| name.strip_suffix(s).map(|stem| format!("{stem}.min{s}")))
        {
            Some(out) => PathBuf::from(out),
            None => PathBuf::from(format!("{name}.min")),
        };
        std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
        println!("  {}: {base} + {} byte runs", out.display(), hunks.len());
        for h in hunks {
            let hex = |b: &[u8]| {
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "    {}: {} -> {}",
                klpforge_fuzz::minimize::locate(bytes, h.offset),
                hex(&h.old),
                hex(&h.new)
            );
        }
    }
    Ok(false)
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("`{s}`: {e}"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("klpforge-fuzz: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether every execution passed.
fn run(cli: Cli) -> Result<bool> {
    let targets: &[Target] = match cli.target {
        Which::Reader => &[Target::Reader],
        Which::Differ => &[Target::Differ],
        Which::All => &[Target::Reader, Target::Differ],
    };
    klpforge_fuzz::alloc::set_oversized_handler(klpforge_fuzz::harness::oversized);
    klpforge_fuzz::alloc::set_limit(cli.max_alloc_mib.saturating_mul(1 << 20));
    if !cli.replay.is_empty() {
        let [target] = targets else {
            anyhow::bail!("--replay needs one target: reader or differ");
        };
        let files = cli
            .replay
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        if !cli.minimize.is_empty() {
            return minimize(*target, &cli.replay, files, &cli.minimize);
        }
        let verdict = klpforge_fuzz::replay(*target, &files)?;
        println!("replay {}: {} (no panic)", target.name(), verdict.name());
        return Ok(true);
    }
    let corpus = match &cli.corpus {
        Some(dir) => {
            anyhow::ensure!(dir.is_dir(), "corpus {} not found", dir.display());
            Some(dir.clone())
        }
        None => klpforge_testkit::corpus_dir(),
    };
    let seeds = Seeds::load(corpus.as_deref())?;
    let jobs = cli
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut ok = true;
    for &target in targets {
        if target == Target::Differ && seeds.pairs.is_empty() && cli.target == Which::All {
            eprintln!("fuzz differ: skipped: no seed pairs (corpus not found; set --corpus or KLPFORGE_CORPUS)");
            continue;
        }
        let mut config = Config::new(
            target,
            cli.executions,
            cli.crash_dir
                .clone()
                .unwrap_or_else(klpforge_fuzz::default_crash_dir),
        );
        config.start = cli.start;
        config.seed = cli.seed;
        config.jobs = jobs;
        config.saved_per_site = cli.saved_per_site;
        config.timeout = Duration::from_secs(cli.timeout.max(1));
        config.progress = (cli.progress > 0).then(|| Duration::from_secs(cli.progress));
        config.trace = cli.trace;
        let report = klpforge_fuzz::run(&config, &seeds)?;
        for line in report.details() {
            eprintln!("{line}");
        }
        println!("{}", report.summary());
        ok &= report.crashes == 0;
    }
    Ok(ok)
}
