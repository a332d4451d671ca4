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

/// The smallest mapping whose pages are given back as phases finish with them: below it (one
/// compilation unit's object) the system calls and the faults to read pages again cost more
/// time than the pages are worth; above it (a kernel's `vmlinux.o`) they are what keeps the
/// diff's peak memory near its inputs' size.
const RELEASE_MIN: usize = 4 << 20;

/// An input file, memory-mapped, whose errors name it.
pub struct ElfFile {
    path: PathBuf,
    map: Option<memmap2::Mmap>,
}

/// Drop the resident pages of the whole pages inside `ranges` (file offsets and sizes) of a
/// read-only mapping. Nothing is lost: a page read again is read from the file. A mapping
/// under [`RELEASE_MIN`] is left whole.
pub(crate) fn release(map: &memmap2::Mmap, mut ranges: Vec<(u64, u64)>) {
    if map.len() < RELEASE_MIN {
        return;
    }
    /// A multiple of every page size Linux uses (4 KiB to 64 KiB).
    const PAGE: u64 = 64 << 10;
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (off, size) in ranges {
        let end = off.saturating_add(size).min(map.len() as u64);
        match merged.last_mut() {
            Some(last) if off <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((off, end)),
        }
    }
    for (start, end) in merged {
        let (start, end) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if end > start {
            // SAFETY: the mapping is a read-only shared mapping of the file, never written:
            // its pages are the page cache's, so MADV_DONTNEED only unmaps them from this
            // process and the next read of one maps the file's page again (the data any
            // borrower sees does not change).
            // Failure only leaves the pages resident.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start as usize,
                    (end - start) as usize,
                )
            };
        }
    }
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
            // SAFETY: the map is read-only (shared: its pages are the page cache's); klpforge
            // never writes to its inputs, and a concurrent truncation by another process is
            // outside what any reader of object files can defend against.
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

    /// Parse the file into a model borrowing from the mapping. The pages the parse read (the
    /// symbol and relocation tables in full, half of a large object) are given back to the
    /// system once it is done ([`ElfObject::release_mapping`]): they would otherwise count in
    /// the process's memory until it ends, although the model copies the symbols and reads
    /// most relocation tables again only in part, if at all.
    pub fn parse(&self) -> std::result::Result<ElfObject<'_>, FileError> {
        let mut obj = read::parse(self.data()).map_err(|e| self.error(e))?;
        if let Some(map) = &self.map {
            obj.mapping = Some(map);
            obj.release_mapping();
        }
        Ok(obj)
    }

    /// Attach this file's path to `error`.
    pub fn error(&self, error: ElfError) -> FileError {
        FileError {
            path: self.path.clone(),
            error,
        }
    }
}
