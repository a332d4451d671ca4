//! Building the diff object: the changed and new functions with everything they need.
//!
//! Starting from the selected functions, every reference is examined ([`Cloner::translate`]):
//!
//! * to something that must live in the patch module (the function itself, its `.cold`
//!   part, new functions and data, function-scope statics that are never correlated, strings,
//!   constants, anonymous tables) → the target is cloned and the relocation stays normal;
//! * to an export of vmlinux → a normal relocation against an undefined symbol;
//! * to anything else that exists in the running kernel (local symbols, unexported globals,
//!   exports of modules) → a klp relocation (see [`crate::klp`]), with the original's name and
//!   `sympos`;
//! * a non-call reference to a changed function (a function pointer) → a klp relocation to the
//!   original, so stored pointers keep pointing into the kernel after the module is unloaded.
//!
//! Special-section entries that describe kept code are carried entry by entry, which pulls in
//! what they reference (alternative replacements, exception fixups, bug-table file names).
//! Finally the metadata sections for the module step are written.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use klpforge_elf::{
    ElfObject, Info, Link, Relocation, Section, SectionData, SectionId, Symbol, SymbolId,
    SymbolPlace,
};

use crate::analyze::{relocs_in, ObjInfo, Reloc, SecKind, SymKind};
use crate::correlate::Twins;
use crate::klp::{self, klp_symbol_name};
use crate::refs::{pc_bias, string_at, Target};
use crate::select::{Refusal, Selection};
use crate::special;
use crate::DiffOptions;

const STB_LOCAL: u8 = 0;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;
const STT_NOTYPE: u8 = 0;
const STT_OBJECT: u8 = 1;
const STT_SECTION: u8 = 3;
const STT_FILE: u8 = 4;
const SHT_PROGBITS: u32 = 1;
const SHT_RELA: u32 = 4;
const SHF_ALLOC: u64 = 0x2;
const SHF_MERGE: u64 = 0x10;
const SHF_STRINGS: u64 = 0x20;
const SHF_INFO_LINK: u64 = 0x40;
const SHF_LINK_ORDER: u64 = 0x80;
const SHF_GROUP: u64 = 0x200;

/// One klp relocation, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KlpReloc {
    /// The output section the relocation applies to.
    pub section: String,
    /// Offset within it.
    pub offset: u64,
    /// Relocation type name.
    pub r#type: String,
    /// The klp symbol.
    pub symbol: String,
    /// Addend.
    pub addend: i64,
}

/// Special-section statistics, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecialStat {
    /// Section name.
    pub section: String,
    /// Entries kept.
    pub kept: usize,
    /// Entries dropped.
    pub dropped: usize,
}

/// The result of cloning.
pub struct CloneResult {
    /// The diff object.
    pub obj: ElfObject<'static>,
    /// Defined functions in it (without `__pfx_`/`__cfi_`).
    pub output_functions: Vec<String>,
    /// klp relocations created.
    pub klp_relocs: Vec<KlpReloc>,
    /// Special sections carried.
    pub special: Vec<SpecialStat>,
    /// Changes found to be unpatchable while cloning.
    pub refusals: Vec<Refusal>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// How one reference is handled.
enum Decision {
    /// Clone the patched symbol into the output and refer to the clone.
    Include,
    /// Refer to an undefined symbol of this name (resolved by the module loader).
    Undefined(String),
    /// klp relocation: objname, original name, sympos, symbol type.
    Klp(String, String, u64, u8),
}

/// A stretch of patched section bytes copied to the output.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    start: u64,
    end: u64,
    out: SectionId,
    out_start: u64,
}

struct OutSection {
    data: Vec<u8>,
    relocs: Vec<Relocation>,
    symbol: SymbolId,
}

/// The cloning state.
pub struct Cloner<'a, 'o, 'p> {
    o: &'a ObjInfo<'a, 'o>,
    p: &'a ObjInfo<'a, 'p>,
    twins: &'a Twins,
    opts: &'a DiffOptions,
    changed: BTreeSet<SymbolId>,
    /// Changed read-only data the module gets its own copy of.
    fresh: BTreeSet<SymbolId>,
    out: ElfObject<'static>,
    out_secs: BTreeMap<SectionId, OutSection>,
    sec_by_key: HashMap<(Vec<u8>, u32, u64, Option<SectionId>), SectionId>,
    clone_of: HashMap<SymbolId, SymbolId>,
    queue: VecDeque<SymbolId>,
    placed: BTreeSet<SymbolId>,
    chunks: HashMap<SectionId, Vec<Chunk>>,
    undef: HashMap<String, SymbolId>,
    klp_syms: HashMap<String, SymbolId>,
    strings: HashMap<(SectionId, Vec<u8>), u64>,
    klp_records: Vec<(SectionId, u64, SymbolId, i64, u32)>,
    klp_report: Vec<KlpReloc>,
    refusals: Vec<Refusal>,
    warnings: Vec<String>,
    sympos_cache: HashMap<String, Vec<SymbolId>>,
}

fn align_up(v: u64, a: u64) -> u64 {
    if a <= 1 {
        v
    } else {
        v.div_ceil(a) * a
    }
}

impl<'a, 'o, 'p> Cloner<'a, 'o, 'p> {
    /// Prepare to clone from `p` (patched), with `o` (original) for klp names.
    pub fn new(
        o: &'a ObjInfo<'a, 'o>,
        p: &'a ObjInfo<'a, 'p>,
        twins: &'a Twins,
        sel: &Selection,
        opts: &'a DiffOptions,
    ) -> Self {
        let h = &p.obj.header;
        let mut out = ElfObject::new(klpforge_elf::FileHeader {
            endian: h.endian,
            os_abi: h.os_abi,
            abi_version: h.abi_version,
            e_type: h.e_type,
            e_machine: h.e_machine,
            e_flags: h.e_flags,
            e_entry: 0,
            program_headers: 0,
        });
        // The FILE symbol of the first changed or new function scopes the locals.
        let first = sel
            .changed
            .first()
            .map(|c| c.0)
            .or(sel.new_functions.first().copied());
        if let Some(file) = first.and_then(|f| p.sym(f).file) {
            out.add_symbol(Symbol {
                name: Cow::Owned(p.obj.symbol(file).name.to_vec()),
                st_info: (STB_LOCAL << 4) | STT_FILE,
                st_other: 0,
                place: SymbolPlace::Absolute,
                value: 0,
                size: 0,
            });
        }
        Cloner {
            o,
            p,
            twins,
            opts,
            changed: sel.changed.iter().map(|c| c.0).collect(),
            fresh: sel.fresh_data.iter().copied().collect(),
            out,
            out_secs: BTreeMap::new(),
            sec_by_key: HashMap::new(),
            clone_of: HashMap::new(),
            queue: VecDeque::new(),
            placed: BTreeSet::new(),
            chunks: HashMap::new(),
            undef: HashMap::new(),
            klp_syms: HashMap::new(),
            strings: HashMap::new(),
            klp_records: Vec::new(),
            klp_report: Vec::new(),
            refusals: Vec::new(),
            warnings: Vec::new(),
            sympos_cache: HashMap::new(),
        }
    }

    fn debug(&self, msg: impl FnOnce() -> String) {
        if self.opts.debug {
            eprintln!("klpforge: debug: {}", msg());
        }
    }

    /// The output section for patched section `psec` (same name, type, flags, alignment).
    fn out_section_for(&mut self, psec: SectionId, link: Option<SectionId>) -> SectionId {
        let s = self.p.obj.section(psec);
        let key = (s.name.to_vec(), s.sh_type, s.sh_flags, link);
        if let Some(&id) = self.sec_by_key.get(&key) {
            return id;
        }
        let id = self.add_out_section(Section {
            name: Cow::Owned(s.name.to_vec()),
            sh_type: s.sh_type,
            sh_flags: s.sh_flags & !SHF_GROUP,
            sh_addr: 0,
            sh_addralign: s.sh_addralign,
            sh_entsize: s.sh_entsize,
            link: link.map_or(Link::None, Link::Section),
            info: Info::None,
            data: match s.data {
                SectionData::NoBits { .. } => SectionData::NoBits { size: 0 },
                _ => SectionData::Bytes(Cow::Owned(Vec::new())),
            },
        });
        self.sec_by_key.insert(key, id);
        id
    }

    /// Append `bytes` (or, for NOBITS, `len` zero bytes) to an output section, aligned.
    fn append(&mut self, out: SectionId, bytes: Option<&[u8]>, len: u64, align: u64) -> u64 {
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

    /// The output clone of patched symbol `psym`, created (unplaced) and queued if needed.
    fn include(&mut self, psym: SymbolId) -> SymbolId {
        if let Some(&c) = self.clone_of.get(&psym) {
            return c;
        }
        let s = self.p.obj.symbol(psym);
        let mut st_info = s.st_info;
        // Changed functions become local: nothing else may bind to them before the livepatch
        // core has applied their relocations.
        if self.changed.contains(&psym) && s.bind() != STB_LOCAL {
            st_info = (STB_LOCAL << 4) | (st_info & 0xf);
        }
        let c = self.out.add_symbol(Symbol {
            name: Cow::Owned(s.name.to_vec()),
            st_info,
            st_other: s.st_other,
            place: SymbolPlace::Undefined,
            value: 0,
            size: s.size,
        });
        self.clone_of.insert(psym, c);
        self.queue.push_back(psym);
        // A function's `.cold` parts and prefix padding come with it.
        let si = self.p.sym(psym);
        let extra: Vec<SymbolId> = si.children.iter().copied().chain(si.prefix).collect();
        for x in extra {
            self.include(x);
        }
        self.debug(|| format!("clone {}", self.p.sym(psym).name));
        c
    }

    /// Whether patched section `sec` holds only `sym` (and its prefix), so it is copied whole.
    fn bundled(&self, sym: SymbolId, sec: SectionId) -> bool {
        let prefix = self.p.sym(sym).prefix;
        self.p
            .sec(sec)
            .ranges
            .iter()
            .all(|&(_, _, id)| id == sym || Some(id) == prefix)
    }

    /// Copy the bytes of a queued symbol and translate its relocations.
    fn place(&mut self, psym: SymbolId) {
        if !self.placed.insert(psym) {
            return;
        }
        let p = self.p;
        let s = p.obj.symbol(psym);
        let SymbolPlace::Section(psec) = s.place else {
            // Common symbols and the like: nothing to copy; refer to the name.
            let c = self.clone_of[&psym];
            let cs = self.out.symbol_mut(c);
            cs.place = s.place;
            cs.value = s.value;
            return;
        };
        // A symbol inside a chunk already copied (a prefix copied with its function).
        if let Some((out, off)) = self.map_offset(psec, s.value as i64) {
            self.set_place(psym, out, off as u64);
            return;
        }
        let sec = p.obj.section(psec);
        let size = sec.size();
        let (start, end) = if self.bundled(psym, psec) {
            (0, size)
        } else {
            let start = p
                .sym(psym)
                .prefix
                .map_or(s.value, |x| p.obj.symbol(x).value.min(s.value));
            (start, (s.value + s.size).min(size))
        };
        let link = self.linked_output(psec);
        let out = self.out_section_for(psec, link);
        let bytes = match sec.data {
            SectionData::NoBits { .. } => None,
            _ => Some(&sec.bytes()[start as usize..end as usize]),
        };
        let align = if start == 0 {
            sec.sh_addralign.max(1)
        } else {
            sec.sh_addralign.clamp(1, 64)
        };
        let out_start = self.append(out, bytes, end - start, align);
        self.chunks.entry(psec).or_default().push(Chunk {
            start,
            end,
            out,
            out_start,
        });
        self.set_place(psym, out, out_start + (s.value - start));
        if let Some(pfx) = p.sym(psym).prefix {
            if self.clone_of.contains_key(&pfx) {
                let pv = p.obj.symbol(pfx).value;
                if pv >= start {
                    self.placed.insert(pfx);
                    self.set_place(pfx, out, out_start + (pv - start));
                }
            }
        }
        let relocs = p.relocations(psec);
        for r in relocs
            .iter()
            .filter(|r| r.offset >= start && r.offset < end.max(start + 1))
        {
            let out_off = out_start + (r.offset - start);
            self.translate(psec, r, out, out_off);
        }
    }

    fn set_place(&mut self, psym: SymbolId, out: SectionId, value: u64) {
        let c = self.clone_of[&psym];
        let cs = self.out.symbol_mut(c);
        cs.place = SymbolPlace::Section(out);
        cs.value = value;
    }

    /// For `SHF_LINK_ORDER` sections: the output section of the section they are linked to.
    fn linked_output(&mut self, psec: SectionId) -> Option<SectionId> {
        let s = self.p.obj.section(psec);
        if s.sh_flags & SHF_LINK_ORDER == 0 {
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
    fn map_offset(&self, psec: SectionId, offset: i64) -> Option<(SectionId, i64)> {
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

    /// Copy the anonymous piece of `psec` holding `offset` (a switch table, one alternative's
    /// replacement code, one fixup), not the whole section: in a large object such sections
    /// hold the pieces of every function. Returns the output section.
    fn clone_piece(&mut self, psec: SectionId, offset: i64) -> SectionId {
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
        let bytes = match sec.data {
            SectionData::NoBits { .. } => None,
            _ => Some(&sec.bytes()[start as usize..end as usize]),
        };
        let out_start = self.append(out, bytes, end - start, sec.sh_addralign.max(1));
        self.chunks.entry(psec).or_default().push(Chunk {
            start,
            end,
            out,
            out_start,
        });
        self.debug(|| format!("clone {}+{start:#x}..{end:#x}", sec.name_lossy()));
        for r in p.relocations_in(psec, start, end) {
            self.translate(psec, r, out, out_start + (r.offset - start));
        }
        out
    }

    /// Copy a string into the output string section of the same name; its offset there.
    fn copy_string(&mut self, psec: SectionId, start: u64) -> (SectionId, u64) {
        let bytes = string_at(self.p.obj.section(psec).bytes(), start).to_vec();
        let out = self.out_section_for(psec, None);
        if let Some(&at) = self.strings.get(&(out, bytes.clone())) {
            return (out, at);
        }
        let mut with_nul = bytes.clone();
        with_nul.push(0);
        let at = self.append(out, Some(&with_nul), with_nul.len() as u64, 1);
        self.strings.insert((out, bytes), at);
        (out, at)
    }

    /// Copy a mergeable constant into the output constant section of the same name.
    fn copy_constant(&mut self, psec: SectionId, offset: i64) -> (SectionId, i64) {
        let sec = self.p.obj.section(psec);
        let e = sec.sh_entsize.max(1);
        let base = (offset.max(0) as u64 / e) * e;
        let data = sec.bytes();
        let end = (base + e).min(data.len() as u64);
        let bytes = data[base.min(end) as usize..end as usize].to_vec();
        let out = self.out_section_for(psec, None);
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

    /// Refuse a symbol the image cannot place (`e` says why).
    fn refuse_unpositioned(&mut self, name: &str, e: &str) {
        self.refusals.push(Refusal {
            symbol: name.to_string(),
            reason: format!("cannot find its position in the patched image: {e}"),
            remedy: "give the vmlinux (or module) built from exactly this source and configuration"
                .into(),
        });
    }

    /// sympos of a global the original object only refers to: its rank among the image's
    /// symbols of that name (statics of other units may share it), 0 without an image.
    fn global_sympos(&mut self, name: &str) -> u64 {
        let Some(source) = self.opts.sympos.clone() else {
            return 0;
        };
        match source.sympos(name, None, &[]) {
            Ok(pos) => pos,
            Err(e) => {
                self.refuse_unpositioned(name, &e);
                0
            }
        }
    }

    /// sympos of an original symbol: from the image when a source is given, else 1-based
    /// among same-named defined symbols of the original object, 0 if unique.
    fn sympos(&mut self, osym: SymbolId) -> u64 {
        let name = self.o.sym(osym).name.clone();
        if let Some(source) = self.opts.sympos.clone() {
            let o = self.o;
            let local = o.obj.symbol(osym).is_local();
            let file = o
                .sym(osym)
                .file
                .filter(|_| local)
                .map(|f| o.sym(f).name.clone());
            let scope: Vec<String> = match o.sym(osym).file.filter(|_| local) {
                Some(f) => o
                    .obj
                    .symbols()
                    .filter(|(id, s)| {
                        o.sym(*id).file == Some(f)
                            && o.sym(*id).kind == SymKind::Function
                            && s.section().is_some_and(|sec| {
                                let n = o.obj.section(sec).name_lossy();
                                o.obj.section(sec).is_alloc() && !n.starts_with(".discard")
                            })
                    })
                    .map(|(id, _)| o.sym(id).name.clone())
                    .collect(),
                None => Vec::new(),
            };
            return match source.sympos(&name, file.as_deref(), &scope) {
                Ok(pos) => pos,
                Err(e) => {
                    self.refuse_unpositioned(&name, &e);
                    0
                }
            };
        }
        let o = self.o;
        let list = self.sympos_cache.entry(name.clone()).or_insert_with(|| {
            o.by_name
                .get(&name)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&x| {
                    o.obj.symbol(x).section().is_some()
                        && !matches!(o.sym(x).kind, SymKind::Section | SymKind::File)
                })
                .collect()
        });
        if list.len() <= 1 {
            0
        } else {
            list.iter()
                .position(|&x| x == osym)
                .map_or(0, |i| i as u64 + 1)
        }
    }

    fn decide(&mut self, psec: SectionId, r: &Reloc, psym: SymbolId) -> Decision {
        let p = self.p;
        let s = p.obj.symbol(psym);
        let si = p.sym(psym);
        let objname = self.opts.objname.clone();
        let klp_type = |kind: SymKind| match kind {
            SymKind::Function => 2,
            SymKind::Object => STT_OBJECT,
            _ => STT_NOTYPE,
        };
        if self.clone_of.contains_key(&psym) || self.changed.contains(&psym) {
            // A function pointer (not a call, not a code location in a special section, and
            // to the function's start) keeps pointing at the original, so pointers stored
            // in kernel data stay valid after the patch module is unloaded.
            let code_location = matches!(
                p.sec(psec).kind,
                SecKind::Special | SecKind::SpecialAux | SecKind::Marker | SecKind::Debug
            );
            let at_start = matches!(r.target, Target::Symbol { offset: 0, .. });
            if si.kind == SymKind::Function
                && self.changed.contains(&psym)
                && !code_location
                && at_start
                && !p.is_branch(psec, r)
            {
                if let Some(o) = self.twins.of_patched(psym) {
                    let pos = self.sympos(o);
                    return Decision::Klp(objname, self.o.sym(o).name.clone(), pos, 2);
                }
            }
            return Decision::Include;
        }
        if s.place == SymbolPlace::Undefined {
            let name = si.name.clone();
            return match self.opts.symvers.lookup(&name) {
                Some(e) if e.owner == "vmlinux" => Decision::Undefined(name),
                Some(e) => Decision::Klp(e.owner, name, 0, klp_type(si.kind)),
                None => {
                    let existed = self.o.by_name.get(&name).is_some_and(|v| {
                        v.iter()
                            .any(|&x| self.o.obj.symbol(x).place == SymbolPlace::Undefined)
                    });
                    let in_image = self
                        .opts
                        .sympos
                        .as_ref()
                        .is_some_and(|img| img.defines_global(&name));
                    if existed || in_image {
                        let pos = self.global_sympos(&name);
                        Decision::Klp(objname, name, pos, klp_type(si.kind))
                    } else if klp::MODULE_PROVIDED_SYMBOLS.contains(&name.as_str()) {
                        Decision::Undefined(name)
                    } else {
                        self.warnings.push(format!(
                            "new reference to {name}, which is not exported: assumed to be defined by another object of the patch module"
                        ));
                        Decision::Undefined(name)
                    }
                }
            };
        }
        // A global label of assembly code (`SYM_CODE_START`: no type, like
        // `__x86_return_thunk`) that the running kernel has: referred to by name, never
        // copied into the module.
        if si.kind == SymKind::Other && !s.is_local() && s.section().is_some() {
            let name = si.name.clone();
            let in_orig = self.o.by_name.get(&name).is_some_and(|v| {
                v.iter().any(|&x| {
                    let xs = self.o.obj.symbol(x);
                    !xs.is_local() && xs.section().is_some()
                })
            });
            if in_orig {
                // Exported (known from a real Module.symvers): the module loader resolves it;
                // otherwise the livepatch core does.
                let exported = self.opts.symvers.is_real()
                    && self
                        .opts
                        .symvers
                        .lookup(&name)
                        .is_some_and(|e| e.owner == "vmlinux");
                if exported {
                    return Decision::Undefined(name);
                }
                let pos = self.global_sympos(&name);
                return Decision::Klp(objname, name, pos, STT_NOTYPE);
            }
        }
        if si.never_correlate
            || !matches!(si.kind, SymKind::Function | SymKind::Object)
            || self.fresh.contains(&psym)
        {
            return Decision::Include;
        }
        let Some(o) = self.twins.of_patched(psym) else {
            return Decision::Include;
        };
        let oname = self.o.sym(o).name.clone();
        if !s.is_local() && objname == "vmlinux" {
            if let Some(e) = self.opts.symvers.lookup(&oname) {
                if e.owner == "vmlinux" && self.opts.symvers.is_real() {
                    return Decision::Undefined(oname);
                }
            }
        }
        let pos = self.sympos(o);
        Decision::Klp(objname, oname, pos, klp_type(si.kind))
    }

    fn undefined_symbol(&mut self, name: &str, like: Option<SymbolId>) -> SymbolId {
        if let Some(&id) = self.undef.get(name) {
            return id;
        }
        let (bind, kind) = like.map_or((STB_GLOBAL, STT_NOTYPE), |l| {
            let s = self.p.obj.symbol(l);
            (
                if s.bind() == STB_WEAK {
                    STB_WEAK
                } else {
                    STB_GLOBAL
                },
                s.kind(),
            )
        });
        let id = self.out.add_symbol(Symbol {
            name: Cow::Owned(name.as_bytes().to_vec()),
            st_info: (bind << 4) | kind,
            st_other: 0,
            place: SymbolPlace::Undefined,
            value: 0,
            size: 0,
        });
        self.undef.insert(name.to_string(), id);
        id
    }

    fn push_reloc(&mut self, out: SectionId, r: Relocation) {
        self.out_secs
            .get_mut(&out)
            .expect("output section")
            .relocs
            .push(r);
    }

    /// Translate relocation `r` of patched section `psec` to output `(out, out_off)`.
    fn translate(&mut self, psec: SectionId, r: &Reloc, out: SectionId, out_off: u64) {
        let p = self.p;
        let bias = pc_bias(p, psec, r);
        let new = |symbol: Option<SymbolId>, addend: i64| Relocation {
            offset: out_off,
            symbol,
            r_type: r.r_type,
            addend,
        };
        match r.target {
            Target::Absolute => self.push_reloc(out, new(None, r.addend)),
            Target::String { sec, start, delta } => {
                let (osec, at) = self.copy_string(sec, start);
                let sym = self.out_secs[&osec].symbol;
                self.push_reloc(out, new(Some(sym), at as i64 + delta - bias));
            }
            Target::Constant { sec, offset } => {
                let (osec, at) = self.copy_constant(sec, offset);
                let sym = self.out_secs[&osec].symbol;
                self.push_reloc(out, new(Some(sym), at - bias));
            }
            Target::Section { sec, offset } => {
                let kind = p.sec(sec).kind;
                if p.obj.section(sec).is_exec() && kind != SecKind::SpecialAux {
                    self.refusals.push(Refusal {
                        symbol: p.obj.section(sec).name_lossy().into_owned(),
                        reason: format!(
                            "reference from {} to code at {}+{offset:#x} that belongs to no function symbol",
                            p.obj.section(psec).name_lossy(),
                            p.obj.section(sec).name_lossy()
                        ),
                        remedy: "give the code a function symbol (assembly code needs SYM_FUNC_START)".into(),
                    });
                    return;
                }
                let osec = self.clone_piece(sec, offset);
                let (_, mapped) = self.map_offset(sec, offset).unwrap_or((osec, offset));
                let sym = self.out_secs[&osec].symbol;
                self.push_reloc(out, new(Some(sym), mapped - bias));
            }
            Target::Symbol { sym, offset } => match self.decide(psec, r, sym) {
                Decision::Include => {
                    let c = self.include(sym);
                    // Where objtool reads references, keep the form the assembler chose:
                    // one through a section symbol stays one. objtool reads its `.discard.*`
                    // annotations only through section symbols (6.12 rejects anything else
                    // and then writes no ORC for the module), and takes a jump in code
                    // through a function symbol (from `.altinstr_replacement` back into
                    // its function) for a sibling call. Data references name the symbol.
                    let section_form = r.symbol.is_some_and(|s| p.sym(s).kind == SymKind::Section)
                        && (p.obj.section(psec).is_exec()
                            || p.obj.section(psec).name.starts_with(b".discard."));
                    let cs = self.out.symbol(c);
                    let holder = match cs.place {
                        SymbolPlace::Section(osec) if section_form => self
                            .out_secs
                            .get(&osec)
                            .map(|os| (os.symbol, cs.value as i64)),
                        _ => None,
                    };
                    match holder {
                        Some((secsym, at)) => {
                            self.push_reloc(out, new(Some(secsym), at + offset - bias))
                        }
                        None => self.push_reloc(out, new(Some(c), offset - bias)),
                    }
                }
                Decision::Undefined(name) => {
                    let u = self.undefined_symbol(&name, Some(sym));
                    self.push_reloc(out, new(Some(u), offset - bias));
                }
                Decision::Klp(objname, name, pos, kind) => {
                    let full = match klp_symbol_name(&objname, &name, pos) {
                        Ok(n) => n,
                        Err(e) => {
                            self.refusals.push(Refusal {
                                symbol: name.clone(),
                                reason: e,
                                remedy: "rename the symbol or the module".into(),
                            });
                            return;
                        }
                    };
                    let ks = match self.klp_syms.get(&full) {
                        Some(&k) => k,
                        None => {
                            let k = self.out.add_symbol(Symbol {
                                name: Cow::Owned(full.clone().into_bytes()),
                                st_info: (STB_WEAK << 4) | kind,
                                st_other: 0,
                                place: SymbolPlace::Undefined,
                                value: 0,
                                size: 0,
                            });
                            self.klp_syms.insert(full.clone(), k);
                            k
                        }
                    };
                    let addend = offset - bias;
                    self.push_reloc(out, new(Some(ks), addend));
                    self.klp_records.push((out, out_off, ks, addend, r.r_type));
                    self.klp_report.push(KlpReloc {
                        section: self.out.section(out).name_lossy().into_owned(),
                        offset: out_off,
                        r#type: p.arch.reloc_name(r.r_type).into_owned(),
                        symbol: full,
                        addend,
                    });
                }
            },
        }
    }

    /// Place everything queued.
    fn drain(&mut self) {
        while let Some(sym) = self.queue.pop_front() {
            self.place(sym);
        }
    }

    /// Carry the special-section entries that describe kept code.
    fn special_sections(
        &mut self,
        done: &mut BTreeSet<(SectionId, u64)>,
        stats: &mut BTreeMap<String, (usize, usize)>,
    ) -> bool {
        let p = self.p;
        let mut progressed = false;
        let specials: Vec<SectionId> = p
            .obj
            .sections()
            .filter(|(id, _)| p.sec(*id).kind == SecKind::Special)
            .map(|(id, _)| id)
            .collect();
        for psec in specials {
            let name = p.obj.section(psec).name_lossy().into_owned();
            let entries = match special::entries(p, psec) {
                Ok(e) => e,
                Err(e) => {
                    // Only an error if the section describes kept code.
                    let relevant = p
                        .relocations(psec)
                        .iter()
                        .any(|r| self.targets_kept_code(r));
                    if relevant && !self.refusals.iter().any(|r| r.symbol == name) {
                        self.refusals.push(Refusal {
                            symbol: name.clone(),
                            reason: e,
                            remedy: "report this object to the klpforge developers".into(),
                        });
                    }
                    continue;
                }
            };
            let relocs = p.relocations(psec);
            // `.orc_unwind` entries have no relocations: entry i belongs to the i-th
            // `.orc_unwind_ip` entry, so they travel together.
            let orc = if name == ".orc_unwind_ip" {
                match self.orc_partner(psec) {
                    Ok(orc) => orc,
                    Err(e) => {
                        self.refusals.push(Refusal {
                            symbol: name.clone(),
                            reason: e,
                            remedy: "report this object to the klpforge developers".into(),
                        });
                        continue;
                    }
                }
            } else {
                None
            };
            for (start, end) in entries {
                if done.contains(&(psec, start)) {
                    continue;
                }
                let here = relocs_in(relocs, start, end);
                if !self.entry_relevant(&name, here) {
                    continue;
                }
                done.insert((psec, start));
                progressed = true;
                let stat = stats.entry(name.clone()).or_default();
                if let Some(why) = self.entry_must_drop(&name, psec, here) {
                    stat.1 += 1;
                    self.warnings.push(why);
                    continue;
                }
                stat.0 += 1;
                let link = self.entry_link(psec, here);
                let out = self.out_section_for(psec, link);
                let bytes = p.obj.section(psec).bytes()[start as usize..end as usize].to_vec();
                let align = p
                    .obj
                    .section(psec)
                    .sh_addralign
                    .max(1)
                    .min(end - start)
                    .max(1);
                let at = self.append(out, Some(&bytes), end - start, align);
                self.chunks.entry(psec).or_default().push(Chunk {
                    start,
                    end,
                    out,
                    out_start: at,
                });
                for r in here {
                    self.translate(psec, r, out, at + (r.offset - start));
                }
                if let Some((orc_sec, orc_size)) = orc {
                    // check_object made sure every .orc_unwind_ip entry has its entry.
                    let i = start / (end - start);
                    let range = (i * orc_size) as usize..((i + 1) * orc_size) as usize;
                    if let Some(bytes) = p.obj.section(orc_sec).bytes().get(range) {
                        let bytes = bytes.to_vec();
                        let orc_out = self.out_section_for(orc_sec, None);
                        self.append(orc_out, Some(&bytes), orc_size, 1);
                    }
                }
            }
        }
        progressed
    }

    /// The `.orc_unwind` section paired with `.orc_unwind_ip`, and its entry size.
    fn orc_partner(&self, ip: SectionId) -> Result<Option<(SectionId, u64)>, String> {
        let p = self.p;
        let Some(orc) = p.obj.section_by_name(b".orc_unwind") else {
            return Ok(None);
        };
        let n = p.obj.section(ip).bytes().len() as u64 / 4;
        let size = p.obj.section(orc).bytes().len() as u64;
        if n == 0 || size % n != 0 {
            return Err(format!(
                ".orc_unwind ({size} bytes) does not hold one entry per .orc_unwind_ip entry ({n})"
            ));
        }
        Ok(Some((orc, size / n)))
    }

    /// For an entry of an `SHF_LINK_ORDER` section (`__patchable_function_entries`): the
    /// output section of the code it describes, which its output section must link to.
    fn entry_link(&self, psec: SectionId, relocs: &[Reloc]) -> Option<SectionId> {
        if self.p.obj.section(psec).sh_flags & SHF_LINK_ORDER == 0 {
            return None;
        }
        relocs.iter().find_map(|r| match r.target {
            Target::Symbol { sym, .. } => self
                .clone_of
                .get(&sym)
                .and_then(|&c| self.out.symbol(c).section()),
            _ => None,
        })
    }

    /// Whether a special entry describes kept code: it points into a kept function, or (for
    /// `.printk_index`, whose entries point at records naming their function only through
    /// a `__func__` string) its record names a kept function.
    fn entry_relevant(&self, name: &str, relocs: &[Reloc]) -> bool {
        if relocs.iter().any(|r| self.targets_kept_code(r)) {
            return true;
        }
        if name != ".printk_index" {
            return false;
        }
        let p = self.p;
        relocs.iter().any(|r| {
            let Target::Symbol { sym: record, .. } = r.target else {
                return false;
            };
            let rs = p.obj.symbol(record);
            let Some(rsec) = rs.section() else {
                return false;
            };
            p.relocations(rsec)
                .iter()
                .filter(|r2| r2.offset >= rs.value && r2.offset < rs.value + rs.size)
                .any(|r2| match r2.target {
                    Target::Symbol { sym, .. } if p.sym(sym).name.starts_with("__func__") => {
                        let func_name = string_at(p.symbol_bytes(sym), 0);
                        self.clone_of.keys().any(|&k| {
                            p.sym(k).kind == SymKind::Function
                                && p.sym(k).name.as_bytes() == func_name
                        })
                    }
                    _ => false,
                })
        })
    }

    /// Whether a relocation points into a function that is in the output.
    fn targets_kept_code(&self, r: &Reloc) -> bool {
        match r.target {
            Target::Symbol { sym, .. } => {
                self.p.sym(sym).kind == SymKind::Function && self.clone_of.contains_key(&sym)
            }
            _ => false,
        }
    }

    /// Entries that cannot be carried: static keys and calls owned by a module.
    fn entry_must_drop(&mut self, name: &str, psec: SectionId, relocs: &[Reloc]) -> Option<String> {
        if name != "__jump_table" && name != ".static_call_sites" {
            return None;
        }
        let p = self.p;
        let code = relocs.iter().find_map(|r| match r.target {
            Target::Symbol { sym, offset } if p.sym(sym).kind == SymKind::Function => {
                Some(format!("{}+{offset:#x}", p.sym(sym).name))
            }
            _ => None,
        })?;
        for r in relocs {
            let Target::Symbol { sym, .. } = r.target else {
                continue;
            };
            if p.sym(sym).kind == SymKind::Function {
                continue;
            }
            let decision = self.decide(psec, r, sym);
            let owner = match &decision {
                Decision::Klp(owner, ..) => owner.clone(),
                _ => continue,
            };
            if owner == "vmlinux" {
                continue;
            }
            let key = p.sym(sym).name.clone();
            if name == "__jump_table" && key.starts_with("__tracepoint_") {
                return Some(format!("{code}: disabling unsupported tracepoint {key} (its static key is owned by module {owner})"));
            }
            if name == "__jump_table"
                && (key.contains("__UNIQUE_ID_ddebug") || key.starts_with("descriptor"))
            {
                return Some(format!("{code}: disabling unsupported pr_debug() (its static key is owned by module {owner})"));
            }
            if name == ".static_call_sites" && key.starts_with("__SCK__tp_func_") {
                return Some(format!("{code}: tracepoint static call {key} left to its trampoline (key owned by module {owner})"));
            }
            let (what, remedy) = if name == "__jump_table" {
                ("static branch key", "use static_key_enabled() instead")
            } else {
                (
                    "static call key",
                    "use KLP_STATIC_CALL() (or KPATCH_STATIC_CALL()) instead",
                )
            };
            self.refusals.push(Refusal {
                symbol: key.clone(),
                reason: format!("{code}: unsupported {what} {key} owned by module {owner}: a klp relocation would be applied after the key was initialised"),
                remedy: remedy.into(),
            });
            return Some(format!("{code}: {what} {key} refused"));
        }
        None
    }

    /// Copy `import_ns=` entries of the patched `.modinfo`.
    fn import_namespaces(&mut self) {
        let Some(mi) = self.p.obj.section_by_name(b".modinfo") else {
            return;
        };
        let sec = self.p.obj.section(mi);
        let mut data = Vec::new();
        let mut seen = BTreeSet::new();
        for entry in sec.bytes().split(|&b| b == 0) {
            // Built-in objects prefix their entries with the module name (`proc.import_ns=`).
            let text = String::from_utf8_lossy(entry);
            let Some(pos) = text.find("import_ns=") else {
                continue;
            };
            if pos > 0 && !text[..pos].ends_with('.') {
                continue;
            }
            let value = text[pos..].to_string();
            if seen.insert(value.clone()) {
                data.extend_from_slice(value.as_bytes());
                data.push(0);
            }
        }
        if data.is_empty() {
            return;
        }
        self.out.add_section(Section {
            name: Cow::Borrowed(b".modinfo"),
            sh_type: SHT_PROGBITS,
            sh_flags: sec.sh_flags,
            sh_addr: 0,
            sh_addralign: 1,
            sh_entsize: 0,
            link: Link::None,
            info: Info::None,
            data: SectionData::Bytes(Cow::Owned(data)),
        });
    }

    /// Write the metadata and klp records, then finish the object.
    fn finish(mut self, sel: &Selection) -> Result<CloneResult, String> {
        let endian = self.p.obj.header.endian;
        let abs64 = self.p.arch.abs64_reloc();
        let word = |v: u64| match endian {
            klpforge_elf::Endian::Little => v.to_le_bytes(),
            klpforge_elf::Endian::Big => v.to_be_bytes(),
        };
        // klp relocation records.
        if !self.klp_records.is_empty() {
            let sec = self.new_data_section(
                klp::KLP_RELOCS_SECTION,
                SHT_PROGBITS,
                SHF_ALLOC,
                8,
                klp::KLP_RELOC_RECORD_SIZE as u64,
            );
            let records = std::mem::take(&mut self.klp_records);
            for (i, (out, off, ks, addend, r_type)) in records.into_iter().enumerate() {
                let base = (i * klp::KLP_RELOC_RECORD_SIZE) as u64;
                let mut rec = Vec::with_capacity(24);
                rec.extend_from_slice(&word(0));
                rec.extend_from_slice(&word(0));
                let t = match endian {
                    klpforge_elf::Endian::Little => r_type.to_le_bytes(),
                    klpforge_elf::Endian::Big => r_type.to_be_bytes(),
                };
                rec.extend_from_slice(&t);
                rec.extend_from_slice(&[0; 4]);
                self.append(sec, Some(&rec), 24, 8);
                let out_sym = self.out_secs[&out].symbol;
                self.push_reloc(
                    sec,
                    Relocation {
                        offset: base,
                        symbol: Some(out_sym),
                        r_type: abs64,
                        addend: off as i64,
                    },
                );
                self.push_reloc(
                    sec,
                    Relocation {
                        offset: base + 8,
                        symbol: Some(ks),
                        r_type: abs64,
                        addend,
                    },
                );
            }
        }
        // Metadata: one object record, one function record per changed function.
        let strings = self.new_data_section(
            klp::KLP_STRINGS_SECTION,
            SHT_PROGBITS,
            SHF_ALLOC | SHF_MERGE | SHF_STRINGS,
            1,
            1,
        );
        let string_at = |this: &mut Self, s: &str| -> u64 {
            let mut b = s.as_bytes().to_vec();
            b.push(0);
            this.append(strings, Some(&b), b.len() as u64, 1)
        };
        let funcs = self.new_data_section(
            klp::KLP_FUNCS_SECTION,
            SHT_PROGBITS,
            SHF_ALLOC,
            8,
            klp::KLP_FUNC_RECORD_SIZE as u64,
        );
        let str_sym = self.out_secs[&strings].symbol;
        let funcs_sym = self.out_secs[&funcs].symbol;
        let mut nr = 0u64;
        for &(p, o) in &sel.changed {
            let Some(&c) = self.clone_of.get(&p) else {
                continue;
            };
            let old = self.o.sym(o).name.clone();
            let pos = self.sympos(o);
            let name_at = string_at(&mut self, &old);
            let base = self.append(funcs, Some(&[0; 24]), 24, 8);
            let w = word(pos);
            self.out_secs.get_mut(&funcs).unwrap().data[base as usize + 16..base as usize + 24]
                .copy_from_slice(&w);
            self.push_reloc(
                funcs,
                Relocation {
                    offset: base,
                    symbol: Some(str_sym),
                    r_type: abs64,
                    addend: name_at as i64,
                },
            );
            self.push_reloc(
                funcs,
                Relocation {
                    offset: base + 8,
                    symbol: Some(c),
                    r_type: abs64,
                    addend: 0,
                },
            );
            nr += 1;
        }
        let objects = self.new_data_section(
            klp::KLP_OBJECTS_SECTION,
            SHT_PROGBITS,
            SHF_ALLOC,
            8,
            klp::KLP_OBJECT_RECORD_SIZE as u64,
        );
        let objname = self.opts.objname.clone();
        let name_at = string_at(&mut self, &objname);
        let mut rec = vec![0u8; klp::KLP_OBJECT_RECORD_SIZE];
        rec[16..24].copy_from_slice(&word(nr));
        let base = self.append(objects, Some(&rec), rec.len() as u64, 8);
        self.push_reloc(
            objects,
            Relocation {
                offset: base,
                symbol: Some(str_sym),
                r_type: abs64,
                addend: name_at as i64,
            },
        );
        self.push_reloc(
            objects,
            Relocation {
                offset: base + 8,
                symbol: Some(funcs_sym),
                r_type: abs64,
                addend: 0,
            },
        );
        for &(kind, f) in &sel.callbacks {
            let Some(&c) = self.clone_of.get(&f) else {
                continue;
            };
            let slot = crate::CallbackKind::ALL
                .iter()
                .position(|&k| k == kind)
                .unwrap_or(0) as u64;
            self.push_reloc(
                objects,
                Relocation {
                    offset: base + 24 + 8 * slot,
                    symbol: Some(c),
                    r_type: abs64,
                    addend: 0,
                },
            );
        }
        // The author's state declarations, as they were.
        if !sel.states.is_empty() {
            let states = self.new_data_section(
                klp::KLP_STATES_SECTION,
                SHT_PROGBITS,
                SHF_ALLOC,
                8,
                klp::KLP_STATE_RECORD_SIZE as u64,
            );
            for state in &sel.states {
                let mut rec = word(state.id).to_vec();
                rec.extend_from_slice(&match endian {
                    klpforge_elf::Endian::Little => state.version.to_le_bytes(),
                    klpforge_elf::Endian::Big => state.version.to_be_bytes(),
                });
                rec.extend_from_slice(&[0; 4]);
                self.append(states, Some(&rec), rec.len() as u64, 8);
            }
        }
        self.import_namespaces();
        // Keep the object's stack marking (ld warns about an executable stack without it).
        if let Some(note) = self.p.obj.section_by_name(b".note.GNU-stack") {
            let flags = self.p.obj.section(note).sh_flags;
            self.out.add_section(Section {
                name: Cow::Borrowed(b".note.GNU-stack"),
                sh_type: SHT_PROGBITS,
                sh_flags: flags,
                sh_addr: 0,
                sh_addralign: 1,
                sh_entsize: 0,
                link: Link::None,
                info: Info::None,
                data: SectionData::Bytes(Cow::Owned(Vec::new())),
            });
        }

        // Section contents and relocation sections.
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
                self.out.add_section(Section {
                    name: Cow::Owned(name),
                    sh_type: SHT_RELA,
                    sh_flags: SHF_INFO_LINK,
                    sh_addr: 0,
                    sh_addralign: 8,
                    sh_entsize: 24,
                    link: Link::None,
                    info: Info::Section(id),
                    data: SectionData::Relocations {
                        rela: true,
                        entries: relocs,
                    },
                });
            }
        }
        // Unplaced clones would be dangling: that is a bug, not bad input.
        for (&psym, &c) in &self.clone_of {
            if self.out.symbol(c).place == SymbolPlace::Undefined
                && self.p.obj.symbol(psym).place != SymbolPlace::Undefined
            {
                return Err(format!(
                    "internal error: {} was included but never placed",
                    self.p.sym(psym).name
                ));
            }
        }
        let mut output_functions: Vec<String> = self
            .out
            .symbols()
            .filter(|(_, s)| s.kind() == 2 && s.section().is_some())
            .map(|(_, s)| s.name_lossy().into_owned())
            .filter(|n| !n.starts_with("__pfx_") && !n.starts_with("__cfi_"))
            .collect();
        output_functions.sort();
        Ok(CloneResult {
            obj: self.out,
            output_functions,
            klp_relocs: self.klp_report,
            special: Vec::new(),
            refusals: self.refusals,
            warnings: self.warnings,
        })
    }

    fn new_data_section(
        &mut self,
        name: &str,
        sh_type: u32,
        flags: u64,
        align: u64,
        entsize: u64,
    ) -> SectionId {
        self.add_out_section(Section {
            name: Cow::Owned(name.as_bytes().to_vec()),
            sh_type,
            sh_flags: flags,
            sh_addr: 0,
            sh_addralign: align,
            sh_entsize: entsize,
            link: Link::None,
            info: Info::None,
            data: SectionData::Bytes(Cow::Owned(Vec::new())),
        })
    }

    /// Add an output section with its section symbol and an empty buffer for its contents.
    fn add_out_section(&mut self, section: Section<'static>) -> SectionId {
        let id = self.out.add_section(section);
        let symbol = self.out.add_symbol(Symbol {
            name: Cow::Borrowed(b""),
            st_info: (STB_LOCAL << 4) | STT_SECTION,
            st_other: 0,
            place: SymbolPlace::Section(id),
            value: 0,
            size: 0,
        });
        self.out_secs.insert(
            id,
            OutSection {
                data: Vec::new(),
                relocs: Vec::new(),
                symbol,
            },
        );
        id
    }
}

/// Build the diff object for `sel`.
pub fn clone(
    o: &ObjInfo<'_, '_>,
    p: &ObjInfo<'_, '_>,
    twins: &Twins,
    sel: &Selection,
    opts: &DiffOptions,
) -> Result<CloneResult, String> {
    let mut c = Cloner::new(o, p, twins, sel, opts);
    for &(f, _) in &sel.changed {
        c.include(f);
    }
    for &f in &sel.new_functions {
        c.include(f);
    }
    for &d in &sel.new_data {
        c.include(d);
    }
    for &(_, f) in &sel.callbacks {
        c.include(f);
    }
    for &f in &sel.through_callers {
        c.include(f);
    }
    let mut done = BTreeSet::new();
    let mut stats = BTreeMap::new();
    loop {
        c.drain();
        if !c.special_sections(&mut done, &mut stats) {
            break;
        }
    }
    c.drain();
    let mut result = c.finish(sel)?;
    result.special = stats
        .into_iter()
        .map(|(section, (kept, dropped))| SpecialStat {
            section,
            kept,
            dropped,
        })
        .collect();
    Ok(result)
}
