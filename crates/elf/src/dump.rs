//! A stable, diff-friendly listing of an object: one line per section, symbol and relocation.
//!
//! The listing shows what the model means, not how the file happens to be laid out: file
//! offsets and string-table layouts are left out, and section bytes appear as an xxh3 hash. A
//! rewritten object therefore dumps identically to its input, which is what the round-trip
//! tests compare. [`Dump`] is also serialisable for `klpforge elf dump --json`.

use std::fmt::Write as _;

use object::elf;
use serde::Serialize;

use crate::model::*;

/// The whole listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dump {
    /// File header summary.
    pub header: DumpHeader,
    /// Sections in index order.
    pub sections: Vec<DumpSection>,
    /// Symbols in index order (null symbol left out).
    pub symbols: Vec<DumpSymbol>,
    /// Relocations, grouped by relocation section in index order.
    pub relocations: Vec<DumpRelocation>,
}

/// File header summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DumpHeader {
    /// `little` or `big`.
    pub endian: Endian,
    /// `REL`, `EXEC`, `DYN` or a number.
    pub file_type: String,
    /// Short architecture name.
    pub machine: String,
    /// `e_flags`.
    pub flags: u32,
    /// `e_entry`.
    pub entry: u64,
    /// `EI_OSABI`.
    pub os_abi: u8,
    /// `EI_ABIVERSION`.
    pub abi_version: u8,
}

/// One section.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DumpSection {
    /// Section index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Type name (`PROGBITS`) or hex value.
    pub sh_type: String,
    /// Raw flags.
    pub flags: u64,
    /// Flag letters in readelf's style (`AX`, `AIo`...).
    pub flag_letters: String,
    /// `sh_addr`.
    pub addr: u64,
    /// `sh_size`, or `None` for string tables the writer regenerates.
    pub size: Option<u64>,
    /// `sh_addralign`.
    pub align: u64,
    /// `sh_entsize`.
    pub entsize: u64,
    /// `sh_link` as a section index (0 for none).
    pub link: u32,
    /// `sh_info` rendered: `0`, `[n]` for a section, `sym[n]` for a symbol, or the raw value.
    pub info: String,
    /// Summary of the contents: `xxh3=...`, `relocs=N`, `group=... members=[...]`, ...
    pub contents: String,
}

/// One symbol.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DumpSymbol {
    /// Symbol index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `st_value`.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
    /// `FUNC`, `OBJECT`, `SECTION`...
    pub kind: String,
    /// `LOCAL`, `GLOBAL`, `WEAK`...
    pub bind: String,
    /// `DEFAULT`, `HIDDEN`...
    pub visibility: String,
    /// Raw `st_other`.
    pub other: u8,
    /// `UND`, `ABS`, `COM`, `LIVEPATCH`, `[n]` for a section, or a hex reserved value.
    pub shndx: String,
}

/// One relocation entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DumpRelocation {
    /// Index of the relocation section.
    pub section: u32,
    /// Name of the relocation section.
    pub section_name: String,
    /// `r_offset`.
    pub offset: u64,
    /// Type name, or `R_<n>` for unknown types.
    pub r_type: String,
    /// Symbol index (0 for none).
    pub symbol: u32,
    /// Symbol name, or for section symbols the section's name in parentheses.
    pub symbol_name: String,
    /// `r_addend`.
    pub addend: i64,
}

fn show(name: &[u8]) -> String {
    let mut s = String::with_capacity(name.len());
    for c in String::from_utf8_lossy(name).chars() {
        if c.is_whitespace() || c.is_control() || c == '\\' {
            let _ = write!(s, "\\x{:02x}", c as u32);
        } else {
            s.push(c);
        }
    }
    s
}

/// `-0x4` / `0x10` for a signed value.
fn signed_hex(v: i64) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

fn section_type_name(machine: u16, t: u32) -> String {
    let mnames = elf::machine_names(elf::Machine(machine));
    match mnames.sht.name(elf::SectionType(t)) {
        Some(n) => n.trim_start_matches("SHT_").to_string(),
        None => format!("{t:#x}"),
    }
}

/// Relocation type name for `machine`, `R_<n>` when unknown.
pub fn relocation_type_name(machine: u16, t: u32) -> String {
    match elf::machine_names(elf::Machine(machine))
        .r
        .name(elf::RelocationType(t))
    {
        Some(n) => n.to_string(),
        None => format!("R_{t}"),
    }
}

/// Flag letters as readelf prints them.
pub fn flag_letters(flags: u64) -> String {
    const LETTERS: &[(u64, char)] = &[
        (0x1, 'W'),
        (0x2, 'A'),
        (0x4, 'X'),
        (0x10, 'M'),
        (0x20, 'S'),
        (0x40, 'I'),
        (0x80, 'L'),
        (0x100, 'O'),
        (0x200, 'G'),
        (0x400, 'T'),
        (0x800, 'C'),
        (0x8000_0000, 'E'),
    ];
    let mut s = String::new();
    for &(bit, c) in LETTERS {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    if flags & elf::SHF_MASKOS != 0 {
        s.push('o');
    }
    if flags & elf::SHF_MASKPROC & !0x8000_0000 != 0 {
        s.push('p');
    }
    s
}

impl Dump {
    /// Build the listing of `obj`.
    pub fn new(obj: &ElfObject<'_>) -> Dump {
        let sec_index = obj.section_indices();
        let sym_index = obj.symbol_indices();
        let machine = obj.header.e_machine;
        let sidx = |id: SectionId| sec_index[id.index()].unwrap_or(0);
        let yidx = |id: SymbolId| sym_index[id.index()].unwrap_or(0);

        let header = DumpHeader {
            endian: obj.header.endian,
            file_type: match obj.header.e_type {
                1 => "REL".into(),
                2 => "EXEC".into(),
                3 => "DYN".into(),
                t => t.to_string(),
            },
            machine: crate::read::machine_name(machine, obj.header.endian)
                .map(str::to_string)
                .unwrap_or_else(|| machine.to_string()),
            flags: obj.header.e_flags,
            entry: obj.header.e_entry,
            os_abi: obj.header.os_abi,
            abi_version: obj.header.abi_version,
        };

        let mut sections = Vec::with_capacity(obj.section_count());
        let mut relocations = Vec::new();
        for (id, s) in obj.sections() {
            let index = sidx(id);
            let (size, contents) = match &s.data {
                SectionData::Bytes(b) => (
                    Some(b.len() as u64),
                    format!("xxh3={:016x}", xxhash_rust::xxh3::xxh3_64(b)),
                ),
                SectionData::NoBits { size } => (Some(*size), "nobits".to_string()),
                SectionData::Relocations { entries, rela } => (
                    Some(entries.len() as u64 * if *rela { 24 } else { 16 }),
                    format!("relocs={}", entries.len()),
                ),
                SectionData::Group { flags, members } => {
                    let m: Vec<String> = members.iter().map(|&m| sidx(m).to_string()).collect();
                    (
                        Some(4 * (members.len() as u64 + 1)),
                        format!("group={flags:#x} members=[{}]", m.join(",")),
                    )
                }
                SectionData::SymbolTable => (
                    Some(24 * (obj.symbol_count() as u64 + 1)),
                    format!("symbols={}", obj.symbol_count()),
                ),
                SectionData::Strings(r) => (
                    None,
                    match (r.symbol_names, r.section_names) {
                        (true, true) => "strings=symbols+sections".into(),
                        (true, false) => "strings=symbols".into(),
                        _ => "strings=sections".into(),
                    },
                ),
                SectionData::ExtendedIndices => (
                    Some(4 * (obj.symbol_count() as u64 + 1)),
                    "extended-indices".into(),
                ),
            };
            sections.push(DumpSection {
                index,
                name: show(&s.name),
                sh_type: section_type_name(machine, s.sh_type),
                flags: s.sh_flags,
                flag_letters: flag_letters(s.sh_flags),
                addr: s.sh_addr,
                size,
                align: s.sh_addralign,
                entsize: s.sh_entsize,
                link: match s.link {
                    Link::None => 0,
                    Link::Section(t) => sidx(t),
                },
                info: match s.info {
                    Info::None if matches!(s.data, SectionData::SymbolTable) => {
                        let locals = obj.symbols().filter(|(_, y)| y.is_local()).count();
                        (locals + 1).to_string()
                    }
                    Info::None => "0".into(),
                    Info::Raw(v) => v.to_string(),
                    Info::Section(t) => format!("[{}]", sidx(t)),
                    Info::Symbol(y) => format!("sym[{}]", yidx(y)),
                },
                contents,
            });
            if let SectionData::Relocations { entries, .. } = &s.data {
                for r in entries.iter() {
                    let (symbol, symbol_name) = match r.symbol {
                        None => (0, String::new()),
                        Some(y) => {
                            let sym = obj.symbol(y);
                            let name = if sym.name.is_empty() {
                                match sym.place {
                                    SymbolPlace::Section(t) => {
                                        format!("({})", show(&obj.section(t).name))
                                    }
                                    _ => String::new(),
                                }
                            } else {
                                show(&sym.name)
                            };
                            (yidx(y), name)
                        }
                    };
                    relocations.push(DumpRelocation {
                        section: index,
                        section_name: show(&s.name),
                        offset: r.offset,
                        r_type: relocation_type_name(machine, r.r_type),
                        symbol,
                        symbol_name,
                        addend: r.addend,
                    });
                }
            }
        }

        let mut order: Vec<(u32, SymbolId)> =
            obj.symbol_ids().iter().map(|&id| (yidx(id), id)).collect();
        order.sort_unstable();
        let symbols = order
            .into_iter()
            .map(|(index, id)| {
                let s = obj.symbol(id);
                DumpSymbol {
                    index,
                    name: show(&s.name),
                    value: s.value,
                    size: s.size,
                    kind: match elf::names().stt.name(elf::SymbolType(s.kind())) {
                        Some(n) => n.trim_start_matches("STT_").into(),
                        None => s.kind().to_string(),
                    },
                    bind: match elf::names().stb.name(elf::SymbolBind(s.bind())) {
                        Some(n) => n.trim_start_matches("STB_").into(),
                        None => s.bind().to_string(),
                    },
                    visibility: ["DEFAULT", "INTERNAL", "HIDDEN", "PROTECTED"]
                        [s.visibility() as usize]
                        .into(),
                    other: s.st_other,
                    shndx: match s.place {
                        SymbolPlace::Undefined => "UND".into(),
                        SymbolPlace::Absolute => "ABS".into(),
                        SymbolPlace::Common => "COM".into(),
                        SymbolPlace::Reserved(SHN_LIVEPATCH) => "LIVEPATCH".into(),
                        SymbolPlace::Reserved(v) => format!("{v:#x}"),
                        SymbolPlace::Section(t) => format!("[{}]", sidx(t)),
                    },
                }
            })
            .collect();
        Dump {
            header,
            sections,
            symbols,
            relocations,
        }
    }

    /// The text listing: one line per item, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        self.write_text(&mut out)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("the listing is UTF-8")
    }

    /// Stream the text listing to `out`.
    pub fn write_text(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let h = &self.header;
        writeln!(
            out,
            "elf64 {} {} machine={} flags={:#x} entry={:#x} osabi={} abiversion={}",
            match h.endian {
                Endian::Little => "little",
                Endian::Big => "big",
            },
            h.file_type,
            h.machine,
            h.flags,
            h.entry,
            h.os_abi,
            h.abi_version
        )?;
        for s in &self.sections {
            writeln!(
                out,
                "section [{}] {} type={} flags={:#x}({}) addr={:#x} size={} align={} entsize={} link={} info={} {}",
                s.index,
                s.name,
                s.sh_type,
                s.flags,
                s.flag_letters,
                s.addr,
                s.size.map_or_else(|| "*".to_string(), |v| format!("{v:#x}")),
                s.align,
                s.entsize,
                s.link,
                s.info,
                s.contents
            )?;
        }
        for y in &self.symbols {
            writeln!(
                out,
                "symbol [{}] {} value={:#x} size={:#x} type={} bind={} vis={} other={:#x} shndx={}",
                y.index, y.name, y.value, y.size, y.kind, y.bind, y.visibility, y.other, y.shndx
            )?;
        }
        for r in &self.relocations {
            writeln!(
                out,
                "reloc [{}] {} offset={:#x} type={} sym=[{}] {} addend={}",
                r.section,
                r.section_name,
                r.offset,
                r.r_type,
                r.symbol,
                r.symbol_name,
                signed_hex(r.addend)
            )?;
        }
        Ok(())
    }
}
