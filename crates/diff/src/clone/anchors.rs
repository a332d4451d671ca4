//! Section anchors into writable data in cloned code: refused unless the running kernel has
//! the same layout (read-only sections are copied whole instead: `Cloner::clone_whole`).
//!
//! Built without `-fdata-sections` (kbuild's `init/` ends its command in
//! `-fno-data-sections`), gcc on ppc64, aarch64 and s390x puts the address of a shared
//! `.data`, `.bss` or `.rodata` into a register once (the anchor, a relocated address) and
//! reaches the section's variables at displacements from it that carry no relocation. The
//! clone's anchor becomes a reference to the kernel's variable at the anchor, so each
//! displacement lands where the patched object put a variable: right only if the original
//! object, which is what the kernel holds, has every variable of the section at the same
//! place relative to the anchor, and no variable the module needs its own copy of.

use klpforge_elf::{SectionId, SymbolId};

use crate::analyze::{Anchor, SecKind};
use crate::refusal::refusal;

use super::Cloner;

impl Cloner<'_, '_, '_, '_, '_> {
    /// Refuse function `psym` (`[start, end)` of code section `psec`) when it sets up a section
    /// anchor whose section is laid out differently in the original object.
    pub(super) fn refuse_moved_anchors(
        &mut self,
        psym: SymbolId,
        psec: SectionId,
        start: u64,
        end: u64,
    ) {
        let p = self.p;
        let mut seen: Vec<Anchor> = Vec::new();
        for r in p.relocations_in(psec, start, end) {
            // Read-only sections reached through an anchor are copied whole (`translate`).
            let Some(a) = p
                .anchor(psec, r)
                .filter(|a| p.sec(a.sec).kind != SecKind::Rodata)
            else {
                continue;
            };
            if seen.contains(&a) {
                continue;
            }
            seen.push(a);
            if let Some(why) = self.anchor_layout_differs(a) {
                let name = &p.sym(psym).name;
                let site = r.offset() - p.obj.symbol(psym).value;
                self.refusals.push(refusal(
                    name,
                    format!(
                        "{name}+{site:#x} reaches {} through a section anchor ({}{}; the object was built without -fdata-sections) and {why}: the module would address the running kernel's variables at the patched object's offsets",
                        p.obj.section(a.sec).name_lossy(),
                        p.obj.section(a.sec).name_lossy(),
                        signed_hex(a.offset)
                    ),
                    "leave that section's variables where they are (add new data as a shadow variable, klp_shadow_get_or_alloc, or in a section of its own, __section), or build the object with -fdata-sections",
                ));
                return;
            }
        }
    }

    /// Why the section of patched anchor `a` is not laid out as the original object's around
    /// the same anchor, if it is not.
    fn anchor_layout_differs(&self, a: Anchor) -> Option<String> {
        let (o, p) = (self.o, self.p);
        let Some(base) = p.symbol_at(a.sec, a.offset) else {
            return Some("the anchor lies in no variable".into());
        };
        let Some(obase) = self.twins.of_patched(base) else {
            return Some(format!(
                "the anchor lies in {}, which is new",
                p.sym(base).name
            ));
        };
        let osym = o.obj.symbol(obase);
        let Some(osec) = osym.section() else {
            return Some(format!(
                "{} is in no section of the original",
                p.sym(base).name
            ));
        };
        let oanchor = (osym.value as i64)
            .wrapping_add(a.offset.wrapping_sub(p.obj.symbol(base).value as i64));
        for &(start, end, sym) in p.ranges(a.sec) {
            let name = &p.sym(sym).name;
            if self.fresh.contains(&sym) {
                return Some(format!(
                    "{name} changed: the module's own copy would not be the one read"
                ));
            }
            let Some(twin) = self.twins.of_patched(sym) else {
                return Some(format!("{name} is new"));
            };
            let t = o.obj.symbol(twin);
            let at = i64::from(start).wrapping_sub(a.offset);
            let was = (t.value as i64).wrapping_sub(oanchor);
            if t.section() != Some(osec) || was != at {
                return Some(format!(
                    "{name} moved (anchor{} in the original, anchor{} patched)",
                    signed_hex(was),
                    signed_hex(at)
                ));
            }
            if t.size != u64::from(end - start) {
                return Some(format!(
                    "{name} changed size ({} bytes, was {})",
                    end - start,
                    t.size
                ));
            }
        }
        None
    }
}

/// `+0x10` / `-0x8`.
pub(super) fn signed_hex(v: i64) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("+{v:#x}")
    }
}
