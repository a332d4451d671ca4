//! Model-level tests: objects built and edited in memory, written, read back.

use std::borrow::Cow;

use klpforge_elf::read::parse;
use klpforge_elf::write::write;
use klpforge_elf::*;

const STT_FUNC: u8 = 2;
const STT_SECTION: u8 = 3;
const STB_LOCAL: u8 = 0;
const STB_GLOBAL: u8 = 1;

fn header(endian: Endian, machine: u16) -> FileHeader {
    FileHeader {
        endian,
        os_abi: 0,
        abi_version: 0,
        e_type: 1,
        e_machine: machine,
        e_flags: 0,
        e_entry: 0,
        program_headers: 0,
    }
}

fn sym<'a>(name: &'a str, bind: u8, kind: u8, place: SymbolPlace) -> Symbol<'a> {
    Symbol {
        name: Cow::Borrowed(name.as_bytes()),
        st_info: (bind << 4) | kind,
        st_other: 0,
        place,
        value: 0,
        size: 0,
    }
}

/// A small object with code, a relocation section, a group, a livepatch-style relocation
/// section and symbol, and an unknown section type.
fn sample(endian: Endian, machine: u16) -> ElfObject<'static> {
    let mut obj = ElfObject::new(header(endian, machine));
    let text = obj.add_section(Section::new_bytes(
        &b".text.foo"[..],
        1,
        0x6 | 0x200,
        16,
        vec![0x90u8; 32],
    ));
    let group = obj.add_section(Section::new_bytes(&b".group"[..], 17, 0, 4, Vec::new()));
    let rela = obj.add_section(Section::new_bytes(
        &b".rela.text.foo"[..],
        4,
        0x40 | 0x200,
        8,
        Vec::new(),
    ));
    let klp = obj.add_section(Section::new_bytes(
        &b".klp.rela.vmlinux..text.foo"[..],
        4,
        0x2 | 0x40 | SHF_RELA_LIVEPATCH,
        8,
        Vec::new(),
    ));
    obj.add_section(Section::new_bytes(
        &b".custom"[..],
        0x7000_0001,
        0x0ff0_0002,
        1,
        vec![1, 2, 3],
    ));
    // Globals first on purpose: the writer must put locals first.
    let func = obj.add_symbol(Symbol {
        size: 32,
        ..sym("foo", STB_GLOBAL, STT_FUNC, SymbolPlace::Section(text))
    });
    let printk = obj.add_symbol(sym(
        ".klp.sym.vmlinux.printk,0",
        STB_GLOBAL,
        STT_FUNC,
        SymbolPlace::Reserved(SHN_LIVEPATCH),
    ));
    let undef = obj.add_symbol(sym("bar", STB_GLOBAL, 0, SymbolPlace::Undefined));
    let secsym = obj.add_symbol(sym("", STB_LOCAL, STT_SECTION, SymbolPlace::Section(text)));
    let reloc = |symbol, r_type| Relocation {
        offset: 4,
        symbol: Some(symbol),
        r_type,
        addend: -4,
    };
    let s = obj.section_mut(group);
    s.link = Link::None;
    s.info = Info::Symbol(func);
    s.data = SectionData::Group {
        flags: 1,
        members: vec![text, rela],
    };
    let s = obj.section_mut(rela);
    s.info = Info::Section(text);
    s.data = SectionData::Relocations {
        rela: true,
        entries: vec![reloc(undef, 4), reloc(secsym, 2)].into(),
    };
    let s = obj.section_mut(klp);
    s.info = Info::Section(text);
    s.data = SectionData::Relocations {
        rela: true,
        entries: vec![reloc(printk, 4)].into(),
    };
    obj
}

#[test]
fn built_object_reads_back_with_every_field() {
    for (endian, machine) in [(Endian::Little, 62u16), (Endian::Big, 22u16)] {
        let obj = sample(endian, machine);
        let bytes = write(&obj).expect("write");
        let back = parse(&bytes).expect("parse");
        // The writer added .symtab, .strtab and .shstrtab.
        let names: Vec<String> = back
            .sections()
            .map(|(_, s)| s.name_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                ".text.foo",
                ".group",
                ".rela.text.foo",
                ".klp.rela.vmlinux..text.foo",
                ".custom",
                ".symtab",
                ".strtab",
                ".shstrtab"
            ]
        );
        // Locals first.
        let syms: Vec<(String, bool)> = back
            .symbols()
            .map(|(_, s)| (s.name_lossy().into_owned(), s.is_local()))
            .collect();
        assert_eq!(syms[0], (String::new(), true));
        assert!(syms[1..].iter().all(|(_, local)| !local));
        let klp_sym = back.symbol_by_name(b".klp.sym.vmlinux.printk,0").unwrap();
        assert_eq!(
            back.symbol(klp_sym).place,
            SymbolPlace::Reserved(SHN_LIVEPATCH)
        );
        let klp = back
            .section_by_name(b".klp.rela.vmlinux..text.foo")
            .unwrap();
        let klp = back.section(klp);
        assert_eq!(klp.sh_flags, 0x2 | 0x40 | SHF_RELA_LIVEPATCH);
        assert_eq!(klp.relocations().unwrap()[0].symbol, Some(klp_sym));
        let custom = back.section(back.section_by_name(b".custom").unwrap());
        assert_eq!(
            (custom.sh_type, custom.sh_flags, custom.bytes()),
            (0x7000_0001, 0x0ff0_0002, &[1u8, 2, 3][..])
        );
        let group = back.section(back.section_by_name(b".group").unwrap());
        match &group.data {
            SectionData::Group { flags, members } => {
                assert_eq!(*flags, 1);
                let m: Vec<_> = members
                    .iter()
                    .map(|&m| back.section(m).name_lossy().into_owned())
                    .collect();
                assert_eq!(m, [".text.foo", ".rela.text.foo"]);
            }
            other => panic!("group parsed as {other:?}"),
        }
        let func = back.symbol_by_name(b"foo").unwrap();
        assert_eq!(group.info, Info::Symbol(func));
        // Writing the read-back model reproduces the same bytes: output is a fixed point.
        assert_eq!(write(&back).unwrap(), bytes, "{endian:?}");
    }
}

#[test]
fn removed_section_still_referenced_is_a_named_error() {
    let mut obj = sample(Endian::Little, 62);
    let text = obj.section_by_name(b".text.foo").unwrap();
    obj.remove_section(text);
    let err = write(&obj).unwrap_err().to_string();
    assert!(err.contains(".text.foo"), "{err}");
    assert!(err.starts_with("cannot write ELF"), "{err}");
}

#[test]
fn removed_symbol_still_referenced_is_a_named_error() {
    let mut obj = sample(Endian::Little, 62);
    let bar = obj.symbol_by_name(b"bar").unwrap();
    obj.remove_symbol(bar);
    let err = write(&obj).unwrap_err().to_string();
    assert!(
        err.contains("'bar'") && err.contains(".rela.text.foo") && err.contains("entry 0"),
        "{err}"
    );
}

#[test]
fn removing_a_section_with_its_users_renumbers_cleanly() {
    let mut obj = sample(Endian::Little, 62);
    let custom = obj.section_by_name(b".custom").unwrap();
    obj.remove_section(custom);
    let bytes = write(&obj).unwrap();
    let back = parse(&bytes).unwrap();
    assert!(back.section_by_name(b".custom").is_none());
    // The klp relocation section still targets .text.foo after renumbering.
    let klp = back.section(
        back.section_by_name(b".klp.rela.vmlinux..text.foo")
            .unwrap(),
    );
    let target = klp.relocation_target().unwrap();
    assert_eq!(back.section(target).name.as_ref(), b".text.foo");
}

#[test]
fn extended_numbering_through_the_model() {
    // 66,000 sections, each with a section symbol: forces SHN_XINDEX, .symtab_shndx,
    // e_shnum = 0 and (since .shstrtab comes last) e_shstrndx = SHN_XINDEX.
    let mut obj = ElfObject::new(header(Endian::Big, 22));
    let names: Vec<String> = (0..66_000).map(|i| format!(".text.f{i}")).collect();
    for name in &names {
        let id = obj.add_section(Section::new_bytes(
            name.as_bytes(),
            1,
            0x6,
            2,
            vec![0x07u8, 0x07],
        ));
        obj.add_symbol(sym("", STB_LOCAL, STT_SECTION, SymbolPlace::Section(id)));
    }
    let last = obj.section_by_name(b".text.f65999").unwrap();
    obj.add_symbol(Symbol {
        value: 0,
        ..sym("last", STB_GLOBAL, STT_FUNC, SymbolPlace::Section(last))
    });
    let bytes = write(&obj).unwrap();
    // e_shnum (offset 60, big-endian) is 0 and e_shstrndx (62) is SHN_XINDEX.
    assert_eq!(&bytes[60..62], &[0, 0]);
    assert_eq!(&bytes[62..64], &[0xff, 0xff]);
    let back = parse(&bytes).unwrap();
    assert_eq!(back.section_count(), 66_000 + 4); // + .symtab, .symtab_shndx, .strtab, .shstrtab
    let s = back.symbol(back.symbol_by_name(b"last").unwrap());
    assert_eq!(
        back.section(s.section().unwrap()).name.as_ref(),
        b".text.f65999"
    );
    assert!(back
        .sections()
        .any(|(_, s)| matches!(s.data, SectionData::ExtendedIndices)));
    assert_eq!(write(&back).unwrap(), bytes);
}

#[test]
fn nul_in_a_name_is_refused() {
    let mut obj = sample(Endian::Little, 62);
    let func = obj.symbol_by_name(b"foo").unwrap();
    obj.symbol_mut(func).name = Cow::Owned(b"fo\0o".to_vec());
    let err = write(&obj).unwrap_err().to_string();
    assert!(err.contains("NUL"), "{err}");
}

#[test]
fn absurd_alignment_is_refused_not_allocated() {
    let mut obj = sample(Endian::Little, 62);
    let text = obj.section_by_name(b".text.foo").unwrap();
    obj.section_mut(text).sh_addralign = 1 << 44;
    let err = write(&obj).unwrap_err().to_string();
    assert!(
        err.contains(".text.foo") && err.contains("sh_addralign 0x100000000000"),
        "{err}"
    );
}

#[test]
fn rel_sections_round_trip_without_addends() {
    let mut obj = ElfObject::new(header(Endian::Little, 62));
    let text = obj.add_section(Section::new_bytes(&b".text"[..], 1, 0x6, 16, vec![0u8; 16]));
    let rel = obj.add_section(Section::new_bytes(
        &b".rel.text"[..],
        9,
        0x40,
        8,
        Vec::new(),
    ));
    let target = obj.add_symbol(sym("target", STB_GLOBAL, 0, SymbolPlace::Undefined));
    let s = obj.section_mut(rel);
    s.info = Info::Section(text);
    s.data = SectionData::Relocations {
        rela: false,
        entries: vec![Relocation {
            offset: 8,
            symbol: Some(target),
            r_type: 1,
            addend: 0,
        }]
        .into(),
    };
    let bytes = write(&obj).unwrap();
    let back = parse(&bytes).unwrap();
    let rel = back.section(back.section_by_name(b".rel.text").unwrap());
    assert_eq!(rel.sh_type, 9);
    assert_eq!(rel.sh_entsize, 16);
    let r = rel.relocations().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].offset, r[0].r_type, r[0].addend), (8, 1, 0));
    assert_eq!(back.symbol(r[0].symbol.unwrap()).name.as_ref(), b"target");
    assert_eq!(
        back.section(rel.relocation_target().unwrap()).name.as_ref(),
        b".text"
    );
}

/// `ElfFile::parse` gives back the mapped pages it read: a model read from a file with a
/// large relocation table and symbol table is the model read from its bytes, and everything
/// it borrows (code, names, tables) still reads the same after any release.
#[test]
fn file_parse_releases_pages_without_changing_the_model() {
    let mut obj = sample(Endian::Little, 62);
    let text = obj.sections().next().expect("a section").0;
    obj.section_mut(text).data =
        SectionData::Bytes(Cow::Owned((0..1u32 << 20).map(|i| (i * 7) as u8).collect()));
    let func = obj.symbols().next().expect("a symbol").0;
    let rela = obj
        .sections()
        .find(|(_, s)| s.name.as_ref() == b".rela.text.foo")
        .expect("the relocation section")
        .0;
    let entries: Vec<Relocation> = (0..300_000u64)
        .map(|i| Relocation {
            offset: i * 3,
            symbol: Some(func),
            r_type: 2,
            addend: i as i64,
        })
        .collect();
    obj.section_mut(rela).data = SectionData::Relocations {
        rela: true,
        entries: entries.into(),
    };
    let names: Vec<String> = (0..20_000).map(|i| format!("local_{i}")).collect();
    for name in &names {
        obj.add_symbol(sym(name, STB_LOCAL, STT_FUNC, SymbolPlace::Section(text)));
    }
    let bytes = write(&obj).expect("write");
    let dir = std::env::temp_dir().join(format!("klpforge-elf-release-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.o");
    std::fs::write(&path, &bytes).unwrap();
    let file = ElfFile::open(&path).expect("open");
    let from_file = file.parse().expect("parse the file");
    let from_bytes = parse(&bytes).expect("parse the bytes");
    assert!(
        write(&from_file).unwrap() == write(&from_bytes).unwrap(),
        "the models differ"
    );
    let rela_entries = from_file
        .sections()
        .find_map(|(_, s)| s.relocations().filter(|r| r.len() > 1000))
        .expect("the large relocation table");
    assert_eq!(rela_entries.len(), 300_000);
    assert_eq!(rela_entries[299_999].addend, 299_999);
    // Releasing the tables changes nothing the models read: the mapped one reads its pages
    // from the file again, the one over a byte vector is not released at all (the vector's
    // pages dropped would read back as zeros).
    for (id, _) in from_file.sections() {
        from_file.release_relocations(id);
        from_bytes.release_relocations(id);
    }
    assert!(
        write(&from_file).unwrap() == bytes && write(&from_bytes).unwrap() == bytes,
        "a released table reads differently"
    );
    // So does releasing the whole mapping (names, code and tables alike), or what lies
    // behind a reader walking the sections in order.
    from_file.release_mapping();
    from_bytes.release_mapping();
    for model in [&from_file, &from_bytes] {
        let mut behind = model.release_behind();
        for (id, _) in model.sections() {
            behind.reached(id);
        }
    }
    from_file.release_part(&rela_entries[..150_000]);
    assert!(
        write(&from_file).unwrap() == bytes && write(&from_bytes).unwrap() == bytes,
        "a released mapping reads differently"
    );
    assert_eq!(
        file.data(),
        &bytes[..],
        "the mapping still reads as the file"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The symbols defined in a section come grouped by section, in section order, table order
/// within each; undefined and absolute symbols are left out.
#[test]
fn symbols_by_section_groups_the_defined_symbols() {
    let mut obj = ElfObject::new(header(Endian::Little, 62));
    let a = obj.add_section(Section::progbits(&b".text.a"[..], 0x6, 1, 0, &b"\x90"[..]));
    let b = obj.add_section(Section::progbits(&b".text.b"[..], 0x6, 1, 0, &b"\x90"[..]));
    let in_b = obj.add_symbol(sym("in_b", STB_GLOBAL, STT_FUNC, SymbolPlace::Section(b)));
    let undef = obj.add_symbol(sym("undef", STB_GLOBAL, STT_FUNC, SymbolPlace::Undefined));
    let in_a = obj.add_symbol(sym("in_a", STB_GLOBAL, STT_FUNC, SymbolPlace::Section(a)));
    let abs = obj.add_symbol(sym("abs", STB_GLOBAL, STT_FUNC, SymbolPlace::Absolute));
    let in_b2 = obj.add_symbol(sym("in_b2", STB_GLOBAL, STT_FUNC, SymbolPlace::Section(b)));
    let grouped = obj.symbols_by_section();
    assert_eq!(grouped.all(), [in_a, in_b, in_b2]);
    assert!(!grouped.all().contains(&undef) && !grouped.all().contains(&abs));
    assert_eq!(grouped.of(a), [in_a]);
    assert_eq!(grouped.of(b), [in_b, in_b2]);
}

/// The entries of every relocation section of `obj`, and whether each table is borrowed.
fn relocation_tables(obj: &ElfObject<'_>) -> Vec<(Vec<Relocation>, bool)> {
    obj.sections()
        .filter_map(|(_, s)| match &s.data {
            SectionData::Relocations { entries, .. } => {
                Some((entries.to_vec(), matches!(entries, Cow::Borrowed(_))))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn little_endian_rela_tables_are_read_in_place_and_others_decoded_alike() {
    let little = write(&sample(Endian::Little, 62)).unwrap();
    let big = write(&sample(Endian::Big, 22)).unwrap();
    // The same file bytes at an address 8-byte aligned (a u64 vector) and at one that is not.
    let aligned: Vec<u64> = little
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(w)
        })
        .collect();
    // SAFETY: reading a u64 vector's initialised storage as bytes.
    let aligned_bytes =
        unsafe { std::slice::from_raw_parts(aligned.as_ptr().cast::<u8>(), little.len()) };
    let mut shifted = vec![0u8; little.len() + 1];
    shifted[1..].copy_from_slice(&little);
    let in_place = relocation_tables(&parse(aligned_bytes).unwrap());
    let misaligned = relocation_tables(&parse(&shifted[1..]).unwrap());
    let from_big = relocation_tables(&parse(&big).unwrap());
    assert_eq!(in_place.len(), 2);
    assert!(
        in_place.iter().all(|(_, borrowed)| *borrowed) == cfg!(target_endian = "little"),
        "little-endian RELA tables are borrowed on a little-endian machine"
    );
    assert!(misaligned.iter().all(|(_, borrowed)| !borrowed));
    assert!(from_big.iter().all(|(_, borrowed)| !borrowed));
    let entries = |tables: &[(Vec<Relocation>, bool)]| -> Vec<Vec<Relocation>> {
        tables.iter().map(|(e, _)| e.clone()).collect()
    };
    assert_eq!(entries(&in_place), entries(&misaligned));
    assert_eq!(entries(&in_place), entries(&from_big));
    let symbols = parse(aligned_bytes).unwrap();
    let undef = symbols.symbol_by_name(b"bar").unwrap();
    assert_eq!(in_place[0].0[0].symbol, Some(undef));
    assert_eq!((in_place[0].0[0].offset, in_place[0].0[0].addend), (4, -4));
    // A borrowed table is still checked: a symbol index past the table is an error.
    let mut bad = aligned.clone();
    let rela = symbols
        .sections()
        .find(|(_, s)| s.name.as_ref() == b".rela.text.foo")
        .unwrap()
        .1;
    let at = match &rela.data {
        SectionData::Relocations { entries, .. } => {
            (entries.as_ptr() as usize - aligned_bytes.as_ptr() as usize) / 8 + 1
        }
        _ => unreachable!(),
    };
    bad[at] = (bad[at] & 0xffff_ffff) | (9999u64 << 32);
    // SAFETY: as above.
    let bad_bytes = unsafe { std::slice::from_raw_parts(bad.as_ptr().cast::<u8>(), little.len()) };
    let err = parse(bad_bytes).expect_err("out-of-range symbol");
    assert!(err.to_string().contains("refers to symbol 9999"), "{err}");
}

/// Symbols can be put in another order (the writer still writes locals first, each in that
/// order; relocations follow their symbols); an order that misses or repeats a symbol is
/// refused.
#[test]
fn symbols_reorder_and_relocations_follow() {
    let mut obj = sample(Endian::Little, 62);
    let ids: Vec<SymbolId> = obj.symbol_ids().to_vec();
    assert!(ids.len() >= 2, "the sample has symbols");
    let mut missing = ids.clone();
    missing.pop();
    assert!(obj.reorder_symbols(missing).is_err(), "a missing symbol");
    let mut repeated = ids.clone();
    repeated[1] = repeated[0];
    assert!(obj.reorder_symbols(repeated).is_err(), "a repeated symbol");
    let before_bytes = write(&obj).unwrap();
    let before = parse(&before_bytes).unwrap();
    let reversed: Vec<SymbolId> = ids.iter().rev().copied().collect();
    obj.reorder_symbols(reversed).expect("a permutation");
    let after_bytes = write(&obj).unwrap();
    let after = parse(&after_bytes).unwrap();
    let names =
        |o: &ElfObject<'_>| -> Vec<Vec<u8>> { o.symbols().map(|(_, s)| s.name.to_vec()).collect() };
    let (mut a, mut b) = (names(&before), names(&after));
    assert_ne!(a, b, "the table's order changed");
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same symbols");
    // Every relocation still names the symbol it named.
    let targets = |o: &ElfObject<'_>| -> Vec<(u64, Vec<u8>)> {
        o.sections()
            .filter_map(|(_, s)| s.relocations())
            .flatten()
            .map(|r| {
                (
                    r.offset,
                    r.symbol.map_or(Vec::new(), |t| o.symbol(t).name.to_vec()),
                )
            })
            .collect()
    };
    assert_eq!(targets(&before), targets(&after));
}
