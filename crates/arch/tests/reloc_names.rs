//! Every relocation type's name, checked against binutils for the whole type range.
//!
//! For each architecture we write a relocatable ELF object holding one relocation of every
//! type number in the range and let the host `readelf -rW` (binutils 2.40, which names the
//! types of all architectures) print them. Types that readelf 2.40 does not know yet
//! (`unrecognized: <hex>`) are compared against the `object` crate's name table instead.

mod common;

use common::*;
use klpforge_arch::{all, Arch};
use object::write::{Object, Relocation, Symbol, SymbolSection};
use object::{Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind};
use object::{SymbolFlags, SymbolKind, SymbolScope};

/// Relocation types binutils 2.40 names that klpforge deliberately does not support.
fn deliberately_unknown(arch: &dyn Arch, r_type: u32, readelf_name: &str) -> bool {
    match arch.name() {
        // The ILP32 ABI's types; klpforge handles LP64 objects only.
        "aarch64" => readelf_name.starts_with("R_AARCH64_P32_"),
        // Withdrawn MPX types.
        "x86_64" => matches!(r_type, 39 | 40) && readelf_name.ends_with("_BND"),
        _ => false,
    }
}

fn object_architecture(arch: &dyn Arch) -> (Architecture, Endianness) {
    match arch.name() {
        "x86_64" => (Architecture::X86_64, Endianness::Little),
        "aarch64" => (Architecture::Aarch64, Endianness::Little),
        "ppc64le" => (Architecture::PowerPc64, Endianness::Little),
        "s390x" => (Architecture::S390x, Endianness::Big),
        "loongarch64" => (Architecture::LoongArch64, Endianness::Little),
        other => panic!("no object architecture for {other}"),
    }
}

/// An object with a `.text` section carrying one relocation of each type in `types`, the
/// i-th at offset `8 * i`.
fn object_with_every_type(arch: &dyn Arch, types: &[u32]) -> Vec<u8> {
    let (architecture, endian) = object_architecture(arch);
    let mut obj = Object::new(BinaryFormat::Elf, architecture, endian);
    let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
    obj.append_section_data(text, &vec![0; 8 * types.len()], 4);
    let sym = obj.add_symbol(Symbol {
        name: b"target".to_vec(),
        value: 0,
        size: 0,
        kind: SymbolKind::Unknown,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Undefined,
        flags: SymbolFlags::None,
    });
    for (i, &r_type) in types.iter().enumerate() {
        obj.add_relocation(
            text,
            Relocation {
                offset: 8 * i as u64,
                symbol: sym,
                addend: 0,
                flags: RelocationFlags::Elf {
                    r_type: object::elf::RelocationType(r_type),
                },
            },
        )
        .unwrap();
    }
    obj.write().unwrap()
}

fn type_range(arch: &dyn Arch) -> std::ops::RangeInclusive<u32> {
    match arch.name() {
        // AArch64 numbers its types from 256 and its dynamic ones from 1024.
        "aarch64" => 0..=1100,
        _ => 0..=255,
    }
}

#[test]
fn reloc_names_match_binutils_over_whole_type_range() {
    let Some(readelf) = tool("readelf", "relocation name comparison") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for arch in all() {
        let types: Vec<u32> = type_range(arch).collect();
        let bytes = object_with_every_type(arch, &types);
        let elf = parse_elf(&bytes);
        assert_eq!(elf.machine, arch.machine(), "{}", arch.name());
        let path = dir.path().join(format!("{}.o", arch.name()));
        std::fs::write(&path, &bytes).unwrap();
        let printed = readelf_relocs(&readelf, &path);
        assert_eq!(
            printed.len(),
            types.len(),
            "{}: readelf lost entries",
            arch.name()
        );

        let names = object::elf::machine_names(object::elf::Machine(arch.machine()));
        let (mut by_readelf, mut by_object) = (0, 0);
        for (r, &r_type) in printed.iter().zip(&types) {
            assert_eq!(r.r_type, r_type);
            assert_eq!(r.offset, 8 * u64::from(r_type - types[0]));
            let object_name = names.r.name(object::elf::RelocationType(r_type));
            let ours = arch.reloc_info(r_type);
            match (&ours, &r.name, object_name) {
                (Some(info), Some(binutils), _) => {
                    by_readelf += 1;
                    if info.name != binutils {
                        problems.push(format!(
                            "{} {r_type}: ours {}, readelf {binutils}",
                            arch.name(),
                            info.name
                        ));
                    }
                }
                (Some(info), None, Some(object_name)) => {
                    by_object += 1;
                    if info.name != object_name {
                        problems.push(format!(
                            "{} {r_type}: ours {}, object {object_name} (readelf: unknown)",
                            arch.name(),
                            info.name
                        ));
                    }
                }
                (Some(info), None, None) => problems.push(format!(
                    "{} {r_type}: {} is named by neither readelf nor object",
                    arch.name(),
                    info.name
                )),
                (None, Some(binutils), _) if deliberately_unknown(arch, r_type, binutils) => {}
                (None, Some(binutils), _) => problems.push(format!(
                    "{} {r_type}: readelf knows {binutils}, we do not",
                    arch.name()
                )),
                (None, None, Some(object_name)) => problems.push(format!(
                    "{} {r_type}: object knows {object_name}, we do not",
                    arch.name()
                )),
                (None, None, None) => {}
            }
        }
        eprintln!(
            "{}: {by_readelf} names checked against readelf, {by_object} against object",
            arch.name()
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
