//! Special sections: arrays of entries that each describe one code location (`__bug_table`,
//! `__jump_table`, `.altinstructions`, `__ex_table`, `__mcount_loc`, ...).
//!
//! The diff object must carry exactly the entries that describe kept code. Entry boundaries
//! come from `sh_entsize` when the assembler recorded it, and otherwise from the relocation
//! stride: every entry of a special section carries the same relocations at the same offsets,
//! so the entry size is the one for which the relocations repeat with a fixed pattern. An
//! entry size that cannot be established is an error naming the section; klpforge never needs
//! a per-kernel table of structure sizes.
//!
//! Which entries the diff object carries is decided here too ([`entry_relevant`],
//! [`must_drop`], [`orc_partner`]); the cloner copies the ones that pass
//! (`clone::entries`).

use crate::HashMap;

use klpforge_elf::{SectionId, SymbolId};
use object::Endian as _;

use crate::analyze::{ObjInfo, Reloc, SecKind, SymKind};
use crate::refs::{string_at, Target};
use crate::refusal::{refusal, Refusal};

/// One entry: `[start, end)` within the section.
pub type Entry = (u64, u64);

/// The entries of a special section, in order. Most have a fixed size (a kernel's ORC, call
/// and return sites are a million and a half entries): those are a stride, not a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entries {
    /// Entries of `size` bytes from the section start; the last may end early, at `end`.
    Stride {
        /// The entry size (non-zero).
        size: u64,
        /// The section size.
        end: u64,
    },
    /// Entries of their own sizes.
    Bounds(Vec<Entry>),
}

impl Entries {
    /// How many entries there are.
    pub fn len(&self) -> usize {
        match self {
            Entries::Stride { size, end } => end.div_ceil(*size) as usize,
            Entries::Bounds(list) => list.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<Entry> {
        match self {
            Entries::Stride { size, end } => {
                let a = (i as u64).checked_mul(*size).filter(|a| a < end)?;
                Some((a, a.saturating_add(*size).min(*end)))
            }
            Entries::Bounds(list) => list.get(i).copied(),
        }
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.len()).map_while(|i| self.get(i))
    }
}

/// Split special section `sec` into entries.
pub fn entries(info: &ObjInfo<'_, '_>, sec: SectionId) -> Result<Entries, String> {
    let s = info.obj.section(sec);
    let size = s.bytes().len() as u64;
    if size == 0 {
        return Ok(Entries::Bounds(Vec::new()));
    }
    if s.sh_entsize > 0 && size % s.sh_entsize == 0 {
        return Ok(Entries::Stride {
            size: s.sh_entsize,
            end: size,
        });
    }
    let starts = annotated_starts(info, sec);
    if !starts.is_empty() {
        let mut out = Vec::with_capacity(starts.len());
        for (i, &a) in starts.iter().enumerate() {
            let b = starts.get(i + 1).copied().unwrap_or(size);
            out.push((a, b));
        }
        return Ok(Entries::Bounds(out));
    }
    let mut relocs: Vec<Field> = Vec::new();
    info.visit_relocations_once(sec, |r| {
        relocs.push(Field {
            offset: r.offset(),
            r_type: r.r_type,
            target: target_class(info, r),
        })
    });
    match stride(&relocs, size) {
        Some(e) => Ok(Entries::Stride { size: e, end: size }),
        None if relocs.is_empty() => Err(format!(
            "special section {} has no relocations and no sh_entsize: its entry size cannot be established",
            s.name_lossy()
        )),
        None => Err(format!(
            "special section {}: entry size cannot be established (no sh_entsize, and its {} relocations over {} bytes do not repeat with a fixed stride)",
            s.name_lossy(),
            relocs.len(),
            size
        )),
    }
}

/// Whether relocation `r` points into a function the diff object holds (`kept`: patched
/// symbol → its clone).
pub fn targets_kept_code(
    info: &ObjInfo<'_, '_>,
    r: &Reloc,
    kept: &HashMap<SymbolId, SymbolId>,
) -> bool {
    match r.target {
        Target::Symbol { sym, .. } => {
            info.sym(sym).kind == SymKind::Function && kept.contains_key(&sym)
        }
        _ => false,
    }
}

/// Whether an entry of special section `name` (with relocations `relocs`) describes kept
/// code: it points into a kept function, or (for `.printk_index`, whose entries point at
/// records naming their function only through a `__func__` string) its record names a kept
/// function.
pub fn entry_relevant(
    info: &ObjInfo<'_, '_>,
    name: &str,
    relocs: &[Reloc],
    kept: &HashMap<SymbolId, SymbolId>,
) -> bool {
    if relocs.iter().any(|r| targets_kept_code(info, r, kept)) {
        return true;
    }
    if name != ".printk_index" {
        return false;
    }
    relocs.iter().any(|r| {
        let Target::Symbol { sym: record, .. } = r.target else {
            return false;
        };
        let rs = info.obj.symbol(record);
        let Some(rsec) = rs.section() else {
            return false;
        };
        info.relocations(rsec)
            .iter()
            .filter(|r2| r2.offset() >= rs.value && r2.offset() < rs.value + rs.size)
            .any(|r2| match r2.target {
                Target::Symbol { sym, .. } if info.sym(sym).name.starts_with("__func__") => {
                    let func_name = string_at(info.symbol_bytes(sym), 0);
                    kept.keys().any(|&k| {
                        info.sym(k).kind == SymKind::Function
                            && info.sym(k).name.as_bytes() == func_name
                    })
                }
                _ => false,
            })
    })
}

/// An entry that cannot be carried, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The warning that says so.
    pub warning: String,
    /// The refusal of the patch, when dropping the entry would change what the code does.
    pub refusal: Option<Refusal>,
}

/// Whether an entry of `__jump_table` or `.static_call_sites` (with relocations `relocs`)
/// must be dropped: its static key or call belongs to a module (`klp_owner` gives the object
/// that owns a key symbol when the reference to it would be a klp relocation). Tracepoint
/// and `pr_debug()` keys are dropped with a warning, any other such key refuses the patch: a
/// klp relocation would be applied only after the key was initialised.
pub fn must_drop(
    info: &ObjInfo<'_, '_>,
    name: &str,
    relocs: &[Reloc],
    mut klp_owner: impl FnMut(&Reloc, SymbolId) -> Option<String>,
) -> Option<Dropped> {
    if name != "__jump_table" && name != ".static_call_sites" {
        return None;
    }
    let code = relocs.iter().find_map(|r| match r.target {
        Target::Symbol { sym, offset } if info.sym(sym).kind == SymKind::Function => {
            Some(format!("{}+{offset:#x}", info.sym(sym).name))
        }
        _ => None,
    })?;
    let warn = |warning: String| {
        Some(Dropped {
            warning,
            refusal: None,
        })
    };
    for r in relocs {
        let Target::Symbol { sym, .. } = r.target else {
            continue;
        };
        if info.sym(sym).kind == SymKind::Function {
            continue;
        }
        let Some(owner) = klp_owner(r, sym) else {
            continue;
        };
        if owner == "vmlinux" {
            continue;
        }
        let key = info.sym(sym).name;
        if name == "__jump_table" && key.starts_with("__tracepoint_") {
            return warn(format!("{code}: disabling unsupported tracepoint {key} (its static key is owned by module {owner})"));
        }
        if name == "__jump_table"
            && (key.contains("__UNIQUE_ID_ddebug") || key.starts_with("descriptor"))
        {
            return warn(format!("{code}: disabling unsupported pr_debug() (its static key is owned by module {owner})"));
        }
        if name == ".static_call_sites" && key.starts_with("__SCK__tp_func_") {
            return warn(format!("{code}: tracepoint static call {key} left to its trampoline (key owned by module {owner})"));
        }
        let (what, remedy) = if name == "__jump_table" {
            ("static branch key", "use static_key_enabled() instead")
        } else {
            (
                "static call key",
                "use KLP_STATIC_CALL() (or KPATCH_STATIC_CALL()) instead",
            )
        };
        return Some(Dropped {
            warning: format!("{code}: {what} {key} refused"),
            refusal: Some(refusal(
                key,
                format!("{code}: unsupported {what} {key} owned by module {owner}: a klp relocation would be applied after the key was initialised"),
                remedy,
            )),
        });
    }
    None
}

/// The `.orc_unwind` section that travels with `.orc_unwind_ip` section `ip`: its entries
/// have no relocations, entry i belongs to the i-th `.orc_unwind_ip` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrcPartner {
    /// The `.orc_unwind` section.
    pub section: SectionId,
    /// The size of one of its entries.
    pub entry_size: u64,
}

/// The `.orc_unwind` partner of `.orc_unwind_ip` section `ip`, if the object has one; an
/// error if it does not hold one entry per `.orc_unwind_ip` entry.
pub fn orc_partner(info: &ObjInfo<'_, '_>, ip: SectionId) -> Result<Option<OrcPartner>, String> {
    let Some(orc) = info.section_named(b".orc_unwind") else {
        return Ok(None);
    };
    let n = info.obj.section(ip).bytes().len() as u64 / 4;
    let size = info.obj.section(orc).bytes().len() as u64;
    if n == 0 || size % n != 0 {
        return Err(format!(
            ".orc_unwind ({size} bytes) does not hold one entry per .orc_unwind_ip entry ({n})"
        ));
    }
    Ok(Some(OrcPartner {
        section: orc,
        entry_size: size / n,
    }))
}

/// Most relocations one entry of a special section carries (a jump-table entry has three,
/// printk-index entries a few more). Bounding it keeps a section whose relocations do not
/// repeat from being read as one giant entry.
pub const MAX_RELOCS_PER_ENTRY: usize = 6;

/// `ANNOTYPE_DATA_SPECIAL`: the type of an annotation marking the start of a special entry.
pub const ANNOTYPE_DATA_SPECIAL: u32 = 1;

/// Entry starts of `sec` given by `ANNOTATE_DATA_SPECIAL` annotations: 8-byte records in
/// `.discard.annotate_data`, a PC-relative pointer to the entry and a 32-bit type. Sorted,
/// empty when the section has none.
pub fn annotated_starts(info: &ObjInfo<'_, '_>, sec: SectionId) -> Vec<u64> {
    let Some(ann) = info.section_named(b".discard.annotate_data") else {
        return Vec::new();
    };
    let data = info.obj.section(ann).bytes();
    let endian = info.obj.header.endian.to_object();
    let mut out = Vec::new();
    // The symbol and addend as written (the entries point into `sec` through its section
    // symbol or a symbol in it): from the object's own table.
    for r in info.model_relocations(ann).flatten() {
        let off = r.offset as usize;
        if off % 8 != 0 || off + 8 > data.len() {
            continue;
        }
        let t = [data[off + 4], data[off + 5], data[off + 6], data[off + 7]];
        if endian.read_u32(t) != ANNOTYPE_DATA_SPECIAL {
            continue;
        }
        let Some(sym) = r.symbol else { continue };
        let s = info.obj.symbol(sym);
        if s.section() != Some(sec) {
            continue;
        }
        // A data pointer: no instruction bias.
        out.push((s.value as i64 + r.addend).max(0) as u64);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// One relocated field of a special section, as the stride search sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Offset in the section.
    pub offset: u64,
    /// Relocation type.
    pub r_type: u32,
    /// What kind of thing it points at (see [`target_class`]).
    pub target: u8,
}

/// A coarse class of relocation target: code (1), anything else (3), or nothing (0). Fields
/// of one entry usually point at different classes (code and key, code and file name), which
/// tells an entry of several pointers from several entries of one pointer.
pub fn target_class(info: &ObjInfo<'_, '_>, r: &Reloc) -> u8 {
    let code = |s: SectionId| matches!(info.sec(s).kind, SecKind::Text | SecKind::SpecialAux);
    match r.target {
        Target::Absolute { .. } => 0,
        Target::Section { sec, .. } if code(sec) => 1,
        Target::Symbol { sym, .. } if info.obj.symbol(sym).section().is_some_and(code) => 1,
        _ => 3,
    }
}

/// The entry size implied by relocations that repeat with a fixed pattern, if one fits (the
/// pattern with the fewest relocations per entry wins). The last entry may be shorter than
/// the others: assemblers do not pad the end of a section to the structure's alignment.
pub fn stride(relocs: &[Field], size: u64) -> Option<u64> {
    let n = relocs.len();
    if n == 0 {
        return None;
    }
    for per_entry in 1..=n.min(MAX_RELOCS_PER_ENTRY) {
        if n % per_entry != 0 {
            continue;
        }
        let count = (n / per_entry) as u64;
        let pattern: Vec<(u64, u32, u8)> = relocs[..per_entry]
            .iter()
            .map(|r| (r.offset, r.r_type, r.target))
            .collect();
        let e = if count == 1 {
            size
        } else {
            relocs[per_entry].offset.saturating_sub(relocs[0].offset)
        };
        if e == 0 || pattern.iter().any(|&(off, _, _)| off >= e) {
            continue;
        }
        // The last entry starts inside the section and the section ends within it.
        if (count - 1).saturating_mul(e) >= size || size > count.saturating_mul(e) {
            continue;
        }
        let consistent = relocs.chunks(per_entry).enumerate().all(|(i, chunk)| {
            let base = i as u64 * e;
            chunk.iter().zip(&pattern).all(|(r, &(off, ty, class))| {
                r.offset == base + off && r.r_type == ty && r.target == class
            })
        });
        if consistent {
            return Some(e);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(offset: u64, r_type: u32) -> Field {
        Field {
            offset,
            r_type,
            target: 1,
        }
    }

    fn rc(offset: u64, r_type: u32, target: u8) -> Field {
        Field {
            offset,
            r_type,
            target,
        }
    }

    #[test]
    fn stride_of_two_relocation_entries() {
        // 12-byte entries with relocations at 0 and 4 (a bug table).
        let relocs: Vec<_> = (0..5)
            .flat_map(|i| [r(12 * i, 2), r(12 * i + 4, 2)])
            .collect();
        assert_eq!(stride(&relocs, 60), Some(12));
        // 16-byte jump entries with three relocations.
        let relocs: Vec<_> = (0..3)
            .flat_map(|i| [r(16 * i, 2), r(16 * i + 4, 2), r(16 * i + 8, 24)])
            .collect();
        assert_eq!(stride(&relocs, 48), Some(16));
        // 16-byte entries whose last one is not padded (`.parainstructions`).
        let relocs: Vec<_> = (0..8).map(|i| r(16 * i, 1)).collect();
        assert_eq!(stride(&relocs, 124), Some(16));
        // 24-byte absolute jump entries: code, code, key. Same type everywhere; the key's
        // class tells the entries apart from a pointer array.
        let relocs: Vec<_> = (0..4)
            .flat_map(|i| {
                [
                    rc(24 * i, 1, 1),
                    rc(24 * i + 8, 1, 1),
                    rc(24 * i + 16, 1, 3),
                ]
            })
            .collect();
        assert_eq!(stride(&relocs, 96), Some(24));
        // Pointer arrays.
        let relocs: Vec<_> = (0..4).map(|i| r(8 * i, 1)).collect();
        assert_eq!(stride(&relocs, 32), Some(8));
        // A single entry with three relocations.
        assert_eq!(stride(&[r(0, 2), r(4, 2), r(12, 2)], 24), Some(24));
        // Irregular: no period fits.
        let irregular: Vec<_> = [0, 5, 9, 30, 31, 40, 47, 50]
            .iter()
            .map(|&o| r(o, 2))
            .collect();
        assert_eq!(stride(&irregular, 64), None);
        assert_eq!(stride(&[], 24), None);
    }
}
