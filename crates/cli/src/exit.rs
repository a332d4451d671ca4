//! The exit statuses of every klpforge command.

use std::process::ExitCode;

/// How a command ends, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done (a diff object or module written, a file converted, ...).
    Success = 0,
    /// 1: an error (bad input, a failed step), reported in one line.
    Error = 1,
    /// 2: a usage error (clap's own status).
    #[allow(dead_code)] // produced by clap, listed for completeness
    Usage = 2,
    /// 3: no functional change: nothing to patch.
    NoChange = 3,
    /// 4: changes that cannot be live-patched (the reasons are printed).
    Refused = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}
