//! Compiles the in-repository example cases of `tests/fixtures/elf` with
//! every available toolchain and checks a few properties of the objects.

use std::process::Command;

use klpforge_testkit::{available_toolchains, fixtures_root, load_cases, ScratchDir, Toolchain};

/// `readelf -W <args> <obj>` output for `tc`.
fn readelf(tc: &Toolchain, args: &[&str], obj: &std::path::Path) -> String {
    let out = Command::new(tc.readelf())
        .arg("-W")
        .args(args)
        .arg(obj)
        .output()
        .expect("running readelf");
    assert!(out.status.success(), "readelf failed on {}", obj.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn example_cases_are_present() {
    let cases = load_cases(&fixtures_root().join("elf")).unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for expected in ["basic", "common", "statics-and-externs"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let common = cases.iter().find(|c| c.name == "common").unwrap();
    assert_eq!(common.cflags(), ["-fcommon"]);
}

#[test]
fn example_cases_compile_for_every_toolchain() {
    let cases = load_cases(&fixtures_root().join("elf")).unwrap();
    let toolchains = available_toolchains();
    for tc in &toolchains {
        let out = ScratchDir::new(&format!("examples-{}", tc.arch)).unwrap();
        for case in &cases {
            if !case.runs_on(tc) {
                continue;
            }
            let compiled = case.compile(tc, &out).unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(
                compiled.orig.file_name().unwrap().to_string_lossy(),
                format!("{}.{}.orig.o", case.name, tc.arch)
            );
            assert_eq!(compiled.patched.is_some(), case.patched.is_some());

            let header = readelf(tc, &["-h"], &compiled.orig);
            assert!(header.contains("REL (Relocatable file)"), "{header}");
            let endian = if tc.big_endian {
                "big endian"
            } else {
                "little endian"
            };
            assert!(header.contains(endian), "{}: {header}", tc.arch);

            let symbols = readelf(tc, &["-s"], &compiled.orig);
            let sections = readelf(tc, &["-S"], &compiled.orig);
            match case.name.as_str() {
                "basic" => {
                    assert!(
                        sections.contains(".text.classify"),
                        "{}: {sections}",
                        tc.arch
                    );
                    assert!(
                        sections.contains(".text.unlikely"),
                        "{}: {sections}",
                        tc.arch
                    );
                    assert!(sections.contains(".data.limits"), "{}: {sections}", tc.arch);
                    assert!(
                        symbols
                            .lines()
                            .any(|l| l.contains(" WEAK ") && l.ends_with(" weak_hook")),
                        "{}: {symbols}",
                        tc.arch
                    );
                    let patched = readelf(tc, &["-s"], compiled.patched.as_ref().unwrap());
                    assert!(patched.contains(" new_helper"), "{}", tc.arch);
                    assert!(!symbols.contains(" new_helper"), "{}", tc.arch);
                }
                "common" => {
                    let common = symbols
                        .lines()
                        .filter(|l| l.contains(" COM ") && l.contains("common_"))
                        .count();
                    assert_eq!(common, 3, "{}: {symbols}", tc.arch);
                }
                "statics-and-externs" => {
                    assert!(
                        sections.contains(".data..read_mostly"),
                        "{}: {sections}",
                        tc.arch
                    );
                    assert!(sections.contains(".init.text"), "{}: {sections}", tc.arch);
                    assert!(
                        symbols
                            .lines()
                            .any(|l| l.contains(" UND ") && l.ends_with(" printk")),
                        "{}: {symbols}",
                        tc.arch
                    );
                    assert!(
                        symbols
                            .lines()
                            .any(|l| l.contains(" LOCAL ") && l.contains(" id.")),
                        "{}: {symbols}",
                        tc.arch
                    );
                }
                _ => {}
            }
        }
    }
}
