//! What `klpforge diff` learns from the linked image (`--vmlinux`), on objects and images built
//! at test time by gcc and ld:
//! - kallsyms positions of globals: a global whose name a static of another translation unit
//!   also uses is not unique in kallsyms, so `sympos` 0 would make the livepatch core refuse
//!   the module ("unresolvable ambiguity");
//! - `__weak` defaults: when a strong definition elsewhere won the link, patching the default
//!   by name would replace the override.

use std::sync::Arc;

use klpforge_diff::{diff, DiffOptions, Outcome};
use klpforge_elf::ElfFile;
use klpforge_module::kallsyms::ImageSympos;
use klpforge_testkit::{compile_c_source, toolchain, ScratchDir};

/// Another unit of the kernel, linked first: a static of the same name as the global.
const OTHER_UNIT: &str = r#"
__attribute__((no_instrument_function)) void __fentry__(void) {}
static __attribute__((noinline, used)) int shared_name(int x) { return x + 1; }
int use_other(int x) { return shared_name(x); }
"#;

const ORIG: &str = r#"
__attribute__((noinline)) int shared_name(int x) { return x * 2; }
int show(int x) { return shared_name(x) + 1; }
"#;

const PATCHED: &str = r#"
__attribute__((noinline)) int shared_name(int x) { return x * 2; }
int show(int x) { return shared_name(x) + 2; }
"#;

#[test]
fn a_global_sharing_its_name_with_a_static_gets_its_kallsyms_rank() {
    let tc = toolchain("x86_64").expect("the host gcc (x86_64) is required");
    let scratch = ScratchDir::new("kallsyms-global").unwrap();
    let dir = scratch.path();
    let other = compile_c_source(&tc, OTHER_UNIT, "ko", dir, &[]).unwrap();
    let orig = compile_c_source(&tc, ORIG, "kg.orig", dir, &[]).unwrap();
    let patched = compile_c_source(&tc, PATCHED, "kg.patched", dir, &[]).unwrap();
    // The static comes first in the image, so the global is the second `shared_name`.
    let image = tc.link(&dir.join("vmlinux"), false, &[&other, &orig]);
    let imagef = ElfFile::open(&image).unwrap();
    let sympos = ImageSympos::new(&imagef.parse().unwrap());
    let (of, pf) = (
        ElfFile::open(&orig).unwrap(),
        ElfFile::open(&patched).unwrap(),
    );
    let (o, p) = (of.parse().unwrap(), pf.parse().unwrap());
    let opts = DiffOptions {
        sympos: Some(Arc::new(sympos)),
        ..DiffOptions::default()
    };
    let Outcome::Changed(_, report) = diff(&o, &p, &opts).unwrap() else {
        panic!("expected a change")
    };
    let klp: Vec<String> = report
        .klp_relocations
        .iter()
        .map(|k| k.symbol.clone())
        .collect();
    assert!(
        klp.iter().any(|k| k == ".klp.sym.vmlinux.shared_name,2"),
        "expected shared_name at kallsyms position 2: {klp:?}"
    );
}

const WEAK_ORIG: &str = r#"
__attribute__((weak, noinline)) int arch_limit(void) { return 8; }
int limit(void) { return arch_limit() * 2; }
"#;

const WEAK_PATCHED: &str = r#"
__attribute__((weak, noinline)) int arch_limit(void) { return 16; }
int limit(void) { return arch_limit() * 2; }
"#;

/// The architecture's strong definition, linked into one of the two images.
const STRONG_UNIT: &str = r#"
__attribute__((no_instrument_function)) void __fentry__(void) {}
int arch_limit(void) { return 64; }
"#;

const FENTRY_UNIT: &str = r#"
__attribute__((no_instrument_function)) void __fentry__(void) {}
"#;

#[test]
fn a_changed_weak_default_is_refused_only_when_a_strong_definition_won() {
    let tc = toolchain("x86_64").expect("the host gcc (x86_64) is required");
    let scratch = ScratchDir::new("image-weak").unwrap();
    let dir = scratch.path();
    let strong = compile_c_source(&tc, STRONG_UNIT, "ks", dir, &[]).unwrap();
    let fentry = compile_c_source(&tc, FENTRY_UNIT, "kf", dir, &[]).unwrap();
    let orig = compile_c_source(&tc, WEAK_ORIG, "kw.orig", dir, &[]).unwrap();
    let patched = compile_c_source(&tc, WEAK_PATCHED, "kw.patched", dir, &[]).unwrap();
    let (of, pf) = (
        ElfFile::open(&orig).unwrap(),
        ElfFile::open(&patched).unwrap(),
    );
    let (o, p) = (of.parse().unwrap(), pf.parse().unwrap());
    for (image, inputs, refused) in [
        ("overridden", [strong.as_path(), orig.as_path()], true),
        ("default", [fentry.as_path(), orig.as_path()], false),
    ] {
        let image = tc.link(&dir.join(image), false, &inputs);
        let imagef = ElfFile::open(&image).unwrap();
        let opts = DiffOptions {
            sympos: Some(Arc::new(ImageSympos::new(&imagef.parse().unwrap()))),
            ..DiffOptions::default()
        };
        match diff(&o, &p, &opts).unwrap() {
            Outcome::Refused(r) if refused => assert!(
                r.refusals
                    .iter()
                    .any(|x| x.symbol == "arch_limit" && x.reason.contains("strong definition")),
                "{:?}",
                r.refusals
            ),
            Outcome::Changed(_, r) if !refused => {
                assert_eq!(r.changed_functions.len(), 1);
                assert!(
                    !r.warnings.iter().any(|w| w.contains("__weak")),
                    "the image settles it: {:?}",
                    r.warnings
                );
            }
            other => panic!(
                "{}: unexpected outcome (refused expected: {refused}): {:?}",
                image.display(),
                match other {
                    Outcome::Changed(_, r) | Outcome::NoChange(r) | Outcome::Refused(r) => r,
                }
            ),
        }
    }
}
