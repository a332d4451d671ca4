//! post-link and convert on objects built at test time by gcc and ld (no kernel needed).

use std::path::{Path, PathBuf};
use std::process::Command;

use klpforge_diff::{diff, DiffOptions, Outcome, Symvers};
use klpforge_elf::{ElfFile, SectionData, SymbolPlace, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH};
use klpforge_module::convert::convert;
use klpforge_module::kallsyms::SymbolIndex;
use klpforge_module::postlink::post_link;
use klpforge_testkit::{compile_c_source, toolchain, ScratchDir, Toolchain};

const ORIG: &str = r#"
static int secret = 5;
void set_secret(int v) { secret = v; }
static __attribute__((noinline)) int helper(int x) { return x * 3 + secret; }
int show(int x) { return helper(x) + 1; }
int other(int x) { return x - 1; }
"#;

const PATCHED: &str = r#"
static int secret = 5;
void set_secret(int v) { secret = v; }
static __attribute__((noinline)) int helper(int x) { return x * 3 + secret; }
int show(int x) { return helper(x) + secret + 2; }
int other(int x) { return x - 1; }
"#;

fn ld_r(tc: &Toolchain, input: &Path, out: &Path) {
    let o = Command::new(tc.ld())
        .arg("-r")
        .arg("-o")
        .arg(out)
        .arg(input)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ld -r: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A diff object for `show` (klp relocations to `helper` and `secret`), linked with `ld -r`
/// as the module link would.
fn linked_diff(tc: &Toolchain, dir: &Path) -> PathBuf {
    let orig = compile_c_source(tc, ORIG, "pl.orig", dir, &[]).unwrap();
    let patched = compile_c_source(tc, PATCHED, "pl.patched", dir, &[]).unwrap();
    let (of, pf) = (
        ElfFile::open(&orig).unwrap(),
        ElfFile::open(&patched).unwrap(),
    );
    let (o, p) = (of.parse().unwrap(), pf.parse().unwrap());
    let Outcome::Changed(obj, report) = diff(&o, &p, &DiffOptions::default()).unwrap() else {
        panic!("expected a change")
    };
    assert_eq!(report.changed_functions.len(), 1);
    assert!(
        report.klp_relocations.len() >= 2,
        "{:?}",
        report.klp_relocations
    );
    let d = dir.join("diff.o");
    klpforge_elf::write::write_file(&obj, &d).unwrap();
    let linked = dir.join("linked.o");
    ld_r(tc, &d, &linked);
    linked
}

#[test]
fn post_link_produces_the_kernel_format() {
    let Some(tc) = toolchain("x86_64") else {
        return;
    };
    let scratch = ScratchDir::new("postlink").unwrap();
    let linked = linked_diff(&tc, scratch.path());
    let file = ElfFile::open(&linked).unwrap();
    let mut obj = file.parse().unwrap();
    let report = post_link(&mut obj).unwrap();
    assert!(!report.already_done);
    assert_eq!(report.klp_symbols, 2, "{report:?}");
    let out = scratch.path().join("final.ko");
    klpforge_elf::write::write_file(&obj, &out).unwrap();

    let f2 = ElfFile::open(&out).unwrap();
    let m = f2.parse().unwrap();
    assert!(
        m.section_by_name(b".klp_forge.relocs").is_none(),
        "records left behind"
    );
    let symtab = m.symbol_table().unwrap();
    let mut klp_relocs = 0;
    for (_, s) in m.sections() {
        let Some(entries) = s.relocations() else {
            continue;
        };
        let name = s.name_lossy();
        if s.sh_flags & SHF_RELA_LIVEPATCH != 0 {
            assert!(name.starts_with(".klp.rela.vmlinux."), "{name}");
            assert_eq!(s.sh_flags, 0x2 | 0x40 | SHF_RELA_LIVEPATCH);
            assert_eq!(s.sh_type, 4);
            assert_eq!(s.link, klpforge_elf::Link::Section(symtab));
            let target = m.section(s.relocation_target().unwrap());
            for r in entries {
                klp_relocs += 1;
                let sym = m.symbol(r.symbol.unwrap());
                assert_eq!(sym.place, SymbolPlace::Reserved(SHN_LIVEPATCH));
                assert!(sym.name.starts_with(b".klp.sym.vmlinux."));
                // The bytes the kernel will write are zero.
                let b = &target.bytes()[r.offset as usize..r.offset as usize + 4];
                assert_eq!(b, &[0, 0, 0, 0]);
            }
        } else {
            for r in entries {
                let sym = m.symbol(r.symbol.unwrap_or_else(|| panic!("{name}")));
                assert!(
                    !sym.name.starts_with(b".klp.sym."),
                    "placeholder left in {name}"
                );
            }
        }
    }
    assert_eq!(klp_relocs, 2);
    // readelf agrees, without warnings.
    let re = Command::new("readelf")
        .args(["-W", "-S", "-s", "-r"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&re.stdout);
    assert!(
        re.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&re.stderr)
    );
    assert!(
        text.contains("OS [0xff20] .klp.sym.vmlinux.helper,0"),
        "{text}"
    );
    assert!(text.contains(" AIo "), "{text}");

    // A second run changes nothing.
    let mut again = m.clone();
    let r2 = post_link(&mut again).unwrap();
    assert!(r2.already_done);
    let out2 = scratch.path().join("final2.ko");
    klpforge_elf::write::write_file(&again, &out2).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn post_link_rejects_malformed_klp_symbols() {
    let Some(tc) = toolchain("x86_64") else {
        return;
    };
    let scratch = ScratchDir::new("postlink-bad").unwrap();
    let linked = linked_diff(&tc, scratch.path());
    let file = ElfFile::open(&linked).unwrap();
    for bad in [
        ".klp.sym.vmlinux.helper",
        ".klp.sym.vmlinux.helper,x",
        &format!(".klp.sym.{}.helper,0", "m".repeat(56)),
    ] {
        let mut obj = file.parse().unwrap();
        let id = obj.symbol_by_name(b".klp.sym.vmlinux.helper,0").unwrap();
        obj.symbol_mut(id).name = std::borrow::Cow::Owned(bad.as_bytes().to_vec());
        let err = post_link(&mut obj).unwrap_err().to_string();
        assert!(
            err.contains("malformed livepatch symbol name"),
            "{bad}: {err}"
        );
        assert!(err.contains(bad), "{err}");
    }
}

const MODULE: &str = r#"
#include "klpforge.h"
extern int hidden_fn(int);
extern int helper(int);
extern int exported_fn(int);
KLPFORGE_SYMPOS(helper, 2);
static const char modinfo[] __attribute__((used, section(".modinfo"))) = "livepatch=Y";
int patched_entry(int x) { return hidden_fn(x) + helper(x) + exported_fn(x); }
"#;

const TARGET_A: &str = r#"
int hidden_fn(int x) { return x + 1; }
static __attribute__((noinline, used)) int helper(int x) { return x + 2; }
int use_a(int x) { return helper(x); }
int exported_fn(int x) { return x; }
void _start(void) {}
asm(".globl __fentry__\n__fentry__: ret");
"#;

const TARGET_B: &str = r#"
static __attribute__((noinline, used)) int helper(int x) { return x + 3; }
int use_b(int x) { return helper(x); }
"#;

fn fake_kernel(tc: &Toolchain, dir: &Path) -> PathBuf {
    let a = compile_c_source(tc, TARGET_A, "ka", dir, &[]).unwrap();
    let b = compile_c_source(tc, TARGET_B, "kb", dir, &[]).unwrap();
    let out = dir.join("vmlinux");
    let o = Command::new(tc.ld())
        .arg("-o")
        .arg(&out)
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn include_flag() -> String {
    format!("-I{}/../../include", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn convert_resolves_unique_annotated_and_exported_symbols() {
    let Some(tc) = toolchain("x86_64") else {
        return;
    };
    let scratch = ScratchDir::new("convert").unwrap();
    let vmlinux = fake_kernel(&tc, scratch.path());
    let inc = include_flag();
    let module = compile_c_source(&tc, MODULE, "mod", scratch.path(), &[inc.as_str()]).unwrap();
    let tfile = ElfFile::open(&vmlinux).unwrap();
    let target = tfile.parse().unwrap();
    let index = SymbolIndex::new(&target);
    assert_eq!(index.lookup("helper").len(), 2);
    let symvers = Symvers::parse(
        "0x1\texported_fn\tvmlinux\tEXPORT_SYMBOL\t\n0x2\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n",
    )
    .unwrap();
    let mfile = ElfFile::open(&module).unwrap();
    let mut m = mfile.parse().unwrap();
    let report = convert(&mut m, &index, "vmlinux", &symvers).unwrap();
    assert_eq!(
        report.converted["hidden_fn"],
        ".klp.sym.vmlinux.hidden_fn,0"
    );
    assert_eq!(report.converted["helper"], ".klp.sym.vmlinux.helper,2");
    assert!(
        !report.converted.contains_key("exported_fn"),
        "vmlinux exports stay normal"
    );
    assert!(m.section_by_name(b".klpforge.sympos").is_none());
    let klp: Vec<_> = m
        .sections()
        .filter(|(_, s)| s.sh_flags & SHF_RELA_LIVEPATCH != 0)
        .collect();
    assert_eq!(klp.len(), 1);
    let SectionData::Relocations { entries, .. } = &klp[0].1.data else {
        panic!()
    };
    assert_eq!(entries.len(), 2);
    let out = scratch.path().join("mod.klp.o");
    klpforge_elf::write::write_file(&m, &out).unwrap();
    let re = Command::new("readelf")
        .args(["-W", "-s"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(re.stderr.is_empty());
    assert!(String::from_utf8_lossy(&re.stdout).contains("OS [0xff20] .klp.sym.vmlinux.helper,2"));
}

#[test]
fn convert_names_the_candidates_of_an_ambiguous_symbol() {
    let Some(tc) = toolchain("x86_64") else {
        return;
    };
    let scratch = ScratchDir::new("convert-ambiguous").unwrap();
    let vmlinux = fake_kernel(&tc, scratch.path());
    let src = MODULE.replace("KLPFORGE_SYMPOS(helper, 2);", "");
    let inc = include_flag();
    let module = compile_c_source(&tc, &src, "mod2", scratch.path(), &[inc.as_str()]).unwrap();
    let tfile = ElfFile::open(&vmlinux).unwrap();
    let index = SymbolIndex::new(&tfile.parse().unwrap());
    let mfile = ElfFile::open(&module).unwrap();
    let mut m = mfile.parse().unwrap();
    let err = convert(&mut m, &index, "vmlinux", &Symvers::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("helper: 2 symbols of that name"), "{err}");
    assert!(err.contains("KLPFORGE_SYMPOS(helper, <1..2>)"), "{err}");
    // Not exported and not in the target at all.
    let src = MODULE
        .replace("hidden_fn(x) +", "missing_fn(x) +")
        .replace("extern int hidden_fn(int);", "extern int missing_fn(int);");
    let module = compile_c_source(&tc, &src, "mod3", scratch.path(), &[inc.as_str()]).unwrap();
    let mfile = ElfFile::open(&module).unwrap();
    let mut m = mfile.parse().unwrap();
    let err = convert(&mut m, &index, "vmlinux", &Symvers::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing_fn: undefined, not exported"), "{err}");
}

#[test]
fn convert_rejects_malformed_annotations_and_non_livepatch_modules() {
    let Some(tc) = toolchain("x86_64") else {
        return;
    };
    let scratch = ScratchDir::new("convert-bad").unwrap();
    let vmlinux = fake_kernel(&tc, scratch.path());
    let tfile = ElfFile::open(&vmlinux).unwrap();
    let index = SymbolIndex::new(&tfile.parse().unwrap());
    let inc = include_flag();
    // An objname with a dot cannot be encoded in a klp symbol.
    let src = MODULE.replace(
        "KLPFORGE_SYMPOS(helper, 2);",
        "KLPFORGE_MODULE_SYMPOS(bad.name, helper, 1);",
    );
    let module = compile_c_source(&tc, &src, "mod4", scratch.path(), &[inc.as_str()]).unwrap();
    let mfile = ElfFile::open(&module).unwrap();
    let mut m = mfile.parse().unwrap();
    let err = convert(&mut m, &index, "vmlinux", &Symvers::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("helper") && err.contains("cannot be used in a klp symbol"),
        "{err}"
    );
    // Without livepatch=Y.
    let src = MODULE.replace("\"livepatch=Y\"", "\"license=GPL\"");
    let module = compile_c_source(&tc, &src, "mod5", scratch.path(), &[inc.as_str()]).unwrap();
    let mfile = ElfFile::open(&module).unwrap();
    let mut m = mfile.parse().unwrap();
    let err = convert(&mut m, &index, "vmlinux", &Symvers::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a livepatch module"), "{err}");
}
