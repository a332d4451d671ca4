//! `klpforge diff` on the shared peer corpus (real kernel object pairs from the kpatch unit
//! tests), for every architecture in `expectations.tsv`.
//!
//! PASS rows must give exit 0 and exactly the peer's set of output functions, unless a
//! documented deviation below says why our set is more correct; FAIL rows must give exit 3
//! or 4 as their reason says. The `extra_check` column is checked where it states something
//! about the output. Every output must be byte-identical across runs, read cleanly under
//! `readelf -W -a`, and link with `ld -r`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use klpforge_testkit::{
    corpus_dir, load_expectations, skip, toolchain, Expect, Expectation, ScratchDir, Toolchain,
};

/// Cases where our output deliberately differs from the peer's, with the reason.
const DEVIATIONS: &[(&str, &str, &[&str], &str)] = &[(
    "x86_64",
    "cold-change-parent",
    &["meminfo_proc_show", "meminfo_proc_show.cold.0"],
    "a .cold part jumps back into its parent at fixed offsets: when the parent is replaced, \
     the original cold part would return into the original parent's code. klpforge always \
     carries a function's .cold part with it (as upstream klp-build does); the peer kept the \
     original cold part.",
)];

/// The shared corpus, its expectations and a scratch directory named `scratch` (`None`
/// when the corpus is not there).
fn corpus_cases(scratch: &str) -> Option<(std::path::PathBuf, Vec<Expectation>, ScratchDir)> {
    let corpus = corpus_dir()?;
    let expectations = load_expectations(&corpus).unwrap();
    Some((corpus, expectations, ScratchDir::new(scratch).unwrap()))
}

fn run_diff(orig: &Path, patched: &Path, out: &Path, json: &Path) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_klpforge"))
        .arg("diff")
        .arg(orig)
        .arg(patched)
        .arg(out)
        .arg("--json")
        .arg(json)
        .output()
        .expect("run klpforge diff");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn dump(obj: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_klpforge"))
        .args(["elf", "dump"])
        .arg(obj)
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

/// Check an `extra_check` statement that can be verified on the output; returns an error.
fn extra_check(test: &str, out: &Path) -> Result<(), String> {
    let text = dump(out);
    match test {
        "convert-global-local" => text
            .lines()
            .any(|l| {
                l.starts_with("symbol [") && l.contains(" __kmalloc ") && l.contains("bind=LOCAL")
            })
            .then_some(())
            .ok_or("__kmalloc is not LOCAL in the output".into()),
        "dynamic-debug-jump-label-issue-1253" => (!text.lines().any(|l| {
            l.starts_with("symbol [") && l.contains("type=SECTION") && l.contains("shndx=UND")
        }))
        .then_some(())
        .ok_or("an undefined section symbol is in the output".into()),
        "import-ns" => {
            let bytes = std::fs::read(out).unwrap();
            let count = bytes.windows(10).filter(|w| w == b"import_ns=").count();
            (count == 4)
                .then_some(())
                .ok_or(format!("{count} import_ns= entries, expected 4"))
        }
        "mcount_loc-issue-1102" => text
            .lines()
            .any(|l| {
                l.starts_with("reloc [")
                    && l.contains("__mcount_loc")
                    && l.contains("type=R_X86_64_64")
                    && l.contains(" netlbl_catmap_getlong addend=0x0")
            })
            .then_some(())
            .ok_or("no R_X86_64_64 __mcount_loc relocation against netlbl_catmap_getlong+0".into()),
        _ => Ok(()),
    }
}

#[test]
fn corpus_function_sets_match_the_peer() {
    let Some((corpus, expectations, scratch)) = corpus_cases("diff-corpus") else {
        return;
    };
    let mut failures = Vec::new();
    let mut summary = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for e in &expectations {
        let pair = e.find_pair(&corpus).unwrap();
        let out = scratch.path().join(format!("{}-{}.o", e.arch, e.test));
        let json = scratch.path().join(format!("{}-{}.json", e.arch, e.test));
        let (code, text) = run_diff(&pair.orig, &pair.patched, &out, &json);
        let label = format!("{}/{}", e.arch, e.test);
        let entry = summary.entry(e.arch.clone()).or_default();
        entry.1 += 1;
        let mut fail = |why: String| {
            failures.push(format!(
                "{label}: {why}\n    output: {}",
                text.trim().replace('\n', "\n    ")
            ))
        };
        match &e.expect {
            Expect::Fail(reason) => {
                let reason = reason.clone().unwrap_or_default();
                let want = if reason.contains("exit status 3") {
                    3
                } else {
                    4
                };
                if code != want {
                    fail(format!("exit {code}, expected {want} ({reason})"));
                    continue;
                }
            }
            Expect::Pass => {
                if code != 0 {
                    fail(format!("exit {code}, expected 0"));
                    continue;
                }
                let report: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
                let ours: BTreeSet<String> = report["output_functions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                let peer: BTreeSet<String> = e.peer_functions.iter().cloned().collect();
                let deviation = DEVIATIONS.iter().find(|d| d.0 == e.arch && d.1 == e.test);
                let expected: BTreeSet<String> = match deviation {
                    Some(d) => d.2.iter().map(|s| s.to_string()).collect(),
                    None => peer.clone(),
                };
                if ours != expected {
                    fail(format!(
                        "functions {ours:?}, expected {expected:?} (peer {peer:?})"
                    ));
                    continue;
                }
                if let Err(why) = extra_check(&e.test, &out) {
                    fail(why);
                    continue;
                }
                // Deterministic output.
                let again = scratch
                    .path()
                    .join(format!("{}-{}.again.o", e.arch, e.test));
                let (code2, _) = run_diff(&pair.orig, &pair.patched, &again, &json);
                if code2 != 0 || std::fs::read(&out).unwrap() != std::fs::read(&again).unwrap() {
                    fail("output differs between two runs".into());
                    continue;
                }
                let re = Command::new("readelf")
                    .args(["-W", "-a"])
                    .arg(&out)
                    .output()
                    .unwrap();
                if !re.stderr.is_empty() {
                    fail(format!(
                        "readelf warns: {}",
                        String::from_utf8_lossy(&re.stderr)
                    ));
                    continue;
                }
                if let Some(tc) = toolchain(&e.arch) {
                    let ld = Command::new(tc.ld())
                        .arg("-r")
                        .arg("-o")
                        .arg(scratch.path().join("ld.o"))
                        .arg(&out)
                        .output()
                        .unwrap();
                    if !ld.status.success() || !ld.stderr.is_empty() {
                        fail(format!(
                            "ld -r failed: {}",
                            String::from_utf8_lossy(&ld.stderr)
                        ));
                        continue;
                    }
                }
            }
        }
        entry.0 += 1;
    }
    for (arch, (ok, all)) in &summary {
        eprintln!("diff corpus {arch}: {ok}/{all} cases as expected");
    }
    for (arch, test, _, why) in DEVIATIONS {
        eprintln!("diff corpus deviation {arch}/{test}: {why}");
    }
    assert!(
        failures.is_empty(),
        "{} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Something ran: every architecture of the corpus, each with its cases.
    let ran: usize = summary.values().map(|&(_, all)| all).sum();
    assert!(
        summary.len() >= 3 && ran == expectations.len() && ran > 0,
        "the corpus diff ran {ran} of {} cases on {} architectures",
        expectations.len(),
        summary.len()
    );
}

/// `obj` relinked by `ld -r` with its sections in reverse order (a linker script naming each
/// one): the same program, its sections and symbol table written in another order.
fn reversed(tc: &Toolchain, obj: &Path, out: &Path) -> Result<(), String> {
    let data = std::fs::read(obj).map_err(|e| e.to_string())?;
    let model = klpforge_elf::read::parse(&data).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = Vec::new();
    for (_, s) in model.sections() {
        let linked_by_ld = matches!(
            s.data,
            klpforge_elf::SectionData::Bytes(_) | klpforge_elf::SectionData::NoBits { .. }
        );
        let name = s.name_lossy().into_owned();
        if linked_by_ld && !names.contains(&name) {
            names.push(name);
        }
    }
    let script: String = names
        .iter()
        .rev()
        .map(|n| format!("  {n} : {{ *({n}) }}\n"))
        .collect();
    let lds = out.with_extension("lds");
    std::fs::write(&lds, format!("SECTIONS {{\n{script}}}\n")).map_err(|e| e.to_string())?;
    let ld = Command::new(tc.ld())
        .arg("-r")
        .arg("-T")
        .arg(&lds)
        .arg(obj)
        .arg("-o")
        .arg(out)
        .output()
        .map_err(|e| e.to_string())?;
    if ld.status.success() && ld.stderr.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "ld -r: {}",
            String::from_utf8_lossy(&ld.stderr).trim()
        ))
    }
}

/// What a diff decided: exit status, changed, new and refused symbols (not the output's
/// layout, which follows the input's order).
fn decisions(code: i32, json: &Path) -> String {
    let report: serde_json::Value = std::fs::read_to_string(json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let names = |key: &str, field: Option<&str>| -> BTreeSet<String> {
        report[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| field.map_or(v.as_str(), |f| v[f].as_str()))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    format!(
        "exit {code}, changed {:?}, new {:?}, new data {:?}, refused {:?}",
        names("changed_functions", Some("name")),
        names("new_functions", None),
        names("new_data", None),
        names("refusals", Some("symbol"))
    )
}

/// The decisions on corpus case `e` must be those on it with either or both objects
/// rewritten by `reorder` (input, output), and the original against its reordered self must
/// have nothing to patch; what differs is added to `failures`.
fn same_decisions_reordered(
    e: &Expectation,
    corpus: &Path,
    scratch: &Path,
    reorder: &dyn Fn(&Path, &Path) -> Result<(), String>,
    failures: &mut Vec<String>,
) {
    let pair = e.find_pair(corpus).unwrap();
    let label = format!("{}/{}", e.arch, e.test);
    let work = |what: &str| scratch.join(format!("{}-{}.{what}", e.arch, e.test));
    let (ro, rp) = (work("ro.o"), work("rp.o"));
    if let Err(why) = reorder(&pair.orig, &ro).and_then(|()| reorder(&pair.patched, &rp)) {
        failures.push(format!("{label}: {why}"));
        return;
    }
    let decide = |o: &Path, p: &Path| {
        let json = work("json");
        let _ = std::fs::remove_file(&json);
        let (code, _) = run_diff(o, p, &work("out.o"), &json);
        decisions(code, &json)
    };
    let want = decide(&pair.orig, &pair.patched);
    for (what, got) in [
        ("patched object reordered", decide(&pair.orig, &rp)),
        ("original object reordered", decide(&ro, &pair.patched)),
        ("both reordered", decide(&ro, &rp)),
    ] {
        if got != want {
            failures.push(format!("{label}, {what}: {got}\n    in order: {want}"));
        }
    }
    let own = decide(&pair.orig, &ro);
    if !own.starts_with("exit 3,") {
        failures.push(format!(
            "{label}: the original against itself reordered: {own}"
        ));
    }
}

/// Decisions do not depend on the order in which an object's sections and symbols are
/// written (ld -r writes a kernel's global symbols in its hash table's order): every corpus
/// pair, with either object relinked with its sections in reverse order, decides the same,
/// and an original object against its reordered self has nothing to patch.
#[test]
fn corpus_decisions_do_not_depend_on_section_or_symbol_order() {
    let Some((corpus, expectations, scratch)) = corpus_cases("diff-corpus-order") else {
        return;
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in &expectations {
        let Some(tc) = toolchain(&e.arch) else {
            skip(
                &e.arch,
                &format!(
                    "{}: no {} linker: its corpus pairs are not reordered",
                    e.test, e.arch
                ),
            );
            continue;
        };
        same_decisions_reordered(
            e,
            &corpus,
            scratch.path(),
            &|input, output| reversed(&tc, input, output),
            &mut failures,
        );
        checked += 1;
    }
    eprintln!("diff corpus reordered: {checked} pairs decide alike in either order");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `obj` written again by the ELF model with its symbol table in another order: the locals
/// of each FILE scope reversed (the FILE symbol still first), and the globals reversed.
fn symbols_reversed(obj: &Path, out: &Path) -> Result<(), String> {
    let file = klpforge_elf::ElfFile::open(obj).map_err(|e| e.to_string())?;
    let mut model = file.parse().map_err(|e| e.to_string())?;
    let (mut order, mut scope, mut globals) = (Vec::new(), Vec::new(), Vec::new());
    for (id, s) in model.symbols() {
        if !s.is_local() {
            globals.push(id);
        } else if s.kind() == klpforge_elf::elf::STT_FILE.0 {
            order.extend(scope.drain(..).rev());
            order.push(id);
        } else {
            scope.push(id);
        }
    }
    order.extend(scope.into_iter().rev());
    order.extend(globals.into_iter().rev());
    model.reorder_symbols(order).map_err(|e| e.to_string())?;
    let bytes = klpforge_elf::write::write(&model).map_err(|e| e.to_string())?;
    std::fs::write(out, bytes).map_err(|e| e.to_string())
}

/// Decisions do not depend on the order of the symbol table (aliases, static locals and
/// same-named functions of different units are told apart by what they are, not by which
/// comes first): every corpus pair, of every architecture (the model rewrites the objects:
/// no toolchain is needed), with either or both objects' symbols reordered decides the
/// same, and an original against its reordered self has nothing to patch.
#[test]
fn corpus_decisions_do_not_depend_on_symbol_table_order() {
    let Some((corpus, expectations, scratch)) = corpus_cases("diff-corpus-symbols") else {
        return;
    };
    let mut failures = Vec::new();
    for e in &expectations {
        same_decisions_reordered(e, &corpus, scratch.path(), &symbols_reversed, &mut failures);
    }
    eprintln!(
        "diff corpus, symbols reordered: {} pairs checked",
        expectations.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
