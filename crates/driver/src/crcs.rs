//! Export CRCs (`CONFIG_MODVERSIONS`): whether a patch changes the CRC genksyms computes for
//! a symbol an object exports. The module links against the running kernel's
//! `Module.symvers`, so it keeps the running kernel's CRCs and loads; but a changed CRC can
//! also mean a changed type layout, which the patch author must rule out. kbuild records each
//! object's CRCs in its `.cmd` file (`#SYMVER name 0xcrc`); the patched source goes through the
//! same preprocessor and `scripts/genksyms/genksyms` (output into the work directory only).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::compile::{rewrite_command, Variant};
use crate::error::{DriverError, Result};
use crate::kbuild::{CmdFile, KernelTree};

/// The `#SYMVER` lines of a `.cmd` record or of genksyms' output: symbol -> CRC.
pub fn parse_symvers(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("#SYMVER ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// The exported symbols of `cmd`'s object whose CRC the patched source (a copy under `root`)
/// changes, or `Ok(empty)` when the object exports nothing. `work` holds scratch files.
pub fn changed_crcs(
    tree: &KernelTree,
    cmd: &CmdFile,
    root: &Path,
    work: &Path,
    include: Option<&Path>,
) -> Result<Vec<String>> {
    let record = std::fs::read_to_string(tree.cmd_path(&cmd.object)).unwrap_or_default();
    let orig = parse_symvers(&record);
    if orig.is_empty() {
        return Ok(Vec::new());
    }
    let genksyms = tree.build.join("scripts/genksyms/genksyms");
    if !genksyms.exists() {
        return Err(format!(
            "{}: exports symbols with CRCs, but {} is missing",
            cmd.object,
            genksyms.display()
        )
        .into());
    }
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let out = work.join("crc.o");
    let full = rewrite_command(
        tree,
        cmd,
        &Variant::Patched(root.to_path_buf()),
        &out,
        &work.join("crc.d"),
        None,
        include,
    )?;
    // The compiler invocation alone, preprocessing only (no objtool step, no object).
    let compile = full.split(" ; ").next().unwrap_or(&full);
    let out_s = crate::compile::shell_word(&out.to_string_lossy());
    let cpp =
        compile
            .replace(&format!(" -o {out_s}"), "")
            .replacen(" -c ", " -E -D__GENKSYMS__ ", 1);
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {cpp} | {} -r /dev/null",
            crate::compile::shell_word(&genksyms.to_string_lossy())
        ))
        .current_dir(&tree.build)
        .output()
        .map_err(DriverError::spawn("genksyms"))?;
    if !o.status.success() {
        return Err(format!(
            "{}: genksyms on the patched source failed: {}",
            cmd.object,
            String::from_utf8_lossy(&o.stderr).trim()
        )
        .into());
    }
    let patched = parse_symvers(&String::from_utf8_lossy(&o.stdout));
    Ok(orig
        .iter()
        .filter(|(name, crc)| patched.get(*name).is_some_and(|c| c != *crc))
        .map(|(name, _)| name.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symver_lines_parse() {
        let m = parse_symvers(
            "savedcmd_x := gcc\n#SYMVER device_add 0x1234abcd\n#SYMVER put_device 0x00000001\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m["device_add"], "0x1234abcd");
    }
}
