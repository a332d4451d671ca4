//! Carrying special-section entries into the diff object: every entry of a special section
//! (`__jump_table`, `.altinstructions`, `__ex_table`, `.orc_unwind_ip`, ...) that describes
//! kept code is copied with its relocations, which may pull in more code and data. Which
//! entries qualify, which must be dropped, and how sections split into entries is decided in
//! [`crate::special`].

use crate::HashMap;
use std::collections::BTreeSet;

use klpforge_elf::{SectionId, SymbolId};
use object::elf;

use super::decide::Decision;
use super::{Cloner, SpecialStat};
use crate::analyze::{ObjInfo, Reloc, SecKind, SymKind};
use crate::refs::Target;
use crate::refusal::refusal;
use crate::special::{self, OrcPartner};

/// The special sections of the patched object read once: their entries, and which entries
/// refer to each function (an entry is carried only when a function it refers to is kept).
/// Built before cloning ([`SpecialIndex::new`]), while correlation runs.
pub struct SpecialIndex {
    sections: Vec<IndexedSection>,
    /// The entries referring to each function, as runs, sorted by function (a function's
    /// ORC, call and return sites lie together: a kernel has millions of entries, a few
    /// hundred thousand runs; one flat table, not a list per function).
    runs: Vec<EntryRun>,
}

/// Entries `first..first + count` of special section number `section` refer to `function`.
#[derive(Clone, Copy)]
struct EntryRun {
    function: SymbolId,
    section: u32,
    first: u32,
    count: u32,
}

struct IndexedSection {
    psec: SectionId,
    name: String,
    entries: Result<special::Entries, String>,
    orc: Result<Option<OrcPartner>, String>,
}

impl SpecialIndex {
    /// Read and index the special sections of `p` (the patched object).
    pub fn new(p: &ObjInfo<'_, '_>) -> SpecialIndex {
        let mut sections = Vec::new();
        let mut runs: Vec<EntryRun> = Vec::new();
        // Each function's last run so far (while indexing).
        let mut last: HashMap<SymbolId, usize> = HashMap::default();
        for (psec, s) in p.obj.sections() {
            if p.sec(psec).kind != SecKind::Special {
                continue;
            }
            let name = s.name_lossy().into_owned();
            let entries = special::entries(p, psec);
            let orc = if name == ".orc_unwind_ip" && entries.is_ok() {
                special::orc_partner(p, psec)
            } else {
                Ok(None)
            };
            let n = sections.len() as u32;
            if let Ok(list) = &entries {
                // Entries ascend without overlapping: walk them beside the relocations (in
                // offset order), each relocation in the entry holding it. The table is
                // resolved for this walk only: cloning reads few of these entries again.
                let mut spans = list.iter().enumerate().peekable();
                p.visit_relocations_once(psec, |r| {
                    while spans.next_if(|&(_, (_, end))| end <= r.offset()).is_some() {}
                    let Some(&(e, (start, _))) = spans.peek() else {
                        return;
                    };
                    let Target::Symbol { sym, .. } = r.target else {
                        return;
                    };
                    if start > r.offset() || p.sym(sym).kind != SymKind::Function {
                        return;
                    }
                    let e = e as u32;
                    match last.get(&sym).map(|&k| &mut runs[k]) {
                        Some(r) if r.section == n && r.first + r.count == e => r.count += 1,
                        Some(r) if r.section == n && r.first + r.count > e => {}
                        _ => {
                            last.insert(sym, runs.len());
                            runs.push(EntryRun {
                                function: sym,
                                section: n,
                                first: e,
                                count: 1,
                            });
                        }
                    }
                });
            }
            // Cloning reads a few entries' relocations again, from the file.
            p.release_relocations(psec);
            sections.push(IndexedSection {
                psec,
                name,
                entries,
                orc,
            });
        }
        // Each function's runs together, in the order found (a stable sort).
        runs.sort_by_key(|r| r.function);
        runs.shrink_to_fit();
        SpecialIndex { sections, runs }
    }

    /// The positions (section number, entry number) of the entries referring to `f`, in order.
    fn entries_of(&self, f: SymbolId) -> impl Iterator<Item = (usize, usize)> + '_ {
        let from = self.runs.partition_point(|r| r.function < f);
        self.runs[from..]
            .iter()
            .take_while(move |r| r.function == f)
            .flat_map(|r| {
                (r.first..r.first + r.count).map(move |e| (r.section as usize, e as usize))
            })
    }
}

/// The remedy for a special section klpforge cannot read.
const REPORT_IT: &str = "report this object to the klpforge developers";

impl Cloner<'_, '_, '_, '_, '_> {
    /// Carry the special-section entries that describe kept code and have not been carried
    /// yet; whether any were. Entries are visited in section and offset order, as a scan of
    /// every entry would, but only those the index says may describe kept code: an entry that
    /// becomes relevant during the visit (its function was just included) is taken in this
    /// visit when it lies ahead, in the next one otherwise.
    pub(super) fn carry_special_entries(&mut self, index: &SpecialIndex) -> bool {
        let p = self.p;
        let mut progressed = false;
        // Positions: (section number, entry number); a section's error is its entry 0.
        let mut ahead: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (n, sec) in index.sections.iter().enumerate() {
            match &sec.entries {
                Err(_) => {
                    ahead.insert((n, 0));
                }
                Ok(_) if sec.orc.is_err() || sec.name == ".printk_index" => {
                    let count = sec.entries.as_ref().map_or(0, special::Entries::len);
                    ahead.extend((0..count.max(1)).map(|e| (n, e)));
                }
                Ok(_) => {}
            }
        }
        for f in &self.included {
            ahead.extend(index.entries_of(*f));
        }
        let mut seen = self.included.len();
        while let Some((n, e)) = ahead.pop_first() {
            let sec = &index.sections[n];
            let (psec, name) = (sec.psec, sec.name.as_str());
            let entries = match &sec.entries {
                Ok(entries) => entries,
                Err(err) => {
                    // Only an error if the section describes kept code.
                    let relevant = p
                        .relocations(psec)
                        .iter()
                        .any(|r| special::targets_kept_code(p, r, &self.clone_of));
                    if relevant && !self.refusals.iter().any(|r| r.symbol == name) {
                        self.refusals.push(refusal(name, err.clone(), REPORT_IT));
                    }
                    continue;
                }
            };
            // `.orc_unwind` entries have no relocations: entry i belongs to the i-th
            // `.orc_unwind_ip` entry, so they travel together.
            let orc = match &sec.orc {
                Ok(orc) => *orc,
                Err(err) => {
                    self.refusals.push(refusal(name, err.clone(), REPORT_IT));
                    ahead.retain(|&(m, _)| m != n);
                    continue;
                }
            };
            let Some((start, end)) = entries.get(e) else {
                continue;
            };
            if self.carried.contains(&(psec, start)) {
                continue;
            }
            let here = p.relocations_in_once(psec, start, end);
            if !special::entry_relevant(p, name, &here, &self.clone_of) {
                continue;
            }
            self.carried.insert((psec, start));
            progressed = true;
            self.carry_entry(psec, name, (start, end), &here, orc);
            // What the entry pulled in may make entries ahead relevant in this visit.
            for f in &self.included[seen..] {
                ahead.extend(index.entries_of(*f).filter(|&q| q > (n, e)));
            }
            seen = self.included.len();
        }
        progressed
    }

    /// Carry one entry `[start, end)` of special section `psec` (named `name`; its
    /// relocations `here`), or drop it.
    fn carry_entry(
        &mut self,
        psec: SectionId,
        name: &str,
        (start, end): (u64, u64),
        here: &[Reloc],
        orc: Option<OrcPartner>,
    ) {
        let p = self.p;
        let dropped = special::must_drop(p, name, here, |r, sym| match self.decide(psec, r, sym) {
            Decision::Klp(target) => Some(target.objname),
            _ => None,
        });
        let stat = self
            .special_stats
            .entry(name.to_string())
            .or_insert_with(|| SpecialStat {
                section: name.to_string(),
                kept: 0,
                dropped: 0,
            });
        if let Some(dropped) = dropped {
            stat.dropped += 1;
            self.refusals.extend(dropped.refusal);
            self.warnings.push(dropped.warning);
            return;
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
            self.translate(psec, r, out, at + (r.offset() - start));
        }
        if let Some(partner) = orc {
            self.carry_orc_entry(partner, start / (end - start));
        }
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
