//! Diff at kernel scale (issue 10's goals), every figure a ratio against a baseline measured
//! in the same run:
//!
//! * real `vmlinux.o` pairs (one changed function, as `klpforge build --mode vmlinux --keep`
//!   leaves them), when cached: throughput (MB/s of the larger input) and peak RSS as a
//!   multiple of the larger input (goals: at least 100 MB/s, at most 3x; medians of five
//!   runs, and the peak's range), and how much of that peak is the diff's own heap (the
//!   same diff run in this process, its allocations counted) rather than the inputs' mapped
//!   pages;
//! * linearity: a generated pair at 1x, 2x, 4x and 8x the functions; time and memory per
//!   size against 1x, and the log-log slope (1.0 = linear);
//! * the peer: kpatch's `create-diff-object` against `klpforge diff` on every pair of the
//!   shared corpus, run in turn pair by pair, each process started directly (goal: 10 times
//!   faster), when the peer's binary is given; klpforge both as installed (`KLPFORGE_BENCH_BIN`,
//!   which `make bench` sets to what `scripts/install` builds: statically linked where it can
//!   be) and as cargo builds this checkout.
//!
//! Run with `cargo bench -p klpforge --bench diff_scale` (`make bench`). Inputs:
//!
//! * `KLPFORGE_BENCH_VMLINUX=NAME:ORIG:PATCHED[,...]`, default every
//!   `~/.cache/klpforge-bench/*/vmlinux-pair/{orig,patched}.o` (and
//!   `~/.cache/klpforge-bench/e2e-vmlinux/`);
//! * `KLPFORGE_PEER_CDO=/path/to/create-diff-object`, default
//!   `~/.cache/klpforge-bench/kpatch-src/kpatch-build/create-diff-object`;
//! * `KLPFORGE_BENCH_SCALE_BASE=N` functions at 1x (default 5,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use klpforge_testkit::{
    big_pair_sources, compile_c_source_with_flags, corpus_dir, load_expectations, measure,
    toolchain, Measured, ScratchDir,
};

/// The system allocator, counting the bytes in use and their peak (for [`heap_peak`]).
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(by: usize) {
        let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            Counting::grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap's peak during each phase of the in-process diff, and what is left in use as it
/// ends (the diff logs `time: PHASE done at ...` at debug level).
struct PhaseHeap;

/// Per phase: its name, the peak during it and the heap in use at its end.
type PhaseFigures = Vec<(String, usize, usize)>;

static PHASES: std::sync::Mutex<PhaseFigures> = std::sync::Mutex::new(Vec::new());

impl log::Log for PhaseHeap {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        if let Some(phase) = message
            .strip_prefix("time: ")
            .and_then(|m| m.split(" done").next())
        {
            let heap = IN_USE.load(Ordering::Relaxed);
            let peak = PEAK.swap(heap, Ordering::Relaxed);
            if let Ok(mut phases) = PHASES.lock() {
                phases.push((phase.to_string(), peak, heap));
            }
        }
    }

    fn flush(&self) {}
}

static PHASE_HEAP: PhaseHeap = PhaseHeap;

/// The peak heap of diffing `orig` and `patched` in this process (parsing included), as
/// `klpforge diff` does it: the diff's own memory, apart from the inputs' mapped pages.
fn heap_peak(orig: &Path, patched: &Path) -> Option<(usize, PhaseFigures)> {
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    PHASES.lock().ok()?.clear();
    let (o, p) = (
        klpforge_elf::ElfFile::open(orig).ok()?,
        klpforge_elf::ElfFile::open(patched).ok()?,
    );
    let (o, p) = (o.parse().ok()?, p.parse().ok()?);
    klpforge_diff::diff(&o, &p, &klpforge_diff::DiffOptions::default()).ok()?;
    let phases: PhaseFigures = PHASES
        .lock()
        .ok()?
        .drain(..)
        .map(|(name, peak, heap)| (name, peak - base, heap - base))
        .collect();
    let peak = phases
        .iter()
        .map(|p| p.1)
        .chain([PEAK.load(Ordering::Relaxed) - base]);
    Some((peak.max().unwrap_or(0), phases))
}

fn klpforge_diff(orig: &Path, patched: &Path, out: &Path) -> Measured {
    measure(
        Command::new(env!("CARGO_BIN_EXE_klpforge"))
            .arg("diff")
            .arg(orig)
            .arg(patched)
            .arg(out),
    )
}

/// The fastest of `n` runs (the least disturbed by the machine).
fn best_of(n: usize, mut f: impl FnMut() -> Measured) -> Measured {
    let mut best: Option<Measured> = None;
    for _ in 0..n {
        let r = f();
        if best.as_ref().is_none_or(|b| r.wall < b.wall) {
            best = Some(r);
        }
    }
    best.expect("at least one run")
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn bench_home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
        .join(".cache/klpforge-bench")
}

/// The real `vmlinux.o` pairs to measure: `(name, orig, patched)`.
fn vmlinux_pairs() -> Vec<(String, PathBuf, PathBuf)> {
    if let Ok(list) = std::env::var("KLPFORGE_BENCH_VMLINUX") {
        return list
            .split(',')
            .filter_map(|item| {
                let mut parts = item.splitn(3, ':');
                Some((
                    parts.next()?.to_string(),
                    PathBuf::from(parts.next()?),
                    PathBuf::from(parts.next()?),
                ))
            })
            .collect();
    }
    let home = bench_home();
    let mut pairs = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&home)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        for sub in [dir.join("vmlinux-pair"), dir.clone()] {
            let (o, p) = (sub.join("orig.o"), sub.join("patched.o"));
            if o.is_file() && p.is_file() {
                let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                pairs.push((name, o, p));
                break;
            }
        }
    }
    pairs
}

fn real_kernels(scratch: &Path) {
    let pairs = vmlinux_pairs();
    if pairs.is_empty() {
        println!(
            "vmlinux.o: no pair cached (put orig.o and patched.o in {}/<name>/vmlinux-pair/)",
            bench_home().display()
        );
        return;
    }
    for (name, orig, patched) in pairs {
        let larger = size(&orig).max(size(&patched));
        // Medians of five runs: the peak the kernel records moves by a few percent from run
        // to run (it is sampled when pages are unmapped), so its range is printed too.
        let runs: Vec<Measured> = (0..5)
            .map(|_| klpforge_diff(&orig, &patched, &scratch.join("v.o")))
            .collect();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (wall, _, _) = median(runs.iter().map(|r| r.wall).collect());
        let (rss, low, high) = median(runs.iter().map(|r| r.rss_kib as f64 * 1024.0).collect());
        let mb = larger as f64 / 1e6;
        println!(
            "vmlinux.o {name}: {mb:.1} MB (larger input), exit {}: {wall:.3} s = {:.0} MB/s (goal >= 100), peak RSS {:.0} MiB = {:.2}x the input (goal <= 3; {:.0}-{:.0} MiB = {:.2}-{:.2}x over the runs), medians of 5 runs",
            runs[0].code,
            mb / wall,
            rss / 1048576.0,
            rss / larger as f64,
            low / 1048576.0,
            high / 1048576.0,
            low / larger as f64,
            high / larger as f64
        );
        match heap_peak(&orig, &patched) {
            Some((heap, phases)) => {
                println!(
                    "vmlinux.o {name}: of that peak, the diff's heap {:.0} MiB = {:.1}x the input; the rest is the inputs' pages being read (each phase gives back what it has read), the program and the allocator's slack",
                    heap as f64 / 1048576.0,
                    heap as f64 / larger as f64
                );
                let mib = |b: usize| b as f64 / 1048576.0;
                let by_phase: Vec<String> = phases
                    .iter()
                    .map(|(phase, peak, end)| {
                        format!("{phase} {:.0} / {:.0}", mib(*peak), mib(*end))
                    })
                    .collect();
                println!(
                    "vmlinux.o {name}: heap (MiB) during / after each phase (parsing counts in the first): {}",
                    by_phase.join(", ")
                );
            }
            None => println!("vmlinux.o {name}: the in-process diff failed"),
        }
    }
}

fn linearity(scratch: &Path) {
    let Some(tc) = toolchain("x86_64") else {
        println!("linearity: no x86_64 gcc");
        return;
    };
    let base: usize = std::env::var("KLPFORGE_BENCH_SCALE_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let mut flags = tc.kernel_cflags();
    flags.retain(|f| *f != "-O2");
    flags.push("-O0");
    let mut points: Vec<(f64, f64, f64)> = Vec::new(); // (bytes, seconds, rss)
    for factor in [1usize, 2, 4, 8] {
        let n = base * factor;
        let (o_src, p_src) = big_pair_sources(n, 1);
        let orig = compile_c_source_with_flags(
            &tc,
            &o_src,
            &format!("scale{factor}.orig"),
            scratch,
            &flags,
        )
        .expect("compile the generated original");
        let patched = compile_c_source_with_flags(
            &tc,
            &p_src,
            &format!("scale{factor}.patched"),
            scratch,
            &flags,
        )
        .expect("compile the generated patched object");
        let r = best_of(3, || klpforge_diff(&orig, &patched, &scratch.join("s.o")));
        assert_eq!(r.code, 0, "the generated pair has one change");
        let bytes = size(&orig).max(size(&patched)) as f64;
        points.push((bytes, r.wall, r.rss_kib as f64 * 1024.0));
        let (b0, t0, m0) = points[0];
        println!(
            "linearity {factor}x ({n} functions, {:.1} MB): {:.3} s ({:.2}x of 1x), peak RSS {:.0} MiB ({:.2}x of 1x), input {:.2}x",
            bytes / 1e6,
            r.wall,
            r.wall / t0,
            r.rss_kib as f64 / 1024.0,
            r.rss_kib as f64 * 1024.0 / m0,
            bytes / b0
        );
    }
    let slope = |pick: fn(&(f64, f64, f64)) -> f64| {
        // least squares of log(value) on log(size)
        let xs: Vec<f64> = points.iter().map(|p| p.0.ln()).collect();
        let ys: Vec<f64> = points.iter().map(|p| pick(p).ln()).collect();
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        cov / var
    };
    println!(
        "linearity: log-log slope of time {:.2}, of peak RSS {:.2} (1.00 = linear)",
        slope(|p| p.1),
        slope(|p| p.2)
    );
}

fn peer(scratch: &Path) {
    let cdo = std::env::var("KLPFORGE_PEER_CDO")
        .map(PathBuf::from)
        .unwrap_or_else(|_| bench_home().join("kpatch-src/kpatch-build/create-diff-object"));
    let Some(corpus) = corpus_dir() else {
        println!("peer: no shared corpus");
        return;
    };
    if !cdo.is_file() {
        println!(
            "peer: {} not built (see KLPFORGE_PEER_CDO); skipped",
            cdo.display()
        );
        return;
    }
    let exps = load_expectations(&corpus).expect("corpus expectations");
    // No phase logging here: the in-process diffs below run as `klpforge build` runs them.
    log::set_max_level(log::LevelFilter::Info);
    // The binary `scripts/install` builds (statically linked where it can), as `make bench`
    // passes it: what a user runs. Cargo's own build of this checkout is measured beside it.
    let installed = std::env::var_os("KLPFORGE_BENCH_BIN").map(PathBuf::from);
    let (mut ours, mut theirs, mut in_process, mut ours_installed) = (0.0, 0.0, 0.0, 0.0);
    let mut pairs = 0;
    for e in &exps {
        // The peer's special-section sizes below are x86_64's (kpatch's unit tests set them
        // per architecture; a few tests override one in their own `.env` file, as here).
        if e.arch != "x86_64" {
            continue;
        }
        let Ok(pair) = e.find_pair(&corpus) else {
            continue;
        };
        // The peer reads the running kernel's symbol table as `readelf -s --wide` prints it;
        // the original object's stands in for it, as in kpatch's unit tests.
        let symtab = scratch.join("symtab");
        let table = Command::new("readelf")
            .args(["-s", "--wide"])
            .arg(&pair.orig)
            .output()
            .expect("run readelf");
        let text = String::from_utf8_lossy(&table.stdout).replace(" [<localentry>: 8]", "");
        std::fs::write(&symtab, text).expect("write the symtab");
        for _ in 0..3 {
            ours += wall_time(
                Command::new(env!("CARGO_BIN_EXE_klpforge"))
                    .arg("diff")
                    .arg(&pair.orig)
                    .arg(&pair.patched)
                    .arg(scratch.join("k.o")),
            );
            if let Some(bin) = &installed {
                ours_installed += wall_time(
                    Command::new(bin)
                        .arg("diff")
                        .arg(&pair.orig)
                        .arg(&pair.patched)
                        .arg(scratch.join("k.o")),
                );
            }
            // The settings the peer's own test needs (its `.env` file; the corpus lists them).
            let overrides = e.hints.iter().filter_map(|h| h.split_once('='));
            in_process += diff_in_process(&pair.orig, &pair.patched, &scratch.join("i.o"));
            theirs += wall_time(
                Command::new(&cdo)
                    .envs(PEER_X86_64_SIZES)
                    .envs(overrides)
                    .arg(&pair.orig)
                    .arg(&pair.patched)
                    .arg("vmlinux")
                    .arg(&symtab)
                    .arg("/dev/null")
                    .arg("bench_patch")
                    .arg(scratch.join("p.o")),
            );
        }
        pairs += 1;
    }
    let per_pair = |total: f64| 1000.0 * total / (3 * pairs).max(1) as f64;
    println!(
        "peer: {pairs} x86_64 corpus pairs, 3 runs each, in turn: create-diff-object {:.1} ms per pair",
        per_pair(theirs)
    );
    match &installed {
        Some(bin) => println!(
            "peer: klpforge as installed ({}): {:.1} ms per pair: {:.1}x faster (goal >= 10)",
            bin.display(),
            per_pair(ours_installed),
            theirs / ours_installed
        ),
        None => println!("peer: no installed klpforge (KLPFORGE_BENCH_BIN; `make bench` sets it)"),
    }
    println!(
        "peer: klpforge as cargo builds it (dynamically linked): {:.1} ms per pair: {:.1}x faster",
        per_pair(ours),
        theirs / ours
    );
    println!(
        "peer: the same pairs diffed in this process, as `klpforge build` diffs its objects: {:.1} ms per pair, {:.1}x the peer's process",
        per_pair(in_process),
        theirs / in_process
    );
    // What starting a process costs here, of every pair's time: the floor below any diff.
    let start = |cmd: &mut Command| (0..20).map(|_| wall_time(cmd)).sum::<f64>() / 20.0;
    let installed_start = installed.as_ref().map_or(String::new(), |bin| {
        format!(
            "installed {:.2} ms, ",
            1000.0 * start(Command::new(bin).arg("--version"))
        )
    });
    println!(
        "peer: start-up alone, mean of 20: klpforge --version {installed_start}cargo's {:.2} ms; /bin/true {:.2} ms",
        1000.0 * start(Command::new(env!("CARGO_BIN_EXE_klpforge")).arg("--version")),
        1000.0 * start(&mut Command::new("true"))
    );
}

/// The wall time of diffing `orig` and `patched` in this process, reading both and writing
/// the diff object when there is one (what `klpforge diff` does but start).
fn diff_in_process(orig: &Path, patched: &Path, out: &Path) -> f64 {
    let started = std::time::Instant::now();
    let (o, p) = (
        klpforge_elf::ElfFile::open(orig).expect("open the original object"),
        klpforge_elf::ElfFile::open(patched).expect("open the patched object"),
    );
    let (o, p) = (
        o.parse().expect("parse the original object"),
        p.parse().expect("parse the patched object"),
    );
    if let Ok(klpforge_diff::Outcome::Changed(obj, _)) =
        klpforge_diff::diff(&o, &p, &klpforge_diff::DiffOptions::default())
    {
        klpforge_elf::write::write_file(&obj, out).expect("write the diff object");
    }
    started.elapsed().as_secs_f64()
}

/// The wall time of running `cmd` to its end, started directly: on pairs of a few kilobytes
/// both tools take 1-3 ms, of which a wrapper such as `/usr/bin/time` (what [`measure`] runs
/// for the peak RSS) would add about 1 ms to each.
fn wall_time(cmd: &mut Command) -> f64 {
    let started = std::time::Instant::now();
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run a diff");
    started.elapsed().as_secs_f64()
}

/// The special-section entry sizes kpatch's x86_64 unit tests give `create-diff-object`.
const PEER_X86_64_SIZES: [(&str, &str); 8] = [
    ("PARA_STRUCT_SIZE", "16"),
    ("EX_STRUCT_SIZE", "12"),
    ("BUG_STRUCT_SIZE", "12"),
    ("ALT_STRUCT_SIZE", "13"),
    ("JUMP_STRUCT_SIZE", "24"),
    ("ORC_STRUCT_SIZE", "6"),
    ("STATIC_CALL_STRUCT_SIZE", "8"),
    ("PRINTK_INDEX_STRUCT_SIZE", "44"),
];

fn main() {
    let scratch = ScratchDir::new("bench-scale").unwrap();
    if log::set_logger(&PHASE_HEAP).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    println!(
        "klpforge diff at scale (release build, {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    real_kernels(scratch.path());
    linearity(scratch.path());
    peer(scratch.path());
}
