//! Facts about one object that every later phase needs: what each section is for, which
//! symbol owns which bytes, FILE scopes, stable names (compiler counters stripped), `.cold`
//! parents, which symbols must never be correlated with the other build, and what every
//! relocation refers to ([`refs`]).

pub mod refs;

use crate::HashMap;
use std::borrow::Cow;
use std::cmp::Ordering;

use xxhash_rust::xxh3::xxh3_64;

use klpforge_arch::Arch;
use klpforge_elf::{ElfObject, Relocation, SectionData, SectionId, SymbolId, SymbolPlace};

use crate::stable_name::{cold_parent, stable_name, static_local_base};

/// What a section holds, as far as differencing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecKind {
    /// Executable code.
    Text,
    /// Writable data.
    Data,
    /// Read-only data.
    Rodata,
    /// Zero-initialised data.
    Bss,
    /// NUL-terminated strings (`SHF_STRINGS`): referenced by content.
    Strings,
    /// Mergeable constants (`.rodata.cst*`): referenced by content.
    Constants,
    /// An array of per-code-location entries (`__bug_table`, `__jump_table`, ...).
    Special,
    /// Code or data only reachable through special entries (`.altinstr_replacement`, ...).
    SpecialAux,
    /// Debugging and unwinding information, comments, notes.
    Debug,
    /// Markers of the patch author for kpatch or upstream klp-build (callbacks, ignore, force).
    Marker,
    /// Sections the diff does not look at (`.modinfo`, `.discard.addressable`, groups, ...).
    Other,
    /// Relocation sections, symbol and string tables.
    Meta,
}

impl SecKind {
    /// Whether a reference from a section of this kind is a use at run time (code, data,
    /// replacement code) rather than a record describing code (special entries), a marker,
    /// debugging information or metadata.
    pub fn uses_at_run_time(self) -> bool {
        !matches!(
            self,
            SecKind::Special | SecKind::Debug | SecKind::Meta | SecKind::Other | SecKind::Marker
        )
    }
}

/// Sections that are arrays of entries describing code locations.
pub const SPECIAL_SECTIONS: &[&str] = &[
    "__bug_table",
    "__jump_table",
    ".altinstructions",
    "__ex_table",
    ".static_call_sites",
    "__mcount_loc",
    "__patchable_function_entries",
    ".smp_locks",
    ".parainstructions",
    ".printk_index",
    ".kcfi_traps",
    ".call_sites",
    ".retpoline_sites",
    ".return_sites",
    ".ibt_endbr_seal",
    ".orc_unwind",
    ".orc_unwind_ip",
    "__tracepoints_ptrs",
    // Function attributes the module loader reads from every module: NOKPROBE_SYMBOL (no
    // kprobe may be placed in the function) and ALLOW_ERROR_INJECTION.
    "_kprobe_blacklist",
    "_error_injection_whitelist",
    ".s390_indirect_jump",
    ".s390_indirect_call",
    ".s390_indirect_branches",
    ".s390_return_reg",
    ".s390_return_mem",
    "__ftr_fixup",
    "__mmu_ftr_fixup",
    "__fw_ftr_fixup",
    "__lwsync_fixup",
    "__barrier_nospec_fixup",
];

/// Sections referenced only from special entries.
pub const SPECIAL_AUX_SECTIONS: &[&str] = &[".altinstr_replacement", ".altinstr_aux", ".fixup"];

/// Name prefixes of function-scope statics that have no identity worth keeping: a fresh copy
/// in the patch module is correct (WARN_ONCE flags, `__func__` strings, lockdep keys, printk
/// index entries, ratelimit state, dynamic-debug descriptors, switch tables).
const UNCORRELATED_STATICS: &[&str] = &[
    "__already_done",
    "__func__",
    "__FUNCTION__",
    "__key",
    "__warned",
    "_entry",
    "_entry_ptr",
    "_rs",
    "descriptor",
    "CSWTCH",
    "__print_once",
    "__print_fmt",
];

/// What a symbol is, for differencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymKind {
    /// `STT_FUNC` (or `STT_GNU_IFUNC`).
    Function,
    /// `STT_OBJECT` or `STT_TLS`, and `STT_COMMON`.
    Object,
    /// `STT_SECTION`.
    Section,
    /// `STT_FILE`.
    File,
    /// `STT_NOTYPE` and anything else.
    Other,
}

/// What a reference to a symbol is hashed by: facts of the symbol and its section, kept
/// together in a byte ([`ObjInfo::target_class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetClass(u8);

impl TargetClass {
    const ALTINSTR_AUX: u8 = 1;
    const BY_CONTENT: u8 = 2;
    const NEVER_CORRELATE: u8 = 4;
    const IN_ANCHORED: u8 = 8;
    const NAMED: u8 = 16;

    /// Whether a reference to `sym` is to it by name (not a section symbol, a local label or
    /// a `.L` symbol, which stand for whatever lies at their offset): known before the
    /// analysis resolves anything ([`crate::refs::resolve`] asks it of every relocation).
    fn named(info: &ObjInfo<'_, '_>, sym: SymbolId) -> TargetClass {
        let si = info.sym(sym);
        let label = si.kind == SymKind::Other && info.obj.symbol(sym).is_local();
        let named = si.kind != SymKind::Section && !label && !si.name.starts_with(".L");
        TargetClass(if named { Self::NAMED } else { 0 })
    }

    fn of(info: &ObjInfo<'_, '_>, sym: SymbolId) -> TargetClass {
        let si = info.sym(sym);
        let named = info.target_class(sym).0 & Self::NAMED;
        let Some(sec) = info.obj.symbol(sym).section() else {
            return TargetClass(
                named
                    | if si.never_correlate {
                        Self::NEVER_CORRELATE
                    } else {
                        0
                    },
            );
        };
        let mut bits = named;
        if si.never_correlate {
            bits |= Self::NEVER_CORRELATE;
        }
        if info.is_altinstr_aux(sec) {
            bits |= Self::ALTINSTR_AUX;
        }
        if info.is_anchored(sec) {
            bits |= Self::IN_ANCHORED;
        }
        // Never-correlated data, and read-only data (what the code reads is what matters,
        // and a fresh copy can carry new contents).
        let data = !matches!(si.kind, SymKind::Function | SymKind::Section);
        if data
            && (si.never_correlate
                || (si.kind == SymKind::Object && info.sec(sec).kind == SecKind::Rodata))
        {
            bits |= Self::BY_CONTENT;
        }
        TargetClass(bits)
    }

    /// The symbol is in an `.altinstr_aux` section.
    pub fn altinstr_aux(self) -> bool {
        self.0 & Self::ALTINSTR_AUX != 0
    }

    /// A reference to it is hashed by the content of its bytes.
    pub fn by_content(self) -> bool {
        self.0 & Self::BY_CONTENT != 0
    }

    /// It is never correlated ([`SymInfo::never_correlate`]).
    pub fn never_correlate(self) -> bool {
        self.0 & Self::NEVER_CORRELATE != 0
    }

    /// A reference to it is to it by name ([`TargetClass::named`]).
    pub fn is_named(self) -> bool {
        self.0 & Self::NAMED != 0
    }

    /// It is in a section code may reach through a section anchor ([`ObjInfo::anchor`]).
    pub fn in_anchored(self) -> bool {
        self.0 & Self::IN_ANCHORED != 0
    }
}

/// Per-symbol facts.
#[derive(Debug, Clone)]
pub struct SymInfo<'a> {
    /// Name, borrowed from the object (`diff` refuses an object with a name that is not
    /// UTF-8: no compiler writes one).
    pub name: &'a str,
    /// Kind.
    pub kind: SymKind,
    /// The FILE symbol whose scope a local symbol is in.
    pub file: Option<SymbolId>,
    /// Must be cloned fresh rather than correlated.
    pub never_correlate: bool,
    /// For a `.cold` split-off: the function it belongs to.
    pub parent: Option<SymbolId>,
    /// A `__pfx_`/`__cfi_` padding symbol that precedes this function.
    pub prefix: Option<SymbolId>,
    /// A function-scope static (`name.N`), correlated by its users.
    pub static_local: bool,
    /// The stable name ([`crate::stable_name`]) is not the name itself: it is kept apart
    /// ([`ObjInfo::stable_name`]).
    has_stable: bool,
}

// A kernel object has hundreds of thousands of symbols: keep each symbol's facts at four words.
const _: () = assert!(std::mem::size_of::<SymInfo<'static>>() == 32);

/// Per-section facts.
#[derive(Debug, Clone)]
pub struct SecInfo {
    /// What the section holds.
    pub kind: SecKind,
    /// Part of `__init`/`__exit` code or data: already run and freed, or only run at unload.
    pub init: bool,
    /// Its records carry `__LINE__` in their unrelocated bytes ([`LINE_RECORD_SECTIONS`],
    /// and UBSAN's source locations, `.data..Lubsan_data*`).
    pub line_records: bool,
    /// The largest size among its [`ObjInfo::ranges`] (how far back a symbol containing an
    /// offset can start).
    pub max_len: u32,
    /// Its `STT_SECTION` symbol.
    pub section_symbol: Option<SymbolId>,
}

/// Sections of records that carry `__LINE__` in their unrelocated bytes (the checksums leave
/// their content out of the line-insensitive sum).
pub const LINE_RECORD_SECTIONS: &[&str] = &["__dyndbg", "__verbose", ".printk_index"];

/// The sections gcc groups objects of into section-anchor blocks: its default data sections
/// (all of a plain object's data; anonymous constants and `.LC` initialisers even with
/// `-fdata-sections`). Objects of named sections (`__section(...)`, `-fdata-sections`'
/// `.data.NAME`) are reached one by one, each with its own relocation.
pub const ANCHORED_SECTIONS: &[&[u8]] = &[
    b".data",
    b".bss",
    b".rodata",
    b".data.rel",
    b".data.rel.local",
    b".data.rel.ro",
    b".data.rel.ro.local",
];

/// An address a function puts into a register as a section anchor (see [`ObjInfo::anchor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Anchor {
    /// The shared data section.
    pub sec: SectionId,
    /// The anchor's offset in it.
    pub offset: i64,
}

/// A list per section, stored flat: a kernel has 130,000 sections, most with an empty list,
/// and a vector each cost more than their contents.
#[derive(Debug)]
pub struct PerSection<T> {
    /// `starts[i]..starts[i + 1]`: where the list of section arena slot `i` lies in `values`.
    starts: Vec<u32>,
    values: Vec<T>,
}

impl<T> Default for PerSection<T> {
    fn default() -> Self {
        PerSection {
            starts: vec![0],
            values: Vec::new(),
        }
    }
}

impl<T> PerSection<T> {
    /// One list per section arena slot.
    fn from_lists(lists: Vec<Vec<T>>) -> Self {
        let mut out = PerSection {
            starts: Vec::with_capacity(lists.len() + 1),
            values: Vec::with_capacity(lists.iter().map(Vec::len).sum()),
        };
        out.starts.push(0);
        for list in lists {
            out.values.extend(list);
            out.starts.push(out.values.len() as u32);
        }
        out
    }

    /// One list per section arena slot of `sections`, each appended by `fill(slot, values)`
    /// (`capacity`: all the values there will be).
    fn build(sections: usize, capacity: usize, mut fill: impl FnMut(usize, &mut Vec<T>)) -> Self {
        let mut out = PerSection {
            starts: Vec::with_capacity(sections + 1),
            values: Vec::with_capacity(capacity),
        };
        out.starts.push(0);
        for i in 0..sections {
            fill(i, &mut out.values);
            out.starts.push(out.values.len() as u32);
        }
        out
    }

    /// One list per section arena slot of `sections`, from `(slot, value)` pairs (stably
    /// sorted by slot here: each list keeps the pairs' order).
    fn from_pairs(sections: usize, mut pairs: Vec<(usize, T)>) -> Self {
        pairs.sort_by_key(|&(i, _)| i);
        let mut out = PerSection {
            starts: Vec::with_capacity(sections + 1),
            values: Vec::with_capacity(pairs.len()),
        };
        out.starts.push(0);
        let mut pairs = pairs.into_iter().peekable();
        for i in 0..sections {
            while let Some((_, v)) = pairs.next_if(|&(j, _)| j == i) {
                out.values.push(v);
            }
            out.starts.push(out.values.len() as u32);
        }
        out
    }

    /// The list of section arena slot `index` (empty past the last).
    pub fn get(&self, index: usize) -> &[T] {
        match (self.starts.get(index), self.starts.get(index + 1)) {
            (Some(&a), Some(&b)) => &self.values[a as usize..b as usize],
            _ => &[],
        }
    }
}

impl<T> std::ops::Index<usize> for PerSection<T> {
    type Output = [T];
    fn index(&self, index: usize) -> &[T] {
        self.get(index)
    }
}

/// A relocation and what it refers to, resolved once in [`ObjInfo::new`]. The entry itself
/// is read only where a table is resolved: later phases read this table alone (a kernel's
/// relocation tables stay in the file, and so out of memory).
#[derive(Debug, Clone, Copy)]
pub struct Reloc {
    /// Where it applies (`r_offset`): within its section, which is smaller than 4 GiB (the
    /// reader refuses an entry past its section's end, `check_object` a larger section). In
    /// a model built otherwise, `u32::MAX` stands for an offset of 4 GiB or more: past the
    /// section's end as well.
    at: u32,
    /// Raw `r_type`; see `klpforge-arch` for its meaning.
    pub r_type: u32,
    /// What it refers to, independent of layout.
    pub target: crate::refs::Target,
}

// A kernel object has millions: keep each at three words.
const _: () = assert!(std::mem::size_of::<Reloc>() == 24);

impl Reloc {
    /// `r`, which applies to section `sec` of `info`'s object, with its target resolved.
    fn resolved(info: &ObjInfo<'_, '_>, sec: SectionId, r: &Relocation) -> Reloc {
        Reloc {
            at: u32::try_from(r.offset).unwrap_or(u32::MAX),
            r_type: r.r_type,
            target: crate::refs::resolve(info, sec, r),
        }
    }

    /// Where it applies (`r_offset`) in the section.
    pub fn offset(&self) -> u64 {
        self.at.into()
    }
}

/// The stable names that differ from the symbol's name, in one string (a kernel has tens of
/// thousands: one allocation each, and a hash map over them, took twice the room).
#[derive(Default)]
struct StableNames {
    /// `(symbol, start, end)` in `text`, in symbol order.
    index: Vec<(SymbolId, u32, u32)>,
    text: String,
}

impl StableNames {
    /// Keep `name` for `id`, which comes after every symbol kept so far (stable names are
    /// parts of the names of the string table, smaller than 4 GiB: `check_object`).
    fn push(&mut self, id: SymbolId, name: &str) {
        let start = self.text.len() as u32;
        self.text.push_str(name);
        self.index.push((id, start, self.text.len() as u32));
    }

    /// Kept for the whole diff: no spare capacity.
    fn finish(&mut self) {
        self.index.shrink_to_fit();
        self.text.shrink_to_fit();
    }

    /// The stable name kept for `id`.
    fn get(&self, id: SymbolId) -> Option<&str> {
        let i = self.index.binary_search_by_key(&id, |e| e.0).ok()?;
        let (_, start, end) = self.index[i];
        self.text.get(start as usize..end as usize)
    }
}

/// Everything known about one object.
pub struct ObjInfo<'a, 'data> {
    /// The object.
    pub obj: &'a ElfObject<'data>,
    /// Its architecture.
    pub arch: &'static dyn Arch,
    /// Facts per symbol, indexed by `SymbolId::index()`.
    pub syms: Vec<SymInfo<'a>>,
    /// The stable names ([`crate::stable_name`]) that are not the name itself (few are: a
    /// kernel has hundreds of thousands of symbols), by symbol; read with
    /// [`ObjInfo::stable_name`].
    stable: StableNames,
    /// Facts per section, indexed by `SectionId::index()`.
    pub secs: Vec<SecInfo>,
    /// Every symbol but FILE symbols, sorted by the hash of its full name and the name
    /// (table order among equal names): what [`ObjInfo::named`] searches.
    by_name: NameIndex,
    /// The `.cold` split-offs of each function that has any ([`ObjInfo::children`]; few
    /// functions do, so not a field of every symbol's facts).
    children: HashMap<SymbolId, Vec<SymbolId>>,
    /// The relocation sections applying to each section (usually one).
    rel_sections: PerSection<SectionId>,
    /// What a reference to each symbol is hashed by, a byte each ([`TargetClass`]): checksums
    /// ask it of every reference, and the symbol and its section are elsewhere in memory.
    target_class: Vec<TargetClass>,
    /// The sections named `.altinstr_aux` (usually none or one).
    altinstr_aux: Vec<SectionId>,
    /// The sections code may reach through a section anchor: default data sections several
    /// pieces share (a few; [`ObjInfo::anchor`]).
    anchored: Vec<SectionId>,
    /// The named FUNC/OBJECT symbols of each section, sorted by value: `(start, end,
    /// symbol)` ([`ObjInfo::ranges`]).
    ranges: PerSection<(u32, u32, SymbolId)>,
    /// Decoded instructions of each code section (index = section arena slot).
    pub code: crate::code::CodeMaps,
    /// Every relocation applying to each section (index = section arena slot), sorted by
    /// offset, with what it refers to resolved once ([`crate::refs::resolve`]): the one table
    /// checksum, correlate, select and clone read ([`ObjInfo::relocations`]). Code and data
    /// are resolved during the analysis, into one flat table; tables of per-site entries
    /// (`.orc_unwind_ip`, `.call_sites`: half of a kernel's relocations) and of debug and
    /// metadata sections when first asked for, which for the original object is mostly never.
    eager: PerSection<Reloc>,
    /// Per section: its slot in `lazy` when its table is resolved only once asked for
    /// (`u32::MAX` otherwise).
    lazy_slot: Vec<u32>,
    /// The tables resolved on demand.
    lazy: Vec<LazyTable>,
    /// Boundaries of the anonymous pieces of each section (index = section arena slot):
    /// every offset something refers to without a symbol, every symbol start and end, and
    /// the section's ends, sorted. Empty for sections nothing refers into anonymously.
    pub piece_bounds: PerSection<u32>,
    /// Where ftrace's entry tables (`__patchable_function_entries`, `__mcount_loc`) point,
    /// per code section (index = section arena slot), sorted.
    pub ftrace_sites: PerSection<i64>,
    /// The sections looked up by name so far ([`ObjInfo::section_named`]).
    by_section_name: std::sync::Mutex<HashMap<Vec<u8>, Option<SectionId>>>,
}

/// The facts a section's name, type and flags give (those the analysis adds later left
/// empty).
fn classify_section(obj: &ElfObject<'_>, id: SectionId) -> SecInfo {
    let s = obj.section(id);
    let name = s.name_lossy();
    let name = name.as_ref();
    let init = name.starts_with(".init.")
        || name.starts_with(".exit.")
        || name == ".init"
        || name.starts_with(".initcall")
        || name.starts_with(".head.text");
    let kind = match &s.data {
        SectionData::Relocations { .. }
        | SectionData::SymbolTable
        | SectionData::Strings(_)
        | SectionData::ExtendedIndices
        | SectionData::Group { .. } => SecKind::Meta,
        _ if SPECIAL_SECTIONS.contains(&name) => SecKind::Special,
        _ if SPECIAL_AUX_SECTIONS.contains(&name) => SecKind::SpecialAux,
        _ if name.starts_with(".kpatch.")
            || name == crate::klp::KLP_STATES_SECTION
            || name == ".discard.klp_callback_ptrs"
            || name.starts_with(".discard.klp") =>
        {
            SecKind::Marker
        }
        _ if name.starts_with(".discard.addressable")
            || name.starts_with(".discard.sym_checksum") =>
        {
            SecKind::Other
        }
        _ if name.starts_with(".discard.") => SecKind::Special,
        _ if name.starts_with(".debug")
            || name.starts_with(".eh_frame")
            || name == ".comment"
            || name.starts_with(".note")
            || name.starts_with(".gnu.")
            || name.starts_with(".llvm")
            || name.starts_with(".BTF")
            || name == ".modinfo"
            || name.starts_with(".sframe") =>
        {
            if name == ".modinfo" {
                SecKind::Other
            } else {
                SecKind::Debug
            }
        }
        _ if !s.is_alloc() => SecKind::Other,
        _ if s.is_exec() => SecKind::Text,
        _ if s.sh_flags & object::elf::SHF_STRINGS.0 != 0 => SecKind::Strings,
        _ if s.sh_flags & object::elf::SHF_MERGE.0 != 0 && s.sh_entsize > 0 => SecKind::Constants,
        SectionData::NoBits { .. } => SecKind::Bss,
        // `const` data with relocations (gcc's relro sections): writable only for a dynamic
        // loader, never by the program.
        _ if s.sh_flags & object::elf::SHF_WRITE.0 != 0 && !is_relro_section(name) => SecKind::Data,
        _ => SecKind::Rodata,
    };
    SecInfo {
        kind,
        init,
        line_records: LINE_RECORD_SECTIONS.contains(&name) || name.contains("Lubsan"),
        max_len: 0,
        section_symbol: None,
    }
}

/// Whether `name` is a section gcc gives `const` data that holds addresses
/// (`.data.rel.ro`, `.data.rel.ro.<name>`, `.data.rel.ro.local`): writable for a dynamic
/// loader only; C code never writes it.
fn is_relro_section(name: &str) -> bool {
    name == ".data.rel.ro" || name.starts_with(".data.rel.ro.")
}

/// Symbol ids sorted by the hash of their name, then the name (see [`ObjInfo::named`]). The
/// hash is 32 bits: equal hashes are told apart by the names, and a kernel's few hundred
/// thousand names rarely share one.
#[derive(Default)]
struct NameIndex {
    hashes: Vec<u32>,
    ids: Vec<SymbolId>,
}

impl NameIndex {
    /// Sort `entries` (name hash, id; in table order) by hash and name: by the hash first, so
    /// names are compared only where hashes are equal (sorting hundreds of thousands of names
    /// by their text is slow).
    fn new(mut entries: Vec<(u32, SymbolId)>, syms: &[SymInfo]) -> NameIndex {
        entries.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| syms[a.1.index()].name.cmp(syms[b.1.index()].name))
        });
        let (hashes, ids) = entries.into_iter().unzip();
        NameIndex { hashes, ids }
    }

    /// The ids named `name`, in table order.
    fn named<'s>(&'s self, syms: &[SymInfo], name: &str) -> &'s [SymbolId] {
        let h = name_hash(name);
        let a = self.hashes.partition_point(|&k| k < h);
        let b = a + self.hashes[a..].partition_point(|&k| k == h);
        let same = &self.ids[a..b];
        let lo = same.partition_point(|&i| syms[i.index()].name < name);
        let len = same[lo..].partition_point(|&i| syms[i.index()].name == name);
        &same[lo..lo + len]
    }
}

/// The order among names of one place (aliases, labels at one address), the same in the
/// original and patched objects whatever order the compiler or linker wrote them in (ld -r
/// writes a kernel's global symbols in its hash table's order): global before weak before
/// local (a global name needs no klp relocation), then by name.
fn same_place_order(obj: &ElfObject<'_>, syms: &[SymInfo], a: SymbolId, b: SymbolId) -> Ordering {
    let rank = |id: SymbolId| match obj.symbol(id).bind() {
        b if b == object::elf::STB_GLOBAL.0 => 0,
        b if b == object::elf::STB_LOCAL.0 => 2,
        _ => 1,
    };
    rank(a)
        .cmp(&rank(b))
        .then_with(|| syms[a.index()].name.cmp(syms[b.index()].name))
        .then(a.cmp(&b))
}

/// The hash [`NameIndex`] sorts names by.
fn name_hash(name: &str) -> u32 {
    xxh3_64(name.as_bytes()) as u32
}

fn sym_kind(st_type: u8) -> SymKind {
    match st_type {
        2 | 10 => SymKind::Function,
        1 | 5 | 6 => SymKind::Object,
        3 => SymKind::Section,
        4 => SymKind::File,
        _ => SymKind::Other,
    }
}

fn is_prefix_symbol(name: &str) -> bool {
    name.starts_with("__pfx_") || name.starts_with("__cfi_")
}

/// Sections whose objects are compiler- or macro-generated with no identity to keep.
fn anonymous_data_section(name: &str) -> bool {
    name.contains("Lubsan")
        || name.contains("L__unnamed")
        || name.contains("__unnamed_")
        || name.contains(".Lanon.")
        || name == ".data..once"
        || name == ".data.once"
        || name == "__dyndbg"
        || name == "__verbose"
        || name.starts_with(".data..ro_after_init..once")
}

impl<'a, 'data> ObjInfo<'a, 'data> {
    /// Analyse `obj`.
    pub fn new(obj: &'a ElfObject<'data>, arch: &'static dyn Arch) -> ObjInfo<'a, 'data> {
        let mut secs: Vec<SecInfo> = (0..obj.section_arena_len())
            .map(|_| SecInfo {
                kind: SecKind::Other,
                init: false,
                line_records: false,
                max_len: 0,
                section_symbol: None,
            })
            .collect();
        let mut rel_sections: Vec<(usize, SectionId)> = Vec::new();
        for (id, s) in obj.sections() {
            secs[id.index()] = classify_section(obj, id);
            if let Some(target) = s.relocation_target() {
                if target.index() < secs.len() {
                    rel_sections.push((target.index(), id));
                }
            }
        }
        let rel_sections = PerSection::from_pairs(secs.len(), rel_sections);

        let mut syms: Vec<SymInfo<'a>> = Vec::with_capacity(obj.symbol_arena_len());
        let mut stable = StableNames::default();
        let mut by_name: Vec<(u32, SymbolId)> = Vec::with_capacity(obj.symbol_arena_len());
        let mut current_file: Option<SymbolId> = None;
        let mut ranges: Vec<(usize, (u32, u32, SymbolId))> = Vec::new();
        for i in 0..obj.symbol_arena_len() {
            let id = SymbolId::from_index(i);
            let s = obj.symbol(id);
            // Names are UTF-8: `diff` refuses an object with one that is not (`check_object`).
            let name = std::str::from_utf8(&s.name).unwrap_or_default();
            let kind = sym_kind(s.kind());
            let stable_form = stable_name(name);
            let has_stable = stable_form != name;
            if has_stable {
                stable.push(id, &stable_form);
            }
            syms.push(SymInfo {
                name,
                has_stable,
                kind,
                file: None,
                never_correlate: false,
                parent: None,
                prefix: None,
                static_local: false,
            });
        }
        stable.finish();
        // FILE scopes follow table order; globals have none.
        for (id, s) in obj.symbols() {
            let info = &mut syms[id.index()];
            if info.kind == SymKind::File {
                current_file = Some(id);
                continue;
            }
            if s.is_local() {
                info.file = current_file;
            }
            by_name.push((name_hash(info.name), id));
            if let SymbolPlace::Section(sec) = s.place {
                if info.kind == SymKind::Section {
                    secs[sec.index()].section_symbol.get_or_insert(id);
                } else if matches!(info.kind, SymKind::Function | SymKind::Object)
                    && !is_prefix_symbol(info.name)
                {
                    // Within 4 GiB: `check_object` refused larger sections.
                    let (start, end) = (s.value as u32, s.value.saturating_add(s.size) as u32);
                    ranges.push((sec.index(), (start, end, id)));
                }
            }
        }
        let by_name = NameIndex::new(by_name, &syms);
        // Aliases (the same bytes under several names) in their own order, not the table's:
        // a reference into them resolves to the first ([`ObjInfo::symbol_at`]).
        ranges.sort_unstable_by(|&(sa, (a0, a1, a)), &(sb, (b0, b1, b))| {
            (sa, a0, a1)
                .cmp(&(sb, b0, b1))
                .then_with(|| same_place_order(obj, &syms, a, b))
        });
        let ranges = PerSection::from_pairs(secs.len(), ranges);
        for (i, sec) in secs.iter_mut().enumerate() {
            sec.max_len = ranges
                .get(i)
                .iter()
                .map(|&(a, b, _)| b.saturating_sub(a))
                .max()
                .unwrap_or(0);
        }

        // Classes, parents and prefixes.
        let mut children: HashMap<SymbolId, Vec<SymbolId>> = HashMap::default();
        let ids: Vec<SymbolId> = obj.symbol_ids().to_vec();
        // Per section, once: whether nothing in it has an identity to keep (anonymous data),
        // or nothing of it exists at run time (not allocated, or discarded).
        let section_facts: Vec<(bool, bool)> = (0..obj.section_arena_len())
            .map(|i| {
                let sec = SectionId::from_index(i);
                if !obj.is_section_live(sec) {
                    return (false, false);
                }
                let s = obj.section(sec);
                let name = s.name_lossy();
                (
                    anonymous_data_section(&name),
                    !s.is_alloc() || name.starts_with(".discard"),
                )
            })
            .collect();
        for &id in &ids {
            let s = obj.symbol(id);
            let sec_kind = s.section().map(|sec| secs[sec.index()].kind);
            let (anonymous_section, gone) = s
                .section()
                .map_or((false, false), |sec| section_facts[sec.index()]);
            let info = &syms[id.index()];
            let name = info.name;
            let local_object = s.is_local() && info.kind == SymKind::Object;
            let never = match info.kind {
                SymKind::File | SymKind::Section => true,
                _ if is_prefix_symbol(name) => true,
                _ if name.starts_with(".L") => true,
                _ if s.place == SymbolPlace::Absolute => true,
                _ if name.starts_with("__initcall__") || name.starts_with("__initstub__") => true,
                _ if local_object && {
                    let base = static_local_base(name);
                    UNCORRELATED_STATICS.iter().any(|p| {
                        base == *p || name.strip_prefix(p).is_some_and(|r| r.starts_with('.'))
                    })
                } =>
                {
                    true
                }
                _ if name.contains("__UNIQUE_ID_ddebug") => true,
                _ if anonymous_section => true,
                // Nothing of a non-allocated or discarded section exists at run time
                // (`.discard.addressable` references, notes): nothing to bind to.
                _ if gone && info.kind != SymKind::Function => true,
                _ if matches!(
                    sec_kind,
                    Some(
                        SecKind::Strings
                            | SecKind::Constants
                            | SecKind::Special
                            | SecKind::SpecialAux
                    )
                ) =>
                {
                    true
                }
                // Local untyped symbols are labels (`$x`/`$d` mapping symbols, LoongArch
                // `L0^A`, `.LVL*`): resolved to the function or object around them.
                _ if info.kind == SymKind::Other && s.is_local() && s.section().is_some() => true,
                _ => false,
            };
            let static_local = !never && local_object && name.contains('.') && info.has_stable;
            let info = &mut syms[id.index()];
            info.never_correlate = never;
            info.static_local = static_local;
        }
        for &id in &ids {
            let info = &syms[id.index()];
            if info.kind != SymKind::Function {
                continue;
            }
            if let Some(parent_name) = cold_parent(info.name) {
                let file = info.file;
                let cands = by_name.named(&syms, parent_name);
                let function = |c: &&SymbolId| syms[c.index()].kind == SymKind::Function;
                let parent = cands
                    .iter()
                    .filter(function)
                    .find(|c| syms[c.index()].file == file)
                    .or_else(|| cands.iter().find(function))
                    .copied();
                if let Some(p) = parent {
                    syms[id.index()].parent = Some(p);
                    children.entry(p).or_default().push(id);
                }
            }
        }
        // Prefix symbols name the function they precede.
        for &p in &ids {
            let name = &syms[p.index()].name;
            let Some(func) = name
                .strip_prefix("__pfx_")
                .or_else(|| name.strip_prefix("__cfi_"))
            else {
                continue;
            };
            let place = obj.symbol(p).place;
            let target = by_name.named(&syms, func).iter().copied().find(|&c| {
                syms[c.index()].kind == SymKind::Function && obj.symbol(c).place == place
            });
            if let Some(f) = target {
                // `__cfi_` after `__pfx_` in table order wins, as before.
                if syms[f.index()].prefix.is_none() || name.starts_with("__cfi_") {
                    syms[f.index()].prefix = Some(p);
                }
            }
        }
        let mut info = ObjInfo {
            obj,
            arch,
            syms,
            stable,
            secs,
            by_name,
            children,
            rel_sections,
            target_class: Vec::new(),
            altinstr_aux: Vec::new(),
            anchored: Vec::new(),
            ranges,
            code: crate::code::CodeMaps::default(),
            eager: PerSection::default(),
            lazy_slot: Vec::new(),
            lazy: Vec::new(),
            piece_bounds: PerSection::default(),
            ftrace_sites: PerSection::default(),
            by_section_name: std::sync::Mutex::default(),
        };
        info.code = decode_code(&info);
        // Each step below reads what it needs of the file once (code, then relocation tables)
        // and gives the pages back after it ([`ElfObject::release_mapping`]).
        obj.release_mapping();
        info.target_class = (0..obj.symbol_arena_len())
            .map(|i| TargetClass::named(&info, SymbolId::from_index(i)))
            .collect();
        info.lazy_slot = vec![u32::MAX; obj.section_arena_len()];
        for (id, _) in obj.sections() {
            if !resolved_eagerly(info.secs[id.index()].kind)
                && !info.rel_sections.get(id.index()).is_empty()
            {
                info.lazy_slot[id.index()] = info.lazy.len() as u32;
                info.lazy.push(LazyTable::default());
            }
        }
        info.eager = resolve_eagerly(&info);
        obj.release_mapping();
        info.piece_bounds = PerSection::from_lists(anonymous_piece_bounds(&info));
        info.anchored = obj
            .sections()
            .filter(|&(id, s)| {
                matches!(
                    info.secs[id.index()].kind,
                    SecKind::Data | SecKind::Rodata | SecKind::Bss
                ) && ANCHORED_SECTIONS.contains(&s.name.as_ref())
                    && info.is_shared(id)
            })
            .map(|(id, _)| id)
            .collect();
        info.ftrace_sites = PerSection::from_lists(ftrace_sites(&info));
        info.altinstr_aux = obj
            .sections()
            .filter(|(_, s)| s.name.as_ref() == b".altinstr_aux")
            .map(|(id, _)| id)
            .collect();
        info.target_class = (0..obj.symbol_arena_len())
            .map(|i| TargetClass::of(&info, SymbolId::from_index(i)))
            .collect();
        // The tables resolved on demand were read in full above (piece bounds, ftrace sites)
        // and are read again in part, if at all: a kernel's per-site tables are a fifth of it.
        obj.release_mapping();
        info
    }

    /// Tell the model that the relocation tables applying to `section` will not be read
    /// again soon ([`ElfObject::release_relocations`]: their pages may leave memory).
    pub fn release_relocations(&self, section: SectionId) {
        for &rs in self.rel_sections.get(section.index()) {
            self.obj.release_relocations(rs);
        }
    }

    /// The order among names of one place ([`same_place_order`]).
    pub fn same_place_order(&self, a: SymbolId, b: SymbolId) -> Ordering {
        same_place_order(self.obj, &self.syms, a, b)
    }

    /// What a reference to `sym` is hashed by (see [`TargetClass`]).
    pub fn target_class(&self, sym: SymbolId) -> TargetClass {
        self.target_class[sym.index()]
    }

    /// Whether `sec` is an `.altinstr_aux` section.
    pub fn is_altinstr_aux(&self, sec: SectionId) -> bool {
        self.altinstr_aux.contains(&sec)
    }

    /// Whether code may reach `sec` through a section anchor ([`ObjInfo::anchor`]).
    pub fn is_anchored(&self, sec: SectionId) -> bool {
        self.anchored.contains(&sec)
    }

    /// The anonymous piece `[start, end)` of `sec` that holds `offset`: bounded by the
    /// neighbouring anonymous references and symbol boundaries (see
    /// [`ObjInfo::piece_bounds`]); a reference at the very end gets an empty piece.
    pub fn piece_at(&self, sec: SectionId, offset: i64) -> (u64, u64) {
        let size = self.obj.section(sec).size();
        let at = (offset.max(0) as u64).min(size);
        let bounds = &self.piece_bounds[sec.index()];
        if bounds.is_empty() {
            return (0, size);
        }
        let i = bounds.partition_point(|&b| u64::from(b) <= at);
        let start = if i == 0 { 0 } else { bounds[i - 1].into() };
        let end = bounds.get(i).map_or(size.max(start), |&b| b.into());
        (start, end)
    }

    /// Where the data of an unsized label lies: a data symbol without a size (an OBJECT of
    /// size 0, or a global untyped one: assembly's `name:` without `.type`/`.size`; local
    /// untyped symbols are labels inside whatever holds them) covers the bytes from its
    /// address to the next boundary of its section (the next symbol or referenced offset,
    /// [`ObjInfo::piece_at`]). `(section, start, end)`; `None` for any other symbol.
    pub fn label_extent(&self, id: SymbolId) -> Option<(SectionId, u64, u64)> {
        let s = self.obj.symbol(id);
        let sec = s.section()?;
        let no_size = match self.syms[id.index()].kind {
            SymKind::Object => s.size == 0,
            SymKind::Other => !s.is_local(),
            _ => false,
        };
        let data = matches!(
            self.secs[sec.index()].kind,
            SecKind::Data | SecKind::Rodata | SecKind::Bss
        );
        if !no_size || !data {
            return None;
        }
        let start = s.value;
        let (_, end) = self.piece_at(sec, start as i64);
        Some((sec, start, end.max(start)))
    }

    /// The symbols named `name` (FILE symbols excluded), in table order.
    pub fn named(&self, name: &str) -> &[SymbolId] {
        self.by_name.named(&self.syms, name)
    }

    /// The decoded instructions of a code section.
    pub fn code(&self, sec: SectionId) -> Option<crate::code::CodeMap<'_>> {
        self.code.get(sec.index())
    }

    /// The first section named `name`. Phases ask for a few names (`.orc_unwind`, `.modinfo`,
    /// the sections an author marker names), each found by one scan and remembered: an index
    /// of a kernel's 100,000 section names would cost more time and memory than the scans.
    pub fn section_named(&self, name: &[u8]) -> Option<SectionId> {
        let mut known = self
            .by_section_name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *known
            .entry(name.to_vec())
            .or_insert_with(|| self.obj.section_by_name(name))
    }

    /// Facts about a symbol.
    pub fn sym(&self, id: SymbolId) -> &SymInfo<'a> {
        &self.syms[id.index()]
    }

    /// The name of `id` with the compiler's counters dropped (see [`crate::stable_name`]).
    pub fn stable_name(&self, id: SymbolId) -> &str {
        let si = &self.syms[id.index()];
        if si.has_stable {
            self.stable.get(id).unwrap_or(si.name)
        } else {
            si.name
        }
    }

    /// The `.cold` split-offs of function `id` (whose `parent` is `id`).
    pub fn children(&self, id: SymbolId) -> &[SymbolId] {
        self.children.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The named FUNC/OBJECT symbols of section `id`, sorted by value: `(start, end, symbol)`.
    pub fn ranges(&self, id: SectionId) -> &[(u32, u32, SymbolId)] {
        self.ranges.get(id.index())
    }

    /// Facts about a section.
    pub fn sec(&self, id: SectionId) -> &SecInfo {
        &self.secs[id.index()]
    }

    /// The named FUNC/OBJECT symbol whose bytes contain `offset` of `section`: the innermost
    /// sized symbol, else a zero-sized one exactly at `offset`, else (for a reference one past
    /// the end, as loop bounds produce) the symbol ending exactly there.
    pub fn symbol_at(&self, section: SectionId, offset: i64) -> Option<SymbolId> {
        self.symbol_and_start_at(section, offset).map(|(id, _)| id)
    }

    /// Where a reference to `sym` at `offset` from it lands inside a function, past its
    /// entry: the function and the offset from its start. For a function symbol, any
    /// positive offset; for a label (an untyped symbol in code, such as an assembly label a
    /// C function defines with `asm`), the function around it. `None` for a function's
    /// entry and for everything else.
    pub fn inside_function(&self, sym: SymbolId, offset: i64) -> Option<(SymbolId, i64)> {
        match self.syms[sym.index()].kind {
            SymKind::Function => (offset > 0).then_some((sym, offset)),
            SymKind::Other => {
                let s = self.obj.symbol(sym);
                let sec = s.section()?;
                let at = (s.value as i64).checked_add(offset)?;
                let (f, start) = self.symbol_and_start_at(sec, at)?;
                let inside = at - start as i64;
                (self.syms[f.index()].kind == SymKind::Function && inside > 0)
                    .then_some((f, inside))
            }
            _ => None,
        }
    }

    /// [`ObjInfo::symbol_at`] and the symbol's start (its value: the caller need not read
    /// the symbol for it).
    pub fn symbol_and_start_at(&self, section: SectionId, offset: i64) -> Option<(SymbolId, u64)> {
        if offset < 0 {
            return None;
        }
        // Ranges are within 4 GiB (`check_object`): an offset beyond lies in none.
        let Ok(offset) = u32::try_from(offset) else {
            return None;
        };
        let info = &self.secs[section.index()];
        let ranges = self.ranges(section);
        // Only symbols starting at most `max_len` before `offset` can contain it or end there
        // (binary search: sections of plain objects hold thousands of symbols).
        let upto = ranges.partition_point(|&(start, _, _)| start <= offset);
        let from =
            ranges.partition_point(|&(start, _, _)| start.saturating_add(info.max_len) < offset);
        let near = &ranges[from.min(upto)..upto];
        // The smallest containing symbol; of equal sizes, the first in order.
        let mut best: Option<(u32, SymbolId, u32)> = None;
        for &(start, end, id) in near.iter().rev() {
            if offset < end && best.is_none_or(|(size, _, _)| end - start <= size) {
                best = Some((end - start, id, start));
            }
        }
        if let Some((_, id, start)) = best {
            return Some((id, start.into()));
        }
        if let Some(&(start, _, id)) = near
            .iter()
            .find(|&&(start, end, _)| start == end && start == offset)
        {
            return Some((id, start.into()));
        }
        near.iter()
            .rev()
            .find(|&&(start, end, _)| end == offset && end > start)
            .map(|&(start, _, id)| (id, start.into()))
    }

    /// The relocation tables of the model that apply to `section` (usually one), unresolved
    /// and in file order.
    pub fn model_relocations(
        &self,
        section: SectionId,
    ) -> impl Iterator<Item = &'a [Relocation]> + '_ {
        let obj: &'a ElfObject<'data> = self.obj;
        self.rel_sections
            .get(section.index())
            .iter()
            .map(move |&rs| obj.section(rs).relocations().unwrap_or(&[]))
    }

    /// The symbol that relocation `r` of `section` names as written (a section symbol, a
    /// label or the target itself), from the model's table: its entry at the same offset of
    /// the same type. For the few readers that keep the assembler's form.
    pub fn written_symbol(&self, section: SectionId, r: &Reloc) -> Option<SymbolId> {
        let same = |e: &&Relocation| e.offset == r.offset() && e.r_type == r.r_type;
        for table in self.model_relocations(section) {
            // Assemblers write tables in offset order: search there first, then scan (a
            // table in another order).
            let from = table.partition_point(|e| e.offset < r.offset());
            let near = table[from..]
                .iter()
                .take_while(|e| e.offset == r.offset())
                .find(same);
            if let Some(e) = near.or_else(|| table.iter().find(same)) {
                return e.symbol;
            }
        }
        None
    }

    /// The relocations applying to `section`, sorted by offset, with their targets.
    pub fn relocations(&self, section: SectionId) -> &[Reloc] {
        match self.lazy_table(section) {
            Some(lazy) => lazy.resolved.get_or_init(|| resolve_section(self, section)),
            None => self.eager.get(section.index()),
        }
    }

    /// The slot of `section`'s table when it is resolved only on demand.
    fn lazy_table(&self, section: SectionId) -> Option<&LazyTable> {
        match self.lazy_slot.get(section.index()) {
            Some(&k) if k != u32::MAX => self.lazy.get(k as usize),
            _ => None,
        }
    }

    /// The model's relocation table of `section` when [`ObjInfo::relocations`] would resolve
    /// it on demand and has not yet, and it is one table in offset order (as assemblers write
    /// them): its entries can then be resolved where they are read, in the order the resolved
    /// table would list them.
    fn unresolved_in_order(&self, section: SectionId) -> Option<&'a [Relocation]> {
        let lazy = self.lazy_table(section)?;
        let mut tables = self.model_relocations(section);
        match (lazy.resolved.get(), tables.next(), tables.next()) {
            (None, Some(table), None)
                if *lazy
                    .sorted
                    .get_or_init(|| table.is_sorted_by_key(|r| r.offset)) =>
            {
                Some(table)
            }
            _ => None,
        }
    }

    /// Visit [`ObjInfo::relocations`] of `section` in order, for a reader that visits the
    /// table once: a table resolved on demand and not kept yet is resolved as it is visited
    /// and not kept (a kernel's per-site tables are most of its relocations).
    pub fn visit_relocations_once(&self, section: SectionId, mut visit: impl FnMut(&Reloc)) {
        match self.unresolved_in_order(section) {
            Some(table) => {
                // A kernel's largest tables (ORC, call and return sites) are megabytes each:
                // their pages go as the visit passes them.
                for run in table.chunks(1 << 16) {
                    run.iter()
                        .for_each(|r| visit(&Reloc::resolved(self, section, r)));
                    self.obj.release_part(run);
                }
            }
            None => {
                let table = match self.lazy_table(section) {
                    Some(lazy) if lazy.resolved.get().is_none() => {
                        Cow::Owned(resolve_section(self, section))
                    }
                    _ => Cow::Borrowed(self.relocations(section)),
                };
                table.iter().for_each(visit)
            }
        }
    }

    /// [`ObjInfo::relocations_in`] without keeping a table resolved on demand: when it is not
    /// kept yet and in offset order, only the entries in the range are resolved.
    pub fn relocations_in_once(
        &self,
        section: SectionId,
        start: u64,
        end: u64,
    ) -> Cow<'_, [Reloc]> {
        if let Some(table) = self.unresolved_in_order(section) {
            let rest = &table[table.partition_point(|r| r.offset < start)..];
            let range = &rest[..rest.partition_point(|r| r.offset < end)];
            return Cow::Owned(
                range
                    .iter()
                    .map(|r| Reloc::resolved(self, section, r))
                    .collect(),
            );
        }
        Cow::Borrowed(self.relocations_in(section, start, end))
    }

    /// The relocations applying to `[start, end)` of `section`.
    pub fn relocations_in(&self, section: SectionId, start: u64, end: u64) -> &[Reloc] {
        relocs_in(self.relocations(section), start, end)
    }

    /// The decoded instruction of code section `sec` holding `offset`: its bytes and where
    /// `offset` lies in them.
    pub fn insn_holding(&self, sec: SectionId, offset: u64) -> Option<(&[u8], usize)> {
        let data = self.obj.section(sec).bytes();
        let (start, end) = self.code(sec)?.span_at(offset)?;
        let bytes = data.get(start as usize..end as usize)?;
        Some((bytes, (offset - start) as usize))
    }

    /// Whether the relocation of type `r_type` at `offset` of code section `sec` is the target
    /// of a call or jump (rather than an address the code takes), as the architecture tells
    /// from the instruction.
    pub fn is_branch(&self, sec: SectionId, offset: u64, r_type: u32) -> bool {
        match self.insn_holding(sec, offset) {
            Some((bytes, at)) => self.arch.reloc_is_branch(bytes, at, r_type),
            None => self.arch.reloc_is_branch(&[], 0, r_type),
        }
    }

    /// The section anchor relocation `r` of code section `sec` sets up, if any: the
    /// instruction puts the address into a register
    /// ([`klpforge_arch::Arch::materializes_address`]) and the address lies in a data section
    /// several pieces share, which the code may then reach at unrelocated displacements from
    /// it (gcc's section anchors, in objects built without `-fdata-sections`).
    pub fn anchor(&self, sec: SectionId, r: &Reloc) -> Option<Anchor> {
        let (target, offset) = match r.target {
            crate::refs::Target::Symbol { sym, offset } if self.target_class(sym).in_anchored() => {
                let s = self.obj.symbol(sym);
                (s.section()?, (s.value as i64).saturating_add(offset))
            }
            crate::refs::Target::Section { sec, offset } if self.is_anchored(sec) => (sec, offset),
            _ => return None,
        };
        let (insn, _) = self.insn_holding(sec, r.offset())?;
        self.arch
            .materializes_address(insn, r.r_type)
            .then_some(Anchor {
                sec: target,
                offset,
            })
    }

    /// Whether data section `sec` holds more than one piece (named symbols or anonymous
    /// pieces something refers to): what code may reach through a section anchor.
    fn is_shared(&self, sec: SectionId) -> bool {
        let size = self.obj.section(sec).size();
        match self.ranges(sec) {
            [] => self.piece_bounds[sec.index()]
                .iter()
                .any(|&b| b > 0 && u64::from(b) < size),
            [(start, end, _)] => *start > 0 || u64::from(*end) < size,
            _ => true,
        }
    }

    /// The byte range of a defined symbol within its section's data.
    pub fn symbol_bytes(&self, id: SymbolId) -> &[u8] {
        let s = self.obj.symbol(id);
        let Some(sec) = s.section() else { return &[] };
        let data = self.obj.section(sec).bytes();
        let start = (s.value as usize).min(data.len());
        let end = (s.value.saturating_add(s.size) as usize).min(data.len());
        &data[start..end]
    }

    /// Whether a defined function has an ftrace entry: a call to `__fentry__`/`_mcount` in
    /// its first bytes, a `__patchable_function_entries` or `__mcount_loc` entry pointing at
    /// its start, or (s390) the `jgnop` instruction at its entry.
    pub fn has_ftrace_entry(&self, id: SymbolId) -> bool {
        let s = self.obj.symbol(id);
        let Some(sec) = s.section() else { return false };
        for r in self.relocations_in(sec, s.value, s.value.saturating_add(33)) {
            // A call names its callee (resolved to itself: a named symbol).
            if let crate::refs::Target::Symbol { sym: t, .. } = r.target {
                let n = self.syms[t.index()].name;
                if n == "__fentry__" || n == "_mcount" || n == "__mcount" || n == "mcount" {
                    return true;
                }
            }
        }
        // Objects compiled with -mfentry have ftrace entries exactly where `__fentry__` is
        // called: their `__patchable_function_entries` records are call padding (x86
        // CALL_PADDING) and gcc lists that padding in `__mcount_loc` even for notrace code.
        if !self.named("__fentry__").is_empty() {
            return false;
        }
        let bytes = self.symbol_bytes(id);
        if self.arch.has_nop_ftrace_entry(bytes) {
            return true;
        }
        // Entries in __patchable_function_entries / __mcount_loc pointing at or shortly
        // before (patchable padding) the function.
        let sites = self.ftrace_sites.get(sec.index());
        let lo = sites.partition_point(|&at| at < s.value as i64 - 16);
        sites.get(lo).is_some_and(|&at| at < s.value as i64 + 16)
    }
}

/// Where the entries of `__patchable_function_entries` and `__mcount_loc` point, per section
/// (see [`ObjInfo::ftrace_sites`]).
fn ftrace_sites(info: &ObjInfo<'_, '_>) -> Vec<Vec<i64>> {
    let mut out: Vec<Vec<i64>> = vec![Vec::new(); info.obj.section_arena_len()];
    for (sec, s) in info.obj.sections() {
        let name = s.name.as_ref();
        if name != b"__patchable_function_entries" && name != b"__mcount_loc" {
            continue;
        }
        // Symbols and addends only: the model's entries, not the resolved table.
        for r in info.model_relocations(sec).flatten() {
            let Some(t) = r.symbol else { continue };
            let ts = info.obj.symbol(t);
            if let Some(tsec) = ts.section() {
                out[tsec.index()].push((ts.value as i64).saturating_add(r.addend));
            }
        }
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

/// The relocations of a table sorted by offset whose offsets lie in `[start, end)`.
pub fn relocs_in(relocs: &[Reloc], start: u64, end: u64) -> &[Reloc] {
    // A function alone in its section (`-ffunction-sections`) asks for the whole table.
    if let (Some(first), Some(last)) = (relocs.first(), relocs.last()) {
        if first.offset() >= start && last.offset() < end {
            return relocs;
        }
    }
    let rest = &relocs[relocs.partition_point(|r| r.offset() < start)..];
    // The range is usually short and the table long (a kernel's `.altinstr_replacement` or
    // assembly `.text`): gallop forward from its start rather than search all the rest.
    let (mut below, mut step) = (0, 1);
    while below + step <= rest.len() && rest[below + step - 1].offset() < end {
        below += step;
        step *= 2;
    }
    let window = &rest[below..(below + step).min(rest.len())];
    &rest[..below + window.partition_point(|r| r.offset() < end)]
}

/// [`relocs_in`] for ranges visited in ascending order (instructions, table entries): a
/// walk along the table instead of two binary searches per range. A range starting below
/// the previous one is looked up afresh, so the answer is always `relocs_in`'s.
pub struct RelocCursor<'r> {
    relocs: &'r [Reloc],
    pos: usize,
    last_start: u64,
}

impl<'r> RelocCursor<'r> {
    /// A cursor at the start of `relocs` (sorted by offset).
    pub fn new(relocs: &'r [Reloc]) -> Self {
        RelocCursor {
            relocs,
            pos: 0,
            last_start: 0,
        }
    }

    /// The relocations whose offsets lie in `[start, end)`.
    pub fn take(&mut self, start: u64, end: u64) -> &'r [Reloc] {
        if start < self.last_start {
            self.pos = self.relocs.partition_point(|r| r.offset() < start);
        }
        self.last_start = start;
        let rest = &self.relocs[self.pos..];
        self.pos += rest.iter().take_while(|r| r.offset() < start).count();
        let rest = &self.relocs[self.pos..];
        let n = rest.iter().take_while(|r| r.offset() < end).count();
        &rest[..n]
    }
}

/// The relocation table of `sec` (see [`ObjInfo::relocations`]).
fn resolve_section<'a>(info: &ObjInfo<'a, '_>, sec: SectionId) -> Vec<Reloc> {
    // Sized exactly: the table is kept for the whole diff.
    let mut list = Vec::with_capacity(info.model_relocations(sec).map(<[_]>::len).sum());
    for r in info.model_relocations(sec).flatten() {
        list.push(Reloc::resolved(info, sec, r));
    }
    list.sort_by_key(|r| r.offset());
    list
}

/// A relocation table resolved only on demand ([`ObjInfo::relocations`]).
#[derive(Default)]
struct LazyTable {
    /// The resolved table, once asked for.
    resolved: std::sync::OnceLock<Vec<Reloc>>,
    /// Whether the model's table is in offset order ([`ObjInfo::relocations_in_once`]).
    sorted: std::sync::OnceLock<bool>,
}

/// Whether the relocation table of a section of this kind is kept only once asked for: tables
/// of per-site entries and sections the diff does not read, which only the patched object's
/// cloning (and a changed variable's search for its users) looks into.
fn resolved_on_demand(kind: SecKind) -> bool {
    matches!(kind, SecKind::Special | SecKind::Other)
}

/// Whether the relocation table of a section of this kind is resolved during the analysis
/// (code and data: what piece bounds, checksums and correlation read).
fn resolved_eagerly(kind: SecKind) -> bool {
    !resolved_on_demand(kind) && !matches!(kind, SecKind::Debug | SecKind::Meta)
}

/// The relocation tables of the sections [`resolved_eagerly`], in one flat table sized
/// exactly (it is kept for the whole diff).
fn resolve_eagerly<'a>(info: &ObjInfo<'a, '_>) -> PerSection<Reloc> {
    let eager = |i: usize| resolved_eagerly(info.secs[i].kind);
    let total = (0..info.obj.section_arena_len())
        .filter(|&i| eager(i))
        .map(|i| {
            info.model_relocations(SectionId::from_index(i))
                .map(<[_]>::len)
                .sum::<usize>()
        })
        .sum();
    let mut behind = info.obj.release_behind();
    PerSection::build(info.obj.section_arena_len(), total, |i, out| {
        if !eager(i) {
            return;
        }
        let sec = SectionId::from_index(i);
        behind.reached(sec);
        let from = out.len();
        for r in info.model_relocations(sec).flatten() {
            out.push(Reloc::resolved(info, sec, r));
        }
        out[from..].sort_by_key(|r| r.offset());
    })
}

/// Boundaries of the anonymous pieces of every section (see [`ObjInfo::piece_bounds`]).
fn anonymous_piece_bounds(info: &ObjInfo<'_, '_>) -> Vec<Vec<u32>> {
    // Bounds lie within their section, below 4 GiB (`check_object`): others are dropped.
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); info.obj.section_arena_len()];
    let mut behind = info.obj.release_behind();
    for (sec, _) in info.obj.sections() {
        behind.reached(sec);
        if matches!(info.sec(sec).kind, SecKind::Debug | SecKind::Meta) {
            continue;
        }
        let mut add = |target: crate::refs::Target| {
            if let crate::refs::Target::Section { sec: t, offset } = target {
                if let Ok(at) = u32::try_from(offset.max(0)) {
                    out[t.index()].push(at);
                }
            }
        };
        if resolved_on_demand(info.sec(sec).kind) {
            // What they refer to, without keeping the table.
            for r in info.model_relocations(sec).flatten() {
                add(crate::refs::resolve(info, sec, r));
            }
        } else {
            for r in info.relocations(sec) {
                add(r.target);
            }
        }
    }
    for (sec, _) in info.obj.sections() {
        let list = &mut out[sec.index()];
        if list.is_empty() {
            continue;
        }
        let size = info.obj.section(sec).size();
        list.push(0);
        list.push(size as u32);
        for &(start, end, _) in info.ranges(sec) {
            list.push(start);
            list.push(end);
        }
        list.retain(|&x| u64::from(x) <= size);
        list.sort_unstable();
        list.dedup();
    }
    out
}

/// Decode every code section of an object (index = section arena slot).
fn decode_code(info: &ObjInfo<'_, '_>) -> crate::code::CodeMaps {
    let mut out = crate::code::CodeMaps::new(info.obj.section_arena_len());
    let mut built = crate::code::CodeMapBuilder::default();
    let mut behind = info.obj.release_behind();
    for (id, s) in info.obj.sections() {
        behind.reached(id);
        if matches!(info.sec(id).kind, SecKind::Text | SecKind::SpecialAux) && s.is_exec() {
            let starts: Vec<u64> = info.ranges(id).iter().map(|r| r.0.into()).collect();
            crate::code::decode_section(info.arch, s.bytes(), &starts, &mut built);
            out.push(id.index(), &built);
        }
    }
    out.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_section_lists_read_back() {
        let lists = vec![vec![3u64, 5], vec![], vec![7], vec![], vec![]];
        let flat = PerSection::from_lists(lists.clone());
        for (i, list) in lists.iter().enumerate() {
            assert_eq!(&flat[i], list.as_slice());
        }
        assert!(flat.get(5).is_empty() && flat.get(99).is_empty());
        assert!(PerSection::<u64>::default().get(0).is_empty());
        // The same lists from pairs given out of slot order (each list keeps its pairs'
        // order) and from a fill per slot.
        let pairs = vec![(2, 7u64), (0, 3), (1, 9), (0, 5)];
        let mut lists = lists;
        lists[1].push(9);
        let from_pairs = PerSection::from_pairs(5, pairs);
        let built = PerSection::build(5, 4, |i, out: &mut Vec<u64>| out.extend(&lists[i]));
        for (i, list) in lists.iter().enumerate() {
            assert_eq!(&from_pairs[i], list.as_slice());
            assert_eq!(&built[i], list.as_slice());
        }
    }

    /// The cursor answers every range as `relocs_in` does, ranges visited in order or not.
    #[test]
    fn reloc_cursor_is_relocs_in() {
        let model: Vec<Relocation> = [0u64, 4, 4, 9, 16, 17, 30]
            .iter()
            .map(|&offset| Relocation {
                offset,
                symbol: None,
                r_type: 0,
                addend: 0,
            })
            .collect();
        let table: Vec<Reloc> = model
            .iter()
            .map(|r| Reloc {
                at: r.offset as u32,
                r_type: r.r_type,
                target: crate::refs::Target::Absolute { addend: 0 },
            })
            .collect();
        let offsets = |rs: &[Reloc]| rs.iter().map(Reloc::offset).collect::<Vec<_>>();
        let ranges = [
            (0, 4),
            (4, 5),
            (5, 9),
            (9, 20),
            (2, 17), // below the last start
            (17, 18),
            (18, 40),
            (0, 0),
            (31, 64),
        ];
        let mut cursor = RelocCursor::new(&table);
        for (a, b) in ranges {
            assert_eq!(
                offsets(cursor.take(a, b)),
                offsets(relocs_in(&table, a, b)),
                "[{a}, {b})"
            );
        }
        // And relocs_in is the plain filter, for every range.
        for a in 0..45 {
            for b in 0..45 {
                let want: Vec<u64> = model
                    .iter()
                    .map(|r| r.offset)
                    .filter(|&o| a <= o && o < b)
                    .collect();
                assert_eq!(offsets(relocs_in(&table, a, b)), want, "[{a}, {b})");
            }
        }
    }
}
