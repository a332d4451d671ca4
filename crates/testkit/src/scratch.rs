//! Per-test scratch directories.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};

/// A fresh directory for one test's outputs, removed when dropped.
///
/// It lives under `$KLPFORGE_SCRATCH` if set, else under the system temporary
/// directory, at `klpforge-testkit/<name>-<pid>-<counter>`. Set
/// `KLPFORGE_KEEP_SCRATCH=1` to keep it for inspection; its path is then
/// printed to stderr when it is dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new, empty scratch directory whose name starts with `name`
    /// (any `/` in `name` is replaced by `_`).
    pub fn new(name: &str) -> Result<ScratchDir> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::var_os("KLPFORGE_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("klpforge-testkit");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!(
            "{}-{}-{n}",
            name.replace('/', "_"),
            std::process::id()
        ));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("KLPFORGE_KEEP_SCRATCH").is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("keeping scratch directory {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_distinct_and_removed() {
        let a = ScratchDir::new("a/b").unwrap();
        let b = ScratchDir::new("a/b").unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a.is_dir());
        std::fs::write(a.join("x"), "y").unwrap();
        let kept = a.path().to_path_buf();
        if std::env::var_os("KLPFORGE_KEEP_SCRATCH").is_none() {
            drop(a);
            assert!(!kept.exists());
        }
    }
}
