//! How the command line shows what the libraries report: a build's progress (stage lines on
//! stderr, a progress bar for counted items when stderr is a terminal, findings such as
//! changed and new functions on stdout) and their `log` records (`klpforge: debug: ...`).

use std::io::IsTerminal;
use std::sync::Mutex;

use klpforge_driver::progress::Progress;

/// The command line's [`Progress`].
#[derive(Debug, Default)]
pub struct CliProgress {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress for CliProgress {
    fn step(&self, stage: &str) {
        eprintln!("klpforge: {stage}");
        pause_hook(stage);
    }

    fn begin_items(&self, what: &str, len: u64) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = indicatif::ProgressBar::new(len);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("klpforge: {msg} [{bar:30}] {pos}/{len}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn item_done(&self) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.inc(1);
        }
    }

    fn end_items(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    fn finding(&self, text: &str) {
        println!("{text}");
    }
}

/// The `log` records of the libraries, as `klpforge: LEVEL: message` lines on stderr.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            eprintln!("klpforge: {level}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Route the libraries' `log` records to stderr: debug records too when `debug`, else
/// warnings and errors only.
pub fn init_log(debug: bool) {
    static LOG: StderrLog = StderrLog;
    if log::set_logger(&LOG).is_ok() {
        log::set_max_level(if debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        });
    }
}

/// Test hook (cargo feature `test-hooks`, for the interruption tests):
/// `KLPFORGE_PAUSE_AT=<first words of a stage>` stops the build there for 30 s, so a test
/// can interrupt it at a known stage.
#[cfg(feature = "test-hooks")]
fn pause_hook(stage: &str) {
    if let Ok(at) = std::env::var("KLPFORGE_PAUSE_AT") {
        if !at.is_empty() && stage.starts_with(&at) {
            eprintln!("klpforge: paused at: {stage}");
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
fn pause_hook(_stage: &str) {}
