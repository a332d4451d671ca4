//! Checks against the real kernel objects of the kpatch-unit corpus.

mod common;

use common::*;
use klpforge_arch::{for_machine, Arch, RelocKind, X86_64};
use std::collections::{BTreeMap, BTreeSet};

const ARCH_DIRS: [&str; 3] = ["x86_64", "aarch64", "loongarch64"];

/// Every relocation type used by the corpus objects is known, and its name is what binutils'
/// `readelf -rW` prints.
///
/// The host readelf (binutils 2.40) predates some LoongArch types the corpus uses
/// (`R_LARCH_64_PCREL`, added in 2.41); it prints those as `unrecognized: <hex>`. For them we
/// compare against the `object` crate's name table instead.
#[test]
fn corpus_reloc_names_match_readelf() {
    let Some(corpus) = corpus_dir() else { return };
    let Some(readelf) = tool("readelf", "readelf comparison") else {
        return;
    };
    let mut checked = 0;
    for dir in ARCH_DIRS {
        let objects = corpus_objects(&corpus, dir);
        if objects.is_empty() {
            eprintln!("no {dir} objects in the corpus");
            continue;
        }
        let mut seen: BTreeMap<u32, (String, usize)> = BTreeMap::new();
        for path in &objects {
            let elf = read_elf(path);
            let arch = for_machine(elf.machine, elf.big_endian)
                .unwrap_or_else(|| panic!("{}: unsupported machine", path.display()));
            assert_eq!(arch.name(), dir, "{}", path.display());

            let printed = readelf_relocs(&readelf, path);
            // readelf and object must see the same relocations, or one of the two parses is off.
            let mut from_readelf: BTreeMap<u32, usize> = BTreeMap::new();
            for r in &printed {
                *from_readelf.entry(r.r_type).or_insert(0) += 1;
            }
            assert_eq!(
                from_readelf,
                elf.reloc_type_counts(),
                "{}: readelf and object disagree on relocation types",
                path.display()
            );

            for r in &printed {
                let ours = arch.reloc_info(r.r_type).unwrap_or_else(|| {
                    panic!(
                        "{}: {} type {} unknown to klpforge",
                        path.display(),
                        r.section,
                        r.r_type
                    )
                });
                let expected = match &r.name {
                    Some(name) => name.clone(),
                    None => object_reloc_name(arch.machine(), r.r_type).unwrap_or_else(|| {
                        panic!("type {} named by neither readelf nor object", r.r_type)
                    }),
                };
                assert_eq!(ours.name, expected, "{}: type {}", path.display(), r.r_type);
                assert_eq!(arch.reloc_name(r.r_type), expected);
                seen.entry(r.r_type)
                    .or_insert_with(|| (expected.clone(), 0))
                    .1 += 1;
                checked += 1;
            }
        }
        eprintln!("{dir}: relocation types seen: {seen:?}");
    }
    assert!(checked > 0);
}

fn object_reloc_name(machine: u16, r_type: u32) -> Option<String> {
    object::elf::machine_names(object::elf::Machine(machine))
        .r
        .name(object::elf::RelocationType(r_type))
        .map(str::to_string)
}

/// Every relocation that applies to an executable section patches bytes of exactly one
/// instruction: `[r_offset, r_offset + size)` never straddles an instruction boundary. This
/// checks the relocation sizes against the decoders (and vice versa).
#[test]
fn corpus_code_relocations_lie_within_one_instruction() {
    let Some(corpus) = corpus_dir() else { return };
    let mut checked = 0;
    for dir in ARCH_DIRS {
        for path in corpus_objects(&corpus, dir) {
            let elf = read_elf(&path);
            let arch = for_machine(elf.machine, elf.big_endian).unwrap();
            for section in elf.sections.iter().filter(|s| s.executable) {
                if section.relocs.is_empty() {
                    continue;
                }
                let insns = arch.decode_lengths(&section.data).unwrap_or_else(|e| {
                    panic!("{} {}: {e}", path.display(), section.name);
                });
                for &(offset, r_type) in &section.relocs {
                    let info = arch.reloc_info(r_type).unwrap();
                    if info.size == 0 {
                        continue;
                    }
                    let start = offset as usize;
                    let end = start + usize::from(info.size);
                    let insn = insns
                        .iter()
                        .find(|i| i.offset <= start && start < i.offset + i.len)
                        .unwrap_or_else(|| {
                            panic!(
                                "{} {}: {offset:#x} past the code",
                                path.display(),
                                section.name
                            )
                        });
                    assert!(
                        end <= insn.offset + insn.len,
                        "{} {}: {} at {offset:#x} (size {}) runs past instruction {insn:?}",
                        path.display(),
                        section.name,
                        info.name,
                        info.size
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

/// `X86_64::decode_lengths` finds the same instruction boundaries as `objdump -d` in every
/// executable section of the x86_64 corpus objects.
///
/// objdump restarts decoding at every symbol, whereas we sweep each section linearly; compiled
/// code has no bytes between instructions, so the two agree unless a section holds data or
/// undecodable bytes. Sections in which objdump itself prints `(bad)` are skipped (and
/// reported) because its boundaries there are guesses; none is expected in this corpus.
#[test]
fn corpus_x86_64_decode_matches_objdump() {
    let Some(corpus) = corpus_dir() else { return };
    let Some(objdump) = tool("objdump", "x86_64 objdump comparison") else {
        return;
    };
    let mut sections_checked = 0;
    let mut insns_checked = 0;
    let mut skipped = Vec::new();
    for path in corpus_objects(&corpus, "x86_64") {
        let elf = read_elf(&path);
        let dump = objdump_boundaries(&objdump, &path, &[]);
        let code: BTreeSet<&str> = elf
            .sections
            .iter()
            .filter(|s| s.executable && !s.data.is_empty())
            .map(|s| s.name.as_str())
            .collect();
        let dumped: BTreeSet<&str> = dump.starts.keys().map(String::as_str).collect();
        assert_eq!(
            code,
            dumped,
            "{}: objdump disassembled other sections",
            path.display()
        );
        for section in elf
            .sections
            .iter()
            .filter(|s| code.contains(s.name.as_str()))
        {
            if dump.bad_sections.contains(&section.name) {
                skipped.push(format!("{} {}", path.display(), section.name));
                continue;
            }
            let ours: Vec<u64> = X86_64
                .decode_lengths(&section.data)
                .unwrap_or_else(|e| panic!("{} {}: {e}", path.display(), section.name))
                .iter()
                .map(|i| i.offset as u64)
                .collect();
            let theirs = &dump.starts[&section.name];
            if &ours != theirs {
                let first = ours
                    .iter()
                    .zip(theirs.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(ours.len().min(theirs.len()));
                panic!(
                    "{} {}: boundaries differ from objdump at index {first}: ours {:x?}, objdump {:x?}",
                    path.display(),
                    section.name,
                    &ours[first.saturating_sub(2)..(first + 3).min(ours.len())],
                    &theirs[first.saturating_sub(2)..(first + 3).min(theirs.len())],
                );
            }
            sections_checked += 1;
            insns_checked += ours.len();
        }
    }
    eprintln!(
        "checked {insns_checked} instructions in {sections_checked} sections; skipped {skipped:?}"
    );
    assert!(sections_checked > 0);
    assert!(skipped.is_empty(), "objdump could not decode: {skipped:?}");
}

/// Every x86-64 code relocation in the corpus patches exactly the displacement or one
/// immediate that `X86_64::constant_offsets` reports for its instruction: the relocation
/// sizes, the decoder and the constant-offset helper agree on real kernel code.
#[test]
fn corpus_x86_64_code_relocations_hit_constant_fields() {
    let Some(corpus) = corpus_dir() else { return };
    let mut checked = 0;
    for path in corpus_objects(&corpus, "x86_64") {
        let elf = read_elf(&path);
        for section in elf
            .sections
            .iter()
            .filter(|s| s.executable && !s.relocs.is_empty())
        {
            let consts = X86_64
                .constant_offsets(&section.data, 0)
                .unwrap_or_else(|e| panic!("{} {}: {e}", path.display(), section.name));
            for &(offset, r_type) in &section.relocs {
                let info = X86_64.reloc_info(r_type).unwrap();
                if info.size == 0 {
                    continue;
                }
                let offset = offset as usize;
                let c = consts
                    .iter()
                    .find(|c| c.insn.offset <= offset && offset < c.insn.offset + c.insn.len)
                    .unwrap();
                let field = (true, offset - c.insn.offset, usize::from(info.size));
                let o = &c.offsets;
                let fields = [
                    (
                        o.has_displacement(),
                        o.displacement_offset(),
                        o.displacement_size(),
                    ),
                    (o.has_immediate(), o.immediate_offset(), o.immediate_size()),
                    (
                        o.has_immediate2(),
                        o.immediate_offset2(),
                        o.immediate_size2(),
                    ),
                ];
                assert!(
                    fields.contains(&field),
                    "{} {}: {} at {offset:#x} is not a constant field of {c:?}",
                    path.display(),
                    section.name,
                    info.name
                );
                // A PC-relative relocation in code is either the rel32 of a relative branch
                // or the displacement of a RIP-relative memory operand.
                if matches!(info.kind, RelocKind::PcRelative | RelocKind::Branch) {
                    let is_branch = c.branch_target.is_some() && field.1 == o.immediate_offset();
                    let is_rip =
                        c.rip_relative_target.is_some() && field.1 == o.displacement_offset();
                    assert!(
                        is_branch || is_rip,
                        "{} {}: {} at {offset:#x} in neither a branch nor a RIP-relative operand: {c:?}",
                        path.display(),
                        section.name,
                        info.name
                    );
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} code relocations checked");
    assert!(checked > 0);
}
