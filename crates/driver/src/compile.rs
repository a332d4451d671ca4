//! Compiling single objects, original and patched, without writing to the user's trees.
//!
//! The command kbuild recorded for the object is replayed from the build tree with its
//! output, dependency file and (for the patched build) source redirected into the work
//! directory. The patched build compiles a copy of the source file with the patch applied;
//! patched headers shadow the tree's through `-I` directories placed before the originals,
//! and `-fmacro-prefix-map` keeps `__FILE__` what it is in the tree. Both builds get
//! `-ffunction-sections -fdata-sections`, so a production kernel built without them still
//! gives comparable objects.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{DriverError, Result};
use crate::kbuild::{CmdFile, KernelTree};

/// Which version of an object to build.
#[derive(Debug, Clone)]
pub enum Variant {
    /// From the tree's sources.
    Original,
    /// From the patched copies under this directory (mirroring the source tree).
    Patched(PathBuf),
}

/// The flags klpforge needs in both builds.
pub const SECTION_FLAGS: [&str; 2] = ["-ffunction-sections", "-fdata-sections"];

/// klpforge's headers for patch authors (`klpforge.h`, `kpatch-macros.h`, `kpatch-syscall.h`),
/// written into a build's work directory and searched after the kernel's own include directories.
pub const AUTHOR_HEADERS: &[(&str, &str)] = &[
    ("klpforge.h", include_str!("../../../include/klpforge.h")),
    (
        "kpatch-macros.h",
        include_str!("../../../include/kpatch-macros.h"),
    ),
    (
        "kpatch-syscall.h",
        include_str!("../../../include/kpatch-syscall.h"),
    ),
];

/// `text` as one shell word: the recorded commands are shell text, so every path klpforge
/// puts into them (work directory, patched copies) is quoted, whatever characters it has.
pub fn shell_word(text: &str) -> String {
    shlex::try_quote(text).map_or_else(
        // A NUL cannot be in a path; quote what is left rather than fail.
        |_| format!("'{}'", text.replace('\0', "").replace('\'', "'\\''")),
        |q| q.into_owned(),
    )
}

fn path_word(path: &Path) -> String {
    shell_word(&path.to_string_lossy())
}

/// Rewrite the recorded command of `cmd` to build `variant` into `out`. `cc` replaces the
/// recorded compiler (the first word), for launchers such as `ccache gcc` or `distcc gcc`;
/// `include` is searched after every directory of the command (`-idirafter`).
pub fn rewrite_command(
    tree: &KernelTree,
    cmd: &CmdFile,
    variant: &Variant,
    out: &Path,
    depfile: &Path,
    cc: Option<&str>,
    include: Option<&Path>,
) -> Result<String> {
    let out_s = path_word(out);
    let mut tokens: Vec<String> = Vec::new();
    let mut saw_output = false;
    let mut saw_source = false;
    let words: Vec<&str> = cmd.command.split(' ').collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w == "-o" && words.get(i + 1) == Some(&cmd.object.as_str()) {
            tokens.push("-o".into());
            tokens.push(out_s.clone());
            saw_output = true;
            i += 2;
            continue;
        }
        if let Some(_dep) = w
            .strip_prefix("-Wp,-MMD,")
            .or_else(|| w.strip_prefix("-Wp,-MD,"))
        {
            tokens.push(shell_word(&format!("-Wp,-MMD,{}", depfile.display())));
            i += 1;
            continue;
        }
        if w == cmd.object {
            // Post-processing steps (objtool, ld -r) name the object too.
            tokens.push(out_s.clone());
            i += 1;
            continue;
        }
        if w == cmd.source {
            saw_source = true;
            match variant {
                Variant::Original => tokens.push(w.to_string()),
                Variant::Patched(root) => {
                    let rel = tree.source_relative(w).ok_or_else(|| {
                        format!("{}: source {w} is outside the source tree", cmd.object)
                    })?;
                    tokens.push(path_word(&root.join(rel)));
                }
            }
            i += 1;
            continue;
        }
        if let (Variant::Patched(root), Some(dir)) = (variant, w.strip_prefix("-I")) {
            if let Some(rel) = tree.source_relative(dir) {
                let shadow = root.join(&rel);
                if !rel.is_empty() && shadow.is_dir() {
                    tokens.push(shell_word(&format!("-I{}", shadow.display())));
                }
            }
        }
        tokens.push(w.to_string());
        i += 1;
    }
    if !saw_output || !saw_source {
        return Err(format!(
            "{}: cannot understand the recorded build command (no -o {} or no {})",
            cmd.object, cmd.object, cmd.source
        )
        .into());
    }
    // The extra flags go right after the compiler name. The prefix map only matches the
    // copies' paths, so kbuild's own map (for `../`) does not compete with it.
    let mut extra: Vec<String> = SECTION_FLAGS
        .iter()
        .filter(|f| !tokens.iter().any(|t| t == *f))
        .map(|f| f.to_string())
        .collect();
    if let Some(dir) = include {
        extra.push(format!("-idirafter {}", path_word(dir)));
    }
    if let Variant::Patched(root) = variant {
        extra.push(shell_word(&format!(
            "-fmacro-prefix-map={}/=",
            root.display()
        )));
        // `#include "local.h"` looks beside the file first, which for the copy is the work
        // directory: the tree's directory of the source comes next, as it would in the tree
        // (in-tree builds carry no -I for it; patched headers beside the copy still win).
        if let Some(rel) = tree.source_relative(&cmd.source) {
            let dir = Path::new(&rel).parent().unwrap_or(Path::new(""));
            let src = std::path::absolute(&tree.src).unwrap_or_else(|_| tree.src.clone());
            extra.push(format!("-iquote {}", path_word(&src.join(dir))));
        }
    }
    let compiler_end = 1.min(tokens.len());
    let mut cmdline: Vec<String> = match cc {
        Some(cc) if compiler_end == 1 => vec![cc.to_string()],
        _ => tokens[..compiler_end].to_vec(),
    };
    cmdline.extend(extra);
    cmdline.extend(tokens[compiler_end..].iter().cloned());
    Ok(cmdline.join(" "))
}

/// A compiled object and the warnings its command printed (compiler, objtool).
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The object written.
    pub path: PathBuf,
    /// Warning lines, as printed.
    pub warnings: Vec<String>,
}

/// Build one object. The recorded command's later steps (objtool) run only when the
/// compiler succeeded.
pub fn compile(
    tree: &KernelTree,
    cmd: &CmdFile,
    variant: &Variant,
    out_dir: &Path,
    cc: Option<&str>,
    include: Option<&Path>,
) -> Result<Compiled> {
    let out = out_dir.join(&cmd.object);
    let dep = out_dir.join(format!("{}.d", cmd.object));
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p).map_err(DriverError::io(&p))?;
    }
    let line = rewrite_command(tree, cmd, variant, &out, &dep, cc, include)?;
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e; {line}"))
        .current_dir(&tree.build)
        .output()
        .map_err(DriverError::spawn("the compiler"))?;
    if !o.status.success() {
        let which = match variant {
            Variant::Original => "original",
            Variant::Patched(_) => "patched",
        };
        return Err(format!(
            "compiling the {which} {} failed:\n{}",
            cmd.object,
            String::from_utf8_lossy(&o.stderr).trim_end()
        )
        .into());
    }
    let warnings = String::from_utf8_lossy(&o.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&o.stdout).lines())
        .filter(|l| l.contains("warning:"))
        .map(|l| l.trim().to_string())
        .collect();
    Ok(Compiled {
        path: out,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_output_dependencies_and_source() {
        let tree = KernelTree {
            src: PathBuf::from("/k"),
            build: PathBuf::from("/k/build"),
        };
        let cmd = CmdFile {
            object: "fs/proc/cmdline.o".into(),
            command: "gcc -Wp,-MMD,fs/proc/.cmdline.o.d -nostdinc -I../include -fmacro-prefix-map=../= -c -o fs/proc/cmdline.o ../fs/proc/cmdline.c ; ./tools/objtool/objtool --orc fs/proc/cmdline.o".into(),
            source: "../fs/proc/cmdline.c".into(),
            deps: vec![],
        };
        let orig = rewrite_command(
            &tree,
            &cmd,
            &Variant::Original,
            Path::new("/w/o/x.o"),
            Path::new("/w/x.d"),
            None,
            None,
        )
        .unwrap();
        // What the shell will see, word by word.
        let words = |line: &str| shlex::split(line).expect("a well-quoted command line");
        let w = words(&orig);
        assert_eq!(
            w[..4],
            [
                "gcc",
                "-ffunction-sections",
                "-fdata-sections",
                "-Wp,-MMD,/w/x.d"
            ],
            "{orig}"
        );
        assert!(
            w.windows(3)
                .any(|x| x == ["-o", "/w/o/x.o", "../fs/proc/cmdline.c"]),
            "{orig}"
        );
        assert!(orig.ends_with("objtool --orc /w/o/x.o"), "{orig}");
        let p = rewrite_command(
            &tree,
            &cmd,
            &Variant::Patched(PathBuf::from("/w/src")),
            Path::new("/w/p/x.o"),
            Path::new("/w/y.d"),
            Some("ccache gcc"),
            None,
        )
        .unwrap();
        assert!(p.starts_with("ccache gcc -ffunction-sections"), "{p}");
        let w = words(&p);
        assert!(w.iter().any(|x| x == "/w/src/fs/proc/cmdline.c"), "{p}");
        assert!(w.iter().any(|x| x == "-fmacro-prefix-map=/w/src/="), "{p}");
        assert!(!p.contains(" fs/proc/cmdline.o"), "{p}");
        // A work directory with a space and a quote stays one word.
        let q = rewrite_command(
            &tree,
            &cmd,
            &Variant::Patched(PathBuf::from("/w/it's a dir")),
            Path::new("/w/it's a dir/x.o"),
            Path::new("/w/it's a dir/x.d"),
            None,
            Some(Path::new("/w/it's a dir/include")),
        )
        .unwrap();
        let w = words(&q);
        assert!(w.iter().any(|x| x == "/w/it's a dir/x.o"), "{q}");
        assert!(
            w.iter().any(|x| x == "/w/it's a dir/fs/proc/cmdline.c"),
            "{q}"
        );
        assert!(w.iter().any(|x| x == "/w/it's a dir/include"), "{q}");
    }
}
