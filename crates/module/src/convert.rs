//! `klpforge convert`: the source-based route (klp-convert).
//!
//! A livepatch module written by hand in C and built by kbuild (with
//! `KBUILD_MODPOST_WARN=1`, since modpost cannot resolve them) leaves references to
//! unexported kernel symbols undefined. Convert turns each such reference into a klp
//! relocation, resolved by the livepatch core when the patched object is present:
//!
//! * the symbol is looked up in the target's symbol table (`--vmlinux`, or a module given the
//!   same way with `--objname`): unique → `sympos` 0;
//! * several symbols of that name → the position must be given with the annotation macros of
//!   `klpforge.h` (shipped in `include/klpforge.h`), which record `objname:name,sympos`
//!   strings in the non-allocated section `.klpforge.sympos`; without one the conversion
//!   fails and lists the candidates;
//! * exports of vmlinux stay normal relocations (modversions check them); exports of other
//!   modules become klp relocations against that module.
//!
//! Relocations in special sections (jump labels, static calls, ...) are never converted: the
//! livepatch core applies klp relocations after those tables are processed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use klpforge_diff::klp::klp_symbol_name;
use klpforge_diff::Symvers;
use klpforge_elf::{
    ElfObject, Relocation, SectionData, SectionId, SymbolId, SymbolPlace, SHF_RELA_LIVEPATCH,
    SHN_LIVEPATCH,
};

use crate::error::Result;
use crate::kallsyms::SymbolIndex;
use crate::postlink::{add_klp_rela, check_klp_symbol, validate, zero_relocated};

/// The section the annotation macros write to.
pub const SYMPOS_SECTION: &str = ".klpforge.sympos";

/// Sections whose relocations must stay normal.
const SPECIAL: &[&str] = &[
    "__jump_table",
    ".static_call_sites",
    ".altinstructions",
    "__ex_table",
    "__bug_table",
    ".smp_locks",
    ".parainstructions",
    "__mcount_loc",
    "__patchable_function_entries",
    ".orc_unwind_ip",
    ".retpoline_sites",
    ".return_sites",
    ".call_sites",
    ".ibt_endbr_seal",
];

/// What convert did.
#[derive(Debug, Clone, Default)]
pub struct ConvertReport {
    /// Converted symbols: name → klp symbol.
    pub converted: BTreeMap<String, String>,
    /// klp relocations written.
    pub relocations: usize,
}

/// One `objname:name,sympos` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// The patched object.
    pub objname: String,
    /// The symbol.
    pub name: String,
    /// Its position.
    pub sympos: u64,
}

/// Parse the annotation strings of `.klpforge.sympos`.
pub fn parse_annotations(data: &[u8]) -> Result<Vec<Annotation>> {
    let mut out = Vec::new();
    for raw in data.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let text = String::from_utf8_lossy(raw);
        let parsed = text.split_once(':').and_then(|(obj, rest)| {
            let (name, pos) = rest.rsplit_once(',')?;
            Some(Annotation {
                objname: obj.to_string(),
                name: name.to_string(),
                sympos: pos.trim().parse().ok()?,
            })
        });
        match parsed {
            Some(a) if !a.objname.is_empty() && !a.name.is_empty() => out.push(a),
            _ => {
                return Err(format!(
                "malformed annotation '{text}' in {SYMPOS_SECTION}: expected objname:symbol,sympos"
            )
                .into())
            }
        }
    }
    Ok(out)
}

fn describe(list: &[crate::kallsyms::KSym]) -> String {
    list.iter()
        .enumerate()
        .map(|(i, k)| format!("{}: {:#x} in {}", i + 1, k.key, k.section))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Convert `module` in place against the target symbol table `target`.
pub fn convert(
    module: &mut ElfObject<'_>,
    target: &SymbolIndex,
    objname: &str,
    symvers: &Symvers,
) -> Result<ConvertReport> {
    let modinfo_ok = module
        .section_by_name(b".modinfo")
        .map(|s| {
            module
                .section(s)
                .bytes()
                .split(|&b| b == 0)
                .any(|e| e == b"livepatch=Y")
        })
        .unwrap_or(false);
    if !modinfo_ok {
        return Err(
            "not a livepatch module: .modinfo has no livepatch=Y (MODULE_INFO(livepatch, \"Y\"))"
                .into(),
        );
    }
    let annotations = match module.section_by_name(SYMPOS_SECTION.as_bytes()) {
        Some(s) => parse_annotations(module.section(s).bytes())?,
        None => Vec::new(),
    };
    let mut by_name: HashMap<&str, &Annotation> = HashMap::new();
    for a in &annotations {
        if let Some(prev) = by_name.insert(&a.name, a) {
            if prev != a {
                return Err(format!("conflicting annotations for {}", a.name).into());
            }
        }
    }
    // Decide, per undefined symbol that relocations use, what it becomes.
    let mut used: BTreeMap<SymbolId, String> = BTreeMap::new();
    for (_, s) in module.sections() {
        if s.sh_flags & SHF_RELA_LIVEPATCH != 0 {
            continue;
        }
        for r in s.relocations().unwrap_or(&[]) {
            let Some(sym) = r.symbol else { continue };
            let ss = module.symbol(sym);
            if ss.place == SymbolPlace::Undefined
                && !ss.name.is_empty()
                && !ss.name.starts_with(b".klp.sym.")
            {
                used.insert(sym, ss.name_lossy().into_owned());
            }
        }
    }
    let mut plan: HashMap<SymbolId, String> = HashMap::new();
    let mut errors = Vec::new();
    for (sym, name) in &used {
        let export = symvers.lookup(name).filter(|_| symvers.is_real());
        let klp = if let Some(a) = by_name.get(name.as_str()) {
            let n = target.lookup(name).len() as u64;
            if a.objname == objname && (a.sympos == 0 && n != 1 || a.sympos > n) {
                errors.push(format!(
                    "{name}: annotated sympos {} but {objname} has {n} symbols of that name",
                    a.sympos
                ));
                continue;
            }
            klp_symbol_name(&a.objname, name, a.sympos)
        } else if let Some(e) = &export {
            if e.owner == "vmlinux" {
                continue; // resolved by the module loader
            }
            klp_symbol_name(&e.owner, name, 0)
        } else {
            let cands = target.lookup(name);
            match cands.len() {
                0 => {
                    errors.push(format!(
                        "{name}: undefined, not exported, and not in the {objname} symbol table"
                    ));
                    continue;
                }
                1 => klp_symbol_name(objname, name, 0),
                n => {
                    errors.push(format!(
                        "{name}: {n} symbols of that name in {objname} ({}); annotate the reference with KLPFORGE_SYMPOS({name}, <1..{n}>) from klpforge.h",
                        describe(cands)
                    ));
                    continue;
                }
            }
        };
        match klp.and_then(|k| check_klp_symbol(&k).map(|_| k).map_err(|e| e.to_string())) {
            Ok(k) => {
                plan.insert(*sym, k);
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n").into());
    }

    // Move the relocations.
    let mut report = ConvertReport::default();
    let mut moved: BTreeMap<(String, SectionId), Vec<Relocation>> = BTreeMap::new();
    let rel_secs: Vec<SectionId> = module
        .sections()
        .filter(|(_, s)| s.sh_flags & SHF_RELA_LIVEPATCH == 0 && s.relocations().is_some())
        .map(|(id, _)| id)
        .collect();
    for rs in rel_secs {
        let Some(target_sec) = module.section(rs).relocation_target() else {
            continue;
        };
        let tname = module.section(target_sec).name_lossy().into_owned();
        let mut zero = Vec::new();
        if let SectionData::Relocations { entries, .. } = &mut module.section_mut(rs).data {
            let mut keep = Vec::with_capacity(entries.len());
            for r in entries.to_mut().drain(..) {
                match r.symbol.and_then(|s| plan.get(&s)) {
                    Some(k) => {
                        if SPECIAL.contains(&tname.as_str()) || tname.starts_with(".discard") {
                            errors.push(format!(
                                "{tname}+{:#x}: reference to unexported {} from a special section cannot become a klp relocation",
                                r.offset,
                                k
                            ));
                        }
                        let objname = klpforge_diff::klp::parse_klp_symbol_name(k)
                            .map(|(o, _, _)| o.to_string())
                            .unwrap_or_default();
                        zero.push((r.offset, r.r_type));
                        moved.entry((objname, target_sec)).or_default().push(r);
                    }
                    None => keep.push(r),
                }
            }
            *entries = keep.into();
        }
        for (off, ty) in zero {
            zero_relocated(module, target_sec, off, ty);
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n").into());
    }
    for (sym, k) in &plan {
        let s = module.symbol_mut(*sym);
        report
            .converted
            .insert(String::from_utf8_lossy(&s.name).into_owned(), k.clone());
        s.name = Cow::Owned(k.clone().into_bytes());
        s.place = SymbolPlace::Reserved(SHN_LIVEPATCH);
    }
    for ((objname, target_sec), entries) in moved {
        report.relocations += entries.len();
        add_klp_rela(module, &objname, target_sec, entries);
    }
    if let Some(s) = module.section_by_name(SYMPOS_SECTION.as_bytes()) {
        module.remove_sections_and_symbols(&[s]);
    }
    validate(module)?;
    Ok(report)
}
