//! What kbuild recorded about a built kernel tree: how each object was compiled (its `.cmd`
//! file), which files it depends on, and which binary (vmlinux or a module) it ends up in.
//!
//! klpforge compiles objects by replaying the recorded command with its output, dependency
//! file and (for the patched build) source redirected into a private work directory, so the
//! user's source and build trees are only ever read.

use crate::error::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A configured and built kernel: source tree and build (`O=`) tree.
#[derive(Debug, Clone)]
pub struct KernelTree {
    /// The source tree.
    pub src: PathBuf,
    /// The build tree (equal to `src` for in-tree builds).
    pub build: PathBuf,
}

/// The record kbuild keeps for one object (`<dir>/.<name>.o.cmd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdFile {
    /// The object, relative to the build tree (`fs/proc/cmdline.o`).
    pub object: String,
    /// The command that built it, as kbuild ran it from the build tree.
    pub command: String,
    /// The source file as the command names it (`../fs/proc/cmdline.c`).
    pub source: String,
    /// Files it depends on, as written in the record (relative to the build tree).
    pub deps: Vec<String>,
}

/// Parse the text of a `.cmd` file for `object`.
pub fn parse_cmd(object: &str, text: &str) -> Result<CmdFile> {
    let mut command = None;
    let mut source = None;
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("savedcmd_{object} := ")) {
            command = Some(rest.trim().to_string());
            in_deps = false;
        } else if let Some(rest) = line.strip_prefix(&format!("cmd_{object} := ")) {
            command.get_or_insert_with(|| rest.trim().to_string());
            in_deps = false;
        } else if let Some(rest) = line.strip_prefix(&format!("source_{object} := ")) {
            source = Some(rest.trim().to_string());
            in_deps = false;
        } else if line.starts_with(&format!("deps_{object} := ")) {
            in_deps = true;
        } else if in_deps {
            let item = line.trim().trim_end_matches('\\').trim();
            if item.is_empty() {
                if !line.trim_end().ends_with('\\') {
                    in_deps = false;
                }
                continue;
            }
            if !item.starts_with("$(wildcard") {
                deps.push(item.to_string());
            }
            if !line.trim_end().ends_with('\\') {
                in_deps = false;
            }
        }
    }
    Ok(CmdFile {
        object: object.to_string(),
        command: command.ok_or_else(|| format!("no build command recorded for {object}"))?,
        source: source.ok_or_else(|| format!("no source recorded for {object}"))?,
        deps,
    })
}

impl KernelTree {
    /// The `.cmd` record of `object` (relative to the build tree), if kbuild built it.
    pub fn cmd_file(&self, object: &str) -> Result<CmdFile> {
        let path = self.cmd_path(object);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (was {object} built?)", path.display()))?;
        parse_cmd(object, &text)
    }

    /// Where kbuild keeps the record of `object`.
    pub fn cmd_path(&self, object: &str) -> PathBuf {
        let p = Path::new(object);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.build
            .join(p.parent().unwrap_or(Path::new("")))
            .join(format!(".{name}.cmd"))
    }

    /// The source path, relative to the source tree, of a path as a record names it
    /// (`../fs/x.c` in an `O=` build, `fs/x.c` in-tree).
    pub fn source_relative(&self, recorded: &str) -> Option<String> {
        let abs = if Path::new(recorded).is_absolute() {
            PathBuf::from(recorded)
        } else {
            self.build.join(recorded)
        };
        let abs = normalize(&abs);
        let src = normalize(&self.src);
        abs.strip_prefix(&src)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// Every object of the build tree whose record depends on one of `sources` (paths
    /// relative to the source tree), with the record.
    pub fn objects_depending_on(
        &self,
        sources: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, CmdFile>> {
        let mut out = BTreeMap::new();
        // Every directory but hidden ones and the `source` link of an O= build.
        let walk = walkdir::WalkDir::new(&self.build)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name().to_string_lossy();
                e.depth() == 0
                    || !e.file_type().is_dir()
                    || (!name.starts_with('.') && name != "source")
            });
        for e in walk.flatten().filter(|e| e.file_type().is_file()) {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(obj_name) = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".o.cmd"))
            else {
                continue;
            };
            let dir = path.parent().unwrap_or(Path::new(""));
            let rel_dir = dir.strip_prefix(&self.build).unwrap_or(Path::new(""));
            let object = rel_dir
                .join(format!("{obj_name}.o"))
                .to_string_lossy()
                .into_owned();
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            let Ok(cmd) = parse_cmd(&object, &text) else {
                continue;
            };
            // Only C compilations: the patched sources are C files and headers.
            if !cmd.source.ends_with(".c") {
                continue;
            }
            let touched = std::iter::once(&cmd.source)
                .chain(cmd.deps.iter())
                .filter_map(|d| self.source_relative(d))
                .any(|d| sources.contains(&d));
            if touched {
                out.insert(object, cmd);
            }
        }
        Ok(out)
    }

    /// The module an object is linked into and where its module file would be, or `None`
    /// for vmlinux. kbuild's own command says it: module objects are compiled with
    /// `-DMODULE` and `-DKBUILD_MODNAME='"name"'` (so no `modules.order` or `.mod` records
    /// of a full build are needed); the file is the one `modules.order` names when the tree
    /// has one, else `<name>.ko` in the object's directory or the nearest one above it.
    pub fn owner(&self, cmd: &CmdFile) -> Option<(String, PathBuf)> {
        let name = module_of_command(&cmd.command)?;
        if let Some(found) = self.owner_by_records(&cmd.object) {
            return Some(found);
        }
        let file = format!("{name}.ko");
        let candidates: Vec<PathBuf> = dirs_upward(&cmd.object)
            .map(|d| self.build.join(d).join(&file))
            .collect();
        let found = candidates
            .iter()
            .find(|c| c.exists())
            .or(candidates.first());
        Some((
            name,
            found.cloned().unwrap_or_else(|| self.build.join(&file)),
        ))
    }

    /// The module `modules.order` and the `.mod` files of a full build put `object` in.
    fn owner_by_records(&self, object: &str) -> Option<(String, PathBuf)> {
        let order = std::fs::read_to_string(self.build.join("modules.order")).ok()?;
        for m in order.lines().map(str::trim).filter(|m| !m.is_empty()) {
            let mod_file = self.build.join(m.replace(".o", ".mod"));
            let members = std::fs::read_to_string(&mod_file).unwrap_or_default();
            if members.split_whitespace().any(|x| x == object) || m == object {
                let name = Path::new(m)
                    .file_stem()?
                    .to_string_lossy()
                    .replace('-', "_");
                return Some((name, self.build.join(m.replace(".o", ".ko"))));
            }
        }
        None
    }
}

/// The directory of `object` (a path relative to a tree) and each one above it, nearest
/// first, without the tree's root: `fs/xfs/libxfs/x.o` gives `fs/xfs/libxfs`, `fs/xfs`, `fs`.
/// Where kbuild puts a module file: in its objects' directory or one above.
pub fn dirs_upward(object: &str) -> impl Iterator<Item = &Path> {
    Path::new(object)
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
}

/// The module name a compile command builds for: `KBUILD_MODNAME` when the command has
/// `-DMODULE` (kbuild adds it only to objects linked into modules), with `-` as `_`.
pub fn module_of_command(command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    if !words.contains(&"-DMODULE") {
        return None;
    }
    let raw = words
        .iter()
        .find_map(|w| w.strip_prefix("-DKBUILD_MODNAME="))?;
    let name: String = raw
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    (!name.is_empty()).then(|| name.replace('-', "_"))
}

/// Lexically normalise a path (resolve `.` and `..` without touching the file system).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_cmd_record() {
        let text = "savedcmd_fs/proc/cmdline.o := gcc -Wp,-MMD,fs/proc/.cmdline.o.d -c -o fs/proc/cmdline.o ../fs/proc/cmdline.c  \n\nsource_fs/proc/cmdline.o := ../fs/proc/cmdline.c\n\ndeps_fs/proc/cmdline.o := \\\n  ../include/linux/kconfig.h \\\n    $(wildcard include/config/FOO) \\\n  ../fs/proc/internal.h \\\n\nfs/proc/cmdline.o: $(deps_fs/proc/cmdline.o)\n\n$(deps_fs/proc/cmdline.o):\n";
        let c = parse_cmd("fs/proc/cmdline.o", text).unwrap();
        assert!(c.command.ends_with("../fs/proc/cmdline.c"));
        assert_eq!(c.source, "../fs/proc/cmdline.c");
        assert_eq!(
            c.deps,
            vec!["../include/linux/kconfig.h", "../fs/proc/internal.h"]
        );
        assert!(parse_cmd("fs/x.o", "nothing").is_err());
    }

    #[test]
    fn module_membership_comes_from_the_command() {
        let module = "gcc -nostdinc -DMODULE -DKBUILD_BASENAME='\"binfmt_misc\"' -DKBUILD_MODNAME='\"binfmt_misc\"' -D__KBUILD_MODNAME=kmod_binfmt_misc -c -o fs/binfmt_misc.o ../fs/binfmt_misc.c";
        assert_eq!(module_of_command(module).as_deref(), Some("binfmt_misc"));
        let composite =
            "gcc -DMODULE -DKBUILD_MODNAME='\"nf-nat\"' -c -o net/netfilter/nf_nat_core.o x.c";
        assert_eq!(module_of_command(composite).as_deref(), Some("nf_nat"));
        let builtin = "gcc -nostdinc -DKBUILD_BASENAME='\"meminfo\"' -DKBUILD_MODNAME='\"meminfo\"' -c -o fs/proc/meminfo.o ../fs/proc/meminfo.c";
        assert_eq!(module_of_command(builtin), None);
    }

    #[test]
    fn source_paths_relative_to_the_tree() {
        let t = KernelTree {
            src: PathBuf::from("/k/linux"),
            build: PathBuf::from("/k/linux/build"),
        };
        assert_eq!(t.source_relative("../fs/x.c").as_deref(), Some("fs/x.c"));
        assert_eq!(
            t.source_relative("include/generated/autoconf.h").as_deref(),
            Some("build/include/generated/autoconf.h")
        );
        let t = KernelTree {
            src: PathBuf::from("/k/linux"),
            build: PathBuf::from("/k/linux"),
        };
        assert_eq!(t.source_relative("fs/x.c").as_deref(), Some("fs/x.c"));
    }
}
