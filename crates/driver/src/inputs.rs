//! What a kernel is made of: the files `klpforge prepare` turns into a prepared kernel, given
//! by the user or resolved from a distribution's packages.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a kernel is made of, as the user or a distribution resolver gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInputs {
    /// The kernel source tree (never written to).
    pub src: PathBuf,
    /// The kernel's configuration (`/boot/config-<release>`, or the headers' `.config`).
    pub config: PathBuf,
    /// Its `Module.symvers`.
    pub symvers: PathBuf,
    /// Its release string (`uname -r`).
    pub release: String,
    /// Its vmlinux with a symbol table.
    pub vmlinux: PathBuf,
    /// A directory holding its modules with symbol tables (searched by file name), if any.
    pub modules: Option<PathBuf>,
    /// A Debian `-dbg` package to unpack a missing module from into `modules` (modules with
    /// symbols are gigabytes: only the ones a patch needs are unpacked).
    #[serde(default)]
    pub module_archive: Option<PathBuf>,
}
