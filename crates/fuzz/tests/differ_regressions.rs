//! Differ inputs that once panicked, replayed from their deterministic campaign position (seed
//! and execution number) over the shared corpus: each must now give a verdict, not a crash.
//!
//! * seed 0x7, execution 52084: a branch without a relocation found before its function's
//!   symbol (in `__pfx_` padding) underflowed the offset in the refusal message;
//! * seed 0x7, execution 53801: a section anchor at a symbol with an `i64::MAX` addend;
//! * seed 0x7, execution 190442: a string reference with an `i64::MAX` addend overflowed the
//!   clone's relocation addend (addends are modular now).

use klpforge_fuzz::{run, Config, Seeds, Target};
use klpforge_testkit::ScratchDir;

#[test]
fn former_differ_crashes_give_verdicts() {
    let Some(corpus) = klpforge_testkit::corpus_dir() else {
        klpforge_testkit::skip(
            "corpus",
            "the shared corpus is needed to replay campaign positions",
        );
        return;
    };
    let seeds = Seeds::load(Some(&corpus)).expect("load the fuzz seeds");
    let dir = ScratchDir::new("fuzz-regressions").expect("a scratch directory");
    for execution in [52_084u64, 53_801, 190_442] {
        let mut config = Config::new(Target::Differ, 1, dir.path().to_path_buf());
        config.seed = 0x7;
        config.start = execution;
        config.jobs = 1;
        let report = run(&config, &seeds).expect("run one execution");
        assert_eq!(
            report.crashes,
            0,
            "seed 0x7 execution {execution} crashed again (see {})",
            dir.path().display()
        );
    }
}
