//! Carrying special-section entries into the diff object: every entry of a special section
//! (`__jump_table`, `.altinstructions`, `__ex_table`, `.orc_unwind_ip`, ...) that describes
//! kept code is copied with its relocations, which may pull in more code and data. Which
//! entries qualify, which must be dropped, and how sections split into entries is decided in
//! [`crate::special`].

use klpforge_elf::SectionId;
use object::elf;

use super::decide::Decision;
use super::{Cloner, SpecialStat};
use crate::analyze::{relocs_in, Reloc, SecKind};
use crate::refs::Target;
use crate::refusal::refusal;
use crate::special::{self, OrcPartner};

/// The remedy for a special section klpforge cannot read.
const REPORT_IT: &str = "report this object to the klpforge developers";

impl Cloner<'_, '_, '_> {
    /// Carry the special-section entries that describe kept code and have not been carried
    /// yet; whether any were.
    pub(super) fn carry_special_entries(&mut self) -> bool {
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
                        .any(|r| special::targets_kept_code(p, r, &self.clone_of));
                    if relevant && !self.refusals.iter().any(|r| r.symbol == name) {
                        self.refusals.push(refusal(&name, e, REPORT_IT));
                    }
                    continue;
                }
            };
            let relocs = p.relocations(psec);
            // `.orc_unwind` entries have no relocations: entry i belongs to the i-th
            // `.orc_unwind_ip` entry, so they travel together.
            let orc = if name == ".orc_unwind_ip" {
                match special::orc_partner(p, psec) {
                    Ok(orc) => orc,
                    Err(e) => {
                        self.refusals.push(refusal(&name, e, REPORT_IT));
                        continue;
                    }
                }
            } else {
                None
            };
            for (start, end) in entries {
                if self.carried.contains(&(psec, start)) {
                    continue;
                }
                let here = relocs_in(relocs, start, end);
                if !special::entry_relevant(p, &name, here, &self.clone_of) {
                    continue;
                }
                self.carried.insert((psec, start));
                progressed = true;
                let dropped =
                    special::must_drop(p, &name, here, |r, sym| match self.decide(psec, r, sym) {
                        Decision::Klp(target) => Some(target.objname),
                        _ => None,
                    });
                let stat = self
                    .special_stats
                    .entry(name.clone())
                    .or_insert_with(|| SpecialStat {
                        section: name.clone(),
                        kept: 0,
                        dropped: 0,
                    });
                if let Some(dropped) = dropped {
                    stat.dropped += 1;
                    self.refusals.extend(dropped.refusal);
                    self.warnings.push(dropped.warning);
                    continue;
                }
                stat.kept += 1;
                let link = self.entry_link(psec, here);
                let out = self.out_section_for(psec, link);
                let align = p
                    .obj
                    .section(psec)
                    .sh_addralign
                    .max(1)
                    .min(end - start)
                    .max(1);
                let at = self.copy_chunk(psec, start, end, out, align);
                for r in here {
                    self.translate(psec, r, out, at + (r.offset - start));
                }
                if let Some(partner) = orc {
                    self.carry_orc_entry(partner, start / (end - start));
                }
            }
        }
        progressed
    }

    /// Copy entry `i` of `.orc_unwind` (check_object made sure every `.orc_unwind_ip` entry
    /// has its entry).
    fn carry_orc_entry(&mut self, orc: OrcPartner, i: u64) {
        let p = self.p;
        let size = orc.entry_size;
        let range = (i * size) as usize..((i + 1) * size) as usize;
        if let Some(bytes) = p.obj.section(orc.section).bytes().get(range) {
            let out = self.out_section_for(orc.section, None);
            self.append(out, Some(bytes), size, 1);
        }
    }

    /// For an entry of an `SHF_LINK_ORDER` section (`__patchable_function_entries`): the
    /// output section of the code it describes, which its output section must link to.
    fn entry_link(&self, psec: SectionId, relocs: &[Reloc]) -> Option<SectionId> {
        if self.p.obj.section(psec).sh_flags & elf::SHF_LINK_ORDER.0 == 0 {
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
}
