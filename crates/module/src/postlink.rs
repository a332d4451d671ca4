//! Post-link: turning the intermediate klp relocation records of a linked module into the
//! exact format the kernel's livepatch core requires.
//!
//! The module linker cannot produce `SHN_LIVEPATCH` symbols or `SHF_RELA_LIVEPATCH` sections,
//! so `klpforge diff` leaves each klp relocation as a placeholder relocation against an
//! undefined weak `.klp.sym.<objname>.<name>,<sympos>` symbol plus a record in
//! `.klp_forge.relocs` (see `klpforge_diff::klp`). Post-link, for every record:
//!
//! * removes the placeholder relocation and zeroes the bytes it would have written (x86
//!   refuses to apply a relocation over nonzero bytes);
//! * adds the relocation to `.klp.rela.<objname>.<section>` (`SHT_RELA`,
//!   `SHF_ALLOC|SHF_INFO_LINK|SHF_RELA_LIVEPATCH`, linked to the symbol table, applying to the
//!   section);
//! * gives the klp symbol `st_shndx = SHN_LIVEPATCH`.
//!
//! It then removes the records and checks the result: every klp symbol name parses as the
//! kernel parses it, no normal relocation refers to a klp symbol, and every relocation type is
//! one the kernel's module loader accepts for the architecture. Running it on a module it has
//! already processed changes nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use crate::error::Result;
use klpforge_diff::klp::{parse_klp_symbol_name, RelocRecord, KLP_RELOCS_SECTION};
use klpforge_elf::{
    ElfObject, Endian, Link, Relocation, Section, SectionData, SectionId, SymbolId, SymbolPlace,
    SHF_RELA_LIVEPATCH, SHN_LIVEPATCH,
};
use object::elf;

/// What post-link did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostLinkReport {
    /// klp relocations written, per `.klp.rela.*` section.
    pub klp_sections: BTreeMap<String, usize>,
    /// klp symbols marked `SHN_LIVEPATCH`.
    pub klp_symbols: usize,
    /// Whether the module had already been post-linked (nothing to convert).
    pub already_done: bool,
}

/// One klp relocation decoded from a record: the relocation against the klp symbol and the
/// section it applies to.
struct KlpRelocation {
    /// The section the relocation applies to.
    target: SectionId,
    /// The klp symbol's name.
    name: String,
    /// The relocation (offset in `target`, klp symbol, type, addend).
    reloc: Relocation,
}

/// The architecture of `obj`, if klpforge knows it.
fn arch_of(obj: &ElfObject<'_>) -> Option<&'static dyn klpforge_arch::Arch> {
    klpforge_arch::for_machine(obj.header.e_machine, obj.header.endian == Endian::Big)
}

/// Zero the bytes a relocation of type `r_type` at `offset` of `section` writes: the kernel
/// refuses to apply a livepatch relocation over nonzero bytes.
pub(crate) fn zero_relocated(
    obj: &mut ElfObject<'_>,
    section: SectionId,
    offset: u64,
    r_type: u32,
) {
    let Some(arch) = arch_of(obj) else {
        return;
    };
    if let SectionData::Bytes(bytes) = &mut obj.section_mut(section).data {
        let b = bytes.to_mut();
        if let Some(place) = b.get_mut(offset as usize..) {
            arch.clear_relocated_field(r_type, place);
        }
    }
}

/// Add `entries` to the livepatch relocation section `.klp.rela.<objname>.<target name>`
/// (`SHT_RELA`, `SHF_ALLOC|SHF_INFO_LINK|SHF_RELA_LIVEPATCH`, linked to the symbol table,
/// applying to `target`), creating it if needed; returns its name.
pub(crate) fn add_klp_rela(
    obj: &mut ElfObject<'_>,
    objname: &str,
    target: SectionId,
    mut entries: Vec<Relocation>,
) -> String {
    let name = format!(".klp.rela.{objname}.{}", obj.section(target).name_lossy());
    if let Some(existing) = obj.section_by_name(name.as_bytes()) {
        if let SectionData::Relocations { entries: e, .. } = &mut obj.section_mut(existing).data {
            let e = e.to_mut();
            e.extend(entries);
            e.sort_by_key(|r| r.offset);
            return name;
        }
    }
    entries.sort_by_key(|r| r.offset);
    let symtab = obj.symbol_table();
    obj.add_section(Section::rela(
        Cow::Owned(name.clone().into_bytes()),
        elf::SHF_ALLOC.0 | elf::SHF_INFO_LINK.0 | SHF_RELA_LIVEPATCH,
        symtab.map_or(Link::None, Link::Section),
        target,
        entries,
    ));
    name
}

/// Check that `name` is a well-formed klp symbol name, as the kernel's livepatch core parses it.
pub fn check_klp_symbol(name: &str) -> Result<()> {
    match parse_klp_symbol_name(name) {
        Some((objname, sym, _)) if !objname.contains(['.', ',']) && !sym.contains(',') => Ok(()),
        _ => Err(format!(
            "malformed livepatch symbol name '{name}': expected .klp.sym.<objname>.<symbol>,<sympos> with an objname of at most 55 characters and no '.', a symbol name of at most 511 characters, and a decimal sympos"
        ).into()),
    }
}

/// Post-link `obj` in place.
pub fn post_link(obj: &mut ElfObject<'_>) -> Result<PostLinkReport> {
    let mut report = PostLinkReport::default();
    let Some(records_sec) = obj.section_by_name(KLP_RELOCS_SECTION.as_bytes()) else {
        report.already_done = true;
        validate(obj)?;
        for (_, s) in obj.sections() {
            if s.sh_flags & SHF_RELA_LIVEPATCH != 0 {
                *report
                    .klp_sections
                    .entry(s.name_lossy().into_owned())
                    .or_default() += s.relocations().map_or(0, |r| r.len());
            }
        }
        report.klp_symbols = obj
            .symbols()
            .filter(|(_, s)| s.place == SymbolPlace::Reserved(SHN_LIVEPATCH))
            .count();
        return Ok(report);
    };
    let endian = obj.header.endian;
    let data = obj.section(records_sec).bytes().to_vec();
    if data.len() % RelocRecord::SIZE != 0 {
        return Err(format!(
            "{KLP_RELOCS_SECTION}: size {} is not a multiple of the {}-byte record",
            data.len(),
            RelocRecord::SIZE
        )
        .into());
    }
    let record_relocs: Vec<SectionId> = obj.relocation_sections_for(records_sec);
    let mut rel_at: BTreeMap<u64, Relocation> = BTreeMap::new();
    for &rs in &record_relocs {
        for r in obj.section(rs).relocations().unwrap_or(&[]) {
            rel_at.insert(r.offset, *r);
        }
    }
    // Decode every record.
    let mut records = Vec::new();
    for (i, bytes) in data.chunks_exact(RelocRecord::SIZE).enumerate() {
        let base = (i * RelocRecord::SIZE) as u64;
        let place = rel_at.get(&(base + RelocRecord::PLACE)).ok_or_else(|| {
            format!("{KLP_RELOCS_SECTION} record {i}: no relocation for its place")
        })?;
        let sym = rel_at.get(&(base + RelocRecord::SYMBOL)).ok_or_else(|| {
            format!("{KLP_RELOCS_SECTION} record {i}: no relocation for its symbol")
        })?;
        let RelocRecord { r_type } = RelocRecord::decode(bytes, endian).expect("a whole record");
        let place_sym = place
            .symbol
            .ok_or_else(|| format!("{KLP_RELOCS_SECTION} record {i}: place has no symbol"))?;
        let ps = obj.symbol(place_sym);
        let target = ps
            .section()
            .ok_or_else(|| format!("{KLP_RELOCS_SECTION} record {i}: place is not in a section"))?;
        let offset = (ps.value as i64 + place.addend) as u64;
        let klp_sym = sym
            .symbol
            .ok_or_else(|| format!("{KLP_RELOCS_SECTION} record {i}: no klp symbol"))?;
        let name = obj.symbol(klp_sym).name_lossy().into_owned();
        check_klp_symbol(&name).map_err(|e| format!("{KLP_RELOCS_SECTION} record {i}: {e}"))?;
        records.push(KlpRelocation {
            target,
            name,
            reloc: Relocation {
                offset,
                symbol: Some(klp_sym),
                r_type,
                addend: sym.addend,
            },
        });
    }

    // Remove the placeholders and zero what they would have written.
    let mut new_sections: BTreeMap<(String, SectionId), Vec<Relocation>> = BTreeMap::new();
    let mut klp_symbols: HashSet<SymbolId> = HashSet::new();
    for KlpRelocation {
        target,
        name,
        reloc,
    } in records
    {
        let offset = reloc.offset;
        let mut removed = false;
        for rs in obj.relocation_sections_for(target) {
            if obj.section(rs).sh_flags & SHF_RELA_LIVEPATCH != 0 {
                continue;
            }
            if let SectionData::Relocations { entries, .. } = &mut obj.section_mut(rs).data {
                let matches = |r: &Relocation| r.offset == offset && r.symbol == reloc.symbol;
                if entries.iter().any(matches) {
                    entries.to_mut().retain(|r| !matches(r));
                    removed = true;
                }
            }
        }
        if !removed {
            return Err(format!(
                "no placeholder relocation for {name} at {}+{offset:#x}",
                obj.section(target).name_lossy()
            )
            .into());
        }
        zero_relocated(obj, target, offset, reloc.r_type);
        let (objname, _, _) = parse_klp_symbol_name(&name).expect("checked above");
        klp_symbols.extend(reloc.symbol);
        new_sections
            .entry((objname.to_string(), target))
            .or_default()
            .push(reloc);
    }
    for (_, s) in obj.sections() {
        // Existing klp sections (a second diff object already post-linked) keep their symbols.
        if s.sh_flags & SHF_RELA_LIVEPATCH != 0 {
            for r in s.relocations().unwrap_or(&[]) {
                klp_symbols.extend(r.symbol);
            }
        }
    }
    for &k in &klp_symbols {
        let s = obj.symbol_mut(k);
        s.place = SymbolPlace::Reserved(SHN_LIVEPATCH);
    }
    report.klp_symbols = klp_symbols.len();
    for ((objname, target), entries) in new_sections {
        let count = entries.len();
        let name = add_klp_rela(obj, &objname, target, entries);
        report.klp_sections.insert(name, count);
    }
    obj.remove_sections_and_symbols(&[records_sec]);
    validate(obj)?;
    Ok(report)
}

/// Check a (post-linked) module: klp symbols well named and `SHN_LIVEPATCH`, referenced only
/// from klp sections, and relocation types the loader accepts.
pub fn validate(obj: &ElfObject<'_>) -> Result<()> {
    // The types the kernel's module loader applies (x86_64: arch/x86/kernel/module.c).
    let allowed = arch_of(obj).and_then(|a| a.loader_relocation_types());
    for (_, s) in obj.symbols() {
        let name = s.name_lossy();
        if name.starts_with(".klp.sym.") {
            check_klp_symbol(&name)?;
        }
        if s.place == SymbolPlace::Reserved(SHN_LIVEPATCH) && !name.starts_with(".klp.sym.") {
            return Err(
                format!("symbol '{name}' is SHN_LIVEPATCH but not named .klp.sym.*").into(),
            );
        }
    }
    for (_, s) in obj.sections() {
        let Some(entries) = s.relocations() else {
            continue;
        };
        let klp_section = s.sh_flags & SHF_RELA_LIVEPATCH != 0;
        let sname = s.name_lossy();
        if klp_section {
            let rest = sname.strip_prefix(".klp.rela.").ok_or_else(|| {
                format!("section '{sname}' has SHF_RELA_LIVEPATCH but is not named .klp.rela.*")
            })?;
            let objname = rest.split('.').next().unwrap_or("");
            if objname.is_empty() || objname.len() > 55 {
                return Err(
                    format!("malformed livepatch relocation section name '{sname}'").into(),
                );
            }
        }
        for r in entries {
            if let Some(allowed) = allowed {
                if !allowed.contains(&r.r_type) {
                    return Err(format!(
                        "{sname}+{:#x}: relocation type {} is not accepted by the kernel's module loader",
                        r.offset, r.r_type
                    ).into());
                }
            }
            let Some(sym) = r.symbol else { continue };
            let target = obj.symbol(sym);
            let is_klp = target.name.starts_with(b".klp.sym.");
            if is_klp && !klp_section {
                return Err(format!(
                    "{sname}+{:#x}: normal relocation against livepatch symbol '{}' (not post-linked?)",
                    r.offset,
                    target.name_lossy()
                ).into());
            }
            if klp_section && target.place != SymbolPlace::Reserved(SHN_LIVEPATCH) {
                return Err(format!(
                    "{sname}+{:#x}: livepatch relocation against '{}', which is not SHN_LIVEPATCH",
                    r.offset,
                    target.name_lossy()
                )
                .into());
            }
        }
    }
    Ok(())
}
