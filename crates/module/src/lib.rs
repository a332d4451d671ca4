//! Livepatch modules: assembling diff objects into a module with the kernel's kbuild
//! ([`assemble`]), post-linking it into the exact ELF format the kernel's livepatch core
//! requires ([`postlink`]), and converting hand-written source-based livepatch modules
//! ([`convert`], the klp-convert route) using the target's symbol table ([`kallsyms`]), and
//! checking that the finished module has what objtool must give it ([`verify`]). Kbuild's
//! module link is learned once per kernel and replayed without make ([`recipe`]).

#![deny(missing_docs)]

pub mod assemble;
pub mod config;
pub mod convert;
pub mod error;
pub mod kallsyms;
pub mod postlink;
pub mod probes;
pub mod recipe;
pub mod verify;
pub use error::ModuleError;
