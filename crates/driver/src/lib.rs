//! The build driver of klpforge: from source patches to a livepatch module.
//!
//! * [`patch`]: unified diffs, parsed and printed back exactly.
//! * [`fixlines`]: `#line` directives that keep `__LINE__` stable below an edit.

#![deny(missing_docs)]

pub mod compile;
pub mod crcs;
pub mod distro;
pub mod driver;
pub mod error;
pub mod fixlines;
pub mod includes;
pub mod inputs;
pub mod kbuild;
pub mod layouts;
pub mod options;
pub mod patch;
pub mod preflight;
pub mod prepare;
pub mod progress;
pub mod stages;
pub mod vmlinux_mode;
pub use error::DriverError;
