//! The options, outcome and report of `klpforge build`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::kbuild::KernelTree;

/// Options of `klpforge build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The kernel tree.
    pub tree: KernelTree,
    /// The original kernel's vmlinux (symbol positions).
    pub vmlinux: PathBuf,
    /// Module.symvers.
    pub symvers: PathBuf,
    /// The patches.
    pub patches: Vec<PathBuf>,
    /// Output module.
    pub out: Option<PathBuf>,
    /// Module name.
    pub name: Option<String>,
    /// Parallel jobs.
    pub jobs: usize,
    /// Whether the patch replaces earlier ones.
    pub replace: bool,
    /// Work directory.
    pub work: PathBuf,
    /// Skip the compiler identity check.
    pub skip_compiler_check: bool,
    /// Variables passed to make when building the module.
    pub make_vars: Vec<String>,
    /// Where progress and findings go (the library prints nothing).
    pub progress: std::sync::Arc<dyn crate::progress::Progress>,
    /// Diff the whole linked vmlinux.o instead of single objects.
    pub vmlinux_mode: bool,
    /// Accept fresh copies of function-scope statics a changed function stopped using
    /// (`klpforge diff --accept-fresh-statics`).
    pub accept_fresh_statics: bool,
    /// The tree is a prepared kernel ([`crate::prepare`]): objects are compiled in it on
    /// demand, header users are found by scanning the sources, modules come from its
    /// modules directory.
    pub prepared: Option<crate::prepare::PreparedKernel>,
    /// Sign the module with this private key and certificate (`--sign-key`, `--sign-cert`).
    pub sign: Option<(PathBuf, PathBuf)>,
    /// The klpforge executable, to answer kbuild's compiler probes from a cache
    /// ([`klpforge_module::probes`]); `None`: kbuild runs them every time.
    pub probe_answerer: Option<PathBuf>,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildResult {
    /// A module was written.
    Built(PathBuf),
    /// Nothing to patch.
    NoChange,
    /// Refused, with reasons.
    Refused(Vec<String>),
}

/// The report of a build.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildReport {
    /// Objects compiled (each twice).
    pub objects: Vec<String>,
    /// Per object: its binary, and what the diff found.
    pub diffs: BTreeMap<String, klpforge_diff::Report>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// The module written, if any.
    pub module: Option<String>,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
}
