//! Addresses inside replaced code.
//!
//! A live patch replaces a function by redirecting calls at its entry; the old code stays
//! in memory. An address *inside* a function (a computed-goto label in a table, as in the
//! BPF interpreter; a code location recorded in a table the kernel reads; an assembly jump
//! into the middle of a function) bypasses that redirection: whoever jumps there runs the
//! old version. Hashing cannot see it (the reference reads `run + 0x28` in both builds), so
//! after the changed functions are known, every such address into code the patch carries is
//! checked:
//!
//! * in code: only the patch's own functions may jump inside it (their copies are retargeted
//!   to the new code); an unchanged function doing so is refused;
//! * in data: the holder must be read only by functions the patch carries, so that a fresh
//!   copy pointing into the new code serves every reader. A function-local read-only table
//!   gets that copy (`Selection::fresh_data`); writable data, data whose address is stored
//!   elsewhere, data an unchanged function reads, and tables nothing refers to (read by the
//!   kernel by their section, such as an unknown `.pushsection` table) are refused.

use std::collections::BTreeMap;

use klpforge_elf::SymbolId;

use crate::analyze::{ObjInfo, SecKind};
use crate::correlate::Twins;
use crate::refs::Target;
use crate::refusal::refusal;
use crate::select::Selection;
use crate::uses::{uses_of, Holder, Source};
use crate::{DiffOptions, HashSet};

/// The first address inside carried code a holder keeps: the function and the offset.
#[derive(Debug, Clone, Copy)]
struct Inside {
    function: SymbolId,
    offset: i64,
}

/// Who refers to a holder, in the patched object.
#[derive(Default)]
struct Readers {
    /// Functions (parents) whose run-time code refers to it.
    functions: Vec<SymbolId>,
    /// Where its address goes besides run-time code, when it does.
    escape: Option<String>,
}

/// Check every address inside the code the patch carries (see the module documentation),
/// adding fresh copies, refusals and warnings to `sel`. Runs once the carried functions are
/// known.
pub(crate) fn check(
    patched: &ObjInfo<'_, '_>,
    twins: &Twins,
    opts: &DiffOptions,
    sel: &mut Selection,
) {
    let carried = carried_functions(patched, sel);
    if carried.is_empty() {
        return;
    }
    let parent = |f: SymbolId| patched.sym(f).parent.unwrap_or(f);
    let mut holders: BTreeMap<Holder, Inside> = BTreeMap::new();
    let mut jumps: BTreeMap<String, Inside> = BTreeMap::new();
    for (sec, _) in patched.obj.sections() {
        let info = patched.sec(sec);
        if info.init
            || !matches!(
                info.kind,
                SecKind::Text | SecKind::Data | SecKind::Rodata | SecKind::Constants
            )
        {
            continue;
        }
        for r in patched.relocations(sec) {
            let Target::Symbol { sym, offset } = r.target else {
                continue;
            };
            let Some((function, offset)) = patched.inside_function(sym, offset) else {
                continue;
            };
            if !carried.contains(&function) {
                continue;
            }
            let inside = Inside { function, offset };
            let at = patched.symbol_at(sec, r.offset() as i64);
            if info.kind == SecKind::Text {
                match at {
                    // The patch's own code: its copy is retargeted to the new code.
                    Some(f) if carried.contains(&parent(f)) => {}
                    Some(f) => {
                        jumps
                            .entry(patched.sym(parent(f)).name.to_string())
                            .or_insert(inside);
                    }
                    None => {
                        jumps
                            .entry(patched.obj.section(sec).name_lossy().into_owned())
                            .or_insert(inside);
                    }
                }
                continue;
            }
            let holder = at.map_or_else(
                || {
                    let (start, end) = patched.piece_at(sec, r.offset() as i64);
                    Holder::Piece(sec, start, end)
                },
                Holder::Symbol,
            );
            holders.entry(holder).or_insert(inside);
        }
    }
    let place = |i: Inside| format!("{}+{:#x}", patched.sym(i.function).name, i.offset);
    let function = |f: SymbolId| {
        let new = twins.of_patched(parent(f)).is_none();
        format!(
            "{} function {}",
            if new { "new" } else { "changed" },
            patched.sym(f).name
        )
    };
    for (from, inside) in jumps {
        sel.refusals.push(refusal(
            &from,
            format!(
                "refers to an address inside {} ({}), where the patch does not redirect: code reaching it from here runs the old version",
                function(inside.function),
                place(inside)
            ),
            "change this code too, so that the patch carries it, or refer to the function's entry",
        ));
    }
    for (holder, inside) in holders {
        let name = match holder {
            Holder::Symbol(s) => patched.sym(s).name.to_string(),
            Holder::Piece(s, 0, _) => patched.obj.section(s).name_lossy().into_owned(),
            Holder::Piece(s, start, _) => {
                format!("{}+{start:#x}", patched.obj.section(s).name_lossy())
            }
        };
        let what = format!(
            "holds an address inside {} ({}: a code label or location)",
            function(inside.function),
            place(inside)
        );
        let readers = readers(patched, holder);
        if let Some(why) = readers.escape {
            sel.refusals.push(refusal(
                &name,
                format!("{what} and its address {why}: whoever reads it there would reach the old code"),
                "keep such tables function-local (static const, read by the changed functions only), or leave the code they point into unchanged",
            ));
            continue;
        }
        if let Some(&g) = readers.functions.iter().find(|&&g| !carried.contains(&g)) {
            sel.refusals.push(refusal(
                &name,
                format!(
                    "{what}, and {}, which the patch does not replace, reads it: through it, {} would reach the old code",
                    patched.sym(g).name,
                    patched.sym(g).name
                ),
                format!("change {} too, so that the patch carries it and a fresh copy of the table, or leave the code the table points into unchanged", patched.sym(g).name),
            ));
            continue;
        }
        if readers.functions.is_empty() {
            sel.refusals.push(refusal(
                &name,
                format!("{what}, and no code of the object refers to it: a table the kernel finds by its section, which klpforge does not know, so the new code's entries would be missing from it"),
                "leave the code the table records unchanged, or add the section to klpforge's special sections (klpforge_diff::analyze::SPECIAL_SECTIONS) with its entry format",
            ));
            continue;
        }
        let Holder::Symbol(p) = holder else {
            continue; // Anonymous data goes with the functions that read it.
        };
        let si = patched.sym(p);
        if twins.of_patched(p).is_none() || si.never_correlate || sel.fresh_data.contains(&p) {
            continue; // The module carries its own copy anyway.
        }
        let s = patched.obj.symbol(p);
        let read_only = s
            .section()
            .is_some_and(|sec| patched.sec(sec).kind == SecKind::Rodata);
        if !read_only {
            sel.refusals.push(refusal(
                &name,
                format!("{what}; it is writable data, so the running kernel's copy (which keeps pointing into the old code) cannot be replaced by a fresh one without losing what was written to it"),
                "make the table read-only (static const) and read by the changed functions only, or leave the code it points into unchanged",
            ));
        } else if !s.is_local() && !opts.whole {
            sel.refusals.push(refusal(
                &name,
                format!("{what}; it is global, so other objects may read the running kernel's copy, which keeps pointing into the old code"),
                "make it static, or build in vmlinux mode (klpforge build --mode vmlinux), where every reader is compared",
            ));
        } else {
            sel.warnings.push(format!(
                "{name}: {what}; the patched functions get a fresh copy pointing into the new code (only they read it)"
            ));
            sel.fresh_data.push(p);
        }
    }
}

/// The patched functions whose code the module carries: changed and new functions, those
/// replaced through their callers, and their `.cold` parts.
pub(crate) fn carried_functions(patched: &ObjInfo<'_, '_>, sel: &Selection) -> HashSet<SymbolId> {
    let mut out = HashSet::default();
    let parents = sel
        .changed
        .iter()
        .map(|c| c.0)
        .chain(sel.new_functions.iter().copied())
        .chain(sel.through_callers.iter().copied());
    for f in parents {
        out.insert(f);
        out.extend(patched.children(f).iter().copied());
    }
    out
}

/// Who refers to `holder` in `info`, other than the holder itself: the run-time functions,
/// and the first place its address goes beyond them (references from special entries
/// describe code and do not count).
fn readers(info: &ObjInfo<'_, '_>, holder: Holder) -> Readers {
    let mut out = Readers::default();
    for u in uses_of(info, holder) {
        let escape = match u.from {
            Source::Function(f) => {
                out.functions.push(f);
                None
            }
            Source::Data { special: true, .. } => None,
            Source::OtherCode(name) => {
                Some(format!("is used by code outside any function ({name})"))
            }
            other => other.beyond_code(),
        };
        if out.escape.is_none() {
            out.escape = escape;
        }
    }
    out.functions.sort();
    out.functions.dedup();
    out
}
