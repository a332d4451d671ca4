//! Position-independent checksums (xxh3-64) of every function and data object.
//!
//! A checksum covers what the code or data *means*, not where things were laid out or what
//! gcc's counters called them: instruction bytes with relocated fields zeroed, branches that
//! leave the function without a relocation by their target, a function's `.cold` parts and the
//! special-section entries that describe it, and each reference by what it refers to
//! ([`Identity`]):
//!
//! * a symbol that is correlated with the other build by its *identity*: before correlation
//!   ([`Identity::Names`]) its stable name (compiler counters stripped), afterwards ([`Identity::Twins`]) the pair it
//!   belongs to, so a renumbered name hashes equal and a retargeted reference differs;
//! * strings and mergeable constants by content;
//! * anonymous data (switch tables, initialisers copied from `.rodata`), never-correlated
//!   objects (`CSWTCH.*`, `__func__`, dynamic-debug descriptors) and read-only objects by
//!   their *content*: bytes and, recursively with a cycle guard, their own references.
//!
//! Each function also gets a *line-insensitive* checksum, in which immediates that only carry
//! `__LINE__` into a known callee (`__might_sleep(file, line)`, ...) and the line fields of
//! bug-table entries and dynamic-debug descriptors are masked. Two functions whose full
//! checksums differ but whose line-insensitive ones agree differ only in line numbers.

use klpforge_elf::{SectionId, SymbolId, SymbolPlace, SymbolsBySection};
use xxhash_rust::xxh3::xxh3_64;

use crate::HashMap;

use crate::analyze::{relocs_in, Anchor, ObjInfo, Reloc, RelocCursor, SecKind, SymKind};
use crate::code::CodeInsn;
use crate::refs::{string_at, Target};
use crate::twins::Twins;

mod annotations;
mod lines;

use annotations::annotations_of;
pub use annotations::Sites;
use lines::line_arguments;

/// How references to symbols that are correlated between the builds are hashed.
#[derive(Clone, Copy)]
pub enum Identity<'t> {
    /// By stable name: before correlation, to pair candidates.
    Names,
    /// By the twin pair a symbol belongs to (`patched` tells which side this object is).
    Twins {
        /// The correlation.
        twins: &'t Twins,
        /// Whether the object being hashed is the patched build.
        patched: bool,
    },
}

/// Checksums of one object.
#[derive(Debug, Clone, Default)]
pub struct Checksums {
    /// Full checksum per symbol arena slot (0 = none computed).
    pub full: Vec<u64>,
    /// Code that no function symbol covers, sorted by key.
    pub gaps: Vec<CodeGap>,
}

/// Where a run of code without a covering function symbol is: top-level assembly without
/// `.type`/`.size` (or with a zero size), which every byte-level comparison must still see.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GapKey {
    /// The code section.
    pub section: String,
    /// The last label (an untyped or unsized symbol) at or before the run, if any.
    pub label: String,
    /// Which run of that section and label (0 = first).
    pub occurrence: u32,
}

/// One run of uncovered code (padding trimmed) and its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGap {
    /// Where it is.
    pub key: GapKey,
    /// Its offset from the label (from the section start without one).
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Checksum of its code (bytes, with references by identity).
    pub full: u64,
}

/// The bytes one checksum covers, hashed at once by [`HashInput::digest`]: xxh3 of the whole
/// input equals its streaming form, but many small updates (a few bytes per instruction and
/// reference) cost far more than appending them.
#[derive(Default)]
pub(crate) struct HashInput(Vec<u8>);

impl HashInput {
    fn update(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn digest(&self) -> u64 {
        xxh3_64(&self.0)
    }
}

/// The inputs of the full and the line-insensitive checksum. Only a function whose full
/// checksum changed needs the second ([`LineSums`]), so it is built only when `lines` is set
/// (its digest is 0 otherwise).
pub(crate) struct Hashers {
    full: HashInput,
    noline_input: HashInput,
    lines: bool,
}

impl Hashers {
    fn new(lines: bool) -> Hashers {
        Hashers {
            full: HashInput(Vec::with_capacity(256)),
            noline_input: HashInput(if lines {
                Vec::with_capacity(256)
            } else {
                Vec::new()
            }),
            lines,
        }
    }

    /// Make room for about `n` more bytes in both inputs.
    fn reserve(&mut self, n: usize) {
        self.full.0.reserve(n);
        if self.lines {
            self.noline_input.0.reserve(n);
        }
    }

    /// Add `bytes` to the line-insensitive input only.
    fn noline(&mut self, bytes: &[u8]) {
        if self.lines {
            self.noline_input.update(bytes);
        }
    }

    fn both(&mut self, bytes: &[u8]) {
        self.full.update(bytes);
        self.noline(bytes);
    }

    fn noline_digest(&self) -> u64 {
        if self.lines {
            self.noline_input.digest()
        } else {
            0
        }
    }

    fn digests(&self) -> (u64, u64) {
        (self.full.digest(), self.noline_digest())
    }

    /// Empty again, keeping the room.
    fn clear(&mut self) {
        self.full.0.clear();
        self.noline_input.0.clear();
    }
}

/// The hashing state of one object: how identities are hashed, and the content hashes of
/// anonymous pieces and never-correlated objects computed so far.
pub(crate) struct Ctx<'i, 'a, 'd, 't> {
    info: &'i ObjInfo<'a, 'd>,
    identity: Identity<'t>,
    /// Content hashes of `(section, start, end)` with no cycle below them (the same wherever
    /// the hashing entered them).
    memo: HashMap<(SectionId, u64, u64), (u64, u64)>,
    /// Pieces whose content is being hashed (the cycle guard).
    stack: Vec<(SectionId, u64, u64)>,
    /// The lowest stack depth a cycle referred back to while hashing the current piece.
    backref: Option<usize>,
    /// Layout hashes of the section anchors hashed so far ([`Ctx::anchor_layout`]).
    anchors: HashMap<Anchor, (u64, u64)>,
    /// The symbols of callees that take `__LINE__` ([`lines::line_callees`]; only with
    /// `lines`).
    line_callees: Vec<SymbolId>,
    /// Whether line-insensitive checksums are computed too (see [`Hashers`]).
    lines: bool,
    /// Hash inputs done with, kept for the next ([`Ctx::hashers`], [`Ctx::finish`]): a
    /// kernel has hundreds of thousands of symbols to hash.
    spare: Vec<Hashers>,
}

impl<'i, 'a, 'd, 't> Ctx<'i, 'a, 'd, 't> {
    fn new(info: &'i ObjInfo<'a, 'd>, identity: Identity<'t>, lines: bool) -> Self {
        Ctx {
            info,
            identity,
            memo: HashMap::default(),
            stack: Vec::new(),
            backref: None,
            anchors: HashMap::default(),
            line_callees: if lines {
                lines::line_callees(info)
            } else {
                Vec::new()
            },
            lines,
            spare: Vec::new(),
        }
    }

    /// Empty hash inputs in this context's mode.
    fn hashers(&mut self) -> Hashers {
        match self.spare.pop() {
            Some(mut h) => {
                h.clear();
                h
            }
            None => Hashers::new(self.lines),
        }
    }

    /// The digests of `h`, which is kept for reuse.
    fn finish(&mut self, h: Hashers) -> (u64, u64) {
        let d = h.digests();
        self.spare.push(h);
        d
    }
}

impl Ctx<'_, '_, '_, '_> {
    /// Hash the identity of a correlatable symbol (with its value, for an absolute one).
    fn identity(&self, h: &mut Hashers, sym: SymbolId) {
        let info = self.info;
        let twin = match self.identity {
            // Never-correlated symbols without content to hash (absolute `__crc_*` values,
            // labels) are what their name says on both sides.
            _ if info.target_class(sym).never_correlate() => None,
            Identity::Names => None,
            Identity::Twins { twins, patched } => Some(if patched {
                twins.of_patched(sym)
            } else {
                twins.of_orig(sym).map(|_| sym)
            }),
        };
        match twin {
            None => {
                h.both(b"S");
                h.both(info.stable_name(sym).as_bytes());
                h.both(&[0]);
            }
            Some(Some(pair)) => {
                h.both(b"I");
                h.both(&(pair.index() as u64).to_le_bytes());
            }
            Some(None) => {
                // Exists on one side only: the name, marked by side, never equal across.
                h.both(match self.identity {
                    Identity::Twins { patched: true, .. } => b"N",
                    _ => b"G",
                });
                h.both(info.sym(sym).name.as_bytes());
                h.both(&[0]);
            }
        }
        // An absolute symbol (`.set NAME, VALUE`) is its value: the same name with another
        // value means other code.
        let s = info.obj.symbol(sym);
        if s.place == SymbolPlace::Absolute {
            h.both(b"=");
            h.both(&s.value.to_le_bytes());
        }
    }

    /// Hash a layout-independent reference.
    fn hash_target(&mut self, h: &mut Hashers, target: Target) {
        let info = self.info;
        // `.altinstr_aux` code is always reached through alternatives; entries added anywhere
        // in the object shift every offset into it without changing what the code does.
        let aux = match target {
            Target::Section { sec, .. } => info.is_altinstr_aux(sec),
            Target::Symbol { sym, .. } => info.target_class(sym).altinstr_aux(),
            _ => false,
        };
        if aux {
            h.both(b"altinstr_aux");
            return;
        }
        match target {
            Target::Absolute { addend } => {
                h.both(b"A");
                h.both(&addend.to_le_bytes());
            }
            Target::Symbol { sym, offset } => {
                let class = info.target_class(sym);
                if class.by_content() {
                    let s = info.obj.symbol(sym);
                    let sec = s.section().expect("by_content needs a section");
                    if !class.never_correlate() {
                        self.identity(h, sym);
                    }
                    h.both(b"V");
                    let (sec, start, end) = info.label_extent(sym).unwrap_or((
                        sec,
                        s.value,
                        s.value.saturating_add(s.size),
                    ));
                    self.content(h, sec, start, end);
                } else {
                    self.identity(h, sym);
                }
                h.both(&offset.to_le_bytes());
            }
            Target::String { sec, start, delta } => {
                h.both(b"T");
                h.both(string_at(info.obj.section(sec).bytes(), start.into()));
                h.both(&[0]);
                h.both(&i64::from(delta).to_le_bytes());
            }
            Target::Constant { sec, offset } => {
                let s = info.obj.section(sec);
                let data = s.bytes();
                let size = s.sh_entsize.max(1) as usize;
                let start = (offset.max(0) as usize).min(data.len());
                let end = (start + size).min(data.len());
                h.both(b"C");
                let (a, b) = (start as u64, end as u64);
                if relocs_in(info.relocations(sec), a, b.max(a + 1)).is_empty() {
                    h.both(&data[start..end]);
                } else {
                    // An address in a literal pool (s390x loads what it cannot reach
                    // with `larl` from `.rodata.*.cst8`): the bytes are zeros, the
                    // relocation is the value.
                    self.content(h, sec, a, b);
                }
            }
            Target::Section { sec, offset } => {
                // Anonymous bytes (a switch table, an initialiser, a local label's code): the
                // piece they are in, by content, and where in it.
                let (start, end) = info.piece_at(sec, offset);
                h.both(b"X");
                h.both(&[info.sec(sec).kind as u8]);
                self.content(h, sec, start, end);
                h.both(&(offset - start as i64).to_le_bytes());
            }
        }
    }

    /// Hash what the unrelocated displacements from section anchor `a` can mean: where every
    /// piece of its section lies relative to the anchor, each named piece's size and identity,
    /// and (read-only data) the section's content. Code built with section anchors reaches a
    /// variable as "anchor + displacement", so a function is unchanged only if its section's
    /// layout is: a shift gives it other displacements, and the same displacements over
    /// other variables do something else.
    fn anchor_layout(&mut self, h: &mut Hashers, a: Anchor) {
        if let Some(&(full, noline)) = self.anchors.get(&a) {
            h.full.update(&full.to_le_bytes());
            h.noline(&noline.to_le_bytes());
            return;
        }
        let info = self.info;
        let mut inner = self.hashers();
        inner.both(b"@");
        for &b in &info.piece_bounds[a.sec.index()] {
            inner.both(&i64::from(b).wrapping_sub(a.offset).to_le_bytes());
        }
        for &(start, end, sym) in info.ranges(a.sec) {
            inner.both(&i64::from(start).wrapping_sub(a.offset).to_le_bytes());
            inner.both(&u64::from(end - start).to_le_bytes());
            self.identity(&mut inner, sym);
        }
        let size = info.obj.section(a.sec).size();
        inner.both(&(size as i64).wrapping_sub(a.offset).to_le_bytes());
        if info.sec(a.sec).kind == SecKind::Rodata {
            self.content(&mut inner, a.sec, 0, size);
        }
        let d = self.finish(inner);
        // Entered inside a piece's content, the section's content may lead back to that
        // piece and hash by where it was entered: cached only when entered from code.
        if self.stack.is_empty() {
            self.anchors.insert(a, d);
        }
        h.full.update(&d.0.to_le_bytes());
        h.noline(&d.1.to_le_bytes());
    }

    /// Hash the content of `[start, end)` of `sec` into `h`: bytes with relocated fields
    /// zeroed (NOBITS as zeros) and every reference in it.
    fn content(&mut self, h: &mut Hashers, sec: SectionId, start: u64, end: u64) {
        let key = (sec, start, end);
        if let Some(&(full, noline)) = self.memo.get(&key) {
            h.full.update(&full.to_le_bytes());
            h.noline(&noline.to_le_bytes());
            return;
        }
        if let Some(depth) = self.stack.iter().position(|&k| k == key) {
            // A cycle: refer back to the enclosing piece by its distance.
            h.both(b"^");
            h.both(&((self.stack.len() - depth) as u64).to_le_bytes());
            self.backref = Some(self.backref.map_or(depth, |d| d.min(depth)));
            return;
        }
        let me = self.stack.len();
        self.stack.push(key);
        let saved = self.backref.take();
        let info = self.info;
        let mut inner = self.hashers();
        let size = info.obj.section(sec).size();
        let (a, b) = (start.min(size), end.min(size));
        let all = info.relocations(sec);
        let relocs = relocs_in(all, a, b.max(a + 1));
        let bytes = masked_bytes(info, sec, a, b, relocs);
        inner.both(b"D");
        inner.both(&(bytes.len() as u64).to_le_bytes());
        inner.full.update(&bytes);
        // Records carrying `__LINE__`: their content is left out of the line-insensitive
        // checksum (their references stay in).
        if !info.sec(sec).line_records {
            inner.noline(&bytes);
        }
        for r in relocs {
            inner.both(&(r.offset() - a).to_le_bytes());
            inner.both(&r.r_type.to_le_bytes());
            self.hash_target(&mut inner, r.target);
        }
        self.stack.pop();
        // A piece whose references led back to itself or to an enclosing piece is on a
        // cycle: entered at another of its pieces, the cycle is cut elsewhere and it hashes
        // differently, so only pieces with no cycle below them are cached (caching the piece
        // a cycle was entered at made every later sum depend on which symbol was hashed
        // first: the same source with its definitions reordered differed).
        let below = self.backref.take();
        let outer = below.filter(|&d| d < me);
        self.backref = match (saved, outer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let d = self.finish(inner);
        if below.is_none() {
            self.memo.insert(key, d);
        }
        h.full.update(&d.0.to_le_bytes());
        h.noline(&d.1.to_le_bytes());
    }
}

pub(crate) fn field_size(info: &ObjInfo<'_, '_>, r_type: u32) -> usize {
    info.arch
        .reloc_info(r_type)
        .map_or(4, |i| usize::from(i.size))
}

/// Hash the code of one function part (`[start, end)` of `sec`).
pub(crate) fn hash_code(
    h: &mut Hashers,
    ctx: &mut Ctx<'_, '_, '_, '_>,
    sec: SectionId,
    start: u64,
    end: u64,
) {
    let info = ctx.info;
    let data = info.obj.section(sec).bytes();
    let end = end.min(data.len() as u64);
    let start = start.min(end);
    let all_relocs = info.relocations(sec);
    let relocs = relocs_in(all_relocs, start, end);
    // Each instruction adds its length byte; each reference a few words.
    h.reserve((end - start) as usize + (end - start) as usize / 4 + relocs.len() * 24);
    let code = info.code(sec);
    let covered = if h.lines {
        // The line-insensitive input replaces `__LINE__` arguments: they need the whole list.
        let insns = code.map(|c| c.range(start, end)).unwrap_or_default();
        let line_args = line_arguments(info, &ctx.line_callees, sec, &insns, relocs);
        let each = insns.into_iter().zip(line_args);
        hash_insns(h, ctx, sec, (start, end), relocs, each)
    } else {
        let each = code
            .into_iter()
            .flat_map(|c| c.walk(start, end))
            .map(|i| (i, None));
        hash_insns(h, ctx, sec, (start, end), relocs, each)
    };
    // Bytes that did not decode (or a non-code section): raw, with relocated fields zeroed.
    if covered < end {
        let rest = masked_bytes(info, sec, covered, end, relocs_in(relocs, covered, end));
        h.both(b"R");
        h.both(&rest);
        for r in relocs_in(relocs, covered, end) {
            h.both(&r.r_type.to_le_bytes());
            h.both(&(r.offset() - covered).to_le_bytes());
            ctx.hash_target(h, r.target);
        }
    }
}

/// Hash the instructions `each` (with the `__LINE__` argument the line-insensitive checksum
/// puts in place of each, if any) of `[start, end)` of code section `sec`: length, bytes with
/// relocated fields and outside branch displacements zeroed, then what each reference and
/// outside branch means. Returns where the decoded instructions stop.
fn hash_insns(
    h: &mut Hashers,
    ctx: &mut Ctx<'_, '_, '_, '_>,
    sec: SectionId,
    (start, end): (u64, u64),
    relocs: &[Reloc],
    each: impl Iterator<Item = (CodeInsn, Option<u8>)>,
) -> u64 {
    let info = ctx.info;
    let data = info.obj.section(sec).bytes();
    let outside = |t: i64| !(t >= start as i64 && t < end as i64);
    let mut covered = start;
    let mut cursor = RelocCursor::new(relocs);
    for (insn, line_arg) in each {
        let (a, b) = (insn.offset(), insn.end());
        if b > end || a < covered {
            break;
        }
        let here = cursor.take(a, b);
        // The instruction's bytes go straight into the full input and are masked there.
        h.full.update(&[insn.length()]);
        let at = h.full.0.len();
        h.full.update(&data[a as usize..b as usize]);
        let bytes = &mut h.full.0[at..];
        for r in here {
            let off = (r.offset() - a) as usize;
            let size = field_size(info, r.r_type).min(bytes.len().saturating_sub(off));
            bytes[off..off + size].fill(0);
        }
        let mut branch_target = None;
        if let Some(br) = insn.branch() {
            if here.is_empty() && outside(br.target) {
                let off = usize::from(br.disp_offset);
                let size = usize::from(br.disp_size).min(bytes.len().saturating_sub(off));
                bytes[off..off + size].fill(0);
                branch_target = Some(br.target);
            }
        } else if here.is_empty() && !info.arch.decoder_gives_branches() {
            // Architectures whose decoder gives no targets: a branch the assembler resolved
            // to another function of the section (no function sections) is hashed by target.
            let raw = &data[a as usize..b as usize];
            if let Some(t) = info
                .arch
                .relative_branch_target(raw, a)
                .filter(|&t| outside(t))
            {
                info.arch.mask_branch_displacement(bytes);
                branch_target = Some(t);
            }
        }
        if h.lines {
            h.noline_input.update(&[insn.length()]);
            match line_arg {
                Some(arg) => h.noline_input.update(&[b'L', arg]),
                None => {
                    let (full, noline) = (&h.full.0, &mut h.noline_input.0);
                    noline.extend_from_slice(&full[at..]);
                }
            }
        }
        if let Some(t) = branch_target {
            let target = match info.symbol_and_start_at(sec, t) {
                Some((sym, start)) => Target::Symbol {
                    sym,
                    offset: t - start as i64,
                },
                None => Target::Section { sec, offset: t },
            };
            ctx.hash_target(h, target);
        }
        for r in here {
            h.both(&r.r_type.to_le_bytes());
            h.both(&((r.offset() - a) as u32).to_le_bytes());
            ctx.hash_target(h, r.target);
            if let Some(anchor) = info.anchor(sec, r) {
                ctx.anchor_layout(h, anchor);
            }
        }
        covered = b;
    }
    covered
}

/// Hash a data object: its size and its content (bytes with relocated fields zeroed, NOBITS as
/// zeros so a zero-initialised variable hashes the same in `.bss` and in `.data`, and each
/// reference), shared with references that hash it by content.
fn hash_object(h: &mut Hashers, ctx: &mut Ctx<'_, '_, '_, '_>, sym: SymbolId) {
    let s = ctx.info.obj.symbol(sym);
    h.both(b"O");
    h.both(&s.size.to_le_bytes());
    let Some(sec) = s.section() else { return };
    ctx.content(h, sec, s.value, s.value.saturating_add(s.size));
}

/// Bytes `[start, end)` of `sec` (zeros for NOBITS) with the fields of `relocs`, which lie in
/// that range, zeroed: what a layout-independent hash covers of code and data.
pub(crate) fn masked_bytes(
    info: &ObjInfo<'_, '_>,
    sec: SectionId,
    start: u64,
    end: u64,
    relocs: &[Reloc],
) -> Vec<u8> {
    let section = info.obj.section(sec);
    let mut bytes = match section.data {
        klpforge_elf::SectionData::NoBits { .. } => vec![0; (end - start) as usize],
        _ => section.bytes()[start as usize..end as usize].to_vec(),
    };
    for r in relocs {
        let off = (r.offset() - start) as usize;
        let size = field_size(info, r.r_type).min(bytes.len().saturating_sub(off));
        bytes[off..off + size].fill(0);
    }
    bytes
}

/// Compute the checksums of every defined function and data object of `info`, hashing
/// references to correlatable symbols as `identity` says.
pub fn compute(info: &ObjInfo<'_, '_>, sites: &Sites, identity: Identity<'_>) -> Checksums {
    let n = info.obj.symbol_arena_len();
    let mut out = Checksums {
        full: vec![0; n],
        gaps: Vec::new(),
    };
    let mut ctx = Ctx::new(info, identity, false);
    // In file order, giving back the pages behind: each function's code is read once here,
    // and its special entries with it (a sum does not depend on the order: hashes of shared
    // content are memoized only where they do not depend on where the hashing started).
    let mut behind = info.obj.release_behind();
    let by_section = info.obj.symbols_by_section();
    for &id in by_section.all() {
        if let Some(sec) = info.obj.symbol(id).section() {
            behind.reached(sec);
        }
        let own = match info.sym(id).kind {
            SymKind::Function => annotations_of(&mut ctx, sites, id),
            _ => Vec::new(),
        };
        if let Some((full, _)) = symbol_sums(&mut ctx, &own, id) {
            out.full[id.index()] = full;
        }
    }
    // The content hashes are not kept for the code-gap scan (a cache: the few gaps that
    // reach data hash it again).
    ctx.memo = HashMap::default();
    out.gaps = code_gaps(&mut ctx, &by_section);
    out
}

/// The full and line-insensitive checksums of one defined function or data object (`None`
/// for anything else).
fn symbol_sums(
    ctx: &mut Ctx<'_, '_, '_, '_>,
    annotations: &[annotations::Annotation],
    id: SymbolId,
) -> Option<(u64, u64)> {
    let info = ctx.info;
    let s = info.obj.symbol(id);
    let sec = s.section()?;
    let si = info.sym(id);
    if let Some((lsec, start, end)) = info.label_extent(id) {
        // An unsized data label: the bytes it stands for.
        let mut h = ctx.hashers();
        h.both(b"L");
        ctx.content(&mut h, lsec, start, end);
        return Some(ctx.finish(h));
    }
    if !matches!(si.kind, SymKind::Function | SymKind::Object) {
        return None;
    }
    let mut h = ctx.hashers();
    match si.kind {
        SymKind::Function => {
            h.both(b"F");
            hash_code(&mut h, ctx, sec, s.value, s.value.saturating_add(s.size));
            let mut children = info.children(id).to_vec();
            children.sort_by(|a, b| info.stable_name(*a).cmp(info.stable_name(*b)));
            for c in children {
                let cs = info.obj.symbol(c);
                if let Some(csec) = cs.section() {
                    h.both(b"K");
                    h.both(info.stable_name(c).as_bytes());
                    hash_code(
                        &mut h,
                        ctx,
                        csec,
                        cs.value,
                        cs.value.saturating_add(cs.size),
                    );
                }
            }
            for a in annotations {
                h.full.update(&a.full.to_le_bytes());
                h.noline(&a.noline.to_le_bytes());
            }
        }
        _ => hash_object(&mut h, ctx, id),
    }
    Some(ctx.finish(h))
}

/// Full checksums of symbols, by arena slot (0: none).
pub trait FullSums {
    /// The full checksum of `id` (0 for symbols that have none).
    fn full(&self, id: SymbolId) -> u64;
}

impl FullSums for Checksums {
    fn full(&self, id: SymbolId) -> u64 {
        self.full[id.index()]
    }
}

/// Checksums by [`Identity::Names`] computed when first asked for: correlation needs them only
/// for the candidates of groups that names alone do not pair, and for their users, a small
/// part of a kernel.
pub struct LazySums<'i, 'a, 'd, 's> {
    ctx: std::cell::RefCell<Ctx<'i, 'a, 'd, 'static>>,
    /// Where special-section entries apply (only the asked functions' are hashed).
    sites: &'s Sites,
    /// The checksums computed so far (few: correlation asks for the candidates names alone do
    /// not pair, and their users).
    done: std::cell::RefCell<HashMap<SymbolId, u64>>,
}

impl<'i, 'a, 'd, 's> LazySums<'i, 'a, 'd, 's> {
    /// Ready to hash the symbols of `info` by name.
    pub fn new(info: &'i ObjInfo<'a, 'd>, sites: &'s Sites) -> LazySums<'i, 'a, 'd, 's> {
        LazySums {
            ctx: std::cell::RefCell::new(Ctx::new(info, Identity::Names, false)),
            sites,
            done: std::cell::RefCell::new(HashMap::default()),
        }
    }
}

impl FullSums for LazySums<'_, '_, '_, '_> {
    fn full(&self, id: SymbolId) -> u64 {
        if let Some(&v) = self.done.borrow().get(&id) {
            return v;
        }
        let mut ctx = self.ctx.borrow_mut();
        let annotations = annotations_of(&mut ctx, self.sites, id);
        let v = symbol_sums(&mut ctx, &annotations, id).map_or(0, |s| s.0);
        self.done.borrow_mut().insert(id, v);
        v
    }
}

/// Line-insensitive checksums by twin identity, computed on demand: only a function whose
/// full checksum changed is asked (did only `__LINE__` values change?).
pub struct LineSums<'i, 'a, 'd, 't, 's> {
    ctx: std::cell::RefCell<Ctx<'i, 'a, 'd, 't>>,
    sites: &'s Sites,
}

impl<'i, 'a, 'd, 't, 's> LineSums<'i, 'a, 'd, 't, 's> {
    /// Ready to hash the symbols of `info` as `identity` says.
    pub fn new(
        info: &'i ObjInfo<'a, 'd>,
        sites: &'s Sites,
        identity: Identity<'t>,
    ) -> LineSums<'i, 'a, 'd, 't, 's> {
        LineSums {
            ctx: std::cell::RefCell::new(Ctx::new(info, identity, true)),
            sites,
        }
    }

    /// The line-insensitive checksum of `id` (0 for symbols that have none).
    pub fn noline(&self, id: SymbolId) -> u64 {
        let mut ctx = self.ctx.borrow_mut();
        let annotations = annotations_of(&mut ctx, self.sites, id);
        symbol_sums(&mut ctx, &annotations, id).map_or(0, |s| s.1)
    }
}

/// The runs of run-time code (not `__init`/`__exit`) that no function or object symbol
/// covers, alignment padding trimmed (see [`klpforge_arch::Arch::is_padding`]), each hashed
/// like a function's code.
fn code_gaps(ctx: &mut Ctx<'_, '_, '_, '_>, by_section: &SymbolsBySection) -> Vec<CodeGap> {
    let info = ctx.info;
    let mut out = Vec::new();
    let mut seen: HashMap<(String, String), u32> = HashMap::default();
    // What covers the run-time code of a section, and the labels in it: from its symbols
    // (`by_section` groups them), one section at a time (a kernel has
    // tens of thousands of code sections).
    let mut covered: Vec<(u64, u64)> = Vec::new();
    let mut labels: Vec<(u64, SymbolId)> = Vec::new();
    let mut behind = info.obj.release_behind();
    for (sec, s) in info.obj.sections() {
        behind.reached(sec);
        if info.sec(sec).kind != SecKind::Text || info.sec(sec).init {
            continue;
        }
        covered.clear();
        labels.clear();
        for &id in by_section.of(sec) {
            let sym = info.obj.symbol(id);
            let si = info.sym(id);
            match si.kind {
                SymKind::Function | SymKind::Object if sym.size > 0 => {
                    covered.push((sym.value, sym.value.saturating_add(sym.size)))
                }
                SymKind::Function | SymKind::Other
                    if !si.name.is_empty()
                        && !si.name.starts_with(".L")
                        && !si.name.starts_with('$') =>
                {
                    labels.push((sym.value, id));
                }
                _ => {}
            }
        }
        covered.sort_unstable();
        let size = s.size();
        let mut runs = Vec::new();
        let mut at = 0u64;
        for &(a, b) in &covered {
            if a > at {
                runs.push((at, a.min(size)));
            }
            at = at.max(b);
        }
        if at < size {
            runs.push((at, size));
        }
        let runs: Vec<(u64, u64)> = runs
            .into_iter()
            .filter_map(|(a, b)| trim_padding(info, sec, a, b))
            .collect();
        if runs.is_empty() {
            continue;
        }
        // Labels at one address in their own order, not the table's: a gap is named after
        // the last label before it.
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| info.same_place_order(a.1, b.1)));
        let name = s.name_lossy().into_owned();
        for (a, b) in runs {
            let label = labels
                .iter()
                .rev()
                .find(|&&(v, _)| v <= a)
                .map(|&(v, l)| (v, info.sym(l).name));
            let (base, label) = label.unwrap_or((0, ""));
            let n = seen.entry((name.clone(), label.to_string())).or_default();
            let occurrence = *n;
            *n += 1;
            let mut h = ctx.hashers();
            hash_code(&mut h, ctx, sec, a, b);
            out.push(CodeGap {
                key: GapKey {
                    section: name.clone(),
                    label: label.to_string(),
                    occurrence,
                },
                offset: a - base,
                len: b - a,
                full: ctx.finish(h).0,
            });
        }
    }
    out.sort_by(|x, y| x.key.cmp(&y.key));
    out
}

/// `[a, b)` without the padding instructions at either end; `None` when nothing else is left.
/// Bytes that did not decode count as code unless they are all zero.
fn trim_padding(info: &ObjInfo<'_, '_>, sec: SectionId, a: u64, b: u64) -> Option<(u64, u64)> {
    let data = info.obj.section(sec).bytes();
    let bytes = |x: u64, y: u64| data.get(x as usize..y as usize).unwrap_or(&[]);
    let insns = info.code(sec).map(|c| c.range(a, b)).unwrap_or_default();
    let decoded_end = insns.last().map_or(a, |i| i.end());
    let decoded_start = insns.first().map_or(b, |i| i.offset());
    // Undecoded stretches before or after the decoded instructions.
    let odd_before = decoded_start > a && bytes(a, decoded_start).iter().any(|&x| x != 0);
    let odd_after = decoded_end < b && bytes(decoded_end, b).iter().any(|&x| x != 0);
    let real = |i: &&CodeInsn| !info.arch.is_padding(bytes(i.offset(), i.end()));
    let first = insns.iter().find(real).map(|i| i.offset());
    let last = insns.iter().rev().find(real).map(|i| i.end());
    let start = if odd_before {
        Some(a)
    } else {
        first.or(odd_after.then_some(decoded_end))
    };
    let end = if odd_after {
        Some(b)
    } else {
        last.or(odd_before.then_some(decoded_start))
    };
    match (start, end) {
        (Some(s), Some(e)) if s < e => Some((s, e)),
        _ => None,
    }
}
