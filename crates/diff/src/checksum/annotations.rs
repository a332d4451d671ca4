//! The entries of special sections (alternatives, jump labels, exception tables, bug tables,
//! static calls, ...) hashed into the function they describe: they change what it does
//! without changing its bytes.

use std::collections::HashMap;

use klpforge_elf::{SectionId, SymbolId};

use super::{field_size, hash_code, masked_bytes, Ctx, Hashers};
use crate::analyze::{ObjInfo, Reloc, RelocCursor, SecKind, SymKind};
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

/// Hash each entry of the [`CODE_ANNOTATION_SECTIONS`] and attach it to the function (the
/// parent, for `.cold` parts) its first code reference lands in.
pub(super) fn code_annotations(
    ctx: &mut Ctx<'_, '_, '_, '_>,
) -> HashMap<SymbolId, Vec<Annotation>> {
    let info = ctx.info;
    let mut out: HashMap<SymbolId, Vec<Annotation>> = HashMap::new();
    // Boundaries of the pieces of auxiliary code (alternative replacements, fixups), from
    // every reference special entries make into them.
    let mut aux_bounds: HashMap<SectionId, Vec<u64>> = HashMap::new();
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
    for sec in specials {
        let name = info.obj.section(sec).name_lossy().into_owned();
        let Ok(entries) = special::entries(info, sec) else {
            continue;
        };
        let relocs = info.relocations(sec);
        let data = info.obj.section(sec).bytes();
        let len_field = replacement_length_field(info, sec, &entries, relocs, &aux_bounds);
        let mut cursor = RelocCursor::new(relocs);
        for (start, end) in entries {
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
            let mut h = Hashers::new();
            h.both(name.as_bytes());
            let bytes = masked_bytes(info, sec, start, end, here);
            h.full.update(&bytes);
            // Bug-table entries with a file name carry __LINE__ in the 16-bit field right
            // after their relocated fields (the flags follow it): only that field is masked.
            if name == "__bug_table" && here.len() >= 2 {
                let line_at = here
                    .iter()
                    .map(|r| (r.offset - start) as usize + field_size(info, r))
                    .max()
                    .unwrap_or(0);
                let mut masked = bytes.clone();
                let line_end = (line_at + 2).min(masked.len());
                masked[line_at.min(line_end)..line_end].fill(0);
                h.noline.update(&masked);
            } else {
                h.noline.update(&bytes);
            }
            for r in here {
                h.both(&(r.offset - start).to_le_bytes());
                h.both(&r.r_type.to_le_bytes());
                match r.target {
                    Target::Section { sec: aux, offset }
                        if info.sec(aux).kind == SecKind::SpecialAux =>
                    {
                        // The replacement code itself, by content.
                        let bounds = &aux_bounds[&aux];
                        let a = offset.max(0) as u64;
                        let size = info.obj.section(aux).bytes().len() as u64;
                        let next = bounds.iter().copied().find(|&x| x > a).unwrap_or(size);
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
            out.entry(owner).or_default().push(Annotation {
                at,
                full: h.full.digest(),
                noline: h.noline.digest(),
            });
        }
    }
    for list in out.values_mut() {
        list.sort_by_key(|a| (a.at, a.full));
        // Identical entries for one site say the same thing once.
        list.dedup_by_key(|a| (a.at, a.full, a.noline));
    }
    out
}

/// In a section whose entries point at auxiliary code (`.altinstructions` into
/// `.altinstr_replacement`), the offset of the byte holding the length of that code: the
/// unrelocated byte position that never exceeds the distance to the next referenced piece
/// and equals it in at least half of the entries (at least four). Structure layouts vary between kernel versions;
/// the data tells which byte it is.
fn replacement_length_field(
    info: &ObjInfo<'_, '_>,
    sec: SectionId,
    entries: &[special::Entry],
    relocs: &[Reloc],
    aux_bounds: &HashMap<SectionId, Vec<u64>>,
) -> Option<u64> {
    let data = info.obj.section(sec).bytes();
    let mut samples: Vec<(u64, u64, u64)> = Vec::new(); // (entry start, entry len, piece len)
    let mut reloc_fields: Vec<(u64, u64)> = Vec::new(); // relocated (offset in entry, size)
    let mut cursor = RelocCursor::new(relocs);
    for &(start, end) in entries {
        for r in cursor.take(start, end) {
            reloc_fields.push((r.offset - start, field_size(info, r) as u64));
            if let Target::Section { sec: aux, offset } = r.target {
                if let Some(bounds) = aux_bounds.get(&aux) {
                    let a = offset.max(0) as u64;
                    let size = info.obj.section(aux).bytes().len() as u64;
                    let b = bounds.iter().copied().find(|&x| x > a).unwrap_or(size);
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
