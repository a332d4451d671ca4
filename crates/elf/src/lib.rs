//! The ELF layer of klpforge: an editable in-memory model of ELF64 relocatable objects and
//! kernel modules, read from and written to files through the `object` crate's low-level
//! layers.
//!
//! * [`read::parse`] turns file bytes into an [`ElfObject`], checking every index.
//! * [`ElfObject`] is edited through stable [`SectionId`]/[`SymbolId`] identities;
//!   [`construct`] makes the sections and symbols tools add.
//! * [`write::write`] serialises the model, regenerating symbol and string tables and using
//!   extended section numbering when needed.
//! * [`Dump`] lists an object one line per item, independent of file layout.
//! * [`ElfFile`] maps a file into memory and attaches its path to every error.
//!
//! Supported: ELF64, little- and big-endian, machines x86_64, aarch64, ppc64le, s390x and
//! loongarch64. Files with program headers (vmlinux, shared objects) can be read and dumped
//! but not written.

#![deny(missing_docs)]

pub mod construct;
pub mod dump;
pub mod error;
pub mod model;
pub mod read;
pub mod write;

pub use construct::st_info;
pub use dump::Dump;
pub use error::{ElfError, Result};
pub use model::*;
/// The ELF constants (`STT_*`, `SHF_*`, `ET_*`, ...) for users of this model.
pub use object::elf;

use std::fmt;
use std::path::{Path, PathBuf};

/// An input file, memory-mapped, whose errors name it.
pub struct ElfFile {
    path: PathBuf,
    map: Option<memmap2::Mmap>,
}

/// An error tied to a file: displays as `path: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// The problem.
    pub error: ElfError,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for FileError {}

impl ElfFile {
    /// Open and map `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> std::result::Result<ElfFile, FileError> {
        let path = path.as_ref().to_path_buf();
        let io = |e: std::io::Error| FileError {
            path: path.clone(),
            error: ElfError::Io(e.to_string()),
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(FileError {
                path,
                error: ElfError::Io("not a regular file".into()),
            });
        }
        let map = if meta.len() == 0 {
            None
        } else {
            // SAFETY: the map is read-only and private; klpforge never writes to its inputs,
            // and a concurrent truncation by another process is outside what any reader of
            // object files can defend against.
            Some(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Ok(ElfFile { path, map })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn data(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Parse the file into a model borrowing from the mapping.
    pub fn parse(&self) -> std::result::Result<ElfObject<'_>, FileError> {
        read::parse(self.data()).map_err(|error| self.error(error))
    }

    /// Attach this file's path to `error`.
    pub fn error(&self, error: ElfError) -> FileError {
        FileError {
            path: self.path.clone(),
            error,
        }
    }
}
