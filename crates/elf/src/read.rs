//! Parsing an ELF64 file into the [`ElfObject`] model.
//!
//! Built on the `object` crate's low-level `read::elf` layer, which exposes every raw field
//! (`st_shndx` values such as `SHN_LIVEPATCH`, unknown section types, raw relocation types).
//! Every cross-reference (section links, symbol sections, relocation symbols, group members)
//! is checked and turned into a stable identity; an index that points nowhere is an error that
//! names the section, symbol or entry holding it.

use std::borrow::Cow;

use object::elf;
use object::read::elf::{FileHeader as _, SectionHeader as _, Sym as _};
use object::read::elf::{Rel as _, Rela as _};
use object::Endianness;

use crate::error::{from_object, ElfError, Quoted, Result};
use crate::model::*;

type Header = elf::FileHeader64<Endianness>;
type Shdr = elf::SectionHeader64<Endianness>;

/// Machines klpforge handles, with the byte order each must have.
const SUPPORTED_MACHINES: &[(u16, Endian, &str)] = &[
    (elf::EM_X86_64.0, Endian::Little, "x86_64"),
    (elf::EM_AARCH64.0, Endian::Little, "aarch64"),
    (elf::EM_PPC64.0, Endian::Little, "ppc64le"),
    (elf::EM_S390.0, Endian::Big, "s390x"),
    (elf::EM_LOONGARCH.0, Endian::Little, "loongarch64"),
];

/// The short architecture name of a supported machine, or `None`.
pub fn machine_name(machine: u16, endian: Endian) -> Option<&'static str> {
    SUPPORTED_MACHINES
        .iter()
        .find(|(m, e, _)| *m == machine && *e == endian)
        .map(|(_, _, name)| *name)
}

/// Check the identification bytes, giving the clearest message for what is wrong.
fn check_ident(data: &[u8]) -> Result<Endian> {
    if data.len() < 4 || data[..4] != elf::ELFMAG {
        let shown: Vec<String> = data.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(ElfError::NotElf(if shown.is_empty() {
            "empty file".into()
        } else {
            shown.join(" ")
        }));
    }
    if data.len() < 16 {
        return Err(ElfError::Truncated(format!(
            "{} bytes, shorter than the ELF identification",
            data.len()
        )));
    }
    match data[4] {
        2 => {}
        1 => return Err(ElfError::Class32),
        c => return Err(ElfError::Malformed(format!("invalid ELF class {c}"))),
    }
    let endian = match data[5] {
        1 => Endian::Little,
        2 => Endian::Big,
        d => {
            return Err(ElfError::Malformed(format!(
                "invalid ELF data encoding {d}"
            )))
        }
    };
    if data.len() < std::mem::size_of::<Header>() {
        return Err(ElfError::Truncated(format!(
            "{} bytes, shorter than the 64-byte ELF header",
            data.len()
        )));
    }
    Ok(endian)
}

/// Parse `data` (the whole file) into a model that borrows section bytes and names from it.
pub fn parse(data: &[u8]) -> Result<ElfObject<'_>> {
    let endian_kind = check_ident(data)?;
    let header = Header::parse(data).map_err(|e| from_object("ELF header", e))?;
    let endian = header.endian().map_err(|e| from_object("ELF header", e))?;
    let machine = header.e_machine(endian).0;
    if machine_name(machine, endian_kind).is_none() {
        let order = match endian_kind {
            Endian::Little => "little-endian",
            Endian::Big => "big-endian",
        };
        return Err(ElfError::Unsupported(format!(
            "machine {machine} ({order}); klpforge handles x86_64, aarch64, ppc64le, s390x and loongarch64"
        )));
    }
    let e_type = header.e_type(endian).0;
    if ![elf::ET_REL.0, elf::ET_EXEC.0, elf::ET_DYN.0].contains(&e_type) {
        return Err(ElfError::Unsupported(format!(
            "file type {e_type} (not REL, EXEC or DYN)"
        )));
    }
    let program_headers = header
        .phnum(endian, data)
        .map_err(|e| from_object("ELF header", e))?;
    if e_type == elf::ET_REL.0 && program_headers != 0 {
        return Err(ElfError::Malformed(format!(
            "relocatable object with {program_headers} program headers"
        )));
    }
    if header.e_shoff(endian) == 0 && header.e_shnum(endian) != 0 {
        return Err(ElfError::Malformed(format!(
            "e_shnum is {} but e_shoff is 0 (no section header table)",
            header.e_shnum(endian)
        )));
    }
    let e_shoff = header.e_shoff(endian);
    if e_shoff != 0 {
        let shentsize = header.e_shentsize(endian);
        if shentsize != 64 {
            return Err(ElfError::Malformed(format!(
                "e_shentsize is {shentsize}, expected 64"
            )));
        }
        if e_shoff
            .checked_add(64)
            .is_none_or(|end| end > data.len() as u64)
        {
            return Err(ElfError::Truncated(format!(
                "section header table at offset {e_shoff:#x} lies past the end of the file ({:#x} bytes)",
                data.len()
            )));
        }
        let count = header
            .shnum(endian, data)
            .map_err(|e| from_object("ELF header e_shnum", e))? as u64;
        if count
            .checked_mul(64)
            .and_then(|size| size.checked_add(e_shoff))
            .is_none_or(|end| end > data.len() as u64)
        {
            return Err(ElfError::Truncated(format!(
                "section header table ({count} entries at offset {e_shoff:#x}) extends past the end of the file ({:#x} bytes)",
                data.len()
            )));
        }
    }
    let table = header
        .sections(endian, data)
        .map_err(|e| from_object("section header table", e))?;
    let headers: &[Shdr] = table.iter().as_slice();
    let shnum = headers.len();

    let mut model = ElfObject::new(FileHeader {
        endian: endian_kind,
        os_abi: header.e_ident().os_abi.0,
        abi_version: header.e_ident().abi_version,
        e_type,
        e_machine: machine,
        e_flags: header.e_flags(endian).0,
        e_entry: header.e_entry(endian),
        program_headers,
    });
    if shnum == 0 {
        return Ok(model);
    }

    // Locate the tables the writer regenerates.
    let symtab_indices: Vec<usize> = (1..shnum)
        .filter(|&i| headers[i].sh_type(endian) == elf::SHT_SYMTAB)
        .collect();
    if symtab_indices.len() > 1 {
        return Err(ElfError::Unsupported(format!(
            "{} SHT_SYMTAB sections (sections {:?}); an object has at most one",
            symtab_indices.len(),
            symtab_indices
        )));
    }
    let symtab_index = symtab_indices.first().copied();
    let shstrndx = header
        .shstrndx(endian, data)
        .map_err(|e| from_object("ELF header e_shstrndx", e))? as usize;
    if shstrndx >= shnum {
        return Err(ElfError::Malformed(format!(
            "e_shstrndx {shstrndx} out of range ({shnum} sections)"
        )));
    }
    if headers[shstrndx].sh_type(endian) != elf::SHT_STRTAB {
        return Err(ElfError::Malformed(format!(
            "e_shstrndx {shstrndx} is not a string table (type {:#x})",
            headers[shstrndx].sh_type(endian).0
        )));
    }
    let strtab_index = match symtab_index {
        Some(i) => {
            let link = headers[i].sh_link(endian) as usize;
            if link == 0 || link >= shnum || headers[link].sh_type(endian) != elf::SHT_STRTAB {
                return Err(ElfError::Malformed(format!(
                    "symbol table (section [{i}]) links to section {link}, which is not a string table"
                )));
            }
            Some(link)
        }
        None => None,
    };
    let symbols = match symtab_index {
        Some(i) => object::read::elf::SymbolTable::parse(
            endian,
            data,
            &table,
            object::SectionIndex(i),
            &headers[i],
        )
        .map_err(|e| from_object(format!("symbol table (section [{i}])"), e))?,
        None => Default::default(),
    };
    let shndx_index = match symbols.shndx_section().0 {
        0 => None,
        i => Some(i),
    };
    let nsyms = symbols.len();
    model.reserve_parsed(shnum, nsyms);

    // Pass 1: every section, with raw link/info resolved to identities (identity = index - 1).
    for (index, shdr) in headers.iter().enumerate().skip(1) {
        let name = table
            .section_name(endian, shdr)
            .map_err(|e| from_object(format!("section [{index}] name"), e))?;
        let label = || format!("section [{index}] {}", Quoted(name));
        let sh_type = shdr.sh_type(endian);
        let sh_link = shdr.sh_link(endian) as usize;
        let sh_info = shdr.sh_info(endian);
        let sh_flags = shdr.sh_flags(endian).0;
        let section_ref = |raw: usize, what: &str| -> Result<SectionId> {
            if raw == 0 || raw >= shnum {
                Err(ElfError::Malformed(format!(
                    "{}: {what} {raw} out of range ({shnum} sections)",
                    label()
                )))
            } else {
                Ok(SectionId(raw as u32 - 1))
            }
        };
        let link = match sh_link {
            0 => Link::None,
            raw => Link::Section(section_ref(raw, "sh_link")?),
        };
        let linked_to_symtab = symtab_index.is_some() && Some(sh_link) == symtab_index;
        let bytes = || -> Result<&[u8]> {
            shdr.data(endian, data).map_err(|_| {
                ElfError::Truncated(format!(
                    "{}: contents (offset {:#x}, size {:#x}) lie outside the file ({:#x} bytes)",
                    label(),
                    shdr.sh_offset(endian),
                    shdr.sh_size(endian),
                    data.len()
                ))
            })
        };
        let mut info = if sh_flags & elf::SHF_INFO_LINK.0 != 0 && sh_info != 0 {
            Info::Section(section_ref(sh_info as usize, "sh_info")?)
        } else if sh_info == 0 {
            Info::None
        } else {
            Info::Raw(sh_info)
        };
        let is_rel = sh_type == elf::SHT_REL || sh_type == elf::SHT_RELA;
        let entsize = shdr.sh_entsize(endian);
        let want_entsize = |want: u64, what: &str| -> Result<()> {
            if entsize == want {
                Ok(())
            } else {
                Err(ElfError::Malformed(format!(
                    "{}: sh_entsize {entsize} for {what} (expected {want})",
                    label()
                )))
            }
        };
        let section_data = if Some(index) == symtab_index {
            want_entsize(24, "a symbol table")?;
            info = Info::None;
            SectionData::SymbolTable
        } else if Some(index) == strtab_index || index == shstrndx {
            SectionData::Strings(StringRoles {
                symbol_names: Some(index) == strtab_index,
                section_names: index == shstrndx,
            })
        } else if Some(index) == shndx_index {
            want_entsize(4, "SHT_SYMTAB_SHNDX")?;
            SectionData::ExtendedIndices
        } else if sh_type == elf::SHT_NOBITS {
            SectionData::NoBits {
                size: shdr.sh_size(endian),
            }
        } else if is_rel && linked_to_symtab {
            let rela = sh_type == elf::SHT_RELA;
            want_entsize(
                if rela { 24 } else { 16 },
                if rela {
                    "a RELA section"
                } else {
                    "a REL section"
                },
            )?;
            if sh_info != 0 {
                info = Info::Section(section_ref(
                    sh_info as usize,
                    "relocation target (sh_info)",
                )?);
            }
            // In a relocatable object an entry's offset lies in the section it applies to
            // (sh_info, checked above): one past that section's end applies to nothing.
            let target_shdr = &headers[sh_info as usize];
            let target_label = || {
                let name = table.section_name(endian, target_shdr).unwrap_or(b"?");
                format!("section [{sh_info}] {}", Quoted(name))
            };
            let target = (e_type == elf::ET_REL.0 && sh_info != 0).then(|| {
                (
                    target_shdr.sh_size(endian),
                    &target_label as &dyn Fn() -> String,
                )
            });
            let entries = read_relocations(shdr, endian, data, rela, nsyms, target, &label)?;
            SectionData::Relocations { rela, entries }
        } else if sh_type == elf::SHT_GROUP && linked_to_symtab {
            want_entsize(4, "a section group")?;
            let (flags, words) = shdr
                .group(endian, data)
                .map_err(|e| ElfError::Malformed(format!("{}: {e}", label())))?
                .ok_or_else(|| ElfError::Malformed(format!("{}: unreadable group", label())))?;
            let mut members = Vec::with_capacity(words.len());
            for (n, w) in words.iter().enumerate() {
                let raw = w.get(endian) as usize;
                members.push(section_ref(raw, &format!("group member {n}"))?);
            }
            if sh_info as usize >= nsyms || sh_info == 0 {
                return Err(ElfError::Malformed(format!(
                    "{}: group signature symbol {sh_info} out of range ({nsyms} symbols)",
                    label()
                )));
            }
            info = Info::Symbol(SymbolId::from_index(sh_info as usize - 1));
            SectionData::Group {
                flags: flags.0,
                members,
            }
        } else {
            SectionData::Bytes(Cow::Borrowed(bytes()?))
        };
        model.push_parsed_section(Section {
            name: Cow::Borrowed(name),
            sh_type: sh_type.0,
            sh_flags,
            sh_addr: shdr.sh_addr(endian),
            sh_addralign: shdr.sh_addralign(endian),
            sh_entsize: shdr.sh_entsize(endian),
            link,
            info,
            data: section_data,
        });
    }

    // Pass 2: symbols (identity = index - 1).
    let strings = symbols.strings();
    for (index, sym) in symbols.symbols().iter().enumerate().skip(1) {
        let name = sym.name(endian, strings).map_err(|_| {
            ElfError::Malformed(format!(
                "symbol {index}: name offset {:#x} outside the string table",
                sym.st_name(endian)
            ))
        })?;
        let raw = sym.st_shndx(endian).0;
        let place = match raw {
            0 => SymbolPlace::Undefined,
            r if r == elf::SHN_ABS.0 => SymbolPlace::Absolute,
            r if r == elf::SHN_COMMON.0 => SymbolPlace::Common,
            r if r == elf::SHN_XINDEX.0 => {
                let ext = symbols
                    .shndx(endian, object::SymbolIndex(index))
                    .ok_or_else(|| {
                        ElfError::Malformed(format!(
                            "symbol {index} {}: SHN_XINDEX without a .symtab_shndx entry",
                            Quoted(name)
                        ))
                    })? as usize;
                if ext == 0 || ext >= shnum {
                    return Err(ElfError::Malformed(format!(
                        "symbol {index} {}: extended section index {ext} out of range ({shnum} sections)",
                        Quoted(name)
                    )));
                }
                SymbolPlace::Section(SectionId(ext as u32 - 1))
            }
            r if r >= elf::SHN_LORESERVE => SymbolPlace::Reserved(r),
            r => {
                if r as usize >= shnum {
                    return Err(ElfError::Malformed(format!(
                        "symbol {index} {}: section index {r} out of range ({shnum} sections)",
                        Quoted(name)
                    )));
                }
                SymbolPlace::Section(SectionId(r as u32 - 1))
            }
        };
        model.push_parsed_symbol(Symbol {
            name: Cow::Borrowed(name),
            st_info: sym.st_info().0,
            st_other: sym.st_other().0,
            place,
            value: sym.st_value(endian),
            size: sym.st_size(endian),
        });
    }
    Ok(model)
}

/// The entries of relocation section `shdr` (`label` names it). `target`: the size and name
/// of the section they apply to, when their offsets are relative to it (`ET_REL`): an entry
/// past its end is refused.
fn read_relocations<'data>(
    shdr: &Shdr,
    endian: Endianness,
    data: &'data [u8],
    rela: bool,
    nsyms: usize,
    target: Option<(u64, &dyn Fn() -> String)>,
    label: &dyn Fn() -> String,
) -> Result<Cow<'data, [Relocation]>> {
    let bad_range = || {
        ElfError::Truncated(format!(
            "{}: relocation entries (offset {:#x}, size {:#x}) lie outside the file ({:#x} bytes)",
            label(),
            shdr.sh_offset(endian),
            shdr.sh_size(endian),
            data.len()
        ))
    };
    let check_sym = |n: usize, sym: u32| -> Result<Option<SymbolId>> {
        if sym == 0 {
            Ok(None)
        } else if sym as usize >= nsyms {
            Err(ElfError::Malformed(format!(
                "{}: entry {n} refers to symbol {sym}, out of range ({nsyms} symbols)",
                label()
            )))
        } else {
            Ok(Some(SymbolId::from_index(sym as usize - 1)))
        }
    };
    let check_offset = |n: usize, offset: u64| -> Result<u64> {
        match &target {
            Some((size, name)) if offset > *size => Err(ElfError::Malformed(format!(
                "{}: entry {n} applies at offset {offset:#x}, past the end of {} ({size:#x} bytes)",
                label(),
                name()
            ))),
            _ => Ok(offset),
        }
    };
    if rela {
        let (entries, _) = shdr
            .rela(endian, data)
            .map_err(|_| bad_range())?
            .ok_or_else(bad_range)?;
        if let Some(borrowed) = borrow_rela(entries, endian) {
            for (n, r) in entries.iter().enumerate() {
                check_sym(n, r.r_sym(endian, false))?;
                check_offset(n, r.r_offset(endian))?;
            }
            return Ok(Cow::Borrowed(borrowed));
        }
        let mut out = Vec::with_capacity(entries.len());
        for (n, r) in entries.iter().enumerate() {
            out.push(Relocation {
                offset: check_offset(n, r.r_offset(endian))?,
                symbol: check_sym(n, r.r_sym(endian, false))?,
                r_type: r.r_type(endian, false).0,
                addend: r.r_addend(endian),
            });
        }
        Ok(Cow::Owned(out))
    } else {
        let (entries, _) = shdr
            .rel(endian, data)
            .map_err(|_| bad_range())?
            .ok_or_else(bad_range)?;
        let mut out = Vec::with_capacity(entries.len());
        for (n, r) in entries.iter().enumerate() {
            out.push(Relocation {
                offset: check_offset(n, r.r_offset(endian))?,
                symbol: check_sym(n, r.r_sym(endian))?,
                r_type: r.r_type(endian).0,
                addend: 0,
            });
        }
        Ok(Cow::Owned(out))
    }
}

/// The file's `Elf64_Rela` entries as [`Relocation`]s in place, when their bytes already are
/// that layout: a little-endian file read on a little-endian machine, the table 8-byte
/// aligned in memory. Symbol indices are the caller's to check.
fn borrow_rela(entries: &[elf::Rela64<Endianness>], endian: Endianness) -> Option<&[Relocation]> {
    let ptr = entries.as_ptr();
    let in_place = cfg!(target_endian = "little")
        && endian == Endianness::Little
        && std::mem::size_of::<elf::Rela64<Endianness>>() == std::mem::size_of::<Relocation>()
        && (ptr as usize) % std::mem::align_of::<Relocation>() == 0;
    // SAFETY: `Relocation` is `repr(C)` with the size of `Elf64_Rela` and its fields at the
    // same offsets (`r_offset`; `r_info`'s low word, the type, then its high word, the
    // symbol index, which `Option<SymbolId>` stores as is, 0 being `None`; `r_addend`); every
    // bit pattern is a valid value of each field; the pointer is aligned (checked above) and
    // the slice lives as long as the file's bytes.
    in_place.then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<Relocation>(), entries.len()) })
}
