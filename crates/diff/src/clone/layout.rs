//! The output layout of the diff object: its sections, and what is appended to them.
//!
//! Each output section mirrors a patched section (same name, type, flags, alignment and,
//! for `SHF_LINK_ORDER` sections, linked section) and collects the stretches copied from it:
//! whole symbols, anonymous pieces (switch tables, alternative replacements, fixups),
//! deduplicated strings and mergeable constants. Every stretch is remembered as a [`Chunk`],
//! so that references into patched sections can be mapped to the output. When cloning is
//! done, [`Cloner::write_sections`] stores the contents and adds the relocation sections.

use std::borrow::Cow;

use klpforge_elf::{
    Link, Relocation, Section, SectionData, SectionId, Symbol, SymbolId, SymbolPlace,
};

use crate::HashMap;
use object::elf;

use super::Cloner;
use crate::refs::string_at;

/// A stretch of patched section bytes copied to the output.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk {
    /// Start in the patched section.
    pub(super) start: u64,
    /// End in the patched section.
    pub(super) end: u64,
    /// The output section it was copied to.
    pub(super) out: SectionId,
    /// Where it starts there.
    pub(super) out_start: u64,
}

/// An output section being filled.
pub(super) struct OutSection {
    /// Its contents so far (unused for NOBITS sections, which only grow in size).
    data: Vec<u8>,
    /// Its relocations, in the order they were made.
    relocs: Vec<Relocation>,
    /// Which of them name a symbol not placed yet but must refer through its section's
    /// symbol, as the assembler wrote them (see [`Cloner::push_reloc_section_form`]).
    section_form: Vec<usize>,
    /// Its section symbol.
    pub(super) symbol: SymbolId,
}

/// What makes patched sections share one output section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SectionKey {
    name: Vec<u8>,
    sh_type: u32,
    sh_flags: u64,
    /// The output section an `SHF_LINK_ORDER` section is linked to.
    link: Option<SectionId>,
}

fn align_up(v: u64, a: u64) -> u64 {
    if a <= 1 {
        v
    } else {
        v.div_ceil(a) * a
    }
}

impl Cloner<'_, '_, '_, '_, '_> {
    /// The output section for patched section `psec` (same name, type, flags, alignment).
    pub(super) fn out_section_for(
        &mut self,
        psec: SectionId,
        link: Option<SectionId>,
    ) -> SectionId {
        let s = self.p.obj.section(psec);
        let key = SectionKey {
            name: s.name.to_vec(),
            sh_type: s.sh_type,
            sh_flags: s.sh_flags,
            link,
        };
        if let Some(&id) = self.sec_by_key.get(&key) {
            return id;
        }
        let id = self.add_out_section(Section {
            name: Cow::Owned(s.name.to_vec()),
            sh_type: s.sh_type,
            sh_flags: s.sh_flags & !elf::SHF_GROUP.0,
            sh_addr: 0,
            sh_addralign: s.sh_addralign,
            sh_entsize: s.sh_entsize,
            link: link.map_or(Link::None, Link::Section),
            info: klpforge_elf::Info::None,
            data: match s.data {
                SectionData::NoBits { .. } => SectionData::NoBits { size: 0 },
                _ => SectionData::Bytes(Cow::Owned(Vec::new())),
            },
        });
        self.sec_by_key.insert(key, id);
        id
    }

    /// A new empty `SHT_PROGBITS` output section (for the metadata).
    pub(super) fn new_data_section(
        &mut self,
        name: &str,
        flags: u64,
        align: u64,
        entsize: u64,
    ) -> SectionId {
        self.add_out_section(Section::progbits(
            name.as_bytes().to_vec(),
            flags,
            align,
            entsize,
            Vec::new(),
        ))
    }

    /// Add an output section with its section symbol and an empty buffer for its contents.
    fn add_out_section(&mut self, section: Section<'static>) -> SectionId {
        let id = self.out.add_section(section);
        let symbol = self.out.add_symbol(Symbol::section_symbol(id));
        self.out_secs.insert(
            id,
            OutSection {
                data: Vec::new(),
                relocs: Vec::new(),
                section_form: Vec::new(),
                symbol,
            },
        );
        id
    }

    /// The section symbol of output section `out`.
    pub(super) fn section_symbol(&self, out: SectionId) -> SymbolId {
        self.out_secs[&out].symbol
    }

    /// Append `bytes` (or, for NOBITS, `len` zero bytes) to an output section, aligned.
    pub(super) fn append(
        &mut self,
        out: SectionId,
        bytes: Option<&[u8]>,
        len: u64,
        align: u64,
    ) -> u64 {
        let nobits = matches!(self.out.section(out).data, SectionData::NoBits { .. });
        let sec = self.out_secs.get_mut(&out).expect("output section exists");
        if nobits {
            let SectionData::NoBits { size } = &mut self.out.section_mut(out).data else {
                unreachable!()
            };
            let at = align_up(*size, align);
            *size = at + len;
            return at;
        }
        let at = align_up(sec.data.len() as u64, align);
        sec.data.resize(at as usize, 0);
        match bytes {
            Some(b) => sec.data.extend_from_slice(b),
            None => sec.data.resize((at + len) as usize, 0),
        }
        let s = self.out.section_mut(out);
        s.sh_addralign = s.sh_addralign.max(align);
        at
    }

    /// Add a relocation to output section `out`.
    pub(super) fn push_reloc(&mut self, out: SectionId, r: Relocation) {
        self.out_secs
            .get_mut(&out)
            .expect("output section")
            .relocs
            .push(r);
    }

    /// Add relocation `r` to output section `out`, against a symbol that is not placed yet
    /// and that the assembler referred to through its section's symbol: once every symbol
    /// is placed ([`Cloner::write_sections`]) it refers to that section's symbol plus the
    /// symbol's offset. objtool reads some references only in that form (a computed-goto
    /// table in `.data.rel.ro.c_jump_table`, annotations in `.discard.*`).
    pub(super) fn push_reloc_section_form(&mut self, out: SectionId, r: Relocation) {
        let os = self.out_secs.get_mut(&out).expect("output section");
        os.section_form.push(os.relocs.len());
        os.relocs.push(r);
    }

    /// Copy `[start, end)` of patched section `psec` to output section `out` (aligned to
    /// `align`) and remember the chunk; where it starts in the output.
    pub(super) fn copy_chunk(
        &mut self,
        psec: SectionId,
        start: u64,
        end: u64,
        out: SectionId,
        align: u64,
    ) -> u64 {
        let sec = self.p.obj.section(psec);
        let bytes = match sec.data {
            SectionData::NoBits { .. } => None,
            _ => Some(&sec.bytes()[start as usize..end as usize]),
        };
        let out_start = self.append(out, bytes, end - start, align);
        self.chunks.entry(psec).or_default().push(Chunk {
            start,
            end,
            out,
            out_start,
        });
        out_start
    }

    /// For `SHF_LINK_ORDER` sections: the output section of the section they are linked to.
    pub(super) fn linked_output(&mut self, psec: SectionId) -> Option<SectionId> {
        let s = self.p.obj.section(psec);
        if s.sh_flags & elf::SHF_LINK_ORDER.0 == 0 {
            return None;
        }
        let Link::Section(target) = s.link else {
            return None;
        };
        self.chunks
            .get(&target)
            .and_then(|c| c.first())
            .map(|c| c.out)
    }

    /// Where patched `(section, offset)` landed in the output, if copied.
    pub(super) fn map_offset(&self, psec: SectionId, offset: i64) -> Option<(SectionId, i64)> {
        let chunks = self.chunks.get(&psec)?;
        chunks
            .iter()
            .find(|c| {
                offset >= c.start as i64
                    && (offset < c.end as i64 || (c.start == c.end && offset == c.start as i64))
            })
            .or_else(|| chunks.iter().find(|c| offset == c.end as i64))
            .map(|c| (c.out, c.out_start as i64 + offset - c.start as i64))
    }

    /// Whether the non-empty range `[start, end)` of `psec` lies within one chunk already
    /// copied.
    pub(super) fn copied(&self, psec: SectionId, start: u64, end: u64) -> bool {
        self.chunks
            .get(&psec)
            .is_some_and(|cs| cs.iter().any(|c| c.start <= start && end <= c.end))
    }

    /// Copy the anonymous piece of `psec` holding `offset` (a switch table, one alternative's
    /// replacement code, one fixup), not the whole section: in a large object such sections
    /// hold the pieces of every function. Returns the output section.
    pub(super) fn clone_piece(&mut self, psec: SectionId, offset: i64) -> SectionId {
        let at = offset.max(0) as u64;
        if let Some(c) = self
            .chunks
            .get(&psec)
            .and_then(|cs| cs.iter().find(|c| at >= c.start && at < c.end))
        {
            return c.out;
        }
        let (start, end) = self.p.piece_at(psec, offset);
        let p = self.p;
        let sec = p.obj.section(psec);
        let out = self.out_section_for(psec, None);
        let out_start = self.copy_chunk(psec, start, end, out, sec.sh_addralign.max(1));
        self.debug(|| format!("clone {}+{start:#x}..{end:#x}", sec.name_lossy()));
        for r in p.relocations_in(psec, start, end) {
            self.translate(psec, r, out, out_start + (r.offset() - start));
        }
        out
    }

    /// Copy all of read-only section `psec` in one piece, as code reaching it through a
    /// section anchor needs (every piece at its distance from the anchor): the output section
    /// and where the copy starts there.
    pub(super) fn clone_whole(&mut self, psec: SectionId) -> (SectionId, u64) {
        let p = self.p;
        let sec = p.obj.section(psec);
        let size = sec.size();
        if let Some(c) = self
            .chunks
            .get(&psec)
            .and_then(|cs| cs.iter().find(|c| c.start == 0 && c.end == size))
        {
            return (c.out, c.out_start);
        }
        let out = self.out_section_for(psec, None);
        let out_start = self.copy_chunk(psec, 0, size, out, sec.sh_addralign.max(1));
        self.debug(|| format!("clone all of {} (a section anchor)", sec.name_lossy()));
        for r in p.relocations_in(psec, 0, size) {
            self.translate(psec, r, out, out_start + r.offset());
        }
        (out, out_start)
    }

    /// Copy a string into the output string section of the same name; its offset there.
    pub(super) fn copy_string(&mut self, psec: SectionId, start: u64) -> (SectionId, u64) {
        let bytes = string_at(self.p.obj.section(psec).bytes(), start).to_vec();
        let out = self.out_section_for(psec, None);
        if let Some(&at) = self.strings.get(&(out, bytes.clone())) {
            return (out, at);
        }
        let mut with_nul = bytes.clone();
        with_nul.push(0);
        // Each string keeps its section's alignment: s390x code reaches strings with `larl`,
        // which can only address even bytes (gcc puts them in `.rodata.str1.2`).
        let align = self.p.obj.section(psec).sh_addralign.max(1);
        let at = self.append(out, Some(&with_nul), with_nul.len() as u64, align);
        self.strings.insert((out, bytes), at);
        (out, at)
    }

    /// Copy a mergeable constant into the output constant section of the same name.
    pub(super) fn copy_constant(&mut self, psec: SectionId, offset: i64) -> (SectionId, i64) {
        let sec = self.p.obj.section(psec);
        let e = sec.sh_entsize.max(1);
        let base = (offset.max(0) as u64 / e) * e;
        let data = sec.bytes();
        let end = (base + e).min(data.len() as u64);
        let bytes = data[base.min(end) as usize..end as usize].to_vec();
        let out = self.out_section_for(psec, None);
        let p = self.p;
        let relocs = crate::analyze::relocs_in(p.relocations(psec), base, end.max(base + 1));
        if !relocs.is_empty() {
            // An address (a literal pool entry): its bytes are not its value, so it is not
            // merged with equal bytes, and its relocations come along.
            let at = self.append(out, Some(&bytes), bytes.len() as u64, e);
            for r in relocs {
                self.translate(psec, r, out, at + (r.offset() - base));
            }
            return (out, at as i64 + (offset - base as i64));
        }
        let key = (out, bytes.clone());
        let at = match self.strings.get(&key) {
            Some(&at) => at,
            None => {
                let at = self.append(out, Some(&bytes), bytes.len() as u64, e);
                self.strings.insert(key, at);
                at
            }
        };
        (out, at as i64 + (offset - base as i64))
    }

    /// Store the contents of the output sections and add their relocation sections
    /// (`.rela<name>`, entries sorted by offset).
    pub(super) fn write_sections(&mut self) {
        let section_symbols: HashMap<SectionId, SymbolId> = self
            .out_secs
            .iter()
            .map(|(&id, os)| (id, os.symbol))
            .collect();
        for os in self.out_secs.values_mut() {
            for &i in &os.section_form {
                let r = &mut os.relocs[i];
                let Some(sym) = r.symbol else { continue };
                let s = self.out.symbol(sym);
                if let SymbolPlace::Section(sec) = s.place {
                    if let Some(&secsym) = section_symbols.get(&sec) {
                        r.symbol = Some(secsym);
                        r.addend = r.addend.wrapping_add(s.value as i64);
                    }
                }
            }
        }
        let secs: Vec<SectionId> = self.out_secs.keys().copied().collect();
        for id in secs {
            let os = self.out_secs.remove(&id).expect("listed");
            if !matches!(self.out.section(id).data, SectionData::NoBits { .. }) {
                self.out.section_mut(id).data = SectionData::Bytes(Cow::Owned(os.data));
            }
            if !os.relocs.is_empty() {
                let mut relocs = os.relocs;
                relocs.sort_by_key(|r| r.offset);
                let mut name = b".rela".to_vec();
                name.extend_from_slice(&self.out.section(id).name);
                self.out.add_section(Section::rela(
                    name,
                    elf::SHF_INFO_LINK.0,
                    Link::None,
                    id,
                    relocs,
                ));
            }
        }
    }
}
