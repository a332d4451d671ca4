//! `ld -r` objects (vmlinux mode) hold several translation units, some with the same file
//! name. Their statics are scoped by FILE symbol; a unit new in the patched object must not
//! shift the others' scopes so that statics pair across files. Built at test time by gcc
//! and ld.

use klpforge_diff::{diff, DiffOptions, Outcome};
use klpforge_elf::ElfFile;
use klpforge_testkit::{compile_c_source, toolchain, ScratchDir};

const UNIT_A: &str = r#"
static int hits;
int a_count(void) { return ++hits; }
"#;

const UNIT_B: &str = r#"
static int hits;
int b_count(void) { return hits += 2; }
"#;

const UNIT_B_PATCHED: &str = r#"
static int hits;
int b_count(void) { return hits += 3; }
"#;

/// A unit the patch adds, with the same file name and a static of the same name.
const UNIT_NEW: &str = r#"
static int hits;
int n_count(void) { return hits += 5; }
"#;

#[test]
fn a_new_unit_of_the_same_file_name_does_not_shift_static_scopes() {
    let tc = toolchain("x86_64").expect("the host gcc (x86_64) is required");
    let scratch = ScratchDir::new("ld-r-units").unwrap();
    let dir = scratch.path();
    // Every unit is compiled as `util.c`: the FILE symbols all read "util.c".
    let a = compile_c_source(&tc, UNIT_A, "util.a", dir, &[]).unwrap();
    let b = compile_c_source(&tc, UNIT_B, "util.b", dir, &[]).unwrap();
    let b2 = compile_c_source(&tc, UNIT_B_PATCHED, "util.b2", dir, &[]).unwrap();
    let n = compile_c_source(&tc, UNIT_NEW, "util.n", dir, &[]).unwrap();
    let orig = tc.link(&dir.join("orig.o"), true, &[&a, &b]);
    // The new unit comes first: by occurrence, its scope would take unit A's number.
    let patched = tc.link(&dir.join("patched.o"), true, &[&n, &a, &b2]);
    let (of, pf) = (
        ElfFile::open(&orig).unwrap(),
        ElfFile::open(&patched).unwrap(),
    );
    let (o, p) = (of.parse().unwrap(), pf.parse().unwrap());
    let outcome = diff(&o, &p, &DiffOptions::default()).unwrap();
    let Outcome::Changed(_, report) = outcome else {
        panic!("expected a change")
    };
    let changed: Vec<&str> = report
        .changed_functions
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(changed, ["b_count"], "{report:?}");
    assert_eq!(report.new_functions, ["n_count"], "{report:?}");
    // b_count keeps using unit B's counter: the second `hits` of the original object.
    let klp: Vec<String> = report
        .klp_relocations
        .iter()
        .map(|k| k.symbol.clone())
        .collect();
    assert!(
        klp.iter().any(|k| k == ".klp.sym.vmlinux.hits,2"),
        "b_count must bind to unit B's hits (position 2): {klp:?}"
    );
    assert!(
        !klp.iter().any(|k| k == ".klp.sym.vmlinux.hits,1"),
        "nothing may bind to unit A's hits: {klp:?}"
    );
}
