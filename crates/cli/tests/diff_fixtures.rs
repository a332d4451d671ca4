//! `klpforge diff` against the C fixture pairs in `tests/fixtures/diff`.
//!
//! Every case directory holds `orig.c` and `patched.c`: a small source file and the same file
//! with a patch applied. For every installed toolchain the case runs on (`//# arch:` restricts
//! it), both files are compiled by the real gcc with kernel-like flags, `klpforge diff` is run
//! on the two objects, and everything the case's directives promise is checked. All failures
//! of all cases are collected and reported together by one assertion at the end, so one run
//! shows the whole picture; a summary line `diff fixtures: N cases, M checks` is printed.
//!
//! # Directives
//!
//! Directives are `//# key: value` lines (see `klpforge_testkit::fixture`). They are read from
//! `orig.c`; `patched.c` must repeat them unchanged on the same lines (`patched.c` is `orig.c`
//! plus the patch, so `diff -u orig.c patched.c` shows exactly the patch and `__LINE__` only
//! moves where the patch moves it). Unknown keys are errors. Lists are whitespace-separated
//! and accumulate over repeated lines. A NAME in a list ending in `?` is optional: it may or
//! may not be in the actual set.
//!
//! Running `klpforge diff`:
//!
//! * `arch: A B`, `cflags: ...`, `skip: why`: as in the testkit (architectures, extra gcc
//!   flags, skip the case).
//! * `variant: NAME[@ARCH,...] FLAGS`: one more run (on those architectures) of the case with FLAGS appended (`-Os`, the kernel's
//!   `-mno-sse ...`, `-fjump-tables`); every directive applies to every variant.
//! * `diff-args: ARGS`: extra arguments, split on whitespace, placed before the positionals
//!   (e.g. `--objname mymod`). `--json REPORT` is always passed by the runner.
//! * `symvers: FIELDS`: one line of a Module.symvers file passed with `--symvers`. Fields are
//!   separated by whitespace (or by literal `\t` escapes) and written tab-separated; a line of
//!   four fields (`CRC SYMBOL MODULE EXPORT_TYPE`) gets an empty fifth (namespace) field, as
//!   kbuild writes it. Without `symvers:` lines no `--symvers` is passed.
//!
//! Fixture preconditions (what gcc must have produced for the case to prove anything; a
//! failure here is reported as `precondition`, meaning the fixture no longer fits the
//! compiler, not that `klpforge diff` is wrong):
//!
//! * `require-orig: NAME ...` / `require-patched: NAME ...`: the compiled object defines a
//!   symbol NAME; `!NAME` requires that it defines none.
//! * `require-orig-global: NAME ...`: the original object defines NAME as a GLOBAL symbol.
//! * `require-orig-reloc: FROM -> TO` / `require-patched-reloc: FROM -> TO`: the object has a
//!   relocation from FROM to TO (FROM and TO as for `expect-reloc`).
//!
//! Expectations:
//!
//! * `expect-exit: N`: the exit status (default 0). 0 = OUT written, 3 = no functional change,
//!   4 = refused. With 0, the directives below describe OUT; with 3 or 4, OUT must not exist
//!   and `expect-changed`/`expect-new`/`expect-defined` are not allowed. An exit-4 case must
//!   have at least one `expect-refused`. An exit-0 case must have `expect-defined`.
//! * `expect-changed: NAME ...`: the exact set of changed functions, in the JSON report and on
//!   stdout (`changed function: NAME` lines). For an exit-0 case without it: the empty set.
//! * `expect-new: NAME ...`: the exact set of new functions (report and `new function: NAME`
//!   lines). For an exit-0 case without it: the empty set.
//! * `expect-defined: NAME ...`: the exact set of the report's `output_functions` (which must
//!   also equal the FUNC symbols defined in OUT, `__pfx_`/`__cfi_` left out).
//! * `expect-refused: TEXT`: some refusal of the report, as `SYMBOL: REASON`, or stderr
//!   contains TEXT (case-sensitive).
//! * `expect-warning: TEXT`: some warning of the report, or stderr, contains TEXT.
//! * `expect-klp: NAME,POS`: some klp relocation of the report has the symbol
//!   `.klp.sym.<objname>.NAME,POS` (objname from `--objname`, default `vmlinux`); a value
//!   starting with `.klp.sym.` is taken as the whole symbol name (for another object's
//!   symbols). OUT must also have a symbol of that name.
//! * `expect-no-klp: NAME`: no klp relocation of the report, and no `.klp.*` symbol in OUT,
//!   is for a symbol named NAME (any objname and sympos). A trailing `*` matches any suffix.
//! * `expect-section: NAME` / `expect-no-section: NAME`: OUT has / has no section NAME.
//! * `expect-size: NAME BYTES`: the sections named NAME in OUT total BYTES bytes (so a
//!   special section's entry count is checked exactly).
//! * `expect-special: NAME KEPT DROPPED`: the report's `special_sections` has an entry for
//!   NAME with these counts (`*` for either count means any). KEPT counts the entries carried
//!   into OUT; DROPPED the entries describing kept code that were left out on purpose (a
//!   module tracepoint's jump label, say). Entries of functions not in OUT count in neither.
//! * `expect-reloc: FROM -> TO` / `expect-no-reloc: FROM -> TO`: OUT has (has no) relocation
//!   from FROM to TO. FROM is a section name (relocations applying to any section of that
//!   name) or else a defined symbol (relocations within its bytes). For `expect-reloc`, TO
//!   matches a relocation whose symbol is named TO or is the section symbol of a section
//!   defining TO. For `expect-no-reloc`, TO also matches any symbol or section name ending in
//!   `.TO` or containing `.TO,` (klp and placeholder symbols, `.text.TO`), so a dropped
//!   entry cannot hide behind a klp relocation.
//! * `expect-section-relocs: S`: OUT has relocations applying to S, all against section
//!   symbols (the form objtool requires in its `.discard.*` annotations).
//! * `expect-local: NAME`: OUT defines NAME, and only as a LOCAL symbol.
//! * `expect-symbol: NAME` / `expect-no-symbol: NAME`: OUT defines (does not define) a
//!   symbol NAME (trailing `*` matches any suffix).
//! * `expect-string: SECTION TEXT` / `expect-no-string: SECTION TEXT`: `readelf -p SECTION`
//!   of OUT lists (does not list) the NUL-terminated string TEXT.
//!
//! Always checked: the report (`--json`) exists for exits 0, 3 and 4, names the objname and
//! the matching `result`; stdout's changed/new lines equal the report's lists. For exit 0:
//! every defined function and object of OUT lies within its section (functions overlap none),
//! `readelf -W -a OUT` prints no warning, the toolchain's `ld -r` links OUT with a small stub
//! object without a message, and a second run writes a byte-identical OUT, report and stdout.
//!
//! `KLPFORGE_DIFF_CASES=a,b` runs only the cases whose names contain one of the words;
//! `KLPFORGE_DIFF_ARCHES=x86_64` only those architectures. `KLPFORGE_KEEP_SCRATCH=1` keeps
//! the objects and outputs (the failure messages name the directory).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use klpforge_testkit::{
    compile_c_source, fixtures_root, load_cases, toolchain, Directive, FixtureCase, ScratchDir,
    Toolchain, ARCHES,
};
use libtest_mimic::{Arguments, Trial};
use serde_json::Value;

/// How long one `klpforge diff` run may take before it is killed.
const DIFF_TIMEOUT: Duration = Duration::from_secs(120);

/// Directive keys that describe OUT, so only an exit-0 case may use them.
const OUT_ONLY_KEYS: &[&str] = &[
    "expect-klp",
    "expect-no-klp",
    "expect-section",
    "expect-no-section",
    "expect-size",
    "expect-reloc",
    "expect-no-reloc",
    "expect-section-relocs",
    "expect-local",
    "expect-symbol",
    "expect-no-symbol",
    "expect-string",
    "expect-no-string",
];

/// Every directive key a diff case may use.
const KNOWN_KEYS: &[&str] = &[
    "arch",
    "cflags",
    "variant",
    "skip",
    "diff-args",
    "symvers",
    "require-orig",
    "require-patched",
    "require-orig-global",
    "require-orig-reloc",
    "require-patched-reloc",
    "expect-exit",
    "expect-changed",
    "expect-new",
    "expect-defined",
    "expect-refused",
    "expect-warning",
    "expect-klp",
    "expect-no-klp",
    "expect-section",
    "expect-no-section",
    "expect-size",
    "expect-special",
    "expect-reloc",
    "expect-no-reloc",
    "expect-section-relocs",
    "expect-local",
    "expect-symbol",
    "expect-no-symbol",
    "expect-string",
    "expect-no-string",
];

// ---------------------------------------------------------------------------------------------
// Case specification
// ---------------------------------------------------------------------------------------------

/// A set of names where some members are optional (`NAME?`).
#[derive(Clone, Debug, Default)]
struct NameSet {
    required: BTreeSet<String>,
    optional: BTreeSet<String>,
}

impl NameSet {
    fn add_words(&mut self, value: &str) {
        for w in value.split_whitespace() {
            match w.strip_suffix('?') {
                Some(opt) => {
                    self.optional.insert(opt.to_string());
                }
                None => {
                    self.required.insert(w.to_string());
                }
            }
        }
    }

    /// `None` when `actual` fits, else a description of the difference.
    fn mismatch(&self, actual: &BTreeSet<String>) -> Option<String> {
        let missing: Vec<&String> = self.required.difference(actual).collect();
        let extra: Vec<&String> = actual
            .iter()
            .filter(|a| !self.required.contains(*a) && !self.optional.contains(*a))
            .collect();
        if missing.is_empty() && extra.is_empty() {
            return None;
        }
        let mut s = format!("got {}", show_set(actual));
        if !missing.is_empty() {
            let _ = write!(s, "; missing {missing:?}");
        }
        if !extra.is_empty() {
            let _ = write!(s, "; unexpected {extra:?}");
        }
        Some(s)
    }
}

fn show_set(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "{}".to_string()
    } else {
        format!("{{{}}}", s.iter().cloned().collect::<Vec<_>>().join(" "))
    }
}

/// A directive to evaluate after the run, with where it came from.
#[derive(Clone, Debug)]
struct Check {
    key: String,
    value: String,
    /// `orig.c:LINE`.
    at: String,
}

impl Check {
    fn label(&self) -> String {
        format!("{} `{}: {}`", self.at, self.key, self.value)
    }
}

/// Everything a case's directives say, validated.
#[derive(Clone, Debug)]
struct Spec {
    exit: i32,
    diff_args: Vec<String>,
    objname: String,
    symvers: Vec<String>,
    changed: Option<NameSet>,
    new: Option<NameSet>,
    defined: Option<NameSet>,
    /// Directives checked against the compiled inputs.
    preconditions: Vec<Check>,
    /// Directives checked against the run and OUT (all but the sets above).
    checks: Vec<Check>,
}

/// Parses `FROM -> TO`.
fn arrow(value: &str) -> Option<(&str, &str)> {
    let (a, b) = value.split_once("->")?;
    let (a, b) = (a.trim(), b.trim());
    (!a.is_empty() && !b.is_empty() && !a.contains(' ') && !b.contains(' ')).then_some((a, b))
}

/// Builds one Module.symvers line from a `symvers:` value.
fn symvers_line(value: &str) -> Option<String> {
    let fields: Vec<String> = if value.contains("\\t") {
        value.split("\\t").map(|f| f.trim().to_string()).collect()
    } else {
        value.split_whitespace().map(str::to_string).collect()
    };
    match fields.len() {
        4 => Some(format!("{}\t", fields.join("\t"))),
        5 => Some(fields.join("\t")),
        _ => None,
    }
}

impl Spec {
    /// Validates the directives of `case`; every problem is returned, one per string.
    fn parse(case: &FixtureCase) -> Result<Spec, Vec<String>> {
        let mut errors = Vec::new();
        let orig_dirs: Vec<&Directive> = case
            .directives
            .iter()
            .filter(|d| d.file == case.orig)
            .collect();
        let patched_dirs: Vec<&Directive> = case
            .directives
            .iter()
            .filter(|d| Some(&d.file) == case.patched.as_ref())
            .collect();
        if case.patched.is_none() {
            errors.push("no patched.c".to_string());
        }
        let same = |a: &[&Directive], b: &[&Directive]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.key == y.key && x.value == y.value && x.line == y.line)
        };
        if case.patched.is_some() && !same(&orig_dirs, &patched_dirs) {
            errors.push(
                "patched.c must repeat orig.c's directives unchanged, on the same lines".into(),
            );
        }
        let first_line = std::fs::read_to_string(&case.orig)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
            .unwrap_or_default();
        if !first_line.starts_with(&format!("// {}: ", case.name)) {
            errors.push(format!(
                "orig.c must start with `// {}: <what the case proves>`",
                case.name
            ));
        }

        let mut spec = Spec {
            exit: 0,
            diff_args: Vec::new(),
            objname: "vmlinux".to_string(),
            symvers: Vec::new(),
            changed: None,
            new: None,
            defined: None,
            preconditions: Vec::new(),
            checks: Vec::new(),
        };
        let mut exit_seen = false;
        for d in &orig_dirs {
            let at = format!("orig.c:{}", d.line);
            let bad = |what: &str| format!("{at}: `{}: {}`: {what}", d.key, d.value);
            let v = d.value.as_str();
            let words: Vec<&str> = v.split_whitespace().collect();
            let check = Check {
                key: d.key.clone(),
                value: d.value.clone(),
                at: at.clone(),
            };
            match d.key.as_str() {
                "arch" | "cflags" | "skip" => {}
                "variant" => {
                    if words.len() < 2 {
                        errors.push(bad("expected a name and flags"));
                    }
                }
                "diff-args" => spec.diff_args.extend(words.iter().map(|w| w.to_string())),
                "symvers" => match symvers_line(v) {
                    Some(line) => spec.symvers.push(line),
                    None => errors.push(bad("expected 4 or 5 fields")),
                },
                "expect-exit" => {
                    if exit_seen {
                        errors.push(bad("expect-exit given twice"));
                    }
                    exit_seen = true;
                    match v.parse::<i32>() {
                        Ok(n) if [0, 1, 2, 3, 4].contains(&n) => spec.exit = n,
                        _ => errors.push(bad("expected 0, 1, 2, 3 or 4")),
                    }
                }
                "expect-changed" => spec
                    .changed
                    .get_or_insert_with(NameSet::default)
                    .add_words(v),
                "expect-new" => spec.new.get_or_insert_with(NameSet::default).add_words(v),
                "expect-defined" => spec
                    .defined
                    .get_or_insert_with(NameSet::default)
                    .add_words(v),
                "require-orig" | "require-patched" | "require-orig-global" => {
                    if words.is_empty() {
                        errors.push(bad("expected symbol names"));
                    }
                    spec.preconditions.push(check);
                }
                "require-orig-reloc" | "require-patched-reloc" => {
                    if arrow(v).is_none() {
                        errors.push(bad("expected `FROM -> TO`"));
                    }
                    spec.preconditions.push(check);
                }
                "expect-reloc" | "expect-no-reloc" => {
                    if arrow(v).is_none() {
                        errors.push(bad("expected `FROM -> TO`"));
                    }
                    spec.checks.push(check);
                }
                "expect-refused" | "expect-warning" => {
                    if v.is_empty() {
                        errors.push(bad("expected a text"));
                    }
                    spec.checks.push(check);
                }
                "expect-klp" => {
                    let ok = v.rsplit_once(',').is_some_and(|(n, p)| {
                        !n.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
                    }) && words.len() == 1;
                    if !ok {
                        errors.push(bad("expected NAME,POS"));
                    }
                    spec.checks.push(check);
                }
                "expect-no-klp"
                | "expect-section"
                | "expect-no-section"
                | "expect-local"
                | "expect-symbol"
                | "expect-no-symbol"
                | "expect-section-relocs" => {
                    if words.len() != 1 {
                        errors.push(bad("expected one name"));
                    }
                    spec.checks.push(check);
                }
                "expect-size" => {
                    if words.len() != 2 || words[1].parse::<u64>().is_err() {
                        errors.push(bad("expected `SECTION BYTES`"));
                    }
                    spec.checks.push(check);
                }
                "expect-special" => {
                    let count = |w: &str| w == "*" || w.parse::<u64>().is_ok();
                    if words.len() != 3 || !count(words[1]) || !count(words[2]) {
                        errors.push(bad("expected `SECTION KEPT DROPPED`"));
                    }
                    spec.checks.push(check);
                }
                "expect-string" | "expect-no-string" => {
                    if words.len() < 2 {
                        errors.push(bad("expected `SECTION TEXT`"));
                    }
                    spec.checks.push(check);
                }
                other => errors.push(format!(
                    "{at}: unknown directive `{other}` (known: {})",
                    KNOWN_KEYS.join(" ")
                )),
            }
        }
        if let Some(pos) = spec.diff_args.iter().position(|a| a == "--objname") {
            match spec.diff_args.get(pos + 1) {
                Some(name) => spec.objname = name.clone(),
                None => errors.push("diff-args: --objname without a value".into()),
            }
        }
        if let Some(a) = spec.diff_args.iter().find(|a| a.starts_with("--objname=")) {
            spec.objname = a["--objname=".len()..].to_string();
        }
        if spec.exit == 0 {
            spec.changed.get_or_insert_with(NameSet::default);
            spec.new.get_or_insert_with(NameSet::default);
            if spec.defined.is_none() {
                errors.push("an exit-0 case must state `expect-defined`".into());
            }
        } else if spec.changed.is_some() || spec.new.is_some() || spec.defined.is_some() {
            errors.push(format!(
                "expect-changed/-new/-defined describe OUT, which exit {} does not write",
                spec.exit
            ));
        }
        if spec.exit != 0 {
            for c in spec
                .checks
                .iter()
                .filter(|c| OUT_ONLY_KEYS.contains(&c.key.as_str()))
            {
                errors.push(format!(
                    "{}: describes OUT, which exit {} does not write",
                    c.label(),
                    spec.exit
                ));
            }
        }
        if spec.exit == 4 && !spec.checks.iter().any(|c| c.key == "expect-refused") {
            errors.push("an exit-4 case must say what is refused (`expect-refused`)".into());
        }
        if errors.is_empty() {
            Ok(spec)
        } else {
            Err(errors)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Objects, through `klpforge elf dump --json`
// ---------------------------------------------------------------------------------------------

struct Section {
    index: u64,
    name: String,
    size: u64,
    /// For relocation sections: the index of the section they apply to.
    target: Option<u64>,
}

struct Symbol {
    name: String,
    kind: String,
    bind: String,
    /// Section index when defined in a section.
    section: Option<u64>,
    value: u64,
    size: u64,
}

struct Reloc {
    /// Index of the relocation section.
    rela: u64,
    offset: u64,
    symbol: String,
}

struct Obj {
    sections: Vec<Section>,
    symbols: Vec<Symbol>,
    relocs: Vec<Reloc>,
}

/// The binary under test; `KLPFORGE_DIFF_BIN` runs the fixtures against another build (for
/// example `main`'s, to see a new case fail before its fix).
fn klpforge() -> Command {
    match std::env::var_os("KLPFORGE_DIFF_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_klpforge")),
    }
}

impl Obj {
    fn load(path: &Path) -> Result<Obj, String> {
        let out = klpforge()
            .args(["elf", "dump", "--json"])
            .arg(path)
            .output()
            .map_err(|e| format!("running klpforge elf dump: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "klpforge elf dump {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("elf dump of {}: bad JSON: {e}", path.display()))?;
        let s = |x: &Value, k: &str| x[k].as_str().unwrap_or("").to_string();
        let n = |x: &Value, k: &str| x[k].as_u64().unwrap_or(0);
        let index_of = |t: &str| {
            t.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
        };
        let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
        let sections = arr("sections")
            .iter()
            .map(|x| Section {
                index: n(x, "index"),
                name: s(x, "name"),
                size: n(x, "size"),
                target: match s(x, "sh_type").as_str() {
                    "RELA" | "REL" => index_of(&s(x, "info")),
                    _ => None,
                },
            })
            .collect();
        let symbols = arr("symbols")
            .iter()
            .map(|x| Symbol {
                name: s(x, "name"),
                kind: s(x, "kind"),
                bind: s(x, "bind"),
                section: index_of(&s(x, "shndx")),
                value: n(x, "value"),
                size: n(x, "size"),
            })
            .collect();
        let relocs = arr("relocations")
            .iter()
            .map(|x| Reloc {
                rela: n(x, "section"),
                offset: n(x, "offset"),
                symbol: s(x, "symbol_name"),
            })
            .collect();
        Ok(Obj {
            sections,
            symbols,
            relocs,
        })
    }

    fn section_name(&self, index: u64) -> &str {
        self.sections
            .iter()
            .find(|s| s.index == index)
            .map_or("", |s| s.name.as_str())
    }

    fn defined(&self) -> impl Iterator<Item = &Symbol> {
        self.symbols
            .iter()
            .filter(|y| y.section.is_some() && y.kind != "SECTION" && y.kind != "FILE")
    }

    fn defines(&self, pattern: &str) -> bool {
        self.defined().any(|y| name_matches(&y.name, pattern))
    }

    fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name)
    }

    /// Defined FUNC symbols without the `__pfx_`/`__cfi_` padding symbols.
    fn functions(&self) -> BTreeSet<String> {
        self.defined()
            .filter(|y| y.kind == "FUNC")
            .filter(|y| !y.name.starts_with("__pfx_") && !y.name.starts_with("__cfi_"))
            .map(|y| y.name.clone())
            .collect()
    }

    /// Defined functions and objects whose bytes do not lie within their section, and
    /// functions overlapping another (a clone placed where nothing of it was copied).
    fn misplaced_symbols(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let sized: Vec<&Symbol> = self
            .defined()
            .filter(|y| (y.kind == "FUNC" || y.kind == "OBJECT") && y.size > 0)
            .collect();
        for f in &sized {
            let sec = f
                .section
                .and_then(|i| self.sections.iter().find(|s| s.index == i));
            if sec.is_none_or(|s| f.value + f.size > s.size) {
                bad.push(format!("{} lies outside its section", f.name));
            }
            let overlap = sized.iter().find(|g| {
                f.kind == "FUNC"
                    && g.kind == "FUNC"
                    && g.name < f.name
                    && g.section == f.section
                    && g.value < f.value + f.size
                    && f.value < g.value + g.size
            });
            if let Some(g) = overlap {
                bad.push(format!("{} overlaps {}", f.name, g.name));
            }
        }
        bad
    }

    /// The relocations "from" `from`: applying to a section of that name, or else within
    /// the bytes of the defined symbol of that name. `Err` when there is neither.
    fn relocs_from(&self, from: &str) -> Result<Vec<&Reloc>, String> {
        let targets: Vec<u64> = self
            .sections
            .iter()
            .filter(|s| s.name == from)
            .map(|s| s.index)
            .collect();
        let applies_to = |r: &Reloc| {
            self.sections
                .iter()
                .find(|s| s.index == r.rela)
                .and_then(|s| s.target)
        };
        if !targets.is_empty() {
            return Ok(self
                .relocs
                .iter()
                .filter(|r| applies_to(r).is_some_and(|t| targets.contains(&t)))
                .collect());
        }
        let Some(sym) = self.defined().find(|y| y.name == from) else {
            return Err(format!("no section or defined symbol `{from}`"));
        };
        let (sec, lo, hi) = (sym.section, sym.value, sym.value + sym.size.max(1));
        Ok(self
            .relocs
            .iter()
            .filter(|r| applies_to(r) == sec && r.offset >= lo && r.offset < hi)
            .collect())
    }

    /// Whether `r` refers to `to` strictly: the symbol named `to`, or the section symbol of
    /// a section that defines `to`.
    fn refers_strictly(&self, r: &Reloc, to: &str) -> bool {
        if r.symbol == to {
            return true;
        }
        let Some(sec) = r.symbol.strip_prefix('(').and_then(|s| s.strip_suffix(')')) else {
            return false;
        };
        self.defined()
            .any(|y| y.name == to && y.section.is_some_and(|i| self.section_name(i) == sec))
    }

    /// Whether `r` refers to `to` in any way: strictly, or through a name that ends in
    /// `.to` or contains `.to,` (klp symbols, placeholders, `.text.to` sections).
    fn refers_loosely(&self, r: &Reloc, to: &str) -> bool {
        let name = r
            .symbol
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or(&r.symbol);
        self.refers_strictly(r, to)
            || name.ends_with(&format!(".{to}"))
            || name.contains(&format!(".{to},"))
    }
}

/// `name` equals `pattern`, or starts with it minus a trailing `*`.
fn name_matches(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The NAME part of `.klp.sym.OBJ.NAME,POS` (objnames contain no dots).
fn klp_symbol_name(sym: &str) -> Option<&str> {
    let rest = sym.strip_prefix(".klp.sym.")?;
    let (_, name_pos) = rest.split_once('.')?;
    Some(name_pos.rsplit_once(',').map_or(name_pos, |(n, _)| n))
}

// ---------------------------------------------------------------------------------------------
// Running one case on one toolchain
// ---------------------------------------------------------------------------------------------

/// What one `klpforge diff` run produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    report: Option<Result<Value, String>>,
    out: Option<Vec<u8>>,
    command: String,
}

impl Run {
    fn excerpt(&self) -> String {
        let cut = |s: &str| {
            let lines: Vec<&str> = s.lines().take(12).collect();
            let more = s.lines().count().saturating_sub(12);
            let mut t = lines.join("\n      ");
            if more > 0 {
                let _ = write!(t, "\n      ... ({more} more lines)");
            }
            t
        };
        let mut s = String::new();
        if !self.stdout.trim().is_empty() {
            let _ = write!(s, "\n    stdout: {}", cut(self.stdout.trim()));
        }
        if !self.stderr.trim().is_empty() {
            let _ = write!(s, "\n    stderr: {}", cut(self.stderr.trim()));
        }
        let _ = write!(s, "\n    command: {}", self.command);
        s
    }

    fn report(&self) -> Option<&Value> {
        self.report.as_ref().and_then(|r| r.as_ref().ok())
    }

    /// Names from `changed function: NAME` (or `new function: NAME`) stdout lines.
    fn stdout_names(&self, prefix: &str) -> BTreeSet<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix(prefix))
            .map(|n| n.trim().to_string())
            .collect()
    }
}

/// Runs `klpforge diff` with a time limit, stdout and stderr going to files in `dir`.
fn run_diff(args: &[String], dir: &Path, tag: &str, out: &Path, report: &Path) -> Run {
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(report);
    let stdout_path = dir.join(format!("{tag}.stdout"));
    let stderr_path = dir.join(format!("{tag}.stderr"));
    let command = format!("klpforge {}", args.join(" "));
    let fail = |msg: String| Run {
        code: None,
        stdout: String::new(),
        stderr: msg,
        report: None,
        out: None,
        command: command.clone(),
    };
    let (Ok(so), Ok(se)) = (
        std::fs::File::create(&stdout_path),
        std::fs::File::create(&stderr_path),
    ) else {
        return fail(format!("cannot create output files in {}", dir.display()));
    };
    let mut child = match klpforge()
        .args(args)
        .stdin(Stdio::null())
        .stdout(so)
        .stderr(se)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run klpforge: {e}")),
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > DIFF_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let mut stderr = read(&stderr_path);
    if status.is_none() {
        let _ = write!(stderr, "\n(killed after {DIFF_TIMEOUT:?})");
    }
    let report = std::fs::read(report).ok().map(|bytes| {
        serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("report is not JSON: {e}"))
    });
    Run {
        code: status.and_then(|s| s.code()),
        stdout: read(&stdout_path),
        stderr,
        report,
        out: std::fs::read(out).ok(),
        command,
    }
}

/// Collects the outcome of one case run.
struct Outcome {
    prefix: String,
    failures: Vec<String>,
    checks: usize,
}

impl Outcome {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.failures.push(format!("{}: {}", self.prefix, what()));
        }
    }

    fn fail(&mut self, what: String) {
        self.checks += 1;
        self.failures.push(format!("{}: {what}", self.prefix));
    }
}

fn readelf_strings(tc: &Toolchain, obj: &Path, section: &str) -> Vec<String> {
    let Ok(out) = Command::new(tc.readelf())
        .args(["-W", "-p", section])
        .arg(obj)
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix('[')?
                .split_once(']')
                .map(|(_, s)| s.strip_prefix("  ").unwrap_or(s.trim_start()).to_string())
        })
        .collect()
}

fn run_case(
    tc: &Toolchain,
    case: &FixtureCase,
    (variant, extra): (&str, &[String]),
    spec: &Spec,
    dir: &Path,
    stub: &Path,
) -> Outcome {
    let mut o = Outcome {
        prefix: if variant.is_empty() {
            format!("{}:{}", tc.arch, case.name)
        } else {
            format!("{}:{}[{variant}]", tc.arch, case.name)
        },
        failures: Vec::new(),
        checks: 0,
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        o.fail(format!("cannot create {}: {e}", dir.display()));
        return o;
    }
    let compiled = match case.compile_with(tc, dir, extra) {
        Ok(c) => c,
        Err(e) => {
            o.fail(format!("compile: {e:#}"));
            return o;
        }
    };
    let Some(patched) = compiled.patched.clone() else {
        o.fail("no patched object".into());
        return o;
    };

    // Preconditions on the inputs.
    if !spec.preconditions.is_empty() {
        let inputs = (Obj::load(&compiled.orig), Obj::load(&patched));
        let (orig_obj, patched_obj) = match inputs {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                o.fail(format!("precondition: {e}"));
                return o;
            }
        };
        for c in &spec.preconditions {
            let obj = if c.key.starts_with("require-orig") {
                &orig_obj
            } else {
                &patched_obj
            };
            let which = if std::ptr::eq(obj, &orig_obj) {
                "orig"
            } else {
                "patched"
            };
            match c.key.as_str() {
                "require-orig" | "require-patched" => {
                    for w in c.value.split_whitespace() {
                        let (absent, name) = match w.strip_prefix('!') {
                            Some(n) => (true, n),
                            None => (false, w),
                        };
                        o.check(obj.defines(name) != absent, || {
                            format!(
                                "precondition {}: gcc's {which} object {} `{name}` (the fixture no longer fits this compiler)",
                                c.label(),
                                if absent { "defines" } else { "does not define" }
                            )
                        });
                    }
                }
                "require-orig-global" => {
                    for name in c.value.split_whitespace() {
                        let ok = obj.defined().any(|y| y.name == name && y.bind == "GLOBAL");
                        o.check(ok, || {
                            format!("precondition {}: `{name}` is not a defined GLOBAL symbol of the orig object", c.label())
                        });
                    }
                }
                _ => {
                    let (from, to) = arrow(&c.value).expect("validated");
                    match obj.relocs_from(from) {
                        Ok(rs) => {
                            let ok = rs.iter().any(|r| obj.refers_strictly(r, to));
                            o.check(ok, || {
                                let seen: BTreeSet<&str> =
                                    rs.iter().map(|r| r.symbol.as_str()).collect();
                                format!(
                                    "precondition {}: gcc's {which} object has no such relocation (from {from}: {seen:?})",
                                    c.label()
                                )
                            });
                        }
                        Err(e) => {
                            o.fail(format!("precondition {}: {which} object: {e}", c.label()))
                        }
                    }
                }
            }
        }
    }

    // The run.
    let out_path = dir.join("out.o");
    let report_path = dir.join("report.json");
    let mut args: Vec<String> = spec.diff_args.clone();
    if !spec.symvers.is_empty() {
        let symvers = dir.join("Module.symvers");
        let text: String = spec.symvers.iter().map(|l| format!("{l}\n")).collect();
        if let Err(e) = std::fs::write(&symvers, text) {
            o.fail(format!("writing Module.symvers: {e}"));
            return o;
        }
        args.push("--symvers".into());
        args.push(symvers.display().to_string());
    }
    args.push("--json".into());
    args.push(report_path.display().to_string());
    args.push(compiled.orig.display().to_string());
    args.push(patched.display().to_string());
    args.push(out_path.display().to_string());
    let mut full_args = vec!["diff".to_string()];
    full_args.extend(args);
    let run = run_diff(&full_args, dir, "run1", &out_path, &report_path);

    if run.code != Some(spec.exit) {
        let got = run
            .code
            .map_or("no exit status".to_string(), |c| format!("exit {c}"));
        let mut msg = format!("expected exit {}, got {got}", spec.exit);
        if let Some(r) = run.report() {
            let names = |k: &str| -> Vec<String> {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| x.as_str().or(x["name"].as_str()).unwrap_or("?").to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let _ = write!(
                msg,
                "\n    report: changed {:?} new {:?} refusals {}",
                names("changed_functions"),
                names("new_functions"),
                r["refusals"]
            );
        }
        msg.push_str(&run.excerpt());
        o.fail(msg);
        return o;
    }
    o.checks += 1;

    // The report.
    let report = match &run.report {
        None => {
            o.fail(format!("no JSON report written{}", run.excerpt()));
            return o;
        }
        Some(Err(e)) => {
            o.fail(e.clone());
            return o;
        }
        Some(Ok(v)) => v.clone(),
    };
    let want_result = match spec.exit {
        0 => "changed",
        3 => "no-change",
        4 => "refused",
        _ => "",
    };
    if !want_result.is_empty() {
        o.check(report["result"] == want_result, || {
            format!(
                "report result is {}, expected \"{want_result}\"",
                report["result"]
            )
        });
    }
    o.check(report["objname"] == spec.objname.as_str(), || {
        format!(
            "report objname is {}, expected \"{}\"",
            report["objname"], spec.objname
        )
    });
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().or(x["name"].as_str()).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let changed = strings(&report["changed_functions"]);
    let new = strings(&report["new_functions"]);
    let output_functions = strings(&report["output_functions"]);
    let klp_symbols: Vec<String> = report["klp_relocations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["symbol"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let refusals: Vec<String> = report["refusals"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "{}: {}",
                        x["symbol"].as_str().unwrap_or(""),
                        x["reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let warnings: Vec<String> = report["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    if spec.exit == 4 {
        o.check(!refusals.is_empty(), || {
            "exit 4 but the report lists no refusal".into()
        });
    }
    let stdout_changed = run.stdout_names("changed function: ");
    let stdout_new = run.stdout_names("new function: ");
    o.check(stdout_changed == changed, || {
        format!(
            "stdout's changed functions {} differ from the report's {}",
            show_set(&stdout_changed),
            show_set(&changed)
        )
    });
    o.check(stdout_new == new, || {
        format!(
            "stdout's new functions {} differ from the report's {}",
            show_set(&stdout_new),
            show_set(&new)
        )
    });

    // OUT.
    let out_obj = if spec.exit == 0 {
        match &run.out {
            None => {
                o.fail(format!("exit 0 but {} was not written", out_path.display()));
                None
            }
            Some(_) => match Obj::load(&out_path) {
                Ok(obj) => Some(obj),
                Err(e) => {
                    o.fail(format!("OUT unreadable: {e}"));
                    None
                }
            },
        }
    } else {
        o.check(run.out.is_none(), || {
            format!("exit {} but OUT was written", spec.exit)
        });
        None
    };

    if let Some(set) = &spec.changed {
        o.check(set.mismatch(&changed).is_none(), || {
            format!(
                "expect-changed: {}",
                set.mismatch(&changed).unwrap_or_default()
            )
        });
    }
    if let Some(set) = &spec.new {
        o.check(set.mismatch(&new).is_none(), || {
            format!("expect-new: {}", set.mismatch(&new).unwrap_or_default())
        });
    }
    if let Some(set) = &spec.defined {
        o.check(set.mismatch(&output_functions).is_none(), || {
            format!(
                "expect-defined (report output_functions): {}",
                set.mismatch(&output_functions).unwrap_or_default()
            )
        });
    }

    if let Some(obj) = &out_obj {
        let funcs = obj.functions();
        o.check(funcs == output_functions, || {
            format!(
                "report output_functions {} differ from OUT's defined functions {}",
                show_set(&output_functions),
                show_set(&funcs)
            )
        });
        for f in changed.iter().chain(&new) {
            o.check(funcs.contains(f), || {
                format!("reported function {f} is not defined in OUT")
            });
        }
        let misplaced = obj.misplaced_symbols();
        o.check(misplaced.is_empty(), || {
            format!("OUT's symbols: {}", misplaced.join("; "))
        });
    }

    for c in &spec.checks {
        let v = c.value.trim();
        let words: Vec<&str> = v.split_whitespace().collect();
        let label = c.label();
        match c.key.as_str() {
            "expect-refused" => {
                let ok = refusals.iter().any(|r| r.contains(v)) || run.stderr.contains(v);
                o.check(ok, || {
                    format!("{label}: not in refusals {refusals:?} nor stderr")
                });
            }
            "expect-warning" => {
                let ok = warnings.iter().any(|w| w.contains(v)) || run.stderr.contains(v);
                o.check(ok, || {
                    format!("{label}: not in warnings {warnings:?} nor stderr")
                });
            }
            _ => {}
        }
        let Some(obj) = &out_obj else { continue };
        match c.key.as_str() {
            "expect-klp" => {
                let full = if v.starts_with(".klp.sym.") {
                    v.to_string()
                } else {
                    format!(".klp.sym.{}.{v}", spec.objname)
                };
                o.check(klp_symbols.contains(&full), || {
                    format!(
                        "{label}: no klp relocation against {full} (report has {klp_symbols:?})"
                    )
                });
                o.check(obj.symbols.iter().any(|y| y.name == full), || {
                    format!("{label}: OUT has no symbol {full}")
                });
            }
            "expect-no-klp" => {
                let hit: Vec<&String> = klp_symbols
                    .iter()
                    .filter(|s| klp_symbol_name(s).is_some_and(|n| name_matches(n, v)))
                    .collect();
                o.check(hit.is_empty(), || {
                    format!("{label}: report has klp relocations {hit:?}")
                });
                let syms: Vec<&str> = obj
                    .symbols
                    .iter()
                    .filter(|y| klp_symbol_name(&y.name).is_some_and(|n| name_matches(n, v)))
                    .map(|y| y.name.as_str())
                    .collect();
                o.check(syms.is_empty(), || {
                    format!("{label}: OUT has klp symbols {syms:?}")
                });
            }
            "expect-section" => o.check(obj.has_section(v), || {
                format!("{label}: OUT has no such section")
            }),
            "expect-no-section" => o.check(!obj.has_section(v), || format!("{label}: OUT has it")),
            "expect-size" => {
                let want: u64 = words[1].parse().expect("validated");
                let secs: Vec<&Section> =
                    obj.sections.iter().filter(|s| s.name == words[0]).collect();
                let got: u64 = secs.iter().map(|s| s.size).sum();
                o.check(!secs.is_empty() && got == want, || {
                    if secs.is_empty() {
                        format!("{label}: OUT has no such section")
                    } else {
                        format!("{label}: OUT's {} is {got} bytes", words[0])
                    }
                });
            }
            "expect-special" => {
                let entries: Vec<&Value> = report["special_sections"]
                    .as_array()
                    .map(|a| a.iter().filter(|e| e["section"] == words[0]).collect())
                    .unwrap_or_default();
                let fits = |e: &Value, k: &str, w: &str| {
                    w == "*" || e[k].as_u64() == w.parse::<u64>().ok()
                };
                let ok = entries
                    .iter()
                    .any(|e| fits(e, "kept", words[1]) && fits(e, "dropped", words[2]));
                o.check(ok, || {
                    format!(
                        "{label}: report special_sections for it: {}",
                        serde_json::to_string(&entries).unwrap_or_default()
                    )
                });
            }
            "expect-reloc" | "expect-no-reloc" => {
                let (from, to) = arrow(v).expect("validated");
                let positive = c.key == "expect-reloc";
                match obj.relocs_from(from) {
                    Ok(rs) => {
                        let hits: Vec<&str> = rs
                            .iter()
                            .filter(|r| {
                                if positive {
                                    obj.refers_strictly(r, to)
                                } else {
                                    obj.refers_loosely(r, to)
                                }
                            })
                            .map(|r| r.symbol.as_str())
                            .collect();
                        let all: BTreeSet<&str> = rs.iter().map(|r| r.symbol.as_str()).collect();
                        o.check(hits.is_empty() != positive, || {
                            if positive {
                                format!("{label}: none; relocations from {from} go to {all:?}")
                            } else {
                                format!("{label}: found {hits:?}")
                            }
                        });
                    }
                    Err(e) if positive => o.fail(format!("{label}: OUT: {e}")),
                    Err(_) => o.checks += 1, // nothing there, so no such relocation
                }
            }
            "expect-section-relocs" => match obj.relocs_from(v) {
                Ok(rs) => {
                    let other: Vec<&str> = rs
                        .iter()
                        .filter(|r| !r.symbol.starts_with('('))
                        .map(|r| r.symbol.as_str())
                        .collect();
                    o.check(!rs.is_empty() && other.is_empty(), || {
                        format!("{label}: relocations against {other:?} (or none at all)")
                    });
                }
                Err(e) => o.fail(format!("{label}: OUT: {e}")),
            },
            "expect-local" => {
                let binds: Vec<&str> = obj
                    .defined()
                    .filter(|y| y.name == v)
                    .map(|y| y.bind.as_str())
                    .collect();
                o.check(
                    !binds.is_empty() && binds.iter().all(|b| *b == "LOCAL"),
                    || format!("{label}: OUT defines it as {binds:?}"),
                );
            }
            "expect-symbol" => o.check(obj.defines(v), || {
                format!("{label}: OUT does not define it")
            }),
            "expect-no-symbol" => {
                let found: Vec<&str> = obj
                    .defined()
                    .filter(|y| name_matches(&y.name, v))
                    .map(|y| y.name.as_str())
                    .collect();
                o.check(found.is_empty(), || {
                    format!("{label}: OUT defines {found:?}")
                });
            }
            "expect-string" | "expect-no-string" => {
                let text = v[words[0].len()..].trim();
                let list = if obj.has_section(words[0]) {
                    readelf_strings(tc, &out_path, words[0])
                } else {
                    Vec::new()
                };
                let present = list.iter().any(|s| s == text);
                o.check(present == (c.key == "expect-string"), || {
                    format!("{label}: {} has {list:?}", words[0])
                });
            }
            _ => {}
        }
    }

    if spec.exit == 0 && run.out.is_some() {
        check_output_tools(tc, &mut o, &out_path, stub, dir);
        // Determinism: a second run gives the same bytes.
        let first_out = run.out.clone();
        let first_report = std::fs::read(&report_path).ok();
        let again = run_diff(&full_args, dir, "run2", &out_path, &report_path);
        let second_report = std::fs::read(&report_path).ok();
        o.check(again.code == run.code, || {
            format!("second run: exit {:?}, first {:?}", again.code, run.code)
        });
        o.check(again.out == first_out, || {
            "second run wrote a different OUT".into()
        });
        o.check(second_report == first_report, || {
            "second run wrote a different report".into()
        });
        o.check(again.stdout == run.stdout, || {
            "second run printed a different stdout".into()
        });
    }
    o
}

/// `readelf -W -a` must not complain about OUT and `ld -r` must link it with the stub.
fn check_output_tools(tc: &Toolchain, o: &mut Outcome, out: &Path, stub: &Path, dir: &Path) {
    match Command::new(tc.readelf())
        .args(["-W", "-a"])
        .arg(out)
        .output()
    {
        Ok(r) => {
            let err = String::from_utf8_lossy(&r.stderr);
            o.check(r.status.success() && err.trim().is_empty(), || {
                format!("readelf -W -a OUT: {}", err.trim())
            });
        }
        Err(e) => o.fail(format!("cannot run {}: {e}", tc.readelf().display())),
    }
    let linked = dir.join("linked.o");
    match Command::new(tc.ld())
        .arg("-r")
        .arg("-o")
        .arg(&linked)
        .arg(out)
        .arg(stub)
        .output()
    {
        Ok(r) => {
            let err = String::from_utf8_lossy(&r.stderr);
            o.check(r.status.success() && err.trim().is_empty(), || {
                format!("ld -r OUT stub.o: {} {}", r.status, err.trim())
            });
        }
        Err(e) => o.fail(format!("cannot run {}: {e}", tc.ld().display())),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

fn diff_cases() -> Vec<FixtureCase> {
    let cases = load_cases(&fixtures_root().join("diff")).expect("loading tests/fixtures/diff");
    assert!(!cases.is_empty(), "no diff fixture cases found");
    cases
}

fn env_words(var: &str) -> Option<Vec<String>> {
    let v = std::env::var(var).ok()?;
    let words: Vec<String> = v
        .split([',', ' '])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    (!words.is_empty()).then_some(words)
}

/// Every case's directives are well-formed (no compiler needed).
fn diff_fixture_directives_are_valid() {
    let mut errors = Vec::new();
    for case in diff_cases() {
        if let Err(es) = Spec::parse(&case) {
            errors.extend(es.into_iter().map(|e| format!("{}: {e}", case.name)));
        }
    }
    assert!(
        errors.is_empty(),
        "bad diff fixtures:\n  {}",
        errors.join("\n  ")
    );
}

/// The fixture README lists every case.
fn diff_fixture_readme_lists_every_case() {
    let readme = std::fs::read_to_string(fixtures_root().join("diff/README.md"))
        .expect("tests/fixtures/diff/README.md");
    let missing: Vec<String> = diff_cases()
        .into_iter()
        .map(|c| c.name)
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(missing.is_empty(), "README.md does not list {missing:?}");
}

/// The test runner (`harness = false`, libtest-mimic): one test per fixture case, architecture
/// and variant, named `ARCH:CASE` or `ARCH:CASE[VARIANT]`, so a failure names its case and a
/// missing cross compiler shows its cases as ignored; plus the fixture-wide checks.
fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut trials = vec![
        Trial::test("diff_fixture_directives_are_valid", || {
            diff_fixture_directives_are_valid();
            Ok(())
        }),
        Trial::test("diff_fixture_readme_lists_every_case", || {
            diff_fixture_readme_lists_every_case();
            Ok(())
        }),
        Trial::test("symvers_lines_are_tab_separated", || {
            symvers_lines_are_tab_separated();
            Ok(())
        }),
    ];
    trials.extend(fixture_trials());
    libtest_mimic::run(&args, trials).exit_code()
}

/// Scratch space shared by every fixture test of this run.
fn scratch() -> &'static ScratchDir {
    static SCRATCH: OnceLock<ScratchDir> = OnceLock::new();
    SCRATCH.get_or_init(|| ScratchDir::new("diff-fixtures").expect("a scratch directory"))
}

/// The stub object `ld -r` links each output with, compiled once per architecture.
fn ld_stub(tc: &Toolchain) -> Result<PathBuf, String> {
    static STUBS: Mutex<BTreeMap<&'static str, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut stubs = STUBS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = stubs.get(tc.arch) {
        return Ok(p.clone());
    }
    let stub = compile_c_source(
        tc,
        "int klpforge_diff_stub(void) { return 0; }\n",
        "ldstub",
        &scratch().join(tc.arch),
        &[],
    )
    .map_err(|e| format!("{}: compiling the ld stub: {e:#}", tc.arch))?;
    stubs.insert(tc.arch, stub.clone());
    Ok(stub)
}

/// One test per case, architecture the case runs on, and variant; ignored when the
/// architecture's toolchain is not installed.
fn fixture_trials() -> Vec<Trial> {
    let case_filter = env_words("KLPFORGE_DIFF_CASES");
    let arch_filter = env_words("KLPFORGE_DIFF_ARCHES");
    let mut trials = Vec::new();
    for case in diff_cases() {
        if let Some(f) = &case_filter {
            if !f.iter().any(|w| case.name.contains(w.as_str())) {
                continue;
            }
        }
        // A malformed case is reported by diff_fixture_directives_are_valid.
        let Ok(spec) = Spec::parse(&case) else {
            continue;
        };
        let case = Arc::new(case);
        let spec = Arc::new(spec);
        for arch in ARCHES {
            if arch_filter
                .as_ref()
                .is_some_and(|f| !f.iter().any(|a| a == arch))
            {
                continue;
            }
            if case.arches().is_some_and(|a| !a.contains(&arch)) {
                continue; // written for other architectures
            }
            // A `skip:` directive or a missing toolchain: shown as ignored.
            let tc = toolchain(arch).filter(|_| case.directives("skip").next().is_none());
            let mut variants = vec![(String::new(), Vec::new())];
            variants.extend(case.variants(arch));
            for (variant, extra) in variants {
                let name = if variant.is_empty() {
                    format!("{arch}:{}", case.name)
                } else {
                    format!("{arch}:{}[{variant}]", case.name)
                };
                let Some(tc) = tc.clone() else {
                    trials.push(Trial::test(name, || Ok(())).with_ignored_flag(true));
                    continue;
                };
                let (case, spec) = (case.clone(), spec.clone());
                trials.push(Trial::test(name, move || {
                    let stub = ld_stub(&tc)?;
                    let mut dir = scratch().join(tc.arch).join(&case.name);
                    if !variant.is_empty() {
                        dir = dir.join(&variant);
                    }
                    let outcome = run_case(&tc, &case, (&variant, &extra), &spec, &dir, &stub);
                    if outcome.failures.is_empty() {
                        Ok(())
                    } else {
                        let mut msg = outcome.failures.join("\n");
                        if std::env::var_os("KLPFORGE_KEEP_SCRATCH").is_some() {
                            let _ = write!(msg, "\noutputs in {}", dir.display());
                        }
                        Err(msg.into())
                    }
                }));
            }
        }
    }
    if trials.is_empty() && case_filter.is_none() && arch_filter.is_none() {
        trials.push(Trial::test("diff_fixtures_ran", || {
            Err("no diff fixture case can run here".into())
        }));
    }
    trials
}

fn symvers_lines_are_tab_separated() {
    assert_eq!(
        symvers_line("0x1 foo vmlinux EXPORT_SYMBOL").unwrap(),
        "0x1\tfoo\tvmlinux\tEXPORT_SYMBOL\t"
    );
    assert_eq!(
        symvers_line("0x1\\tfoo\\tmod\\tEXPORT_SYMBOL_GPL\\tNS").unwrap(),
        "0x1\tfoo\tmod\tEXPORT_SYMBOL_GPL\tNS"
    );
    assert!(symvers_line("0x1 foo").is_none());
    assert_eq!(
        klp_symbol_name(".klp.sym.vmlinux.count.0,0"),
        Some("count.0")
    );
    assert_eq!(klp_symbol_name(".klp.sym.mymod.f,2"), Some("f"));
    assert!(name_matches("descriptor.3", "descriptor.*"));
    assert!(!name_matches("descriptor.3", "descriptor"));
    let mut set = NameSet::default();
    set.add_words("f f.cold?");
    let actual = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert!(set.mismatch(&actual(&["f"])).is_none());
    assert!(set.mismatch(&actual(&["f", "f.cold"])).is_none());
    assert!(set.mismatch(&actual(&["f.cold"])).is_some());
    assert!(set.mismatch(&actual(&["f", "g"])).is_some());
}
