//! Errors of the ELF layer.
//!
//! Every error describes one problem in one place (a section, a symbol, a relocation entry) in a
//! single line. The file name is added by the caller (see [`crate::ElfFile`]), so messages read
//! `path: problem`.

use std::fmt::{self, Write as _};

/// A malformed or unsupported ELF file, or an edit that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// The file does not start with the ELF magic bytes.
    #[error("not an ELF file (bad magic {0})")]
    NotElf(String),
    /// The file is too short to hold what it claims.
    #[error("truncated file: {0}")]
    Truncated(String),
    /// A 32-bit ELF file.
    #[error("32-bit ELF (ELFCLASS32) is not supported: klpforge handles ELF64 objects only")]
    Class32,
    /// A well-formed ELF file klpforge does not handle (machine, byte order, file type...).
    #[error("unsupported ELF: {0}")]
    Unsupported(String),
    /// A structural problem: bad offsets, sizes or indices.
    #[error("malformed ELF: {0}")]
    Malformed(String),
    /// The in-memory model cannot be written (dangling references after edits, ...).
    #[error("cannot write ELF: {0}")]
    Write(String),
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(String),
}

/// Result type of the ELF layer.
pub type Result<T, E = ElfError> = std::result::Result<T, E>;

/// Quote a byte string for messages: lossy UTF-8 in single quotes, control characters
/// escaped (`\n`) so that a message stays on one line whatever the names in the file.
pub(crate) struct Quoted<'a>(pub &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('\'')?;
        for c in String::from_utf8_lossy(self.0).chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_char(c)?;
            }
        }
        f.write_char('\'')
    }
}

/// Convert an `object` crate read error into ours, classifying truncation.
pub(crate) fn from_object(context: impl fmt::Display, err: object::read::Error) -> ElfError {
    ElfError::Malformed(format!("{context}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::Quoted;

    #[test]
    fn quoted_names_stay_on_one_line() {
        assert_eq!(Quoted(b"lu kB\n\t\x1b").to_string(), "'lu kB\\n\\t\\u{1b}'");
        assert_eq!(Quoted(b"f\xffo").to_string(), "'f\u{fffd}o'");
    }
}
