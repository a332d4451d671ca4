//! A fuzzing campaign: numbered executions, each a mutation of seeds run through a target
//! under `catch_unwind`, in parallel over deterministic chunks.
//!
//! Execution `e` of a campaign seeded with `s` draws everything (seed objects, strategy,
//! mutations) from [`Rng::for_execution`]`(s, e)`, so it does the same thing whatever the
//! number of jobs, and `--start e --executions 1` replays it alone.
//!
//! A panic is a crash: the panic hook installed here records the message, location and
//! backtrace instead of printing them, and the input (both objects for the differ) is saved in
//! the crash directory as `TARGET-SEED-EXECUTION.o` (or `.ORIG.o` and `.PATCHED.o`) with a
//! `.txt` report next to it. Crashes are grouped by panic location; the first few inputs of
//! each location are saved, every crash is counted. An execution still running after the
//! timeout is saved and counted the same way; an allocation above the allocator's bound (see
//! [`crate::alloc`]) saves the input and aborts.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use klpforge_diff::DiffOptions;
use rayon::prelude::*;

use crate::mutate::mutate_input;
use crate::rng::Rng;
use crate::seeds::Seeds;
use crate::target::{self, Verdict};

/// What a campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The ELF reader, then a walk of the model and the writer.
    Reader,
    /// The whole differ on a pair, then the writer on its output.
    Differ,
}

impl Target {
    /// `reader` or `differ`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Reader => "reader",
            Target::Differ => "differ",
        }
    }
}

/// The settings of a campaign.
#[derive(Debug, Clone)]
pub struct Config {
    /// The target.
    pub target: Target,
    /// Number of the first execution.
    pub start: u64,
    /// How many executions.
    pub executions: u64,
    /// The campaign seed.
    pub seed: u64,
    /// Worker threads.
    pub jobs: usize,
    /// Where crashing inputs are saved (created on the first crash).
    pub crash_dir: PathBuf,
    /// Inputs saved per panic location.
    pub saved_per_site: usize,
    /// Interval of the progress line on stderr (`None`: no progress line).
    pub progress: Option<Duration>,
    /// An execution running longer than this is a crash.
    pub timeout: Duration,
    /// Print each execution's number on stderr before running it (to find an execution that
    /// kills the process, such as a stack overflow).
    pub trace: bool,
}

impl Config {
    /// A configuration with the defaults of the command line.
    pub fn new(target: Target, executions: u64, crash_dir: PathBuf) -> Config {
        Config {
            target,
            start: 0,
            executions,
            seed: 1,
            jobs: 1,
            crash_dir,
            saved_per_site: 5,
            progress: None,
            timeout: Duration::from_secs(60),
            trace: false,
        }
    }
}

/// Crashes at one panic location.
#[derive(Debug, Clone)]
pub struct Site {
    /// `file:line:column` of the panic (`timeout` for executions that ran too long).
    pub location: String,
    /// The first crash's panic message.
    pub message: String,
    /// How many executions crashed there.
    pub count: u64,
    /// The saved inputs (first file of each).
    pub saved: Vec<PathBuf>,
}

/// What a campaign did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: Target,
    /// Executions run.
    pub executions: u64,
    /// Executions that panicked or timed out.
    pub crashes: u64,
    /// Wall time of the executions.
    pub elapsed: Duration,
    /// Count per verdict, indexed by [`Verdict::index`].
    pub verdicts: [u64; 6],
    /// Crashes by location.
    pub sites: Vec<Site>,
    /// Seed objects used.
    pub seed_objects: usize,
    /// The longest execution: duration and number.
    pub slowest: (Duration, u64),
}

impl Report {
    /// Executions per second.
    pub fn rate(&self) -> f64 {
        self.executions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one-line summary:
    /// `fuzz differ: 1000 executions, 0 crashes, 4 s, 250 exec/s, seeds 112 objects`.
    pub fn summary(&self) -> String {
        format!(
            "fuzz {}: {} executions, {} crashes, {} s, {:.0} exec/s, seeds {} objects",
            self.target.name(),
            self.executions,
            self.crashes,
            self.elapsed.as_secs_f64().round(),
            self.rate(),
            self.seed_objects
        )
    }

    /// Lines describing the outcomes and every crash site.
    pub fn details(&self) -> Vec<String> {
        let outcomes: Vec<String> = Verdict::ALL
            .iter()
            .filter(|v| self.verdicts[v.index()] > 0)
            .map(|v| format!("{} {}", self.verdicts[v.index()], v.name()))
            .collect();
        let mut lines = vec![format!(
            "fuzz {}: outcomes: {}; slowest execution {} ms (#{})",
            self.target.name(),
            if outcomes.is_empty() {
                "none".to_string()
            } else {
                outcomes.join(", ")
            },
            self.slowest.0.as_millis(),
            self.slowest.1
        )];
        for s in &self.sites {
            let saved: Vec<String> = s.saved.iter().map(|p| p.display().to_string()).collect();
            lines.push(format!(
                "fuzz {}: {} crashes at {}: {} (saved: {})",
                self.target.name(),
                s.count,
                s.location,
                s.message.lines().next().unwrap_or(""),
                saved.join(" ")
            ));
        }
        lines
    }
}

/// One execution's input: the files a target runs on and how they were made.
struct Input {
    /// File suffix (`.o`, `.ORIG.o`, `.PATCHED.o`) and bytes.
    files: Vec<(&'static str, Vec<u8>)>,
    /// The seeds and mutations, for the crash report.
    notes: Vec<String>,
}

/// The execution a worker is running.
struct InFlight {
    execution: u64,
    started: Instant,
    input: Arc<Input>,
    timed_out: bool,
}

/// State shared by the workers.
struct Shared {
    config: Config,
    slots: Vec<Mutex<Option<InFlight>>>,
    done: AtomicU64,
    crashes: AtomicU64,
    verdicts: [AtomicU64; 6],
    sites: Mutex<BTreeMap<String, Site>>,
    slowest: Mutex<(Duration, u64)>,
}

/// A panic as the hook recorded it.
struct PanicRecord {
    message: String,
    location: String,
    backtrace: Backtrace,
}

thread_local! {
    static IN_EXECUTION: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<PanicRecord>> = const { RefCell::new(None) };
}

/// The running campaign, for the allocation bound's handler.
static ACTIVE: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Install (once) the panic hook that records panics of executions silently and leaves
/// every other panic to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_EXECUTION.with(Cell::get) {
                previous(info);
                return;
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".into());
            let location = info
                .location()
                .map_or_else(|| "unknown".into(), |l| l.to_string());
            let record = PanicRecord {
                message,
                location,
                backtrace: Backtrace::force_capture(),
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(record));
        }));
    });
}

/// A crash, as reported and grouped.
struct Crash {
    /// `panic`, `timeout` or `allocation`.
    kind: &'static str,
    message: String,
    /// The panic's `file:line:column`, or the kind for the others.
    location: String,
    backtrace: String,
}

/// The panic the hook recorded on this thread.
fn take_panic() -> Crash {
    let (message, location, backtrace) = match LAST_PANIC.with(|p| p.borrow_mut().take()) {
        Some(r) => (r.message, r.location, r.backtrace.to_string()),
        None => (
            "panic not seen by the hook".into(),
            "unknown".into(),
            String::new(),
        ),
    };
    Crash {
        kind: "panic",
        message,
        location,
        backtrace,
    }
}

/// Run the target once on `files` (one object for the reader, original and patched for the
/// differ), panics included: for replaying a saved crash.
pub fn replay(target: Target, files: &[Vec<u8>]) -> anyhow::Result<Verdict> {
    match (target, files) {
        (Target::Reader, [bytes]) => Ok(target::reader(bytes)),
        (Target::Differ, [orig, patched]) => {
            Ok(target::differ(orig, patched, &DiffOptions::default()))
        }
        (Target::Reader, _) => anyhow::bail!("the reader replays one file"),
        (Target::Differ, _) => anyhow::bail!("the differ replays two files: original, patched"),
    }
}

/// Run the target once on `files` (as [`replay`]) under `catch_unwind`, silently: the panic's
/// message and location if it panicked, `None` if not.
pub fn probe(target: Target, files: &[Vec<u8>]) -> anyhow::Result<Option<(String, String)>> {
    install_panic_hook();
    IN_EXECUTION.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| replay(target, files)));
    IN_EXECUTION.with(|f| f.set(false));
    match result {
        Ok(verdict) => verdict.map(|_| None),
        Err(_) => {
            let crash = take_panic();
            Ok(Some((crash.message, crash.location)))
        }
    }
}

/// Draw execution `rng`'s input from the seeds.
fn make_input(target: Target, seeds: &Seeds, rng: &mut Rng) -> Input {
    let objects = &seeds.objects;
    let donor = &rng.pick(objects).bytes;
    let mut notes = Vec::new();
    match target {
        Target::Reader => {
            let seed = rng.pick(objects);
            notes.push(format!("seed {}", seed.name));
            let bytes = mutate_input(rng, &seed.bytes, donor, &mut notes);
            Input {
                files: vec![(".o", bytes)],
                notes,
            }
        }
        Target::Differ => {
            let &(o, p) = rng.pick(&seeds.pairs);
            let mode = rng.below(8);
            let (p, mutate_orig, mutate_patched) = match mode {
                0..=3 => (p, false, true),
                4 => (p, true, false),
                5 => (p, true, true),
                // The same object on both sides, one of them mutated.
                6 => (o, false, true),
                // The patched side of another pair.
                _ => (rng.pick(&seeds.pairs).1, false, rng.one_in(2)),
            };
            let mut side = |idx: usize, mutate: bool, role: &str, notes: &mut Vec<String>| {
                let seed = &objects[idx];
                notes.push(format!("{role} seed {}", seed.name));
                if mutate {
                    let mut log = Vec::new();
                    let bytes = mutate_input(rng, &seed.bytes, donor, &mut log);
                    notes.extend(log.into_iter().map(|l| format!("{role}: {l}")));
                    bytes
                } else {
                    seed.bytes.clone()
                }
            };
            let orig = side(o, mutate_orig, "original", &mut notes);
            let patched = side(p, mutate_patched, "patched", &mut notes);
            Input {
                files: vec![(".ORIG.o", orig), (".PATCHED.o", patched)],
                notes,
            }
        }
    }
}

/// What an execution runs on its input.
type Runner<'a> = dyn Fn(&Input, &DiffOptions) -> Verdict + Sync + 'a;

fn run_input(target: Target, input: &Input, opts: &DiffOptions) -> Verdict {
    match target {
        Target::Reader => target::reader(&input.files[0].1),
        Target::Differ => target::differ(&input.files[0].1, &input.files[1].1, opts),
    }
}

impl Shared {
    fn slot(&self) -> &Mutex<Option<InFlight>> {
        &self.slots[rayon::current_thread_index().unwrap_or(0) % self.slots.len()]
    }

    fn execute(&self, seeds: &Seeds, runner: &Runner<'_>, opts: &DiffOptions, execution: u64) {
        let target = self.config.target;
        if self.config.trace {
            eprintln!("fuzz {}: execution {execution}", target.name());
        }
        let mut rng = Rng::for_execution(self.config.seed, execution);
        IN_EXECUTION.with(|f| f.set(true));
        let made = catch_unwind(AssertUnwindSafe(|| make_input(target, seeds, &mut rng)));
        IN_EXECUTION.with(|f| f.set(false));
        let input = match made {
            Ok(input) => Arc::new(input),
            Err(_) => {
                // The mutators run the ELF reader and writer too; the input was never made,
                // but rerunning the execution makes it again.
                let input = Input {
                    files: Vec::new(),
                    notes: vec!["panicked while making the input (the mutators, or the ELF \
                                 writer on a mutated model): rerun the execution"
                        .into()],
                };
                self.crash(execution, &input, take_panic());
                self.done.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let slot = self.slot();
        let started = Instant::now();
        *lock(slot) = Some(InFlight {
            execution,
            started,
            input: input.clone(),
            timed_out: false,
        });
        IN_EXECUTION.with(|f| f.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| runner(&input, opts)));
        IN_EXECUTION.with(|f| f.set(false));
        let elapsed = started.elapsed();
        *lock(slot) = None;
        match result {
            Ok(v) => {
                self.verdicts[v.index()].fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.crash(execution, &input, take_panic());
            }
        }
        {
            let mut slowest = lock(&self.slowest);
            if elapsed > slowest.0 {
                *slowest = (elapsed, execution);
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a crash, and save its input if its location has fewer than the configured
    /// number saved.
    fn crash(&self, execution: u64, input: &Input, crash: Crash) {
        self.crashes.fetch_add(1, Ordering::Relaxed);
        let mut sites = lock(&self.sites);
        let site = sites.entry(crash.location.clone()).or_insert_with(|| Site {
            location: crash.location.clone(),
            message: crash.message.clone(),
            count: 0,
            saved: Vec::new(),
        });
        site.count += 1;
        if site.saved.len() < self.config.saved_per_site {
            match self.save(execution, input, &crash) {
                Ok(path) => site.saved.push(path),
                Err(e) => eprintln!("fuzz: cannot save the input of execution {execution}: {e}"),
            }
        }
    }

    /// Save an input and its report; returns the first file's path.
    fn save(&self, execution: u64, input: &Input, crash: &Crash) -> std::io::Result<PathBuf> {
        let Crash {
            kind,
            message,
            location,
            backtrace,
        } = crash;
        let c = &self.config;
        std::fs::create_dir_all(&c.crash_dir)?;
        let stem = format!("{}-{:016x}-{execution}", c.target.name(), c.seed);
        let mut paths = Vec::new();
        for (suffix, bytes) in &input.files {
            let path = c.crash_dir.join(format!("{stem}{suffix}"));
            std::fs::write(&path, bytes)?;
            paths.push(path);
        }
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let mut text = format!(
            "{kind}: {message}\nat {location}\ntarget {}, seed {:#x}, execution {execution}\n\
             replay: klpforge-fuzz {} --replay {}\nrerun: klpforge-fuzz {} --seed {:#x} --start {execution} --executions 1\n\ninput:\n",
            c.target.name(),
            c.seed,
            c.target.name(),
            shown.join(" "),
            c.target.name(),
            c.seed,
        );
        for n in &input.notes {
            text.push_str(&format!("  {n}\n"));
        }
        if !backtrace.is_empty() {
            text.push_str(&format!("\nbacktrace:\n{backtrace}\n"));
        }
        let report = c.crash_dir.join(format!("{stem}.txt"));
        std::fs::write(&report, text)?;
        Ok(paths.into_iter().next().unwrap_or(report))
    }

    /// Report and save the executions that have run longer than the timeout.
    fn check_timeouts(&self) {
        for slot in &self.slots {
            let overdue = {
                let mut guard = lock(slot);
                match guard.as_mut() {
                    Some(f) if !f.timed_out && f.started.elapsed() > self.config.timeout => {
                        f.timed_out = true;
                        Some((f.execution, f.input.clone()))
                    }
                    _ => None,
                }
            };
            if let Some((execution, input)) = overdue {
                let message = format!(
                    "execution still running after {} s",
                    self.config.timeout.as_secs()
                );
                eprintln!(
                    "fuzz {}: execution {execution}: {message}",
                    self.config.target.name()
                );
                let crash = Crash {
                    kind: "timeout",
                    message,
                    location: "timeout".into(),
                    backtrace: String::new(),
                };
                self.crash(execution, &input, crash);
            }
        }
    }
}

/// The handler of [`crate::alloc::LimitAlloc`] for a request above its bound
/// ([`crate::alloc::set_oversized_handler`]): save the in-flight input of this thread, print a
/// backtrace and abort.
pub fn oversized(size: usize) -> ! {
    static REPORTING: AtomicBool = AtomicBool::new(false);
    let limit = crate::alloc::limit();
    // Lift the bound so that reporting can allocate (and no other thread re-enters).
    crate::alloc::set_limit(usize::MAX);
    if REPORTING.swap(true, Ordering::SeqCst) {
        // Another thread is reporting and will abort the process.
        loop {
            std::thread::park();
        }
    }
    let message = format!("allocation of {size} bytes (bound {limit})");
    let backtrace = Backtrace::force_capture().to_string();
    let shared = ACTIVE.try_lock().ok().and_then(|a| a.clone());
    let in_flight = shared.as_ref().and_then(|s| {
        let slot = s.slot().try_lock().ok()?;
        slot.as_ref().map(|f| (f.execution, f.input.clone()))
    });
    match (&shared, in_flight) {
        (Some(s), Some((execution, input))) => {
            let crash = Crash {
                kind: "allocation",
                message: message.clone(),
                location: "allocation".into(),
                backtrace: backtrace.clone(),
            };
            match s.save(execution, &input, &crash) {
                Ok(path) => eprintln!(
                    "fuzz {}: execution {execution}: {message}; input saved as {}",
                    s.config.target.name(),
                    path.display()
                ),
                Err(e) => eprintln!("fuzz: execution {execution}: {message}; not saved: {e}"),
            }
        }
        _ => eprintln!("fuzz: {message} outside an execution"),
    }
    eprintln!("{backtrace}\nfuzz: aborting");
    std::process::abort()
}

/// Run a campaign on `seeds`.
pub fn run(config: &Config, seeds: &Seeds) -> anyhow::Result<Report> {
    let target = config.target;
    campaign(config, seeds, &move |input, opts| {
        run_input(target, input, opts)
    })
}

/// Run a campaign whose executions run `runner` on their inputs.
fn campaign(config: &Config, seeds: &Seeds, runner: &Runner<'_>) -> anyhow::Result<Report> {
    let target = config.target;
    match target {
        Target::Reader if seeds.objects.is_empty() => anyhow::bail!("no seed objects"),
        Target::Differ if seeds.pairs.is_empty() => {
            anyhow::bail!("no seed pairs (is the corpus there? set --corpus or KLPFORGE_CORPUS)")
        }
        _ => {}
    }
    install_panic_hook();
    let jobs = config.jobs.max(1);
    let shared = Arc::new(Shared {
        config: config.clone(),
        slots: (0..jobs).map(|_| Mutex::new(None)).collect(),
        done: AtomicU64::new(0),
        crashes: AtomicU64::new(0),
        verdicts: Default::default(),
        sites: Mutex::new(BTreeMap::new()),
        slowest: Mutex::new((Duration::ZERO, 0)),
    });
    *lock(&ACTIVE) = Some(shared.clone());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .stack_size(8 << 20)
        .thread_name(move |i| format!("fuzz-{}-{i}", target.name()))
        .build()?;
    // Fixed-size chunks: which execution runs where changes nothing about what it does.
    const CHUNK: u64 = 64;
    let (start, end) = (config.start, config.start.saturating_add(config.executions));
    let chunks = config.executions.div_ceil(CHUNK);
    let started = Instant::now();
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut last = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                shared.check_timeouts();
                if let Some(every) = config.progress {
                    if last.elapsed() >= every {
                        last = Instant::now();
                        let done = shared.done.load(Ordering::Relaxed);
                        let secs = started.elapsed().as_secs_f64();
                        eprintln!(
                            "fuzz {}: {done}/{} executions, {} crashes, {:.0} s, {:.0} exec/s",
                            target.name(),
                            config.executions,
                            shared.crashes.load(Ordering::Relaxed),
                            secs,
                            done as f64 / secs.max(1e-9)
                        );
                    }
                }
            }
        });
        pool.install(|| {
            (0..chunks).into_par_iter().for_each(|chunk| {
                let opts = DiffOptions::default();
                let first = start + chunk * CHUNK;
                for execution in first..(first + CHUNK).min(end) {
                    shared.execute(seeds, runner, &opts, execution);
                }
            })
        });
        finished.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    *lock(&ACTIVE) = None;
    let seed_objects = match target {
        Target::Reader => seeds.objects.len(),
        Target::Differ => {
            let mut used: Vec<usize> = seeds.pairs.iter().flat_map(|&(o, p)| [o, p]).collect();
            used.sort_unstable();
            used.dedup();
            used.len()
        }
    };
    let report = Report {
        target,
        executions: shared.done.load(Ordering::Relaxed),
        crashes: shared.crashes.load(Ordering::Relaxed),
        elapsed,
        verdicts: std::array::from_fn(|i| shared.verdicts[i].load(Ordering::Relaxed)),
        sites: lock(&shared.sites).values().cloned().collect(),
        seed_objects,
        slowest: *lock(&shared.slowest),
    };
    Ok(report)
}

/// The default crash directory: `target/fuzz-crashes` in the workspace.
pub fn default_crash_dir() -> PathBuf {
    klpforge_testkit::workspace_root().join("target/fuzz-crashes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on inputs whose length is a multiple of 5.
    fn picky(input: &Input, _: &DiffOptions) -> Verdict {
        let len = input.files[0].1.len();
        assert!(len % 5 != 0, "length {len} is a multiple of 5");
        Verdict::Accepted
    }

    fn scratch_and_builtin_seeds(name: &str) -> (klpforge_testkit::ScratchDir, Seeds) {
        let seeds = Seeds {
            objects: crate::seeds::builtin_objects(),
            pairs: Vec::new(),
        };
        (klpforge_testkit::ScratchDir::new(name).unwrap(), seeds)
    }

    #[test]
    fn crashes_are_counted_saved_and_deterministic() {
        let (dir, seeds) = scratch_and_builtin_seeds("fuzz-harness");
        let mut config = Config::new(Target::Reader, 300, dir.join("crashes"));
        config.saved_per_site = 2;
        let one = campaign(&config, &seeds, &picky).unwrap();
        config.jobs = 2;
        config.crash_dir = dir.join("crashes-2");
        let two = campaign(&config, &seeds, &picky).unwrap();
        assert_eq!(one.executions, 300);
        assert!(one.crashes > 0 && one.crashes < 300, "{}", one.crashes);
        assert_eq!((one.crashes, one.verdicts), (two.crashes, two.verdicts));
        assert_eq!(one.sites.len(), 1);
        let site = &one.sites[0];
        assert!(site.location.contains("harness.rs"), "{}", site.location);
        assert!(site.message.contains("multiple of 5"), "{}", site.message);
        assert_eq!(site.saved.len(), 2);
        let first = &site.saved[0];
        let len = std::fs::metadata(first).unwrap().len();
        assert_eq!(len % 5, 0);
        let report = std::fs::read_to_string(first.with_extension("txt")).unwrap();
        assert!(report.starts_with("panic: length"), "{report}");
        assert!(report.contains("seed built-in big-endian"), "{report}");
        assert!(report.contains("--replay"), "{report}");
        assert!(
            one.summary().contains("300 executions"),
            "{}",
            one.summary()
        );
        // Replaying the saved input reproduces the crash.
        let bytes = std::fs::read(first).unwrap();
        let input = Input {
            files: vec![(".o", bytes)],
            notes: Vec::new(),
        };
        assert!(std::panic::catch_unwind(|| picky(&input, &DiffOptions::default())).is_err());
    }

    #[test]
    fn a_slow_execution_is_a_crash() {
        let (dir, seeds) = scratch_and_builtin_seeds("fuzz-timeout");
        let mut config = Config::new(Target::Reader, 3, dir.join("crashes"));
        config.timeout = Duration::from_millis(50);
        let first = AtomicBool::new(true);
        let report = campaign(&config, &seeds, &|_, _| {
            if first.swap(false, Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(600));
            }
            Verdict::Accepted
        })
        .unwrap();
        assert_eq!((report.executions, report.crashes), (3, 1));
        assert_eq!(report.sites[0].location, "timeout");
        assert!(report.sites[0].saved[0].exists());
    }
}
