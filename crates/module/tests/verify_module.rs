//! The finished-module check: every function has ORC, every return through the return thunk
//! is a return site. Objects assembled at test time (the sections objtool would write are
//! written by hand, with and without the entry that matters).

use klpforge_elf::ElfFile;
use klpforge_module::verify::{verify_module, Requirements};
use klpforge_testkit::{compile_c_source, toolchain, ScratchDir};

/// `f` returns through the return thunk; `orc` (an entry of this type at `f`, if any) and
/// `site` decide what objtool's records say about it.
fn source(orc: Option<u8>, site: bool) -> String {
    let mut s = String::from(
        "asm(\".pushsection .text.f,\\\"ax\\\"\\n.globl f\\n.type f, @function\\nf:\\n\\t\
         movl $1, %eax\\n1:\\tjmp __x86_return_thunk\\n.size f, .-f\\n.popsection\\n\"\n",
    );
    if let Some(ty) = orc {
        // sp_offset 8, bp_offset 0, sp_reg 4 (SP), type `ty`.
        s.push_str(&format!(
            "\".pushsection .orc_unwind_ip,\\\"a\\\"\\n.long f - .\\n.popsection\\n\"\n\
             \".pushsection .orc_unwind,\\\"a\\\"\\n.short 8, 0, {:#x}\\n.popsection\\n\"\n",
            (u16::from(ty) << 8) | 4
        ));
    }
    if site {
        s.push_str("\".pushsection .return_sites,\\\"a\\\"\\n.long 1b - .\\n.popsection\\n\"\n");
    }
    s.push_str(");\n");
    s
}

#[test]
fn missing_orc_and_return_sites_are_named() {
    let tc = toolchain("x86_64").expect("the host gcc (x86_64) is required");
    let scratch = ScratchDir::new("verify-module").unwrap();
    let req = Requirements {
        orc: true,
        return_sites: true,
    };
    for (orc, site, expect) in [
        (Some(2), true, None),
        (None, true, Some("f: no ORC unwind data")),
        (
            Some(0),
            true,
            Some("f: no ORC unwind data (undefined at its start)"),
        ),
        (
            Some(2),
            false,
            Some("f: return at .text.f+0x5 is not a return site"),
        ),
    ] {
        let name = format!("vm{}{}", orc.map_or(9, |t| t), u8::from(site));
        let obj = compile_c_source(&tc, &source(orc, site), &name, scratch.path(), &[]).unwrap();
        let file = ElfFile::open(&obj).unwrap();
        let parsed = file.parse().unwrap();
        let got = verify_module(&parsed, req).map_err(|e| e.to_string());
        match expect {
            None => assert_eq!(got, Ok(()), "orc {orc:?} site {site}"),
            Some(text) => {
                let e = got.expect_err("must be rejected");
                assert!(e.contains(text), "{e}");
            }
        }
        // A kernel that asks for neither accepts anything.
        assert!(verify_module(&parsed, Requirements::default()).is_ok());
    }
}
