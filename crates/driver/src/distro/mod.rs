//! Distribution kernels by name: `debian:<release>` (`debian:latest`: the newest release whose
//! packages are all in the archive) and `running` resolve to the inputs of a
//! prepared kernel ([`crate::inputs::KernelInputs`]) from the distribution's own packages,
//! downloaded and unpacked into a cache, never installed on the host.
//!
//! One file per distribution ([`debian`]); another distribution is one more [`Distribution`]
//! in [`DISTRIBUTIONS`].

pub mod debian;

use std::path::Path;

use crate::error::Result;
use crate::inputs::KernelInputs;

/// A distribution whose kernels klpforge can fetch.
pub trait Distribution: Sync {
    /// Its name in `--kernel NAME:<release>`.
    fn name(&self) -> &'static str;

    /// Whether this machine runs it (from `/etc/os-release`'s `ID` and `ID_LIKE`).
    fn is_running(&self, os_release: &str) -> bool;

    /// Fetch and unpack what kernel `release` needs below `cache` and say where it is.
    fn inputs(&self, release: &str, cache: &Path, say: &dyn Fn(&str)) -> Result<KernelInputs>;
}

/// The distributions klpforge knows.
pub static DISTRIBUTIONS: &[&dyn Distribution] = &[&debian::Debian];

/// Resolve a kernel specification: `NAME:<release>` of a known distribution, or `running`
/// (this machine's distribution and `uname -r`).
pub fn resolve(spec: &str, cache: &Path, say: &dyn Fn(&str)) -> Result<KernelInputs> {
    let (distro, release) = if spec == "running" {
        let os = std::fs::read_to_string("/etc/os-release").map_err(|e| {
            format!("/etc/os-release: {e}: cannot tell this machine's distribution")
        })?;
        let d = DISTRIBUTIONS
            .iter()
            .find(|d| d.is_running(&os))
            .ok_or_else(|| {
                format!(
                    "this machine's distribution is not one klpforge fetches kernels for ({}); give the kernel's files with klpforge prepare",
                    known()
                )
            })?;
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_err(|e| format!("cannot read the running kernel's release: {e}"))?;
        say(&format!(
            "{} distribution detected, kernel {}",
            d.name(),
            release.trim()
        ));
        (*d, release.trim().to_string())
    } else {
        let (name, release) = spec
            .split_once(':')
            .ok_or_else(|| format!("'{spec}': expected NAME:RELEASE ({}) or running", known()))?;
        let d = DISTRIBUTIONS
            .iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| format!("unknown distribution '{name}' (known: {})", known()))?;
        (*d, release.to_string())
    };
    if release.is_empty() || release.contains('/') || release.contains("..") {
        return Err(format!("'{release}' is not a kernel release string").into());
    }
    distro.inputs(&release, &cache.join(distro.name()), say)
}

fn known() -> String {
    DISTRIBUTIONS
        .iter()
        .map(|d| format!("{}:<release>", d.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
