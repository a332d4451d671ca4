//! Serialising an [`ElfObject`] into an ELF64 file.
//!
//! The writer assigns file indices (sections in file order after the null section; symbols
//! locals first, then non-locals, each in table order), regenerates the derived tables
//! (`.symtab`, its string table, `.shstrtab`, `.symtab_shndx`), lays sections out in file
//! order with their alignment, and puts the section header table last. Extended numbering is
//! used whenever it is needed: `e_shnum`/`e_shstrndx` escapes through section 0, and
//! `SHN_XINDEX` with a `.symtab_shndx` section (added after `.symtab` if the model has none).
//! The encoding of each structure is done by the `object` crate's `write::elf::Encoder`.
//!
//! Output depends only on the model, so the same model always gives the same bytes.

use object::elf;
use object::write::elf::{Encoder, FileHeaderLayout, Rel, SectionHeader, Sym};
use object::write::{StringId, StringTable};
use object::Endianness;

use crate::error::{ElfError, Quoted, Result};
use crate::model::*;

/// An entry of the output section header table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    Model(SectionId),
    AddedSymtab,
    AddedStrtab,
    AddedShstrtab,
    AddedShndx,
}

const SYM_SIZE: u64 = 24;

/// The largest `sh_addralign` the writer lays out: sections are placed at file offsets
/// aligned like their addresses, so a larger value would mean gigabytes of padding (kernel
/// objects use at most a few pages).
const MAX_ALIGN: u64 = 1 << 24;

/// Serialise `obj` into a byte vector.
pub fn write(obj: &ElfObject<'_>) -> Result<Vec<u8>> {
    Writer::new(obj)?.finish()
}

/// Serialise `obj` and store it at `path`, replacing the file atomically (a temporary file in
/// the same directory is renamed over it), so a failed write never leaves a partial object.
pub fn write_file(obj: &ElfObject<'_>, path: &std::path::Path) -> Result<()> {
    let bytes = write(obj)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| ElfError::Io(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.klpforge-tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ElfError::Io(format!(
            "{}: cannot write: {e}",
            path.display()
        )));
    }
    Ok(())
}

struct Writer<'a, 'data> {
    obj: &'a ElfObject<'data>,
    out: Vec<Out>,
    /// Output index per section identity (0 = not written).
    section_index: Vec<u32>,
    /// Output symbol order (identities) and index per identity (0 = not written).
    symbol_order: Vec<SymbolId>,
    symbol_index: Vec<u32>,
    num_local: u32,
    symtab: Option<usize>,
    strtab: Option<usize>,
    shstrtab: usize,
}

impl<'a, 'data> Writer<'a, 'data> {
    fn new(obj: &'a ElfObject<'data>) -> Result<Self> {
        if obj.header.program_headers != 0 {
            return Err(ElfError::Write(format!(
                "files with program headers (e_type {}) cannot be written; only relocatable objects and modules",
                obj.header.e_type
            )));
        }
        let mut out: Vec<Out> = obj.section_ids().iter().map(|&id| Out::Model(id)).collect();
        let find =
            |out: &[Out], pred: &dyn Fn(&SectionData<'_>) -> bool| -> Result<Option<usize>> {
                let hits: Vec<usize> = out
                    .iter()
                    .enumerate()
                    .filter_map(|(pos, o)| match o {
                        Out::Model(id) if pred(&obj.section(*id).data) => Some(pos),
                        _ => None,
                    })
                    .collect();
                if hits.len() > 1 {
                    let names: Vec<String> = hits
                        .iter()
                        .map(|&p| match out[p] {
                            Out::Model(id) => Quoted(&obj.section(id).name).to_string(),
                            _ => String::new(),
                        })
                        .collect();
                    return Err(ElfError::Write(format!(
                        "more than one section plays the same table role: {}",
                        names.join(", ")
                    )));
                }
                Ok(hits.first().copied())
            };
        let mut symtab = find(&out, &|d| matches!(d, SectionData::SymbolTable))?;
        let mut strtab = find(
            &out,
            &|d| matches!(d, SectionData::Strings(r) if r.symbol_names),
        )?;
        let shstrtab = find(
            &out,
            &|d| matches!(d, SectionData::Strings(r) if r.section_names),
        )?;
        let shndx = find(&out, &|d| matches!(d, SectionData::ExtendedIndices))?;
        let needs_symtab = obj.symbol_count() > 0
            || symtab.is_some()
            || shndx.is_some()
            || obj.sections().any(|(_, s)| {
                matches!(
                    s.data,
                    SectionData::Relocations { .. } | SectionData::Group { .. }
                )
            });
        if needs_symtab && symtab.is_none() {
            out.push(Out::AddedSymtab);
            symtab = Some(out.len() - 1);
        }
        if needs_symtab && strtab.is_none() {
            out.push(Out::AddedStrtab);
            strtab = Some(out.len() - 1);
        }
        let shstrtab = match shstrtab {
            Some(p) => p,
            None if out.is_empty() => usize::MAX,
            None => {
                out.push(Out::AddedShstrtab);
                out.len() - 1
            }
        };
        let mut w = Writer {
            obj,
            out,
            section_index: Vec::new(),
            symbol_order: Vec::new(),
            symbol_index: Vec::new(),
            num_local: 0,
            symtab,
            strtab,
            shstrtab,
        };
        w.assign_section_indices();
        if shndx.is_none() && w.needs_extended_indices() {
            let pos = w.symtab.expect("symbols imply a symbol table") + 1;
            w.out.insert(pos, Out::AddedShndx);
            for p in [&mut w.strtab, &mut w.symtab].into_iter().flatten() {
                if *p >= pos {
                    *p += 1;
                }
            }
            if w.shstrtab >= pos {
                w.shstrtab += 1;
            }
            w.assign_section_indices();
        }
        w.assign_symbol_indices();
        Ok(w)
    }

    fn assign_section_indices(&mut self) {
        self.section_index = vec![0; self.obj.section_arena_len()];
        for (pos, o) in self.out.iter().enumerate() {
            if let Out::Model(id) = o {
                self.section_index[id.index()] = pos as u32 + 1;
            }
        }
    }

    fn needs_extended_indices(&self) -> bool {
        self.obj.symbols().any(|(_, s)| match s.place {
            SymbolPlace::Section(id) => {
                self.section_index[id.index()] >= u32::from(elf::SHN_LORESERVE)
            }
            _ => false,
        })
    }

    fn assign_symbol_indices(&mut self) {
        let obj = self.obj;
        self.symbol_index = vec![0; obj.symbol_arena_len()];
        self.symbol_order = Vec::with_capacity(obj.symbol_count());
        for local_pass in [true, false] {
            for (id, s) in obj.symbols() {
                if s.is_local() == local_pass {
                    self.symbol_order.push(id);
                    self.symbol_index[id.index()] = self.symbol_order.len() as u32;
                }
            }
            if local_pass {
                self.num_local = self.symbol_order.len() as u32 + 1;
            }
        }
    }

    fn out_label(&self, pos: usize) -> String {
        match self.out[pos] {
            Out::Model(id) => format!(
                "section [{}] {}",
                pos + 1,
                Quoted(&self.obj.section(id).name)
            ),
            _ => format!("section [{}]", pos + 1),
        }
    }

    fn section_ref(&self, pos: usize, id: SectionId, what: &str) -> Result<u32> {
        match self.section_index.get(id.index()).copied() {
            Some(i) if i != 0 => Ok(i),
            _ => Err(ElfError::Write(format!(
                "{}: {what} refers to removed section {}",
                self.out_label(pos),
                Quoted(&self.obj.section(id).name)
            ))),
        }
    }

    fn symbol_ref(&self, what: &dyn Fn() -> String, id: SymbolId) -> Result<u32> {
        match self.symbol_index.get(id.index()).copied() {
            Some(i) if i != 0 => Ok(i),
            _ => Err(ElfError::Write(format!(
                "{}: refers to removed symbol {}",
                what(),
                Quoted(&self.obj.symbol(id).name)
            ))),
        }
    }

    fn finish(self) -> Result<Vec<u8>> {
        let obj = self.obj;
        if self.out.is_empty() {
            // No sections at all: a bare header, with no section header table.
            let encoder = Encoder::new(
                obj.header.endian.to_object(),
                true,
                elf::Machine(obj.header.e_machine),
            );
            let mut buf = Vec::new();
            encoder
                .file_header(&mut buf, &self.file_header(), &FileHeaderLayout::default())
                .map_err(|e| ElfError::Write(format!("file header: {e}")))?;
            return Ok(buf);
        }
        let endian = obj.header.endian.to_object();
        let encoder = Encoder::new(endian, true, elf::Machine(obj.header.e_machine));
        let nsec = self.out.len() as u32 + 1;

        // String tables.
        let combined = self.strtab == Some(self.shstrtab);
        let mut symstr = StringTable::new();
        let mut secstr = StringTable::new();
        let check_name = |name: &[u8], what: &dyn Fn() -> String| -> Result<()> {
            if name.contains(&0) {
                Err(ElfError::Write(format!(
                    "{}: name contains a NUL byte",
                    what()
                )))
            } else {
                Ok(())
            }
        };
        let mut sym_names: Vec<Option<StringId>> = Vec::with_capacity(self.symbol_order.len());
        for &id in &self.symbol_order {
            let s = obj.symbol(id);
            check_name(&s.name, &|| format!("symbol {}", Quoted(&s.name)))?;
            sym_names.push(if s.name.is_empty() {
                None
            } else {
                Some(symstr.add(&s.name))
            });
            if let SymbolPlace::Section(sec) = s.place {
                if self.section_index[sec.index()] == 0 {
                    return Err(ElfError::Write(format!(
                        "symbol {} is defined in removed section {}",
                        Quoted(&s.name),
                        Quoted(&obj.section(sec).name)
                    )));
                }
            }
        }
        let mut sec_names: Vec<Option<StringId>> = Vec::with_capacity(self.out.len());
        for (pos, o) in self.out.iter().enumerate() {
            let name: &[u8] = match o {
                Out::Model(id) => &obj.section(*id).name,
                Out::AddedSymtab => b".symtab",
                Out::AddedStrtab => b".strtab",
                Out::AddedShstrtab => b".shstrtab",
                Out::AddedShndx => b".symtab_shndx",
            };
            check_name(name, &|| self.out_label(pos))?;
            let table = if combined { &mut symstr } else { &mut secstr };
            sec_names.push(if name.is_empty() {
                None
            } else {
                Some(table.add(name))
            });
        }
        let mut symstr_bytes = Vec::new();
        encoder
            .strtab(&mut symstr_bytes, &mut symstr)
            .map_err(|e| ElfError::Write(format!("symbol string table: {e}")))?;
        let mut secstr_bytes = Vec::new();
        if !combined {
            encoder
                .strtab(&mut secstr_bytes, &mut secstr)
                .map_err(|e| ElfError::Write(format!("section name table: {e}")))?;
        }
        let secstr_ref = if combined { &symstr } else { &secstr };
        let nsyms = self.symbol_order.len() as u64 + 1;

        // Contents and headers (without offsets) of every output section.
        let mut headers: Vec<SectionHeader> = Vec::with_capacity(self.out.len());
        let mut file_sizes: Vec<u64> = Vec::with_capacity(self.out.len());
        let mut aligns: Vec<u64> = Vec::with_capacity(self.out.len());
        let symtab_index = self.symtab.map_or(0, |p| p as u32 + 1);
        let strtab_index = self.strtab.map_or(0, |p| p as u32 + 1);
        for (pos, o) in self.out.iter().enumerate() {
            let sh_name = sec_names[pos].map_or(0, |id| secstr_ref.get_offset(id));
            let mut h = SectionHeader {
                sh_name,
                ..SectionHeader::default()
            };
            let natural;
            let file_size;
            match *o {
                Out::AddedSymtab => {
                    h.sh_type = elf::SHT_SYMTAB;
                    h.sh_addralign = 8;
                }
                Out::AddedStrtab | Out::AddedShstrtab => {
                    h.sh_type = elf::SHT_STRTAB;
                    h.sh_addralign = 1;
                }
                Out::AddedShndx => {
                    h.sh_type = elf::SHT_SYMTAB_SHNDX;
                    h.sh_addralign = 4;
                }
                Out::Model(id) => {
                    let s = obj.section(id);
                    h.sh_type = elf::SectionType(s.sh_type);
                    h.sh_flags = elf::SectionFlags(s.sh_flags);
                    h.sh_addr = s.sh_addr;
                    h.sh_addralign = s.sh_addralign;
                    h.sh_entsize = s.sh_entsize;
                    h.sh_link = match s.link {
                        Link::None => 0,
                        Link::Section(t) => self.section_ref(pos, t, "sh_link")?,
                    };
                    h.sh_info = match s.info {
                        Info::None => 0,
                        Info::Raw(v) => v,
                        Info::Section(t) => self.section_ref(pos, t, "sh_info")?,
                        Info::Symbol(sym) => {
                            self.symbol_ref(&|| format!("{} sh_info", self.out_label(pos)), sym)?
                        }
                    };
                }
            }
            let data = match *o {
                Out::Model(id) => Some(&obj.section(id).data),
                _ => None,
            };
            match (o, data) {
                (Out::AddedSymtab, _) | (_, Some(SectionData::SymbolTable)) => {
                    h.sh_link = strtab_index;
                    h.sh_info = self.num_local;
                    h.sh_entsize = SYM_SIZE;
                    natural = 8;
                    file_size = nsyms * SYM_SIZE;
                }
                (Out::AddedShndx, _) | (_, Some(SectionData::ExtendedIndices)) => {
                    h.sh_link = symtab_index;
                    h.sh_entsize = 4;
                    natural = 4;
                    file_size = nsyms * 4;
                }
                (Out::AddedStrtab | Out::AddedShstrtab, _) | (_, Some(SectionData::Strings(_))) => {
                    natural = 1;
                    file_size = if pos + 1 == strtab_index as usize {
                        symstr_bytes.len() as u64
                    } else {
                        secstr_bytes.len() as u64
                    };
                }
                (_, Some(SectionData::Relocations { rela, entries })) => {
                    h.sh_link = symtab_index;
                    h.sh_entsize = encoder.rel_size(*rela);
                    natural = 8;
                    file_size = entries.len() as u64 * h.sh_entsize;
                }
                (_, Some(SectionData::Group { members, .. })) => {
                    h.sh_link = symtab_index;
                    h.sh_entsize = 4;
                    natural = 4;
                    file_size = 4 * (members.len() as u64 + 1);
                }
                (_, Some(SectionData::NoBits { size })) => {
                    natural = 1;
                    file_size = 0;
                    h.sh_size = *size;
                }
                (_, Some(SectionData::Bytes(b))) => {
                    natural = 1;
                    file_size = b.len() as u64;
                }
                (_, None) => unreachable!("added sections are matched above"),
            }
            if !matches!(data, Some(SectionData::NoBits { .. })) {
                h.sh_size = file_size;
            }
            headers.push(h);
            file_sizes.push(file_size);
            aligns.push(natural.max(headers[pos].sh_addralign).max(1));
        }

        // Layout.
        let mut offset = encoder.file_header_size();
        for (pos, h) in headers.iter_mut().enumerate() {
            let align = aligns[pos];
            if !align.is_power_of_two() {
                return Err(ElfError::Write(format!(
                    "{}: sh_addralign {align} is not a power of two",
                    self.out_label(pos)
                )));
            }
            if align > MAX_ALIGN {
                return Err(ElfError::Write(format!(
                    "{}: sh_addralign {align:#x} is larger than {MAX_ALIGN:#x}",
                    self.out_label(pos)
                )));
            }
            offset = offset.next_multiple_of(align);
            h.sh_offset = offset;
            offset += file_sizes[pos];
        }
        let e_shoff = offset.next_multiple_of(8);
        let total = e_shoff + u64::from(nsec) * encoder.section_header_size();
        let layout = FileHeaderLayout {
            e_phoff: 0,
            segment_num: 0,
            e_shoff,
            section_num: nsec,
            shstrtab_index: self.shstrtab as u32 + 1,
        };

        // Emit.
        let mut buf: Vec<u8> = Vec::with_capacity(total as usize);
        encoder
            .file_header(&mut buf, &self.file_header(), &layout)
            .map_err(|e| ElfError::Write(format!("file header: {e}")))?;
        for (pos, o) in self.out.iter().enumerate() {
            buf.resize(headers[pos].sh_offset as usize, 0);
            let data = match *o {
                Out::Model(id) => Some(&obj.section(id).data),
                _ => None,
            };
            match (o, data) {
                (Out::AddedSymtab, _) | (_, Some(SectionData::SymbolTable)) => {
                    self.emit_symbols(&encoder, &mut buf, &symstr, &sym_names);
                }
                (Out::AddedShndx, _) | (_, Some(SectionData::ExtendedIndices)) => {
                    buf.extend_from_slice(&[0; 4]);
                    for &id in &self.symbol_order {
                        let ext = match obj.symbol(id).place {
                            SymbolPlace::Section(s) => self.section_index[s.index()],
                            _ => 0,
                        };
                        let v = if ext >= u32::from(elf::SHN_LORESERVE) {
                            ext
                        } else {
                            0
                        };
                        put_u32(&mut buf, endian, v);
                    }
                }
                (Out::AddedStrtab | Out::AddedShstrtab, _) | (_, Some(SectionData::Strings(_))) => {
                    if pos + 1 == strtab_index as usize {
                        buf.extend_from_slice(&symstr_bytes);
                    } else {
                        buf.extend_from_slice(&secstr_bytes);
                    }
                }
                (_, Some(SectionData::Relocations { rela, entries })) => {
                    for (n, r) in entries.iter().enumerate() {
                        let r_sym = match r.symbol {
                            None => 0,
                            Some(sym) => self.symbol_ref(
                                &|| format!("{} entry {n}", self.out_label(pos)),
                                sym,
                            )?,
                        };
                        encoder.relocation(
                            &mut buf,
                            *rela,
                            &Rel {
                                r_offset: r.offset,
                                r_sym,
                                r_type: elf::RelocationType(r.r_type),
                                r_addend: r.addend,
                            },
                        );
                    }
                }
                (_, Some(SectionData::Group { flags, members })) => {
                    put_u32(&mut buf, endian, *flags);
                    for &m in members {
                        let i = self.section_ref(pos, m, "group member")?;
                        put_u32(&mut buf, endian, i);
                    }
                }
                (_, Some(SectionData::NoBits { .. })) => {}
                (_, Some(SectionData::Bytes(b))) => buf.extend_from_slice(b),
                (_, None) => unreachable!("added sections are matched above"),
            }
        }
        buf.resize(e_shoff as usize, 0);
        encoder.null_section_header(&mut buf, &layout);
        for h in &headers {
            encoder.section_header(&mut buf, h);
        }
        debug_assert_eq!(buf.len() as u64, total);
        Ok(buf)
    }

    fn file_header(&self) -> object::write::elf::FileHeader {
        let h = &self.obj.header;
        object::write::elf::FileHeader {
            os_abi: elf::OsAbi(h.os_abi),
            abi_version: h.abi_version,
            e_type: elf::FileType(h.e_type),
            e_machine: elf::Machine(h.e_machine),
            e_entry: h.e_entry,
            e_flags: elf::FileFlags(h.e_flags),
        }
    }

    fn emit_symbols(
        &self,
        encoder: &Encoder<Endianness>,
        buf: &mut Vec<u8>,
        symstr: &StringTable<'_>,
        names: &[Option<StringId>],
    ) {
        encoder.null_symbol(buf);
        for (n, &id) in self.symbol_order.iter().enumerate() {
            let s = self.obj.symbol(id);
            let (section, st_shndx) = match s.place {
                SymbolPlace::Undefined => (None, elf::SHN_UNDEF.0),
                SymbolPlace::Absolute => (None, elf::SHN_ABS.0),
                SymbolPlace::Common => (None, elf::SHN_COMMON.0),
                SymbolPlace::Reserved(raw) => (None, raw),
                SymbolPlace::Section(sec) => (Some(self.section_index[sec.index()]), 0),
            };
            encoder.symbol(
                buf,
                &Sym {
                    section,
                    st_name: names[n].map_or(0, |id| symstr.get_offset(id)),
                    st_info: elf::SymbolInfo(s.st_info),
                    st_other: elf::SymbolOther(s.st_other),
                    st_shndx: elf::SymbolSection(st_shndx),
                    st_value: s.value,
                    st_size: s.size,
                },
            );
        }
    }
}

fn put_u32(buf: &mut Vec<u8>, endian: Endianness, v: u32) {
    match endian {
        Endianness::Little => buf.extend_from_slice(&v.to_le_bytes()),
        Endianness::Big => buf.extend_from_slice(&v.to_be_bytes()),
    }
}
