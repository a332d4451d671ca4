//! Building the diff object: the changed and new functions with everything they need.
//!
//! Starting from the selected functions, every reference is examined (`Cloner::translate`):
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
//!
//! This module holds the cloner's state and its drain loop (queue a symbol, copy it, translate
//! its relocations, which queues more); the other jobs have their own files:
//!
//! * `layout`: the output sections and what is appended to them (symbols' bytes, anonymous
//!   pieces, strings, constants), and their final contents and relocation sections;
//! * `decide`: how each reference is handled, `sympos`, and the symbols references use;
//! * `entries`: carrying special-section entries (which ones is [`crate::special`]'s call);
//! * `metadata`: the `.klp_forge.*` records the module step reads;
//! * `anchors`: section anchors in cloned code (refused unless the kernel's layout matches).

mod anchors;
mod decide;
mod entries;

pub use entries::SpecialIndex;
mod layout;
mod metadata;

use crate::HashMap;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use klpforge_elf::{ElfObject, Relocation, SectionId, Symbol, SymbolId, SymbolPlace};
use object::elf;

use crate::analyze::{ObjInfo, Reloc, SecKind, SymKind};
use crate::correlate::Twins;
use crate::refs::{pc_bias, Target};
use crate::refusal::{refusal, Refusal};
use crate::select::Selection;
use crate::DiffOptions;

use decide::Decision;
use layout::{Chunk, OutSection, SectionKey};
use metadata::KlpRecord;

/// One klp relocation, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KlpReloc {
    // Fields in alphabetical order: the report's key order.
    /// Addend.
    pub addend: i64,
    /// Offset within the section.
    pub offset: u64,
    /// The output section the relocation applies to.
    pub section: String,
    /// The klp symbol.
    pub symbol: String,
    /// Relocation type name.
    pub r#type: String,
}

/// Special-section statistics, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecialStat {
    // Fields in alphabetical order: the report's key order.
    /// Entries dropped.
    pub dropped: usize,
    /// Entries kept.
    pub kept: usize,
    /// Section name.
    pub section: String,
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

/// The cloning state.
pub struct Cloner<'a, 'oi, 'o, 'pi, 'p> {
    o: &'a ObjInfo<'oi, 'o>,
    p: &'a ObjInfo<'pi, 'p>,
    twins: &'a Twins,
    opts: &'a DiffOptions,
    changed: BTreeSet<SymbolId>,
    /// Every function whose code the module carries (changed, new, replaced through its
    /// callers, and their `.cold` parts).
    carried_code: crate::HashSet<SymbolId>,
    /// Changed read-only data the module gets its own copy of.
    fresh: BTreeSet<SymbolId>,
    /// Unchanged functions the module carries because carried code calls them as functions
    /// of the same unit ([`decide::unit_local_callees`]).
    unit_local: BTreeSet<SymbolId>,
    /// Every included symbol, in the order included (what the special entries follow).
    included: Vec<SymbolId>,
    out: ElfObject<'static>,
    /// Contents and relocations of the output sections being filled.
    out_secs: BTreeMap<SectionId, OutSection>,
    sec_by_key: HashMap<SectionKey, SectionId>,
    /// Patched symbol → its clone in the output.
    clone_of: HashMap<SymbolId, SymbolId>,
    /// Included symbols not yet placed.
    queue: VecDeque<SymbolId>,
    placed: BTreeSet<SymbolId>,
    /// Where the copied stretches of each patched section landed.
    chunks: HashMap<SectionId, Vec<Chunk>>,
    undef: HashMap<String, SymbolId>,
    klp_syms: HashMap<String, SymbolId>,
    /// Strings and constants already copied, by output section and bytes.
    strings: HashMap<(SectionId, Vec<u8>), u64>,
    klp_records: Vec<KlpRecord>,
    klp_report: Vec<KlpReloc>,
    /// Special-section entries already examined: (patched section, entry start).
    carried: BTreeSet<(SectionId, u64)>,
    special_stats: BTreeMap<String, SpecialStat>,
    refusals: Vec<Refusal>,
    warnings: Vec<String>,
    sympos_cache: HashMap<String, Vec<SymbolId>>,
}

/// Whether objtool looks for jump tables in a section of this name: switch tables in
/// `.rodata` and `.rodata.<function>` (not strings), computed-goto tables the kernel annotates
/// into `.data.rel.ro.c_jump_table`.
fn objtool_jump_tables(name: &[u8]) -> bool {
    let strings = name.windows(6).any(|w| w == b".str1.");
    (name.starts_with(b".rodata") && !strings) || name.starts_with(b".data.rel.ro.c_jump_table")
}

impl<'a, 'oi, 'o, 'pi, 'p> Cloner<'a, 'oi, 'o, 'pi, 'p> {
    /// Prepare to clone from `p` (patched), with `o` (original) for klp names.
    pub fn new(
        o: &'a ObjInfo<'oi, 'o>,
        p: &'a ObjInfo<'pi, 'p>,
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
            out.add_symbol(Symbol::file(p.obj.symbol(file).name.to_vec()));
        }
        let roots: Vec<SymbolId> = sel
            .changed
            .iter()
            .map(|c| c.0)
            .chain(sel.new_functions.iter().copied())
            .collect();
        Cloner {
            o,
            p,
            twins,
            opts,
            changed: sel.changed.iter().map(|c| c.0).collect(),
            carried_code: crate::code_bound::carried_functions(p, sel),
            fresh: sel.fresh_data.iter().copied().collect(),
            unit_local: decide::unit_local_callees(p, twins, &roots),
            included: Vec::new(),
            out,
            out_secs: BTreeMap::new(),
            sec_by_key: HashMap::default(),
            clone_of: HashMap::default(),
            queue: VecDeque::new(),
            placed: BTreeSet::new(),
            chunks: HashMap::default(),
            undef: HashMap::default(),
            klp_syms: HashMap::default(),
            strings: HashMap::default(),
            klp_records: Vec::new(),
            klp_report: Vec::new(),
            carried: BTreeSet::new(),
            special_stats: BTreeMap::new(),
            refusals: Vec::new(),
            warnings: Vec::new(),
            sympos_cache: HashMap::default(),
        }
    }

    fn debug(&self, msg: impl FnOnce() -> String) {
        if self.opts.debug {
            log::debug!("{}", msg());
        }
    }

    /// The output clone of patched symbol `psym`, created (unplaced) and queued if needed.
    fn include(&mut self, psym: SymbolId) -> SymbolId {
        if let Some(&c) = self.clone_of.get(&psym) {
            return c;
        }
        let s = self.p.obj.symbol(psym);
        let mut clone = Symbol {
            name: Cow::Owned(s.name.to_vec()),
            st_info: s.st_info,
            st_other: s.st_other,
            place: SymbolPlace::Undefined,
            value: 0,
            size: s.size,
        };
        // Changed functions become local: nothing else may bind to them before the livepatch
        // core has applied their relocations.
        if self.changed.contains(&psym) && s.bind() != elf::STB_LOCAL.0 {
            clone.set_bind(elf::STB_LOCAL.0);
        }
        let c = self.out.add_symbol(clone);
        self.clone_of.insert(psym, c);
        self.included.push(psym);
        self.queue.push_back(psym);
        // A function's `.cold` parts and prefix padding come with it.
        let si = self.p.sym(psym);
        let extra: Vec<SymbolId> = self
            .p
            .children(psym)
            .iter()
            .copied()
            .chain(si.prefix)
            .collect();
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
            .ranges(sec)
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
        // A symbol inside a chunk already copied (a prefix copied with its function); never
        // one that only starts where a copied chunk ends (the next function of a section
        // shared by several, which still has to be copied).
        let inside = s.size == 0 || self.copied(psec, s.value, s.value.saturating_add(s.size));
        if let Some((out, off)) = self.map_offset(psec, s.value as i64).filter(|_| inside) {
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
        let align = if start == 0 {
            sec.sh_addralign.max(1)
        } else {
            sec.sh_addralign.clamp(1, 64)
        };
        if sec.is_exec() {
            self.refuse_unrelocated_exits(psym, psec, start, end);
            self.refuse_moved_anchors(psym, psec, start, end);
        }
        let out_start = self.copy_chunk(psec, start, end, out, align);
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
            .filter(|r| r.offset() >= start && r.offset() < end.max(start + 1))
        {
            let out_off = out_start + (r.offset() - start);
            self.translate(psec, r, out, out_off);
        }
    }

    fn set_place(&mut self, psym: SymbolId, out: SectionId, value: u64) {
        let c = self.clone_of[&psym];
        let cs = self.out.symbol_mut(c);
        cs.place = SymbolPlace::Section(out);
        cs.value = value;
    }

    /// Translate relocation `r` of patched section `psec` to output `(out, out_off)`.
    pub(super) fn translate(&mut self, psec: SectionId, r: &Reloc, out: SectionId, out_off: u64) {
        let p = self.p;
        let r = &self.label_in_carried_code(r);
        let bias = pc_bias(p, psec, r.offset(), r.r_type);
        let new = |symbol: Option<SymbolId>, addend: i64| Relocation {
            offset: out_off,
            symbol,
            r_type: r.r_type,
            addend,
        };
        // Read-only data reached through a section anchor: the module carries the whole
        // section, so every displacement from the anchor finds what the patched object has.
        if let Some(a) = p
            .anchor(psec, r)
            .filter(|a| p.sec(a.sec).kind == SecKind::Rodata)
        {
            let (osec, at) = self.clone_whole(a.sec);
            let sym = self.section_symbol(osec);
            self.push_reloc(
                out,
                new(
                    Some(sym),
                    (at as i64).wrapping_add(a.offset).wrapping_sub(bias),
                ),
            );
            return;
        }
        match r.target {
            Target::Absolute { addend } => self.push_reloc(out, new(None, addend)),
            Target::String { sec, start, delta } => {
                let (osec, at) = self.copy_string(sec, start.into());
                let sym = self.section_symbol(osec);
                // Addends are modular (a corrupt one must not overflow).
                let addend = (at as i64).wrapping_add(delta.into()).wrapping_sub(bias);
                self.push_reloc(out, new(Some(sym), addend));
            }
            Target::Constant { sec, offset } => {
                let (osec, at) = self.copy_constant(sec, offset);
                let sym = self.section_symbol(osec);
                self.push_reloc(out, new(Some(sym), at - bias));
            }
            Target::Section { sec, offset } => {
                let kind = p.sec(sec).kind;
                if p.obj.section(sec).is_exec() && kind != SecKind::SpecialAux {
                    self.refusals.push(refusal(
                        &p.obj.section(sec).name_lossy(),
                        format!(
                            "reference from {} to code at {}+{offset:#x} that belongs to no function symbol",
                            p.obj.section(psec).name_lossy(),
                            p.obj.section(sec).name_lossy()
                        ),
                        "give the code a function symbol (assembly code needs SYM_FUNC_START)",
                    ));
                    return;
                }
                let osec = self.clone_piece(sec, offset);
                let (_, mapped) = self.map_offset(sec, offset).unwrap_or((osec, offset));
                let sym = self.section_symbol(osec);
                self.push_reloc(out, new(Some(sym), mapped - bias));
            }
            Target::Symbol { sym, offset } => match self.decide(psec, r, sym) {
                Decision::Undefined(ref name)
                | Decision::Klp(decide::KlpTarget { ref name, .. })
                    if !p.arch.linked_into_every_module(name) && self.breaks_toc(psec, r) =>
                {
                    let site = p
                        .symbol_at(psec, r.offset() as i64)
                        .map(|f| {
                            let at = r.offset() - p.obj.symbol(f).value;
                            format!("{}+{at:#x}", p.sym(f).name)
                        })
                        .unwrap_or_else(|| {
                            format!("{}+{:#x}", p.obj.section(psec).name_lossy(), r.offset())
                        });
                    let caller = site.split('+').next().unwrap_or_default().to_string();
                    self.refusals.push(refusal(
                        &caller,
                        format!(
                            "sibling call (a branch without link) at {site} to {}, which stays in the kernel: from the livepatch module it goes through the loader's stub, which switches the TOC pointer (r2), and nothing restores it for {caller}'s caller",
                            p.sym(sym).name
                        ),
                        format!(
                            "make it a real call: add __attribute__((optimize(\"no-optimize-sibling-calls\"))) to {caller}"
                        ),
                    ));
                }
                Decision::Include => {
                    let c = self.include(sym);
                    // Where objtool reads references, keep the form the assembler chose:
                    // one through a section symbol stays one. objtool reads its `.discard.*`
                    // annotations only through section symbols (6.12 rejects anything else
                    // and then writes no ORC for the module), takes a jump in code
                    // through a function symbol (from `.altinstr_replacement` back into
                    // its function) for a sibling call, and reads a jump table's entries
                    // (`.rodata*`, `.data.rel.ro.c_jump_table`) as section offsets. Other
                    // data references name the symbol.
                    let psec_name = &p.obj.section(psec).name;
                    let section_form = p
                        .written_symbol(psec, r)
                        .is_some_and(|s| p.sym(s).kind == SymKind::Section)
                        && (p.obj.section(psec).is_exec()
                            || psec_name.starts_with(b".discard.")
                            || objtool_jump_tables(psec_name));
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
                        // Not placed yet: the section form once it is.
                        None if section_form && cs.place == SymbolPlace::Undefined => {
                            self.push_reloc_section_form(out, new(Some(c), offset - bias))
                        }
                        None => self.push_reloc(out, new(Some(c), offset - bias)),
                    }
                }
                Decision::Undefined(name) => {
                    let u = self.undefined_symbol(&name, sym);
                    self.push_reloc(out, new(Some(u), offset - bias));
                }
                Decision::Klp(target) => {
                    self.klp_reference(target, new(None, offset - bias), out);
                }
            },
        }
    }

    /// A reference to a label inside code the module carries (an `asm` label in a changed
    /// function) refers to that code's place in the copy, not to the running kernel's label:
    /// `r` with its target moved to the function around the label.
    fn label_in_carried_code(&self, r: &Reloc) -> Reloc {
        let mut moved = *r;
        if let Target::Symbol { sym, offset } = r.target {
            if let Some((f, at)) = self.p.inside_function(sym, offset) {
                if f != sym && self.carried_code.contains(&f) {
                    moved.target = Target::Symbol { sym: f, offset: at };
                }
            }
        }
        moved
    }

    /// Refuse code `[start, end)` of `psec` (the function `psym`) when one of its branches or
    /// calls leaves the range with no relocation: the assembler resolved it against another
    /// function of the same section (an object built without function sections), and the
    /// displacement would point nowhere once the code moves into the module.
    fn refuse_unrelocated_exits(&mut self, psym: SymbolId, psec: SectionId, start: u64, end: u64) {
        let p = self.p;
        let Some(code) = p.code(psec) else { return };
        let data = p.obj.section(psec).bytes();
        let relocs = p.relocations(psec);
        for insn in code.range(start, end) {
            let (a, b) = (insn.offset(), insn.end());
            if !crate::analyze::relocs_in(relocs, a, b).is_empty() {
                continue;
            }
            let target = insn.branch().map(|br| br.target).or_else(|| {
                if p.arch.decoder_gives_branches() {
                    return None;
                }
                data.get(a as usize..b as usize)
                    .and_then(|bytes| p.arch.relative_branch_target(bytes, a))
            });
            let Some(t) = target.filter(|&t| t < start as i64 || t >= end as i64) else {
                continue;
            };
            let name = &p.sym(psym).name;
            let callee = p.symbol_at(psec, t).map_or_else(
                || format!("{}+{t:#x}", p.obj.section(psec).name_lossy()),
                |s| p.sym(s).name.to_string(),
            );
            self.refusals.push(refusal(
                name,
                format!(
                    "branch at {name}{} to {callee} without a relocation: the assembler resolved it within {} (the object was built without function sections), and the code cannot move into the module",
                    anchors::signed_hex((a as i64).wrapping_sub(p.obj.symbol(psym).value as i64)),
                    p.obj.section(psec).name_lossy()
                ),
                "build the object with -ffunction-sections (the kernel's command for it ends in -fno-function-sections)",
            ));
            return;
        }
    }

    /// Whether relocation `r` of code section `psec` is a sibling call that breaks the TOC
    /// when its target stays in the kernel ([`klpforge_arch::Arch::sibling_call_breaks_toc`]).
    fn breaks_toc(&self, psec: SectionId, r: &Reloc) -> bool {
        let p = self.p;
        if !p.obj.section(psec).is_exec() {
            return false;
        }
        let insn = match p.insn_holding(psec, r.offset()) {
            Some((bytes, _)) => Some(bytes),
            None => p.obj.section(psec).bytes().get(r.offset() as usize..),
        };
        insn.is_some_and(|bytes| p.arch.sibling_call_breaks_toc(bytes, r.r_type))
    }

    /// Place everything queued.
    fn drain(&mut self) {
        while let Some(sym) = self.queue.pop_front() {
            self.place(sym);
        }
    }

    /// Write the metadata and klp records, then finish the object.
    fn finish(mut self, sel: &Selection) -> Result<CloneResult, String> {
        self.write_metadata(sel);
        self.write_sections();
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
            .filter(|(_, s)| s.kind() == elf::STT_FUNC.0 && s.section().is_some())
            .map(|(_, s)| s.name_lossy().into_owned())
            .filter(|n| !n.starts_with("__pfx_") && !n.starts_with("__cfi_"))
            .collect();
        output_functions.sort();
        Ok(CloneResult {
            obj: self.out,
            output_functions,
            klp_relocs: self.klp_report,
            special: self.special_stats.into_values().collect(),
            refusals: self.refusals,
            warnings: self.warnings,
        })
    }
}

/// Build the diff object for `sel`.
pub fn clone(
    o: &ObjInfo<'_, '_>,
    p: &ObjInfo<'_, '_>,
    twins: &Twins,
    sel: &Selection,
    opts: &DiffOptions,
    index: &SpecialIndex,
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
    // Carried entries reference more code and data, which may make more entries relevant.
    loop {
        c.drain();
        if !c.carry_special_entries(index) {
            break;
        }
    }
    c.drain();
    c.finish(sel)
}
