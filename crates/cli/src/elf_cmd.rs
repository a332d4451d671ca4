//! `klpforge elf ...`: the ELF engine's own commands.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit::Exit;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use klpforge_elf::{Dump, ElfFile};

/// Subcommands of `klpforge elf`.
#[derive(Subcommand, Debug)]
pub enum ElfCommand {
    /// Read an object into klpforge's ELF model and write it back through the model.
    ///
    /// Section and symbol order, flags, relocations and contents are kept; symbol and string
    /// tables are regenerated. `klpforge elf dump` of the output equals that of the input.
    Rewrite {
        /// Input object (ELF64 relocatable object or kernel module).
        input: PathBuf,
        /// Output path (replaced atomically).
        output: PathBuf,
    },
    /// List sections, symbols and relocations, one line each, independent of file layout.
    Dump {
        /// Object to list.
        object: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Run one `elf` subcommand.
pub fn run(cmd: ElfCommand) -> Result<ExitCode> {
    match cmd {
        ElfCommand::Rewrite { input, output } => {
            let file = ElfFile::open(&input)?;
            let obj = file.parse()?;
            klpforge_elf::write::write_file(&obj, &output)
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
        }
        ElfCommand::Dump { object, json } => {
            let file = ElfFile::open(&object)?;
            let obj = file.parse()?;
            let dump = Dump::new(&obj);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &dump)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out))
            } else {
                dump.write_text(&mut out)
            }
            .and_then(|()| out.flush());
            match written {
                // `klpforge elf dump x.o | head` is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing the listing")?,
            }
        }
    }
    Ok(Exit::Success.into())
}
