//! `klpforge`: build Linux livepatch modules from source patches.
//!
//! This binary is a thin shell: it parses the command line (clap derive), calls into the
//! library crates, prints one-line errors and maps outcomes to exit statuses
//! (`exit::Exit`: 0 success, 1 error, 2 usage error, 3 nothing to patch, 4 refused).

mod build_cmd;
mod diff_cmd;
mod elf_cmd;
mod exit;
mod module_cmd;
mod progress;
mod sign;

use std::process::ExitCode;

use crate::exit::Exit;

use clap::{Parser, Subcommand};

/// The jobs `-j` asks for, by default the CPUs this process may run on (asked only when `-j`
/// is not given: the question reads cgroup files, which every other command would pay for
/// at start-up).
pub(crate) fn jobs(given: Option<usize>) -> usize {
    given.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Build Linux livepatch modules from source patches.
#[derive(Parser, Debug)]
#[command(name = "klpforge", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compare two builds of an object and extract the changed functions into a diff object.
    Diff(diff_cmd::DiffArgs),
    /// Build a livepatch module from diff objects with the kernel's kbuild, then post-link it.
    Module(module_cmd::ModuleArgs),
    /// Convert a linked module's klp relocation records into the kernel's livepatch format.
    PostLink(module_cmd::PostLinkArgs),
    /// Turn references of a hand-written livepatch module to unexported symbols into klp
    /// relocations (klp-convert).
    Convert(module_cmd::ConvertArgs),
    /// Build a livepatch module from source patches against a built or prepared kernel.
    Build(build_cmd::BuildArgs),
    /// Prepare a kernel nobody here built (source, config, exports, vmlinux) for `build`.
    Prepare(build_cmd::PrepareArgs),
    /// Rewrite a patch with #line directives so __LINE__ does not shift below an edit.
    FixLines(build_cmd::FixLinesArgs),
    /// Inspect and rewrite ELF objects (kernel objects and modules).
    #[command(subcommand)]
    Elf(elf_cmd::ElfCommand),
    /// (Internal) The compiler `klpforge build` gives kbuild: its probes answered from a
    /// cache, everything else run as is.
    #[command(
        name = "__cc-probe",
        hide = true,
        disable_help_flag = true,
        disable_version_flag = true
    )]
    CcProbe(CcProbeArgs),
}

/// Arguments of the internal `__cc-probe` command.
#[derive(clap::Args, Debug)]
struct CcProbeArgs {
    /// The cache directory.
    cache: std::path::PathBuf,
    /// The real compiler.
    compiler: std::ffi::OsString,
    /// Its arguments, unchanged.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
}

/// Run kbuild's compiler (see [`klpforge_module::probes`]), ending with its exit status.
fn cc_probe(a: &CcProbeArgs) -> ExitCode {
    match klpforge_module::probes::run(&a.cache, &a.compiler, &a.args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("klpforge: cannot run {}: {e}", a.compiler.to_string_lossy());
            ExitCode::from(127)
        }
    }
}

/// Have the allocator give large freed buffers back to the system. glibc raises its mmap
/// threshold each time a mapped block is freed (up to 32 MiB), after which large buffers come
/// from the heap, whose freed space stays resident: the diff's per-phase tables, megabytes
/// each on a kernel, then added up to its peak (1-2 MiB on the e2e kernel's `vmlinux.o`). A
/// fixed threshold keeps each large buffer in a mapping of its own, unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_buffers() {
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    // Failure (0) leaves glibc's default, which is only less frugal.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers() {}

fn main() -> ExitCode {
    return_large_buffers();
    let cli = Cli::parse();
    let debug = matches!(&cli.command, Command::Diff(a) if a.debug);
    progress::init_log(debug);
    let result = match cli.command {
        Command::Diff(args) => diff_cmd::run(args),
        Command::Module(args) => module_cmd::run_module(args),
        Command::PostLink(args) => module_cmd::run_post_link(args),
        Command::Convert(args) => module_cmd::run_convert(args),
        Command::Build(args) => build_cmd::run_build(args),
        Command::Prepare(args) => build_cmd::run_prepare(args),
        Command::FixLines(args) => build_cmd::run_fix_lines(args),
        Command::Elf(cmd) => elf_cmd::run(cmd),
        Command::CcProbe(a) => return cc_probe(&a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line: the chain of contexts joined, never a backtrace.
            let mut msg = err.to_string();
            for cause in err.chain().skip(1) {
                msg.push_str(": ");
                msg.push_str(&cause.to_string());
            }
            eprintln!("klpforge: error: {}", msg.replace('\n', " "));
            Exit::Error.into()
        }
    }
}
