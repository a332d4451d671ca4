//! A fuzzing harness for klpforge that runs on stable Rust (no cargo-fuzz, no nightly):
//! mutated objects go through the ELF reader and writer ([`Target::Reader`]) and through the
//! whole differ ([`Target::Differ`]), and nothing may panic.
//!
//! * [`rng`]: a seedable xorshift generator; every execution has its own.
//! * [`mutate`]: byte-level mutators of the raw file and field-aware mutators of the model
//!   (written back with the ELF writer), chosen at random.
//! * [`seeds`]: the peer corpus's objects and pairs, and built-in objects.
//! * [`target`]: what one execution runs.
//! * [`harness`]: the campaign: parallel deterministic chunks, `catch_unwind`, crash saving.
//! * [`minimize`]: reverting a crash's changes to its seeds while it still crashes.
//! * [`alloc`]: a global allocator that turns an absurd allocation into a saved crash.
//!
//! The `klpforge-fuzz` binary drives campaigns (`scripts/fuzz`); the tests of this crate run
//! short deterministic ones.

#![deny(missing_docs)]

pub mod alloc;
pub mod harness;
pub mod minimize;
pub mod mutate;
pub mod rng;
pub mod seeds;
pub mod target;

pub use harness::{default_crash_dir, probe, replay, run, Config, Report, Site, Target};
pub use mutate::{mutate_bytes, mutate_input, mutate_object, BOUNDARY, MAX_INPUT};
pub use rng::Rng;
pub use seeds::{builtin_objects, Seed, Seeds};
pub use target::Verdict;
