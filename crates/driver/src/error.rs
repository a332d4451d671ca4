//! The errors of the build driver: each names the file, object or command concerned, and
//! keeps the underlying error as its source, so a caller can print the whole chain.

use std::path::{Path, PathBuf};

/// An error of `klpforge build` or `klpforge prepare`.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A file or directory could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A program the build runs could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The module could not be built, post-linked or signed.
    #[error(transparent)]
    Module(#[from] klpforge_module::ModuleError),
    /// Anything else, said in one sentence that names the object or file concerned.
    #[error("{0}")]
    Message(String),
}

impl DriverError {
    /// A mapper for `map_err`: an I/O error on `path`.
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> DriverError {
        let path = path.as_ref().to_path_buf();
        move |source| DriverError::Io { path, source }
    }

    /// A mapper for `map_err`: `program` could not be started.
    pub fn spawn(program: &str) -> impl FnOnce(std::io::Error) -> DriverError + '_ {
        move |source| DriverError::Spawn {
            program: program.to_string(),
            source,
        }
    }
}

impl From<String> for DriverError {
    fn from(message: String) -> DriverError {
        DriverError::Message(message)
    }
}

impl From<&str> for DriverError {
    fn from(message: &str) -> DriverError {
        DriverError::Message(message.to_string())
    }
}

/// The driver's result type.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;
