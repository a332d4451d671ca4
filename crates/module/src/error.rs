//! The errors of module assembly, post-link and convert: each names the module, object or
//! file concerned, and keeps the underlying error as its source.

use std::path::{Path, PathBuf};

/// An error of `klpforge module`, `post-link` or `convert`.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A file or directory could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// An ELF file could not be read or written.
    #[error(transparent)]
    Elf(#[from] klpforge_elf::ElfError),
    /// Anything else, said in one sentence that names the module, section or symbol.
    #[error("{0}")]
    Message(String),
}

impl ModuleError {
    /// A mapper for `map_err`: an I/O error on `path`.
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> ModuleError {
        let path = path.as_ref().to_path_buf();
        move |source| ModuleError::Io { path, source }
    }
}

impl From<String> for ModuleError {
    fn from(message: String) -> ModuleError {
        ModuleError::Message(message)
    }
}

impl From<&str> for ModuleError {
    fn from(message: &str) -> ModuleError {
        ModuleError::Message(message.to_string())
    }
}

/// The module crate's result type.
pub type Result<T, E = ModuleError> = std::result::Result<T, E>;
