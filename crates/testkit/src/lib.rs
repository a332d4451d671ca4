//! Test-time support for klpforge.
//!
//! This crate is only used by tests and benchmarks. It provides:
//!
//! * [`toolchain`](mod@toolchain): discovery of the gcc cross compilers (and their binutils)
//!   for every architecture klpforge supports, with kernel-like compiler flags
//!   that were checked against the installed compilers;
//! * [`fixture`]: C fixture cases (`orig.c` / `patched.c` directories with
//!   `//# key: value` directives) compiled by the real gcc;
//! * [`corpus`]: the shared corpus of peer-tool unit objects and its
//!   `expectations.tsv`;
//! * [`generate`]: generated C sources (huge section counts, benchmark pairs);
//! * [`scratch`]: per-test scratch directories.
//!
//! Everything that depends on something outside the repository (a cross
//! compiler, the shared corpus) degrades to "skip with one line on stderr"
//! instead of failing, so the test suite stays green on machines that lack
//! them.

#![deny(missing_docs)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub mod corpus;
pub mod fixture;
pub mod generate;
pub mod measure;
pub mod scratch;
pub mod toolchain;

pub use corpus::{
    corpus_dir, corpus_objects, load_expectations, pair_objects, parse_expectations, CorpusPair,
    Expect, Expectation, Pairing,
};
pub use fixture::{
    compile_c_source, compile_c_source_with_flags, load_cases, parse_directives, CompiledCase,
    Directive, FixtureCase,
};
pub use generate::{
    big_pair_sources, changed_function_names, compile_many_functions, many_functions_cflags,
    many_functions_source, section_header_count,
};
pub use measure::{measure, Measured};
pub use scratch::ScratchDir;
pub use toolchain::{available_toolchains, toolchain, Toolchain, ARCHES};

/// The root of the klpforge workspace (the directory holding the top-level
/// `Cargo.toml`), derived from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

/// The directory holding the in-repository fixture cases:
/// `<workspace root>/tests/fixtures`.
pub fn fixtures_root() -> PathBuf {
    workspace_root().join("tests").join("fixtures")
}

/// Reports that a test skips something for want of `what` (an architecture's
/// toolchain, the corpus, a tool): one line on stderr, once per `what` and
/// process. With `KLPFORGE_REQUIRE_ALL=1` (CI) a skip is a failure instead,
/// unless `what` is listed in `KLPFORGE_ALLOW_MISSING` (whitespace- or
/// comma-separated: what the machine's distribution cannot provide).
pub fn skip(what: &str, message: &str) {
    let required = std::env::var("KLPFORGE_REQUIRE_ALL").is_ok_and(|v| v == "1");
    let allowed = std::env::var("KLPFORGE_ALLOW_MISSING").is_ok_and(|v| {
        v.split(|c: char| c == ',' || c.is_whitespace())
            .any(|w| w == what)
    });
    if required && !allowed {
        panic!("{message} (KLPFORGE_REQUIRE_ALL=1: nothing may be skipped; KLPFORGE_ALLOW_MISSING names what may)");
    }
    note_once(&format!("skip:{what}"), message);
}

/// Prints `message` to stderr unless the same `key` was already reported by
/// this process.
pub(crate) fn note_once(key: &str, message: &str) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    if seen.insert(key.to_string()) {
        eprintln!("{message}");
    }
}
