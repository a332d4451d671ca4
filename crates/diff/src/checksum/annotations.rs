//! The entries of special sections (alternatives, jump labels, exception tables, bug tables,
//! static calls, ...) hashed into the function they describe: they change what it does
//! without changing its bytes.

use crate::HashMap;

use klpforge_elf::{SectionId, SymbolId};

use super::{field_size, hash_code, masked_bytes, Ctx};
use crate::analyze::{relocs_in, ObjInfo, Reloc, RelocCursor, SecKind, SymKind};
use crate::refs::Target;
use crate::special;

/// Special sections whose entries change what a function does without changing its bytes:
/// which code an alternative patches in, which static key a branch follows, where an
/// exception is fixed up, what a bug-table entry reports. Their entries are hashed into the
/// function they describe.
const CODE_ANNOTATION_SECTIONS: &[&str] = &[
    ".altinstructions",
    "__jump_table",
    "__ex_table",
    "__bug_table",
    ".static_call_sites",
    ".smp_locks",
    ".parainstructions",
];

/// The hash of one special entry, and where in its function it applies.
pub(super) struct Annotation {
    pub(super) at: (u64, u64),
    pub(super) full: u64,
    pub(super) noline: u64,
}

/// Where the entries of the [`CODE_ANNOTATION_SECTIONS`] apply: found once per object (it
/// does not depend on how references are hashed), hashed for all functions or for one.
pub struct Sites {
    /// Boundaries of the pieces of auxiliary code (alternative replacements, fixups), from
    /// every reference special entries make into them; sorted.
    aux_bounds: HashMap<SectionId, Vec<u64>>,
    sections: Vec<SiteSection>,
    /// The entries of each function, in section and entry order: `(section, entry)`.
    by_owner: HashMap<SymbolId, Vec<(u32, u32)>>,
}

struct SiteSection {
    sec: SectionId,
    name: String,
    /// The entry byte holding its replacement's length ([`replacement_length_field`]).
    len_field: Option<u64>,
    entries: Vec<Site>,
}

struct Site {
    start: u64,
    end: u64,
    /// Where in its function (the parent, for a `.cold` part, which `by_owner` files it
    /// under): (0 for the function, 1 for a `.cold` part; offset).
    at: (u64, u64),
}

impl Sites {
    /// Attach each entry of the [`CODE_ANNOTATION_SECTIONS`] of `info` to the function (the
    /// parent, for `.cold` parts) its first code reference lands in.
    pub fn new(info: &ObjInfo<'_, '_>) -> Sites {
        let mut aux_bounds: HashMap<SectionId, Vec<u64>> = HashMap::default();
        let specials: Vec<SectionId> = info
            .obj
            .sections()
            .filter(|(id, s)| {
                info.sec(*id).kind == SecKind::Special
                    && CODE_ANNOTATION_SECTIONS.contains(&s.name_lossy().as_ref())
            })
            .map(|(id, _)| id)
            .collect();
        for &sec in &specials {
            for r in info.relocations(sec) {
                if let Target::Section { sec: aux, offset } = r.target {
                    if info.sec(aux).kind == SecKind::SpecialAux {
                        aux_bounds
                            .entry(aux)
                            .or_default()
                            .push(offset.max(0) as u64);
                    }
                }
            }
        }
        for list in aux_bounds.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        let mut sections = Vec::new();
        let mut by_owner: HashMap<SymbolId, Vec<(u32, u32)>> = HashMap::default();
        for sec in specials {
            let name = info.obj.section(sec).name_lossy().into_owned();
            let Ok(entries) = special::entries(info, sec) else {
                continue;
            };
            let relocs = info.relocations(sec);
            let len_field = replacement_length_field(info, sec, &entries, relocs, &aux_bounds);
            let mut cursor = RelocCursor::new(relocs);
            let mut sites = Vec::new();
            for (start, end) in entries.iter() {
                let here = cursor.take(start, end);
                let owner = here.iter().find_map(|r| match r.target {
                    Target::Symbol { sym, offset } if info.sym(sym).kind == SymKind::Function => {
                        let parent = info.sym(sym).parent.unwrap_or(sym);
                        Some((parent, (u64::from(parent != sym), offset.max(0) as u64)))
                    }
                    _ => None,
                });
                let Some((owner, at)) = owner else { continue };
                // A jump-label entry whose target is its own site patches nothing: compilers
                // leave such entries behind when a branch was folded.
                if name == "__jump_table" && degenerate_jump_entry(info, here) {
                    continue;
                }
                by_owner
                    .entry(owner)
                    .or_default()
                    .push((sections.len() as u32, sites.len() as u32));
                sites.push(Site { start, end, at });
            }
            sections.push(SiteSection {
                sec,
                name,
                len_field,
                entries: sites,
            });
        }
        Sites {
            aux_bounds,
            sections,
            by_owner,
        }
    }
}

/// The special entries of one function (the parent, for `.cold` parts), hashed, in site
/// order.
pub(super) fn annotations_of(
    ctx: &mut Ctx<'_, '_, '_, '_>,
    sites: &Sites,
    owner: SymbolId,
) -> Vec<Annotation> {
    let mut list: Vec<Annotation> = sites
        .by_owner
        .get(&owner)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|&(s, e)| {
            let section = &sites.sections[s as usize];
            hash_site(ctx, sites, section, &section.entries[e as usize])
        })
        .collect();
    finish(&mut list);
    list
}

/// Sort one function's entries by site; identical entries for one site say the same thing
/// once.
fn finish(list: &mut Vec<Annotation>) {
    list.sort_by_key(|a| (a.at, a.full));
    list.dedup_by_key(|a| (a.at, a.full, a.noline));
}

/// Hash one entry: its bytes (relocated fields and a bug entry's line masked), and what each
/// reference means (auxiliary code by content).
fn hash_site(
    ctx: &mut Ctx<'_, '_, '_, '_>,
    sites: &Sites,
    section: &SiteSection,
    site: &Site,
) -> Annotation {
    let info = ctx.info;
    let (sec, name, len_field) = (section.sec, &section.name, section.len_field);
    let aux_bounds = &sites.aux_bounds;
    let (start, end, at) = (site.start, site.end, site.at);
    let here = relocs_in(info.relocations(sec), start, end);
    let data = info.obj.section(sec).bytes();
    let mut h = ctx.hashers();
    h.both(name.as_bytes());
    let bytes = masked_bytes(info, sec, start, end, here);
    h.full.update(&bytes);
    // Bug-table entries with a file name carry __LINE__ in the 16-bit field right
    // after their relocated fields (the flags follow it): only that field is masked.
    if !h.lines {
        // No line-insensitive checksum wanted.
    } else if name == "__bug_table" && here.len() >= 2 {
        let line_at = here
            .iter()
            .map(|r| (r.offset() - start) as usize + field_size(info, r.r_type))
            .max()
            .unwrap_or(0);
        let mut masked = bytes.clone();
        let line_end = (line_at + 2).min(masked.len());
        masked[line_at.min(line_end)..line_end].fill(0);
        h.noline(&masked);
    } else {
        h.noline(&bytes);
    }
    for r in here {
        h.both(&(r.offset() - start).to_le_bytes());
        h.both(&r.r_type.to_le_bytes());
        match r.target {
            Target::Section { sec: aux, offset } if info.sec(aux).kind == SecKind::SpecialAux => {
                // The replacement code itself, by content.
                let bounds = &aux_bounds[&aux];
                let a = offset.max(0) as u64;
                let size = info.obj.section(aux).bytes().len() as u64;
                let next = next_bound(bounds, a).unwrap_or(size);
                // The entry's own length field when one was found: a zero-length
                // replacement shares its offset with the next entry's code.
                let b = match len_field {
                    Some(p) => (a + u64::from(data[(start + p) as usize])).min(size),
                    None => next,
                };
                h.both(b"AUX");
                hash_code(&mut h, ctx, aux, a, b);
            }
            t => ctx.hash_target(&mut h, t),
        }
    }
    let (full, noline) = ctx.finish(h);
    Annotation { at, full, noline }
}

/// The first of the sorted `bounds` above `a` (a binary search: a kernel's alternatives
/// have tens of thousands of pieces).
fn next_bound(bounds: &[u64], a: u64) -> Option<u64> {
    bounds.get(bounds.partition_point(|&x| x <= a)).copied()
}

/// In a section whose entries point at auxiliary code (`.altinstructions` into
/// `.altinstr_replacement`), the offset of the byte holding the length of that code: the
/// unrelocated byte position that never exceeds the distance to the next referenced piece
/// and equals it in at least half of the entries (at least four). Structure layouts vary between kernel versions;
/// the data tells which byte it is.
fn replacement_length_field(
    info: &ObjInfo<'_, '_>,
    sec: SectionId,
    entries: &special::Entries,
    relocs: &[Reloc],
    aux_bounds: &HashMap<SectionId, Vec<u64>>,
) -> Option<u64> {
    let data = info.obj.section(sec).bytes();
    let mut samples: Vec<(u64, u64, u64)> = Vec::new(); // (entry start, entry len, piece len)
    let mut reloc_fields: Vec<(u64, u64)> = Vec::new(); // relocated (offset in entry, size)
    let mut cursor = RelocCursor::new(relocs);
    for (start, end) in entries.iter() {
        for r in cursor.take(start, end) {
            reloc_fields.push((r.offset() - start, field_size(info, r.r_type) as u64));
            if let Target::Section { sec: aux, offset } = r.target {
                if let Some(bounds) = aux_bounds.get(&aux) {
                    let a = offset.max(0) as u64;
                    let size = info.obj.section(aux).bytes().len() as u64;
                    let b = next_bound(bounds, a).unwrap_or(size);
                    samples.push((start, end - start, b.saturating_sub(a)));
                }
            }
        }
    }
    if samples.len() < 4 {
        return None;
    }
    let min_len = samples.iter().map(|s| s.1).min()?;
    let mut best: Option<(usize, u64)> = None;
    for p in 0..min_len {
        if reloc_fields.iter().any(|&(o, sz)| p >= o && p < o + sz) {
            continue;
        }
        // A length never exceeds the distance to the next piece; an instruction-length
        // field (equal most of the time too) does when a replacement is shorter.
        let value = |start: u64| u64::from(data[(start + p) as usize]);
        if samples
            .iter()
            .any(|&(start, _, piece)| value(start) > piece)
        {
            continue;
        }
        let hits = samples
            .iter()
            .filter(|&&(start, _, piece)| value(start) == piece)
            .count();
        if best.is_none_or(|(h, _)| hits > h) {
            best = Some((hits, p));
        }
    }
    let (hits, p) = best?;
    // Zero-length and padded replacements make exact matches rarer than the bound; half of
    // the entries (70% in a 6.12 vmlinux) matching exactly, with no violation, is telling.
    (hits >= 4 && hits * 2 >= samples.len()).then_some(p)
}

/// Whether the first two code references of a jump-table entry (site and target) coincide.
fn degenerate_jump_entry(info: &ObjInfo<'_, '_>, relocs: &[Reloc]) -> bool {
    let code: Vec<(SymbolId, i64)> = relocs
        .iter()
        .filter_map(|r| match r.target {
            Target::Symbol { sym, offset } if info.sym(sym).kind == SymKind::Function => {
                Some((sym, offset))
            }
            _ => None,
        })
        .take(2)
        .collect();
    code.len() == 2 && code[0] == code[1]
}
