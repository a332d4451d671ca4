//! Kbuild's module link, learned once per kernel build and replayed without make.
//!
//! `make M=<dir> modules` for a klpforge module spends most of its time in make itself: it
//! reads the kernel's makefiles three times and runs some thirty compiler probes, each a
//! shell, a `mkdir`, the compiler and an `rm`. The commands that make the module are few and,
//! for a given kernel build, always the same up to the work directory and the module name:
//! link the parts (and run objtool on the result), modpost, compile the `.mod.c` modpost
//! wrote and `module-common.c`, link the `.ko`. Kbuild records each in a `.cmd` file beside
//! its target.
//!
//! After a make run, [`Recipe::learn`] reads those records into a recipe (the directory and
//! the name as placeholders) and refuses anything it does not know: a step it has no name
//! for, a command that names an input object (their number changes from patch to patch), a
//! list file in another format. The caller proves the recipe by replaying it in the same
//! directory and comparing the module with make's byte for byte before keeping it
//! ([`learn_and_prove`]); later builds of the same kernel replay it ([`Recipe::replay`]) and
//! fall back to make if a command fails, so errors still read as kbuild's own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The placeholder for the module's work directory in a recipe.
const DIR: &str = "@KLPFORGE_DIR@";
/// The placeholder for the module name in a recipe.
const NAME: &str = "@KLPFORGE_NAME@";
/// The first line of a stored recipe (its format's version).
const MAGIC: &str = "klpforge kbuild recipe 1";

/// A target kbuild builds for a module: its file name (with [`NAME`] for the module name),
/// the stage it belongs to (targets of one stage need only earlier stages and build side by
/// side) and whether every kernel builds it.
struct Target {
    file: &'static str,
    stage: usize,
    required: bool,
}

/// What kbuild builds for an external module, in order.
const TARGETS: &[Target] = &[
    Target {
        file: "@KLPFORGE_NAME@.o",
        stage: 0,
        required: true,
    },
    Target {
        file: "Module.symvers",
        stage: 1,
        required: true,
    },
    Target {
        file: "@KLPFORGE_NAME@.mod.o",
        stage: 2,
        required: true,
    },
    Target {
        file: ".module-common.o",
        stage: 2,
        required: false,
    },
    Target {
        file: "@KLPFORGE_NAME@.ko",
        stage: 3,
        required: true,
    },
];

/// The module being built: where, under which name, from which objects.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// The work directory, as make's `M=` names it.
    pub dir: &'a str,
    /// The module name.
    pub name: &'a str,
    /// The input objects in link order (file names in `dir`).
    pub objects: &'a [String],
}

impl Layout<'_> {
    /// The `<name>.mod` list kbuild writes (an object path a line).
    fn mod_list(&self) -> String {
        self.objects
            .iter()
            .map(|o| format!("{}/{o}\n", self.dir))
            .collect()
    }

    /// The `modules.order` kbuild writes.
    fn order(&self) -> String {
        format!("{}/{}.o\n", self.dir, self.name)
    }
}

/// The commands that build a module, by stage, with placeholders for its directory and name,
/// and the conditions they were learned under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    stages: Vec<Vec<String>>,
    /// A digest of [`conditions`] when the recipe was learned.
    conditions: u64,
}

/// Environment variables kbuild reads that change the commands it runs (with every
/// `KBUILD_*`); `PATH` also decides which compiler and assembler run.
const KBUILD_ENV: &[&str] = &[
    "ARCH",
    "CROSS_COMPILE",
    "LLVM",
    "LLVM_IAS",
    "CC",
    "LD",
    "AR",
    "NM",
    "OBJCOPY",
    "OBJDUMP",
    "KCFLAGS",
    "KCPPFLAGS",
    "KAFLAGS",
    "KRUSTFLAGS",
    "CFLAGS_MODULE",
    "AFLAGS_MODULE",
    "LDFLAGS_MODULE",
    "PATH",
];

/// What the commands depend on besides the kernel build (which the cache key covers): the
/// programs they run (path, size and time of each, found as the shell finds them, from the
/// kernel build directory) and kbuild's environment variables. A recipe learned under other
/// conditions is not replayed: make runs and a new recipe is learned.
fn conditions(kernel: &Path, stages: &[Vec<String>]) -> u64 {
    let mut text = String::new();
    for command in stages.iter().flatten() {
        for segment in command.split([';', '&', '|']) {
            let Some(program) = segment.split_whitespace().find(|w| !w.contains('=')) else {
                continue;
            };
            let found = if program.contains('/') {
                Some(kernel.join(program))
            } else {
                crate::probes::resolve(std::ffi::OsStr::new(program))
            };
            match found {
                Some(p) => text.push_str(&crate::probes::identity(&p)),
                None => text.push_str(program),
            }
            text.push('\n');
        }
    }
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| KBUILD_ENV.contains(&k.as_str()) || k.starts_with("KBUILD_"))
        .collect();
    env.sort();
    for (k, v) in env {
        text.push_str(&format!("{k}={v}\n"));
    }
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// What a replay printed: every command's standard output and error, in stage order.
#[derive(Debug, Default)]
pub struct ReplayOutput {
    /// The commands' standard output.
    pub stdout: Vec<u8>,
    /// The commands' standard error.
    pub stderr: Vec<u8>,
}

impl Recipe {
    /// Learn the recipe from the records of a successful `make M=` run in `layout.dir`.
    /// `strip` are command prefixes to drop (a compiler wrapper that only make needed). The
    /// error says why the run cannot be replayed.
    pub fn learn(kernel: &Path, layout: Layout<'_>, strip: &[String]) -> Result<Recipe, String> {
        let dir = Path::new(layout.dir);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{f}: {e}"));
        if read(&format!("{}.mod", layout.name))? != layout.mod_list() {
            return Err(format!("{}.mod is not a list of object paths", layout.name));
        }
        if read("modules.order")? != layout.order() {
            return Err("modules.order is not the module's path".into());
        }
        let mut known = vec![
            format!(".{}.mod.cmd", layout.name),
            ".modules.order.cmd".to_string(),
        ];
        known.extend(layout.objects.iter().map(|o| format!(".{o}.cmd")));
        let mut stages: Vec<Vec<String>> = Vec::new();
        for t in TARGETS {
            let file = t.file.replace(NAME, layout.name);
            let record = format!(".{file}.cmd");
            known.push(record.clone());
            let text = match std::fs::read_to_string(dir.join(&record)) {
                Ok(text) => text,
                Err(_) if !t.required => continue,
                Err(e) => return Err(format!("{record}: {e}")),
            };
            let command = saved_command(&text, &format!("{}/{file}", layout.dir))
                .ok_or_else(|| format!("{record}: no saved command for {file}"))?;
            let command =
                template(&command, layout, strip).map_err(|e| format!("{record}: {e}"))?;
            if stages.len() <= t.stage {
                stages.resize(t.stage + 1, Vec::new());
            }
            stages[t.stage].push(command);
        }
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let f = entry.file_name().to_string_lossy().into_owned();
            if f.starts_with('.') && f.ends_with(".cmd") && !known.contains(&f) {
                return Err(format!("kbuild ran a step klpforge does not know ({f})"));
            }
        }
        let conditions = conditions(kernel, &stages);
        Ok(Recipe { stages, conditions })
    }

    /// The recipe stored at `path`, if there is a readable one learned under the conditions
    /// of now (see [`conditions`]) for the kernel build directory `kernel`.
    pub fn load(path: &Path, kernel: &Path) -> Option<Recipe> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let learned = u64::from_str_radix(lines.next()?.strip_prefix("conditions ")?, 16).ok()?;
        let mut stages: Vec<Vec<String>> = Vec::new();
        for line in lines {
            let (stage, command) = line.split_once('\t')?;
            let stage: usize = stage.parse().ok()?;
            if stage > stages.len() {
                return None;
            }
            if stage == stages.len() {
                stages.push(Vec::new());
            }
            stages[stage].push(command.to_string());
        }
        let recipe = Recipe {
            conditions: conditions(kernel, &stages),
            stages,
        };
        (!recipe.stages.is_empty() && recipe.conditions == learned).then_some(recipe)
    }

    /// Keep the recipe at `path` (best effort: written under a temporary name, then renamed).
    pub fn store(&self, path: &Path) {
        let mut text = format!("{MAGIC}\nconditions {:016x}\n", self.conditions);
        for (i, stage) in self.stages.iter().enumerate() {
            for c in stage {
                text.push_str(&format!("{i}\t{c}\n"));
            }
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Build the module `layout` describes by running the recipe's commands in `kernel` (the
    /// kernel build directory, where make runs them), after writing the list files kbuild
    /// writes and copying each `<object>_shipped` to its object. The error holds the failing
    /// command's output.
    pub fn replay(&self, kernel: &Path, layout: Layout<'_>) -> Result<ReplayOutput, String> {
        let dir = Path::new(layout.dir);
        let write = |f: String, text: String| {
            std::fs::write(dir.join(&f), text).map_err(|e| format!("{f}: {e}"))
        };
        write(format!("{}.mod", layout.name), layout.mod_list())?;
        write("modules.order".into(), layout.order())?;
        for o in layout.objects {
            let shipped = dir.join(format!("{o}_shipped"));
            std::fs::copy(&shipped, dir.join(o))
                .map_err(|e| format!("{}: {e}", shipped.display()))?;
        }
        let mut out = ReplayOutput::default();
        for stage in &self.stages {
            let children = stage
                .iter()
                .map(|c| {
                    let command = c.replace(DIR, layout.dir).replace(NAME, layout.name);
                    Command::new("sh")
                        .arg("-c")
                        .arg(format!("set -e; {command}"))
                        .current_dir(kernel)
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .map(|child| (command, child))
                        .map_err(|e| format!("cannot run sh: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let mut failed = None;
            for (command, child) in children {
                let done = child
                    .wait_with_output()
                    .map_err(|e| format!("{command}: {e}"))?;
                out.stdout.extend_from_slice(&done.stdout);
                out.stderr.extend_from_slice(&done.stderr);
                if !done.status.success() && failed.is_none() {
                    failed = Some(format!(
                        "{command}: {}: {}",
                        done.status,
                        String::from_utf8_lossy(&done.stderr).trim()
                    ));
                }
            }
            if let Some(f) = failed {
                return Err(f);
            }
        }
        Ok(out)
    }
}

/// Learn the recipe of the make run that just built `layout` in its directory and prove it:
/// replayed there, it must give make's module byte for byte; then it is kept at `path`. Make's
/// module is left in place either way. The error says why no recipe was kept.
pub fn learn_and_prove(
    kernel: &Path,
    layout: Layout<'_>,
    strip: &[String],
    path: &Path,
) -> Result<(), String> {
    let recipe = Recipe::learn(kernel, layout, strip)?;
    let ko = Path::new(layout.dir).join(format!("{}.ko", layout.name));
    let made = std::fs::read(&ko).map_err(|e| format!("{}: {e}", ko.display()))?;
    let replayed = recipe
        .replay(kernel, layout)
        .and_then(|_| std::fs::read(&ko).map_err(|e| format!("{}: {e}", ko.display())));
    let verdict = match replayed {
        Ok(bytes) if bytes == made => Ok(()),
        Ok(_) => Err("the replayed module differs from make's".to_string()),
        Err(e) => Err(e),
    };
    std::fs::write(&ko, &made).map_err(|e| format!("{}: {e}", ko.display()))?;
    verdict?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    recipe.store(path);
    Ok(())
}

/// Remove what a replay built, so that make, run after a failed replay, builds it all again.
pub fn discard_outputs(layout: Layout<'_>) {
    let dir = Path::new(layout.dir);
    for t in TARGETS {
        let _ = std::fs::remove_file(dir.join(t.file.replace(NAME, layout.name)));
    }
    let _ = std::fs::remove_file(dir.join(format!("{}.mod.c", layout.name)));
}

/// Where the recipe for the init object cached at `init` is kept (beside it; both belong to
/// one kernel build and its options).
pub fn recipe_path(init: &Path) -> PathBuf {
    init.with_extension("recipe")
}

/// The command saved for `target` in a kbuild `.cmd` file (`savedcmd_<target> := ...`, or
/// `cmd_<target> := ...` in older kernels), with make's escapes undone (`$$` is `$`,
/// `$(pound)` is `#`); `None` when there is none or it holds another make reference.
fn saved_command(text: &str, target: &str) -> Option<String> {
    let line = text.lines().find_map(|l| {
        l.strip_prefix("savedcmd_")
            .or_else(|| l.strip_prefix("cmd_"))?
            .strip_prefix(target)?
            .strip_prefix(" := ")
    })?;
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("$(pound)") {
            out.push('#');
            rest = r;
        } else {
            return None;
        }
    }
    out.push_str(rest);
    Some(out)
}

/// `command` with the directory and the module name as placeholders. Every mention of the
/// name must be a whole word (or kbuild's `kmod_<name>`); a command that still names the
/// directory, an input object or a placeholder is refused.
fn template(command: &str, layout: Layout<'_>, strip: &[String]) -> Result<String, String> {
    if command.contains(DIR) || command.contains(NAME) {
        return Err("the command holds a klpforge placeholder".into());
    }
    let mut c = command.to_string();
    for s in strip {
        c = c.replace(s.as_str(), "");
    }
    let c = c.replace(&format!("{}/", layout.dir), &format!("{DIR}/"));
    if c.contains(layout.dir) {
        return Err(format!("the command names the directory {}", layout.dir));
    }
    if let Some(o) = layout.objects.iter().find(|o| c.contains(o.as_str())) {
        return Err(format!("the command names the input object {o}"));
    }
    // Where kbuild puts the name: file names in the directory, the quoted KBUILD_MODNAME and
    // KBUILD_BASENAME, and `kmod_<name>`; a mention anywhere else (a path that happens to
    // hold it) is refused rather than guessed.
    const BEFORE: [&str; 4] = ["@KLPFORGE_DIR@/", "@KLPFORGE_DIR@/.", "'\"", "kmod_"];
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = c.as_bytes();
    let mut out = String::with_capacity(c.len());
    let mut last = 0;
    for (i, _) in c.match_indices(layout.name) {
        let end = i + layout.name.len();
        let before = BEFORE.iter().any(|p| c[..i].ends_with(p));
        let after = end == c.len() || !word(bytes[end]);
        if !(before && after) {
            return Err(format!(
                "the command names {} where kbuild does not put the module name",
                layout.name
            ));
        }
        if i >= last {
            out.push_str(&c[last..i]);
            out.push_str(NAME);
            last = end;
        }
    }
    out.push_str(&c[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch work directory and the objects a test links in it.
    struct Work {
        dir: tempfile::TempDir,
        /// The directory as make's `M=` names it.
        dir_text: String,
        objects: Vec<String>,
    }

    impl Work {
        fn new(objects: Vec<String>) -> Work {
            let dir = tempfile::tempdir().unwrap();
            let dir_text = dir.path().to_str().unwrap().to_string();
            Work {
                dir,
                dir_text,
                objects,
            }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        /// The layout of module `name` linking this directory's objects.
        fn layout<'a>(&'a self, name: &'a str) -> Layout<'a> {
            Layout {
                dir: &self.dir_text,
                name,
                objects: &self.objects,
            }
        }

        /// Give each object the contents `contents(i)` its build's stand-in commands read.
        fn ship(&self, contents: impl Fn(usize) -> String) {
            for (i, o) in self.objects.iter().enumerate() {
                std::fs::write(self.path().join(format!("{o}_shipped")), contents(i)).unwrap();
            }
        }
    }

    fn objects() -> Vec<String> {
        vec!["klpforge_init.o".into(), "klpforge_part0.o".into()]
    }

    #[test]
    fn saved_commands_undo_makes_escapes() {
        let text = "savedcmd_/w/m.mod := printf '%s\\n' a.o | awk '!x[$$0]++ { print(\"/w/\"$$0) }' > /w/m.mod\n\ndeps := x\n";
        assert_eq!(
            saved_command(text, "/w/m.mod").as_deref(),
            Some("printf '%s\\n' a.o | awk '!x[$0]++ { print(\"/w/\"$0) }' > /w/m.mod")
        );
        assert_eq!(
            saved_command("cmd_/w/a.o := echo $(pound)x\n", "/w/a.o").as_deref(),
            Some("echo #x")
        );
        assert_eq!(
            saved_command("savedcmd_/w/a.o := $(CC) x\n", "/w/a.o"),
            None
        );
        assert_eq!(saved_command("savedcmd_/w/b.o := cc\n", "/w/a.o"), None);
    }

    #[test]
    fn templates_replace_the_directory_and_whole_word_names_only() {
        let objs = objects();
        let layout = Layout {
            dir: "/w/mod",
            name: "klp_x",
            objects: &objs,
        };
        let strip = vec!["/bin/klpforge __cc-probe /c ".to_string()];
        let t = template(
            "/bin/klpforge __cc-probe /c gcc -Wp,-MMD,/w/mod/.klp_x.mod.o.d -DKBUILD_BASENAME='\"klp_x.mod\"' -DKBUILD_MODNAME='\"klp_x\"' -D__KBUILD_MODNAME=kmod_klp_x -c -o /w/mod/klp_x.mod.o /w/mod/klp_x.mod.c",
            layout,
            &strip,
        )
        .unwrap();
        assert_eq!(
            t,
            "gcc -Wp,-MMD,@KLPFORGE_DIR@/.@KLPFORGE_NAME@.mod.o.d -DKBUILD_BASENAME='\"@KLPFORGE_NAME@.mod\"' -DKBUILD_MODNAME='\"@KLPFORGE_NAME@\"' -D__KBUILD_MODNAME=kmod_@KLPFORGE_NAME@ -c -o @KLPFORGE_DIR@/@KLPFORGE_NAME@.mod.o @KLPFORGE_DIR@/@KLPFORGE_NAME@.mod.c"
        );
        // A name inside a longer word or anywhere kbuild does not put it, the bare directory
        // or an input object: not replayable.
        assert!(template("gcc -DX=klp_x_y", layout, &[]).is_err());
        assert!(template("gcc -I/src/klp_x/include", layout, &[]).is_err());
        assert!(template("cd /w/mod && ld", layout, &[]).is_err());
        assert!(template("ld /w/mod/klpforge_part0.o", layout, &[]).is_err());
        assert!(template("echo @KLPFORGE_DIR@", layout, &[]).is_err());
    }

    /// Write the records a make run leaves for `layout`, with commands that make each target
    /// from the previous one (and say which name they built).
    fn fake_run(layout: Layout<'_>, extra: Option<&str>) {
        let d = Path::new(layout.dir);
        let (dir, name) = (layout.dir, layout.name);
        std::fs::write(d.join(format!("{name}.mod")), layout.mod_list()).unwrap();
        std::fs::write(d.join("modules.order"), layout.order()).unwrap();
        let cmds = [
            (
                format!("{name}.o"),
                format!("cat $$(cat {dir}/{name}.mod) > {dir}/{name}.o"),
            ),
            (
                "Module.symvers".into(),
                format!("cp {dir}/{name}.o {dir}/Module.symvers"),
            ),
            (
                format!("{name}.mod.o"),
                format!("echo '\"{name}\"' > {dir}/{name}.mod.o"),
            ),
            (
                format!("{name}.ko"),
                format!("cat {dir}/Module.symvers {dir}/{name}.mod.o > {dir}/{name}.ko"),
            ),
        ];
        for (target, cmd) in cmds
            .iter()
            .chain(extra.map(|e| (e.to_string(), "true".to_string())).iter())
        {
            std::fs::write(
                d.join(format!(".{target}.cmd")),
                format!("savedcmd_{dir}/{target} := {cmd}\n"),
            )
            .unwrap();
        }
        for o in layout.objects {
            std::fs::write(d.join(format!(".{o}.cmd")), "savedcmd_x := shipped\n").unwrap();
        }
    }

    #[test]
    fn learned_recipes_replay_for_another_directory_and_name() {
        let a = Work::new(objects());
        let learnt = a.layout("klp_a");
        fake_run(learnt, None);
        let recipe = Recipe::learn(Path::new("/"), learnt, &[]).unwrap();
        assert_eq!(
            recipe.stages.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 1, 1, 1]
        );
        let stored = a.path().join("r.recipe");
        recipe.store(&stored);
        assert_eq!(Recipe::load(&stored, Path::new("/")), Some(recipe.clone()));

        let mut three = objects();
        three.push("klpforge_part1.o".into());
        let b = Work::new(three);
        b.ship(|i| format!("part{i}\n"));
        recipe.replay(Path::new("/"), b.layout("klp_b")).unwrap();
        let ko = std::fs::read_to_string(b.path().join("klp_b.ko")).unwrap();
        assert_eq!(ko, "part0\npart1\npart2\n\"klp_b\"\n");
        assert_eq!(
            std::fs::read_to_string(b.path().join("modules.order")).unwrap(),
            format!("{}/klp_b.o\n", b.dir_text)
        );
    }

    #[test]
    fn unknown_steps_and_failing_commands_are_not_replayed() {
        let a = Work::new(objects());
        let layout = a.layout("klp_a");
        fake_run(layout, Some("klp_a.ko.btf"));
        let err = Recipe::learn(Path::new("/"), layout, &[]).unwrap_err();
        assert!(err.contains(".klp_a.ko.btf.cmd"), "{err}");

        let failing = Recipe {
            stages: vec![vec!["echo oops >&2; false".into()]],
            conditions: 0,
        };
        a.ship(|_| "x".into());
        let err = failing.replay(Path::new("/"), layout).unwrap_err();
        assert!(err.contains("oops"), "{err}");
    }

    /// A recipe is kept only when its replay gives make's module; make's module stays either
    /// way.
    #[test]
    fn recipes_are_kept_only_when_the_replay_matches_make() {
        let a = Work::new(objects());
        let layout = a.layout("klp_a");
        a.ship(|_| "obj\n".into());
        fake_run(layout, None);
        let ko = a.path().join("klp_a.ko");
        let stored = a.path().join("k.recipe");
        // make's module as the recipe's commands make it: proven and kept.
        std::fs::write(&ko, "obj\nobj\n\"klp_a\"\n").unwrap();
        learn_and_prove(Path::new("/"), layout, &[], &stored).unwrap();
        assert!(Recipe::load(&stored, Path::new("/")).is_some());
        // make's module made some other way: not kept, and make's bytes are back in place.
        std::fs::remove_file(&stored).unwrap();
        std::fs::write(&ko, "made by make\n").unwrap();
        let err = learn_and_prove(Path::new("/"), layout, &[], &stored).unwrap_err();
        assert!(err.contains("differs"), "{err}");
        assert!(!stored.exists());
        assert_eq!(std::fs::read_to_string(&ko).unwrap(), "made by make\n");
    }

    /// A recipe whose programs changed since it was learned (a rebuilt objtool, another
    /// compiler) is not replayed.
    #[test]
    fn recipes_learned_with_other_programs_are_not_loaded() {
        let kernel = tempfile::tempdir().unwrap();
        std::fs::write(kernel.path().join("tool"), "v1").unwrap();
        let stages = vec![vec!["./tool a; sh -c b".to_string()]];
        let recipe = Recipe {
            conditions: conditions(kernel.path(), &stages),
            stages,
        };
        let stored = kernel.path().join("r.recipe");
        recipe.store(&stored);
        assert_eq!(Recipe::load(&stored, kernel.path()), Some(recipe));
        std::fs::write(kernel.path().join("tool"), "version 2").unwrap();
        assert_eq!(Recipe::load(&stored, kernel.path()), None);
    }
}
