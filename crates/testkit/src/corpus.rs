//! The shared corpus of peer-tool unit objects.
//!
//! The corpus directory holds one subdirectory per architecture with object
//! pairs named `NAME.ORIG.o` and `NAME.PATCHED.o` (or `NAME.PATCHED.FAIL.o`
//! when the peer tool is expected to refuse the patch). `NAME` may contain
//! dots (`oot-issue-928.NOSTRIP`). Next to them, `expectations.tsv` records
//! what the peer tool did with each pair.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::workspace_root;

/// The corpus directory: `$KLPFORGE_CORPUS` if set, else
/// `<workspace root>/../shared/corpus/kpatch-unit`; `None` (with one note on
/// stderr per process) when the directory does not exist.
pub fn corpus_dir() -> Option<PathBuf> {
    let (dir, shown) = match std::env::var_os("KLPFORGE_CORPUS") {
        Some(v) if !v.is_empty() => {
            let dir = PathBuf::from(v);
            let shown = format!("KLPFORGE_CORPUS={}", dir.display());
            (dir, shown)
        }
        _ => (
            workspace_root().join("../shared/corpus/kpatch-unit"),
            "../shared/corpus/kpatch-unit".to_string(),
        ),
    };
    if dir.is_dir() {
        Some(dir.canonicalize().unwrap_or(dir))
    } else {
        crate::skip(
            "corpus",
            &format!("skipping corpus tests: {shown} not found (set KLPFORGE_CORPUS)"),
        );
        None
    }
}

/// Every `*.o` in the corpus's architecture subdirectories, as
/// `(arch, path)`, sorted; empty when there is no corpus.
pub fn corpus_objects() -> Vec<(String, PathBuf)> {
    let Some(dir) = corpus_dir() else {
        return Vec::new();
    };
    list_objects(&dir).unwrap_or_else(|e| panic!("listing corpus {}: {e:#}", dir.display()))
}

/// Lists `(arch, path)` of every `*.o` one level below `corpus`, sorted.
fn list_objects(corpus: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(corpus).with_context(|| format!("reading {}", corpus.display()))?
    {
        let arch_dir = entry?.path();
        if !arch_dir.is_dir() {
            continue;
        }
        let arch = arch_dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("non-UTF-8 corpus directory name")?
            .to_string();
        for obj in std::fs::read_dir(&arch_dir)? {
            let path = obj?.path();
            if path.is_file() && path.extension().is_some_and(|e| e == "o") {
                out.push((arch.clone(), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What the peer tool did with a corpus pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// It produced a patch module.
    Pass,
    /// It refused; the reason is the row's `extra_check` text when present.
    Fail(Option<String>),
}

/// One row of `expectations.tsv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// Architecture subdirectory (`x86_64`, `aarch64`, `loongarch64`, …).
    pub arch: String,
    /// Pair name: the object file names without `.ORIG.o` / `.PATCHED.o`.
    pub test: String,
    /// `PASS` or `FAIL`.
    pub expect: Expect,
    /// Functions the peer tool put in its patch (space-separated column).
    pub peer_functions: Vec<String>,
    /// Extra settings the peer needed, such as `JUMP_STRUCT_SIZE=16`
    /// (space-separated column).
    pub hints: Vec<String>,
    /// Free text: an additional property of the expected output, or the
    /// failure reason of a `FAIL` row; empty when none.
    pub extra_check: String,
    /// 1-based line of the row in the file.
    pub line: usize,
}

/// The column names `expectations.tsv` must start with.
const HEADER: [&str; 6] = [
    "arch",
    "test",
    "expect",
    "peer_functions",
    "hints",
    "extra_check",
];

/// Parses the text of `expectations.tsv`: a header line with the six
/// tab-separated columns `arch test expect peer_functions hints
/// extra_check`, then one row per pair. Empty columns are empty strings;
/// missing trailing columns count as empty; `expect` is `PASS` or `FAIL`.
pub fn parse_expectations(text: &str) -> Result<Vec<Expectation>> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, l)| l.split('\t').collect())
        .unwrap_or_default();
    if header != HEADER {
        bail!("expectations.tsv: header is {header:?}, expected {HEADER:?}");
    }
    let mut out = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 || cols.len() > HEADER.len() {
            bail!(
                "expectations.tsv:{line_no}: {} columns, expected {}",
                cols.len(),
                HEADER.len()
            );
        }
        let col = |i: usize| cols.get(i).copied().unwrap_or("").trim();
        if col(0).is_empty() || col(1).is_empty() {
            bail!("expectations.tsv:{line_no}: empty arch or test");
        }
        let words = |i: usize| col(i).split_whitespace().map(String::from).collect();
        let extra_check = col(5).to_string();
        let expect = match col(2) {
            "PASS" => Expect::Pass,
            "FAIL" => Expect::Fail(Some(extra_check.clone()).filter(|s| !s.is_empty())),
            other => bail!("expectations.tsv:{line_no}: expect is `{other}`, not PASS or FAIL"),
        };
        out.push(Expectation {
            arch: col(0).to_string(),
            test: col(1).to_string(),
            expect,
            peer_functions: words(3),
            hints: words(4),
            extra_check,
            line: line_no,
        });
    }
    Ok(out)
}

/// Reads and parses `<corpus>/expectations.tsv`.
pub fn load_expectations(corpus: &Path) -> Result<Vec<Expectation>> {
    let path = corpus.join("expectations.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_expectations(&text).with_context(|| format!("parsing {}", path.display()))
}

/// An original/patched object pair of the corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusPair {
    /// Architecture subdirectory.
    pub arch: String,
    /// Pair name (`NAME` in `NAME.ORIG.o`).
    pub test: String,
    /// `NAME.ORIG.o`.
    pub orig: PathBuf,
    /// `NAME.PATCHED.o` or `NAME.PATCHED.FAIL.o`.
    pub patched: PathBuf,
    /// Whether the patched object is named `.PATCHED.FAIL.o`.
    pub patched_fails: bool,
}

/// The corpus objects sorted into pairs.
#[derive(Clone, Debug, Default)]
pub struct Pairing {
    /// Complete pairs, sorted by architecture and name.
    pub pairs: Vec<CorpusPair>,
    /// Objects that belong to no pair: an `ORIG` without `PATCHED` or the
    /// reverse, a second `PATCHED` variant, or a name matching no pattern.
    pub unmatched: Vec<PathBuf>,
}

impl Pairing {
    /// The pair named `test` in `arch`, if any.
    pub fn find(&self, arch: &str, test: &str) -> Option<&CorpusPair> {
        self.pairs.iter().find(|p| p.arch == arch && p.test == test)
    }
}

/// How an object file name relates to its pair.
enum Role {
    Orig,
    Patched { fails: bool },
}

/// Splits `NAME.ORIG.o` / `NAME.PATCHED.o` / `NAME.PATCHED.FAIL.o`.
fn classify(file_name: &str) -> Option<(&str, Role)> {
    let (test, role) = if let Some(t) = file_name.strip_suffix(".ORIG.o") {
        (t, Role::Orig)
    } else if let Some(t) = file_name.strip_suffix(".PATCHED.FAIL.o") {
        (t, Role::Patched { fails: true })
    } else if let Some(t) = file_name.strip_suffix(".PATCHED.o") {
        (t, Role::Patched { fails: false })
    } else {
        return None;
    };
    (!test.is_empty()).then_some((test, role))
}

/// Pairs every object of `corpus` (see the module documentation for the
/// naming); objects that fit no pair are listed in [`Pairing::unmatched`].
pub fn pair_objects(corpus: &Path) -> Result<Pairing> {
    type Slot = (Option<PathBuf>, Option<(PathBuf, bool)>);
    let mut slots: BTreeMap<(String, String), Slot> = BTreeMap::new();
    let mut unmatched = Vec::new();
    for (arch, path) in list_objects(corpus)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((test, role)) = classify(name) else {
            unmatched.push(path);
            continue;
        };
        let slot = slots.entry((arch, test.to_string())).or_default();
        match role {
            Role::Orig if slot.0.is_none() => slot.0 = Some(path),
            Role::Patched { fails } if slot.1.is_none() => slot.1 = Some((path, fails)),
            _ => unmatched.push(path),
        }
    }
    let mut pairs = Vec::new();
    for ((arch, test), slot) in slots {
        match slot {
            (Some(orig), Some((patched, patched_fails))) => pairs.push(CorpusPair {
                arch,
                test,
                orig,
                patched,
                patched_fails,
            }),
            (orig, patched) => {
                unmatched.extend(orig);
                unmatched.extend(patched.map(|p| p.0));
            }
        }
    }
    unmatched.sort();
    Ok(Pairing { pairs, unmatched })
}

impl Expectation {
    /// The object pair this row describes, looked up in `corpus`.
    pub fn find_pair(&self, corpus: &Path) -> Result<CorpusPair> {
        let dir = corpus.join(&self.arch);
        let orig = dir.join(format!("{}.ORIG.o", self.test));
        if !orig.is_file() {
            bail!(
                "expectations.tsv:{}: {} not found",
                self.line,
                orig.display()
            );
        }
        let plain = dir.join(format!("{}.PATCHED.o", self.test));
        let fail = dir.join(format!("{}.PATCHED.FAIL.o", self.test));
        let (patched, patched_fails) = match (plain.is_file(), fail.is_file()) {
            (true, false) => (plain, false),
            (false, true) => (fail, true),
            (true, true) => bail!(
                "expectations.tsv:{}: both {} and {} exist",
                self.line,
                plain.display(),
                fail.display()
            ),
            (false, false) => bail!(
                "expectations.tsv:{}: neither {} nor {} exists",
                self.line,
                plain.display(),
                fail.display()
            ),
        };
        Ok(CorpusPair {
            arch: self.arch.clone(),
            test: self.test.clone(),
            orig,
            patched,
            patched_fails,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;

    const SAMPLE: &str = "arch\ttest\texpect\tpeer_functions\thints\textra_check
x86_64\tconvert-global-local\tPASS\t__kmalloc\t\t__kmalloc is a LOCAL symbol
x86_64\tline-detect\tPASS\tread_block read_block.cold\tJUMP_STRUCT_SIZE=16\t
x86_64\tmeminfo-init\tFAIL\t\t\tpeer refuses: an __init function changed
x86_64\tunique-id\tFAIL\t\tJUMP_STRUCT_SIZE=16\t
aarch64\tsyscall\tPASS\t__arm64_sys_newuname __kpatch_do_sys_newuname
";

    #[test]
    fn parse_sample() {
        let e = parse_expectations(SAMPLE).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].peer_functions, ["__kmalloc"]);
        assert!(e[0].hints.is_empty());
        assert_eq!(e[0].extra_check, "__kmalloc is a LOCAL symbol");
        assert_eq!(e[0].expect, Expect::Pass);
        assert_eq!(e[1].peer_functions, ["read_block", "read_block.cold"]);
        assert_eq!(e[1].hints, ["JUMP_STRUCT_SIZE=16"]);
        assert_eq!(e[1].extra_check, "");
        assert_eq!(
            e[2].expect,
            Expect::Fail(Some("peer refuses: an __init function changed".into()))
        );
        assert!(e[2].peer_functions.is_empty());
        assert_eq!(e[3].expect, Expect::Fail(None));
        assert_eq!(e[3].line, 5);
        // Missing trailing columns are empty.
        assert_eq!(e[4].arch, "aarch64");
        assert_eq!(e[4].hints, Vec::<String>::new());
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert!(parse_expectations("arch\ttest\n").is_err());
        let bad =
            "arch\ttest\texpect\tpeer_functions\thints\textra_check\nx86_64\tt\tMAYBE\t\t\t\n";
        let e = parse_expectations(bad).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("MAYBE"), "{e}");
        let wide = "arch\ttest\texpect\tpeer_functions\thints\textra_check\nx\tt\tPASS\t\t\t\t\n";
        assert!(parse_expectations(wide).is_err());
    }

    #[test]
    fn pairing_of_a_synthetic_corpus() {
        let root = ScratchDir::new("pairing").unwrap();
        let arch = root.join("x86_64");
        std::fs::create_dir_all(&arch).unwrap();
        for f in [
            "a.ORIG.o",
            "a.PATCHED.o",
            "b.NOSTRIP.ORIG.o",
            "b.NOSTRIP.PATCHED.FAIL.o",
            "lonely.ORIG.o",
            "weird.o",
            "c.ORIG.o",
            "c.PATCHED.o",
            "c.PATCHED.FAIL.o",
        ] {
            std::fs::write(arch.join(f), "").unwrap();
        }
        std::fs::write(root.join("expectations.tsv"), "").unwrap();
        let p = pair_objects(&root).unwrap();
        let names: Vec<(&str, bool)> = p
            .pairs
            .iter()
            .map(|p| (p.test.as_str(), p.patched_fails))
            .collect();
        // `c.PATCHED.FAIL.o` sorts first, so it wins and the plain one is left.
        assert_eq!(names, [("a", false), ("b.NOSTRIP", true), ("c", true)]);
        let unmatched: Vec<String> = p
            .unmatched
            .iter()
            .map(|u| u.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(unmatched, ["c.PATCHED.o", "lonely.ORIG.o", "weird.o"]);
    }

    #[test]
    fn real_expectations_parse() {
        let Some(dir) = corpus_dir() else { return };
        let e = load_expectations(&dir).unwrap();
        assert!(e.len() >= 50, "only {} rows", e.len());
        // Rows are unique per (arch, test).
        let mut keys: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.arch.as_str(), e.test.as_str()))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), e.len());
        for row in &e {
            match &row.expect {
                Expect::Pass => assert!(!row.peer_functions.is_empty(), "{row:?}"),
                Expect::Fail(_) => assert!(row.peer_functions.is_empty(), "{row:?}"),
            }
            for h in &row.hints {
                assert!(h.contains('='), "hint {h:?} is not KEY=VALUE");
            }
        }
        let rtnl = e.iter().find(|r| r.test == "ASSERT_RTNL-detect").unwrap();
        assert_eq!(
            rtnl.peer_functions,
            ["__dev_get_by_flags", "__dev_get_by_flags.cold"]
        );
        assert!(e.iter().any(|r| r.test == "oot-issue-928.NOSTRIP"));
    }

    #[test]
    fn corpus_pairing_covers_every_object() {
        let Some(dir) = corpus_dir() else { return };
        let objects = corpus_objects();
        let pairing = pair_objects(&dir).unwrap();
        assert!(
            pairing.unmatched.is_empty(),
            "unmatched: {:?}",
            pairing.unmatched
        );
        assert_eq!(pairing.pairs.len() * 2, objects.len());
        let expectations = load_expectations(&dir).unwrap();
        assert_eq!(expectations.len(), pairing.pairs.len());
        for row in &expectations {
            let pair = row.find_pair(&dir).unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(pairing.find(&row.arch, &row.test), Some(&pair));
            // A `.PATCHED.FAIL.o` object marks exactly the rows the peer refused.
            assert_eq!(
                pair.patched_fails,
                matches!(row.expect, Expect::Fail(_)),
                "{}/{}",
                row.arch,
                row.test
            );
        }
        for (arch, path) in &objects {
            assert!(path.starts_with(dir.join(arch)));
        }
    }
}
