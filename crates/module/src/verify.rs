//! Checks of a finished module against what the kernel needs from objtool's output.
//!
//! A module whose objtool run was skipped or failed still links and loads, silently: without
//! ORC its stacks cannot be walked (livepatch transitions stall on unreliable stacks) and
//! without return sites its returns stay on the unpatched return thunk (the kernel warns
//! "Unpatched return thunk in use" and the mitigation is off there). So every function of the
//! module must have ORC data when the kernel unwinds with ORC, and every return through
//! `__x86_return_thunk` must be a return site when the kernel has return thunks.

use std::collections::{BTreeSet, HashMap};

use crate::error::Result;
use klpforge_elf::{ElfObject, SectionId, SymbolPlace};

/// What the kernel's configuration asks of a module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirements {
    /// `CONFIG_UNWINDER_ORC`: every function needs ORC entries.
    pub orc: bool,
    /// `CONFIG_MITIGATION_RETHUNK`: every `jmp __x86_return_thunk` needs a `.return_sites`
    /// entry.
    pub return_sites: bool,
}

/// The entries of the section named `name` (arrays of relocated code locations such as
/// `.return_sites` and `.orc_unwind_ip`): each entry's offset in the section, and the
/// (section, offset) it points at.
fn located_entries(obj: &ElfObject<'_>, name: &[u8]) -> Vec<(u64, (SectionId, i64))> {
    let mut out = Vec::new();
    for (_, s) in obj.sections() {
        let Some(target) = s.relocation_target() else {
            continue;
        };
        if obj.section(target).name.as_ref() != name {
            continue;
        }
        for r in s.relocations().unwrap_or(&[]) {
            let Some(sym) = r.symbol else { continue };
            let sym = obj.symbol(sym);
            if let SymbolPlace::Section(sec) = sym.place {
                out.push((r.offset, (sec, (sym.value as i64).saturating_add(r.addend))));
            }
        }
    }
    out
}

/// The ORC entry type that says "no unwind information here".
const ORC_TYPE_UNDEFINED: u8 = 0;

/// ORC entries by the code location they start at: `.orc_unwind_ip` entry `i` (4 bytes,
/// relocated to the location) goes with `.orc_unwind` entry `i` (6 bytes: `sp_offset`,
/// `bp_offset`, then `sp_reg:4 bp_reg:4 type:3 signal:1`); the value is the entry's type.
fn orc_entries(obj: &ElfObject<'_>) -> std::collections::BTreeMap<(SectionId, i64), u8> {
    let mut out = std::collections::BTreeMap::new();
    let Some(unwind) = obj.section_by_name(b".orc_unwind") else {
        return out;
    };
    let data = obj.section(unwind).bytes();
    for (offset, at) in located_entries(obj, b".orc_unwind_ip") {
        let i = (offset / 4) as usize;
        let ty = data
            .get(i * 6 + 4..i * 6 + 6)
            .map_or(ORC_TYPE_UNDEFINED, |b| {
                ((u16::from_le_bytes([b[0], b[1]]) >> 8) & 7) as u8
            });
        out.insert(at, ty);
    }
    out
}

/// Check an x86_64 module (other machines pass: objtool is x86-only here). The error lists
/// what is missing, by function.
pub fn verify_module(obj: &ElfObject<'_>, req: Requirements) -> Result<()> {
    if obj.header.e_machine != object::elf::EM_X86_64.0 || req == Requirements::default() {
        return Ok(());
    }
    let mut problems: Vec<String> = Vec::new();
    // Functions by section, for naming sites.
    let mut funcs: HashMap<SectionId, Vec<(u64, u64, String)>> = HashMap::new();
    for (_, s) in obj.symbols() {
        let SymbolPlace::Section(sec) = s.place else {
            continue;
        };
        let name = s.name_lossy();
        if s.kind() != 2 || s.size == 0 || !obj.section(sec).is_exec() {
            continue;
        }
        if name.starts_with("__pfx_") || name.starts_with("__cfi_") {
            continue;
        }
        funcs
            .entry(sec)
            .or_default()
            .push((s.value, s.value + s.size, name.into_owned()));
    }
    if req.orc {
        // objtool writes an entry where the unwind state changes: a function whose start
        // state equals the end state of the one before it shares that entry. What counts is
        // the entry in force at the function's start, and that it is not "undefined" (the
        // terminator objtool puts at the end of code it described).
        let orc = orc_entries(obj);
        for (&sec, list) in &funcs {
            for (start, _, name) in list {
                let in_force = orc
                    .range((sec, i64::MIN)..=(sec, *start as i64))
                    .next_back();
                match in_force {
                    None => problems.push(format!("{name}: no ORC unwind data")),
                    Some((_, &ORC_TYPE_UNDEFINED)) => problems.push(format!(
                        "{name}: no ORC unwind data (undefined at its start)"
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if req.return_sites {
        let sites: BTreeSet<(SectionId, i64)> = located_entries(obj, b".return_sites")
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        for (_, s) in obj.sections() {
            let Some(target) = s.relocation_target() else {
                continue;
            };
            if !obj.section(target).is_exec() {
                continue;
            }
            for r in s.relocations().unwrap_or(&[]) {
                let Some(sym) = r.symbol else { continue };
                if obj.symbol(sym).name.as_ref() != b"__x86_return_thunk" {
                    continue;
                }
                // `jmp __x86_return_thunk`: the site is the opcode before the relocated field.
                let site = r.offset as i64 - 1;
                if !sites.contains(&(target, site)) {
                    let owner = funcs
                        .get(&target)
                        .and_then(|l| {
                            l.iter()
                                .find(|(a, b, _)| (*a as i64) <= site && site < *b as i64)
                        })
                        .map_or_else(
                            || obj.section(target).name_lossy().into_owned(),
                            |f| f.2.clone(),
                        );
                    problems.push(format!(
                        "{owner}: return at {}+{site:#x} is not a return site",
                        obj.section(target).name_lossy()
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    problems.dedup();
    let shown = problems.len().min(20);
    Err(format!(
        "the module lacks what objtool should have generated ({} problem(s)): {}{}",
        problems.len(),
        problems[..shown].join("; "),
        if problems.len() > shown { "; ..." } else { "" }
    )
    .into())
}
