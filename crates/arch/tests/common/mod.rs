//! Helpers shared by the integration tests: finding the corpus and the host's binutils,
//! running them, and reading ELF objects with the `object` crate.

#![allow(dead_code)]

use object::read::elf::{ElfFile64, FileHeader};
use object::{Endianness, Object, ObjectSection, RelocationFlags, SectionFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kpatch-unit corpus (see `klpforge_testkit::corpus_dir`): `None`, after a skip note,
/// when it is not there.
pub fn corpus_dir() -> Option<PathBuf> {
    klpforge_testkit::corpus_dir()
}

/// The `*.o` files of one architecture's corpus directory, sorted.
pub fn corpus_objects(corpus: &Path, arch_dir: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(corpus.join(arch_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    out.sort();
    out
}

/// `Some(name)` if the program `name` runs (`name --version` succeeds); otherwise prints a
/// skip message naming `what` and returns `None`.
pub fn tool(name: &str, what: &str) -> Option<String> {
    match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => Some(name.to_string()),
        _ => {
            klpforge_testkit::skip(name, &format!("skipping {what}: `{name}` not found"));
            None
        }
    }
}

/// Run a program and return its stdout; panics (failing the test) if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is not UTF-8")
}

/// One relocation as `readelf -rW` prints it.
#[derive(Debug, Clone)]
pub struct ReadelfReloc {
    /// The relocation section (`.rela.text`).
    pub section: String,
    pub offset: u64,
    /// The type, from the low 32 bits of the printed `r_info`.
    pub r_type: u32,
    /// The printed type name, or `None` for `unrecognized: <hex>`.
    pub name: Option<String>,
}

/// Parse `readelf -rW` output for a 64-bit object.
pub fn readelf_relocs(readelf: &str, path: &Path) -> Vec<ReadelfReloc> {
    let text = run(readelf, &["-rW", path.to_str().unwrap()]);
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Relocation section '") {
            section = rest.split('\'').next().unwrap().to_string();
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 {
            continue;
        }
        let (Ok(offset), Ok(info)) = (
            u64::from_str_radix(fields[0], 16),
            u64::from_str_radix(fields[1], 16),
        ) else {
            continue;
        };
        // Both columns are printed with 16 digits for ELF64; anything else is not an entry.
        if fields[0].len() != 16 || fields[1].len() != 16 {
            continue;
        }
        let name = (fields[2] != "unrecognized:").then(|| fields[2].to_string());
        out.push(ReadelfReloc {
            section: section.clone(),
            offset,
            r_type: info as u32,
            name,
        });
    }
    out
}

/// What the tests need from one section of an object.
#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub data: Vec<u8>,
    pub executable: bool,
    /// `(r_offset, r_type)` of the relocations that apply to this section.
    pub relocs: Vec<(u64, u32)>,
}

/// An ELF64 object parsed with `object`.
#[derive(Debug, Clone)]
pub struct Elf {
    pub machine: u16,
    pub big_endian: bool,
    pub sections: Vec<Section>,
}

impl Elf {
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Number of relocations of each type across the object.
    pub fn reloc_type_counts(&self) -> BTreeMap<u32, usize> {
        let mut out = BTreeMap::new();
        for s in &self.sections {
            for &(_, t) in &s.relocs {
                *out.entry(t).or_insert(0) += 1;
            }
        }
        out
    }
}

pub fn read_elf(path: &Path) -> Elf {
    let bytes = std::fs::read(path).unwrap();
    parse_elf(&bytes)
}

pub fn parse_elf(bytes: &[u8]) -> Elf {
    let file = ElfFile64::<Endianness>::parse(bytes).expect("not an ELF64 object");
    let endian = file.endian();
    let machine = file.elf_header().e_machine(endian).0;
    let mut sections = Vec::new();
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags, .. } = section.flags() else {
            unreachable!()
        };
        let executable = sh_flags.0 & object::elf::SHF_EXECINSTR.0 != 0;
        let data = if section.kind() == object::SectionKind::UninitializedData {
            Vec::new()
        } else {
            section.data().unwrap().to_vec()
        };
        let relocs = section
            .relocations()
            .map(|(offset, r)| match r.flags() {
                RelocationFlags::Elf { r_type } => (offset, r_type.0),
                other => panic!("unexpected relocation flags {other:?}"),
            })
            .collect();
        sections.push(Section {
            name: section.name().unwrap().to_string(),
            data,
            executable,
            relocs,
        });
    }
    Elf {
        machine,
        big_endian: endian == Endianness::Big,
        sections,
    }
}

/// Instruction start offsets printed by `objdump -d`, per section, plus the sections in
/// which objdump reported undecodable bytes.
#[derive(Debug, Default)]
pub struct ObjdumpBoundaries {
    pub starts: BTreeMap<String, Vec<u64>>,
    pub bad_sections: Vec<String>,
}

/// Run `objdump -d -z --no-show-raw-insn -w` on `path` and collect instruction start
/// addresses per section. `-z` keeps runs of zero bytes (otherwise printed as `...`).
pub fn objdump_boundaries(objdump: &str, path: &Path, extra: &[&str]) -> ObjdumpBoundaries {
    let mut args = vec!["-d", "-z", "--no-show-raw-insn", "-w"];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    let text = run(objdump, &args);
    let mut out = ObjdumpBoundaries::default();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Disassembly of section ") {
            let name = rest.strip_suffix(':').unwrap().to_string();
            out.starts.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        let Some(sec) = &section else { continue };
        let trimmed = line.trim_start();
        let Some((addr, rest)) = trimmed.split_once(":\t") else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        let bad = rest.contains("(bad)") || rest.contains("internal disassembler error");
        if bad && !out.bad_sections.contains(sec) {
            out.bad_sections.push(sec.clone());
        }
        out.starts.get_mut(sec).unwrap().push(addr);
    }
    out
}
