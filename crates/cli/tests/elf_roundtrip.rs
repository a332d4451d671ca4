//! `klpforge elf rewrite` and `klpforge elf dump` on real objects, through the binary.
//!
//! Every object of the shared peer corpus (when present) and every ELF fixture compiled for
//! every installed toolchain is rewritten; the rewrite must dump identically, read cleanly
//! under `readelf -W -a`, and link with `ld -r` of its own architecture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use klpforge_testkit::{
    available_toolchains, compile_many_functions, corpus_objects, fixtures_root, load_cases,
    section_header_count, toolchain, ScratchDir,
};

fn klpforge(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klpforge"))
        .args(args)
        .output()
        .expect("run klpforge")
}

fn dump(obj: &Path) -> String {
    let out = klpforge(&["elf".as_ref(), "dump".as_ref(), obj.as_os_str()]);
    assert!(
        out.status.success(),
        "dump {} failed: {}",
        obj.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("dump is UTF-8")
}

fn rewrite(input: &Path, output: &Path) {
    let out = klpforge(&[
        "elf".as_ref(),
        "rewrite".as_ref(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "rewrite {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// readelf's complaints about a file (it prints them on stderr, prefixed `readelf:`).
fn readelf_warnings(readelf: &Path, obj: &Path) -> String {
    let out = Command::new(readelf)
        .args(["-W", "-a"])
        .arg(obj)
        .output()
        .expect("run readelf");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Check one object: rewrite, same dump, no new readelf warnings, `ld -r` links.
fn check_roundtrip(input: &Path, out_dir: &Path, readelf: &Path, ld: Option<&Path>) {
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    let output = out_dir.join(format!("rw-{name}"));
    rewrite(input, &output);
    let (a, b) = (dump(input), dump(&output));
    if a != b {
        let first = a
            .lines()
            .zip(b.lines())
            .find(|(x, y)| x != y)
            .map(|(x, y)| format!("\n  input:     {x}\n  rewritten: {y}"))
            .unwrap_or_default();
        panic!("{}: dump differs after rewrite{first}", input.display());
    }
    let after = readelf_warnings(readelf, &output);
    assert!(
        after.is_empty(),
        "{}: readelf warns: {after}",
        input.display()
    );
    if let Some(ld) = ld {
        let linked = out_dir.join(format!("ld-{name}"));
        let out = Command::new(ld)
            .arg("-r")
            .arg("-o")
            .arg(&linked)
            .arg(&output)
            .output()
            .expect("run ld");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: ld -r of the rewrite failed: {}",
            input.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn corpus_objects_round_trip() {
    let objects = corpus_objects();
    if objects.is_empty() {
        return; // corpus_objects() said why on stderr.
    }
    let scratch = ScratchDir::new("corpus-roundtrip").unwrap();
    let host_ld = toolchain("x86_64").map(|tc| tc.ld());
    let mut count = 0;
    for (arch, path) in &objects {
        // Only the x86_64 objects are linked: the host ld is x86_64's; for the others
        // the matching cross ld is used when installed.
        let ld: Option<PathBuf> = match arch.as_str() {
            "x86_64" => host_ld.clone(),
            other => toolchain(other).map(|tc| tc.ld()),
        };
        check_roundtrip(path, scratch.path(), Path::new("readelf"), ld.as_deref());
        count += 1;
    }
    eprintln!("corpus: {count} objects rewritten, dumps equal, readelf clean");
    assert!(
        count >= 100,
        "expected the whole corpus, saw {count} objects"
    );
}

#[test]
fn fixture_objects_round_trip_on_every_toolchain() {
    let cases = load_cases(&fixtures_root().join("elf")).unwrap();
    assert!(!cases.is_empty(), "no ELF fixture cases found");
    let scratch = ScratchDir::new("fixture-roundtrip").unwrap();
    let mut checked = Vec::new();
    for tc in available_toolchains() {
        for case in &cases {
            if !case.runs_on(&tc) {
                continue;
            }
            let compiled = case.compile(&tc, scratch.path()).unwrap();
            for obj in std::iter::once(&compiled.orig).chain(compiled.patched.as_ref()) {
                check_roundtrip(obj, scratch.path(), &tc.readelf(), Some(&tc.ld()));
                checked.push(format!("{}:{}", tc.arch, case.name));
            }
        }
    }
    eprintln!("fixtures checked: {}", checked.join(" "));
    assert!(!checked.is_empty());
}

#[test]
fn big_endian_fixture_is_really_big_endian() {
    let Some(tc) = toolchain("s390x") else {
        return; // toolchain() said why.
    };
    let cases = load_cases(&fixtures_root().join("elf")).unwrap();
    let scratch = ScratchDir::new("s390x").unwrap();
    let compiled = cases[0].compile(&tc, scratch.path()).unwrap();
    let text = dump(&compiled.orig);
    assert!(text.starts_with("elf64 big REL machine=s390x"), "{text}");
    assert!(
        text.contains("type=R_390_"),
        "no s390 relocations in:\n{text}"
    );
}

#[test]
fn seventy_thousand_sections_keep_extended_numbering() {
    let Some(tc) = toolchain("x86_64") else {
        return;
    };
    let scratch = ScratchDir::new("many-sections").unwrap();
    let started = std::time::Instant::now();
    let obj = compile_many_functions(&tc, 70_000, scratch.path()).unwrap();
    let compiled_in = started.elapsed();
    let sections = section_header_count(&obj).unwrap();
    assert!(sections > 70_000, "only {sections} sections");
    let bytes = std::fs::read(&obj).unwrap();
    assert_eq!(
        &bytes[60..62],
        &[0, 0],
        "gcc output should use the e_shnum escape"
    );

    let started = std::time::Instant::now();
    let output = scratch.path().join("many-rewritten.o");
    rewrite(&obj, &output);
    let rewrite_time = started.elapsed();
    let out_bytes = std::fs::read(&output).unwrap();
    assert_eq!(&out_bytes[60..62], &[0, 0], "e_shnum escape lost");
    assert_eq!(section_header_count(&output).unwrap(), sections);
    assert_eq!(dump(&obj), dump(&output));
    let text = dump(&output);
    assert!(
        text.contains("extended-indices"),
        "no .symtab_shndx in the rewrite"
    );
    // A symbol in a section beyond SHN_LORESERVE must still point at its own section.
    let last = format!("klp_fn_{}", 70_000 - 1);
    let shndx = text
        .lines()
        .find(|l| l.starts_with("symbol [") && l.contains(&format!(" {last} ")))
        .and_then(|l| l.rsplit("shndx=").next())
        .unwrap_or_else(|| panic!("symbol {last} missing"))
        .to_string();
    let index: u32 = shndx.trim_matches(['[', ']']).parse().unwrap();
    assert!(
        index >= 0xff00,
        "{last} should live beyond SHN_LORESERVE, is in {shndx}"
    );
    assert!(
        text.contains(&format!("section {shndx} .text.{last} ")),
        "{last} does not point at its own section {shndx}"
    );
    assert!(readelf_warnings(Path::new("readelf"), &output).is_empty());
    let out = Command::new(tc.ld())
        .arg("-r")
        .arg("-o")
        .arg(scratch.path().join("ld.o"))
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{sections} sections: gcc {compiled_in:.1?}, klpforge rewrite (debug build, incl. dump-free write) {rewrite_time:.1?}"
    );
}

#[test]
fn json_dump_matches_text_dump() {
    let Some(tc) = toolchain("x86_64") else {
        return;
    };
    let cases = load_cases(&fixtures_root().join("elf")).unwrap();
    let scratch = ScratchDir::new("json-dump").unwrap();
    let obj = cases[0].compile(&tc, scratch.path()).unwrap().orig;
    let out = klpforge(&[
        "elf".as_ref(),
        "dump".as_ref(),
        "--json".as_ref(),
        obj.as_os_str(),
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let text = dump(&obj);
    let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        json["sections"].as_array().unwrap().len(),
        count("section [")
    );
    assert_eq!(json["symbols"].as_array().unwrap().len(), count("symbol ["));
    assert_eq!(
        json["relocations"].as_array().unwrap().len(),
        count("reloc [")
    );
    assert_eq!(json["header"]["machine"], "x86_64");
    // Every relocation names a type and a symbol index that exists.
    let nsyms = json["symbols"].as_array().unwrap().len() as u64;
    for r in json["relocations"].as_array().unwrap() {
        assert!(
            r["r_type"].as_str().unwrap().starts_with("R_X86_64_"),
            "{r}"
        );
        assert!(r["symbol"].as_u64().unwrap() <= nsyms, "{r}");
    }
}
