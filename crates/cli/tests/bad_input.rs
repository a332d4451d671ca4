//! Bad input gives one line naming the file and the problem, exit status 1, and no panic.
//!
//! The damaged objects are made from a real gcc object at test time, each with one precise
//! defect, so the expected message is known.

use std::path::{Path, PathBuf};
use std::process::Command;

use klpforge_testkit::{compile_c_source, toolchain, ScratchDir};

const SOURCE: &str = r#"
static int counter;
int bump(int x) { counter += x; return counter; }
const char *hello(void) { return "hello"; }
"#;

struct Elf {
    bytes: Vec<u8>,
}

impl Elf {
    fn u16(&self, off: usize) -> u64 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]]) as u64
    }
    fn u32(&self, off: usize) -> u64 {
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().unwrap()) as u64
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap())
    }
    fn set(&mut self, off: usize, size: usize, v: u64) {
        self.bytes[off..off + size].copy_from_slice(&v.to_le_bytes()[..size]);
    }
    fn shoff(&self) -> usize {
        self.u64(40) as usize
    }
    fn shnum(&self) -> usize {
        self.u16(60) as usize
    }
    fn shdr(&self, index: usize) -> usize {
        self.shoff() + 64 * index
    }
    /// Index of the first section of type `sh_type`.
    fn section_of_type(&self, sh_type: u64) -> usize {
        (1..self.shnum())
            .find(|&i| self.u32(self.shdr(i) + 4) == sh_type)
            .unwrap_or_else(|| panic!("no section of type {sh_type}"))
    }
}

/// The real object the damaged ones are made from (`None`, reported as a skip, without the
/// host gcc).
fn base_object(scratch: &Path) -> Option<Elf> {
    let Some(tc) = toolchain("x86_64") else {
        klpforge_testkit::skip(
            "x86_64",
            "x86_64 gcc not installed: bad-input cases skipped",
        );
        return None;
    };
    let obj = compile_c_source(&tc, SOURCE, "bad-input", scratch, &[]).unwrap();
    Some(Elf {
        bytes: std::fs::read(obj).unwrap(),
    })
}

/// Run `klpforge elf dump` and `klpforge elf rewrite` on `path`; both must fail with exit
/// status 1 and a single line `klpforge: error: PATH: ...` containing `expect`.
fn assert_rejected(path: &Path, expect: &str) {
    let out_path = path.with_extension("out");
    let runs: [Vec<&std::ffi::OsStr>; 2] = [
        vec!["elf".as_ref(), "dump".as_ref(), path.as_os_str()],
        vec![
            "elf".as_ref(),
            "rewrite".as_ref(),
            path.as_os_str(),
            out_path.as_os_str(),
        ],
    ];
    for args in runs {
        let out = Command::new(env!("CARGO_BIN_EXE_klpforge"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: status {:?}, stderr {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
        let prefix = format!("klpforge: error: {}: ", path.display());
        assert!(
            stderr.starts_with(&prefix),
            "{args:?}: should name the file: {stderr}"
        );
        assert!(
            stderr.contains(expect),
            "{args:?}: expected {expect:?} in: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: printed output for a bad file"
        );
        assert!(
            !out_path.exists(),
            "{args:?}: wrote an output for a bad file"
        );
    }
}

fn save(scratch: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn non_elf_empty_and_missing_files() {
    let scratch = ScratchDir::new("bad-input-basic").unwrap();
    let s = scratch.path();
    assert_rejected(
        &save(s, "text.o", b"this is not an object file\n"),
        "not an ELF file",
    );
    assert_rejected(
        &save(s, "empty.o", b""),
        "not an ELF file (bad magic empty file)",
    );
    assert_rejected(&save(s, "ident.o", b"\x7fELF\x02\x01"), "truncated file");
    assert_rejected(&s.join("does-not-exist.o"), "No such file");
    assert_rejected(s, "not a regular file");
}

#[test]
fn thirty_two_bit_elf() {
    let scratch = ScratchDir::new("bad-input-32").unwrap();
    let s = scratch.path();
    let src = s.join("m32.c");
    std::fs::write(&src, "int f(int x) { return x + 1; }\n").unwrap();
    let obj = s.join("m32.o");
    let built = Command::new("gcc")
        .args(["-m32", "-c", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    let path = if built {
        obj
    } else {
        // No 32-bit gcc support: mark a 64-bit object as ELFCLASS32 instead.
        let Some(mut elf) = base_object(s) else {
            return;
        };
        elf.bytes[4] = 1;
        eprintln!("gcc -m32 unavailable; testing a class-patched object");
        save(s, "m32.o", &elf.bytes)
    };
    assert_rejected(&path, "32-bit ELF (ELFCLASS32) is not supported");
}

#[test]
fn truncated_files() {
    let scratch = ScratchDir::new("bad-input-trunc").unwrap();
    let s = scratch.path();
    let Some(elf) = base_object(s) else { return };
    assert_rejected(
        &save(s, "header.o", &elf.bytes[..40]),
        "shorter than the 64-byte ELF header",
    );
    // Cut inside the section header table (which gcc puts at the end).
    let cut = elf.shoff() + 64 * 3 + 10;
    assert_rejected(
        &save(s, "shdrs.o", &elf.bytes[..cut]),
        "extends past the end of the file",
    );
    // Cut before the section header table: the table lies past the end.
    assert_rejected(
        &save(s, "noshdrs.o", &elf.bytes[..elf.shoff() - 8]),
        "lies past the end of the file",
    );
}

#[test]
fn bad_offsets() {
    let scratch = ScratchDir::new("bad-input-offsets").unwrap();
    let s = scratch.path();
    let Some(mut elf) = base_object(s) else {
        return;
    };
    // A non-empty PROGBITS section whose contents start beyond the end of the file.
    let text = (1..elf.shnum())
        .find(|&i| elf.u32(elf.shdr(i) + 4) == 1 && elf.u64(elf.shdr(i) + 32) > 0)
        .unwrap();
    let len = elf.bytes.len() as u64;
    let shdr = elf.shdr(text);
    elf.set(shdr + 24, 8, len + 0x1000);
    assert_rejected(&save(s, "offset.o", &elf.bytes), "lie outside the file");

    let Some(mut elf) = base_object(s) else {
        return;
    };
    let rela = elf.section_of_type(4);
    let shdr = elf.shdr(rela);
    elf.set(shdr + 32, 8, u64::MAX - 8); // sh_size
    assert_rejected(&save(s, "size.o", &elf.bytes), "lie outside the file");
}

#[test]
fn out_of_range_indices() {
    let scratch = ScratchDir::new("bad-input-index").unwrap();
    let s = scratch.path();
    let Some(base) = base_object(s) else { return };
    let symtab = base.section_of_type(2);
    let symtab_off = base.u64(base.shdr(symtab) + 24) as usize;
    let nsyms = base.u64(base.shdr(symtab) + 32) as usize / 24;
    let shnum = base.shnum();

    // A symbol's st_shndx beyond the section count.
    let mut elf = Elf {
        bytes: base.bytes.clone(),
    };
    let sym = (1..nsyms)
        .find(|&i| {
            let shndx = elf.u16(symtab_off + 24 * i + 6);
            shndx != 0 && shndx < 0xff00
        })
        .unwrap();
    elf.set(symtab_off + 24 * sym + 6, 2, shnum as u64 + 5);
    assert_rejected(
        &save(s, "shndx.o", &elf.bytes),
        &format!("section index {} out of range", shnum + 5),
    );

    // A relocation's symbol index beyond the symbol count.
    let mut elf = Elf {
        bytes: base.bytes.clone(),
    };
    let rela = elf.section_of_type(4);
    let rela_off = elf.u64(elf.shdr(rela) + 24) as usize;
    let info = elf.u64(rela_off + 8);
    elf.set(
        rela_off + 8,
        8,
        (info & 0xffff_ffff) | ((nsyms as u64 + 7) << 32),
    );
    assert_rejected(
        &save(s, "rsym.o", &elf.bytes),
        &format!("entry 0 refers to symbol {}, out of range", nsyms + 7),
    );

    // A relocation that applies past the end of its section (offsets in a relocatable
    // object are relative to the section the relocations apply to).
    let mut elf = Elf {
        bytes: base.bytes.clone(),
    };
    let rela = elf.section_of_type(4);
    let target = elf.u32(elf.shdr(rela) + 44) as usize;
    let target_size = elf.u64(elf.shdr(target) + 32);
    let rela_off = elf.u64(elf.shdr(rela) + 24) as usize;
    elf.set(rela_off, 8, target_size + 1);
    assert_rejected(
        &save(s, "roffset.o", &elf.bytes),
        &format!(
            "entry 0 applies at offset {:#x}, past the end of section [{target}]",
            target_size + 1
        ),
    );

    // A relocation section whose target (sh_info) does not exist.
    let mut elf = Elf {
        bytes: base.bytes.clone(),
    };
    let shdr = elf.shdr(rela);
    elf.set(shdr + 44, 4, 999);
    assert_rejected(&save(s, "info.o", &elf.bytes), "sh_info 999 out of range");

    // e_shstrndx beyond the table.
    let mut elf = Elf {
        bytes: base.bytes.clone(),
    };
    elf.set(62, 2, shnum as u64 + 1);
    assert_rejected(&save(s, "shstrndx.o", &elf.bytes), "e_shstrndx");

    // A symbol name offset outside the string table.
    let mut elf = Elf {
        bytes: base.bytes.clone(),
    };
    elf.set(symtab_off + 24, 4, 0x7fff_0000);
    assert_rejected(
        &save(s, "name.o", &elf.bytes),
        "name offset 0x7fff0000 outside the string table",
    );
}

#[test]
fn unsupported_machine() {
    let scratch = ScratchDir::new("bad-input-machine").unwrap();
    let s = scratch.path();
    let Some(mut elf) = base_object(s) else {
        return;
    };
    elf.set(18, 2, 243); // EM_RISCV
    assert_rejected(
        &save(s, "riscv.o", &elf.bytes),
        "unsupported ELF: machine 243",
    );
}

/// `klpforge diff OBJ OBJ` must fail with exit status 1, one line containing every text of
/// `expect`, and no output.
fn assert_diff_refuses(path: &Path, expect: &[&str]) {
    let out_path = path.with_extension("out.o");
    let out = Command::new(env!("CARGO_BIN_EXE_klpforge"))
        .arg("diff")
        .arg(path)
        .arg(path)
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    for text in expect {
        assert!(stderr.contains(text), "expected {text:?} in: {stderr}");
    }
    assert!(!out_path.exists(), "wrote an output for a refused object");
}

/// A section of 4 GiB or more (here a NOBITS one: no file needs to hold it) is refused by
/// `diff` with one line naming the section: offsets within a section are kept in 32 bits,
/// and no kernel has such a section.
#[test]
fn diff_refuses_a_section_of_four_gib() {
    let scratch = ScratchDir::new("bad-input-huge").unwrap();
    let Some(mut elf) = base_object(scratch.path()) else {
        return;
    };
    let bss = elf.section_of_type(8);
    let size_field = elf.shdr(bss) + 32;
    elf.set(size_field, 8, 5 << 30);
    let path = save(scratch.path(), "huge.o", &elf.bytes);
    assert_diff_refuses(
        &path,
        &[".bss", "sections of 4 GiB or more are not supported"],
    );
}

/// A symbol name that is not UTF-8 (no compiler writes one) is refused by `diff` with one
/// line naming the symbol, not read as something else.
#[test]
fn diff_refuses_a_symbol_name_that_is_not_utf8() {
    let scratch = ScratchDir::new("bad-input-name").unwrap();
    let Some(mut elf) = base_object(scratch.path()) else {
        return;
    };
    let at = elf
        .bytes
        .windows(6)
        .position(|w| w == b"\0bump\0")
        .expect("the name bump in the string table");
    elf.bytes[at + 2] = 0xff;
    let path = save(scratch.path(), "name.o", &elf.bytes);
    assert_diff_refuses(&path, &["b\u{fffd}mp", "the name is not UTF-8"]);
}
