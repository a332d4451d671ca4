//! Symbols every module links itself must stay undefined in a diff object even when the
//! kernel image defines the same names: on ppc64le `.TOC.` (each module has its own TOC; a klp
//! relocation to the kernel's made the patched function's global entry load the kernel's TOC
//! pointer, and the first call through the module's stubs crashed a real ppc64le kernel) and
//! gcc's register save/restore helpers. Built at test time with the ppc64le cross compiler.

use std::sync::Arc;

use klpforge_diff::klp::SymposSource;
use klpforge_diff::{diff, DiffOptions, Outcome};
use klpforge_elf::ElfFile;
use klpforge_testkit::{compile_c_source, toolchain, ScratchDir};

/// An image that defines every name once (as a real vmlinux defines `.TOC.` and
/// `_restgpr0_*`).
#[derive(Debug)]
struct ImageWithEverything;

impl SymposSource for ImageWithEverything {
    fn sympos(&self, _: &str, _: Option<&str>, _: &[String]) -> Result<u64, String> {
        Ok(0)
    }

    fn defines_global(&self, _: &str) -> bool {
        true
    }
}

const ORIG: &str = r#"
int sink(int, int, int, int);
int mix(int a, int b, int c, int d)
{
	int x = sink(a, b, c, d);
	int y = sink(x, a, b, c);
	return sink(y + 1, x + 2, a, b) + c + d;
}
"#;

#[test]
fn toc_base_and_save_restore_helpers_stay_the_modules_own() {
    let Some(tc) = toolchain("ppc64le") else {
        return; // skipped, saying so (a failure under KLPFORGE_REQUIRE_ALL)
    };
    let scratch = ScratchDir::new("module-own-symbols").unwrap();
    let dir = scratch.path();
    let patched = ORIG.replace("a, b) + c + d", "a, b) + c + d + 1");
    let o = compile_c_source(&tc, ORIG, "own.o", dir, &["-Os"]).unwrap();
    let p = compile_c_source(&tc, &patched, "own.p", dir, &["-Os"]).unwrap();
    let (of, pf) = (ElfFile::open(&o).unwrap(), ElfFile::open(&p).unwrap());
    let (oo, po) = (of.parse().unwrap(), pf.parse().unwrap());
    // A real Module.symvers that exports neither (as a distribution kernel's does not).
    let opts = DiffOptions {
        sympos: Some(Arc::new(ImageWithEverything)),
        symvers: klpforge_diff::Symvers::parse("0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n").unwrap(),
        ..DiffOptions::default()
    };
    let Outcome::Changed(obj, report) = diff(&oo, &po, &opts).unwrap() else {
        panic!("expected a change")
    };
    let klp: Vec<&str> = report
        .klp_relocations
        .iter()
        .map(|k| k.symbol.as_str())
        .collect();
    assert!(
        !klp.iter()
            .any(|k| k.contains("..TOC.") || k.contains("_restgpr") || k.contains("_savegpr")),
        "{klp:?}"
    );
    // They are undefined symbols of the diff object, for the module link.
    let undefined: Vec<String> = obj
        .symbols()
        .filter(|(_, s)| s.place == klpforge_elf::SymbolPlace::Undefined)
        .map(|(_, s)| s.name_lossy().into_owned())
        .collect();
    assert!(undefined.iter().any(|n| n == ".TOC."), "{undefined:?}");
    assert!(
        undefined.iter().any(|n| n.starts_with("_restgpr0_")),
        "{undefined:?}"
    );
}
