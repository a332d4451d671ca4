//! What a build tells its user as it goes: stages, counted items (objects compiled) and
//! findings (changed functions, notes). The library never prints: it calls a [`Progress`]
//! the caller supplies (the CLI renders a progress bar on a terminal and plain lines
//! otherwise); [`Silent`] ignores everything.

/// Receives a build's progress. Every method has an empty default, so an implementation
/// renders only what it wants. Called from worker threads too.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A stage begins ("compiling", "comparing", "building the module", ...).
    fn step(&self, _stage: &str) {}
    /// `len` items of `what` begin (each then ends with [`Progress::item_done`]).
    fn begin_items(&self, _what: &str, _len: u64) {}
    /// One item of the current stage finished.
    fn item_done(&self) {}
    /// The items of the current stage are all done.
    fn end_items(&self) {}
    /// A finding the user reads as it comes: a changed or new function of an object, or a
    /// note about what the build does (a full rebuild it has to make, say).
    fn finding(&self, _text: &str) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}
