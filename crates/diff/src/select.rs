//! Deciding what changed, what is new, and what cannot be live-patched.
//!
//! A correlated function whose checksum differs is *changed*, unless only `__LINE__`
//! immediates differ (the line-insensitive checksums agree). A patched function with no twin
//! is *new*. Changes that a live patch cannot carry are *refusals*, each naming the symbol,
//! the reason and the usual remedy: changed `__init`/`__exit` code or data, changed
//! initialised data or data layout, a changed function without an ftrace entry, and a removed
//! reference to a function-scope static.
//!
//! The patch author's markers ([`crate::markers`]) are honoured here.

use crate::{HashMap, HashSet};
use std::collections::BTreeSet;

use klpforge_elf::{SectionId, SymbolId};

use crate::analyze::{ObjInfo, SecKind, SymKind};
use crate::checksum::{Checksums, LineSums};
use crate::correlate::Twins;
use crate::klp::{Binding, SymposSource};
use crate::markers::{declared_states, markers};
pub use crate::markers::{CallbackKind, KlpState};
use crate::refs::Target;
use crate::refusal::refusal;
pub use crate::refusal::Refusal;
use crate::DiffOptions;

/// What the patch changes in one object.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Changed functions: (patched symbol, original twin), parents only.
    pub changed: Vec<(SymbolId, SymbolId)>,
    /// New functions (patched symbols without a twin), parents only.
    pub new_functions: Vec<SymbolId>,
    /// New global data (patched symbols without a twin): other objects of the patch may use
    /// it, so the diff object defines it even when nothing of its own object does.
    pub new_data: Vec<SymbolId>,
    /// Callback functions (patched symbols).
    pub callbacks: Vec<(CallbackKind, SymbolId)>,
    /// System states the patch declares (`KLPFORGE_STATE`), sorted by id.
    pub states: Vec<KlpState>,
    /// Changed functions without an ftrace entry, replaced through their callers: carried
    /// into the module but not registered with livepatch.
    pub through_callers: Vec<SymbolId>,
    /// Functions whose only differences are `__LINE__` immediates.
    pub line_only: Vec<String>,
    /// Changed read-only data (patched symbols) that the patched functions get a fresh copy
    /// of: nothing writes it and its address went nowhere the running kernel keeps.
    pub fresh_data: Vec<SymbolId>,
    /// Changes that cannot be patched.
    pub refusals: Vec<Refusal>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Select the changes between `orig` and `patched` (`line_sums`: their line-insensitive
/// checksums, asked for functions whose full checksums differ).
pub fn select(
    orig: &ObjInfo<'_, '_>,
    patched: &ObjInfo<'_, '_>,
    orig_sums: &Checksums,
    patched_sums: &Checksums,
    line_sums: (&LineSums<'_, '_, '_, '_, '_>, &LineSums<'_, '_, '_, '_, '_>),
    twins: &Twins,
    opts: &DiffOptions,
) -> Selection {
    let image = opts.sympos.as_deref();
    let mut sel = Selection::default();
    let mut notrace: Vec<(SymbolId, SymbolId)> = Vec::new();
    let marks = markers(patched);
    sel.callbacks = marks.callbacks.clone();
    match declared_states(patched) {
        Ok(states) => sel.states = states,
        Err(r) => sel.refusals.push(r),
    }
    let callback_fns: HashSet<SymbolId> = marks.callbacks.iter().map(|&(_, f)| f).collect();
    for &f in &marks.ignored_functions {
        sel.warnings.push(format!(
            "ignoring function {} (KPATCH_IGNORE_FUNCTION)",
            patched.sym(f).name
        ));
    }

    for (p, s) in patched.obj.symbols() {
        let si = patched.sym(p);
        let Some(sec) = s.section() else { continue };
        if si.never_correlate || si.parent.is_some() {
            continue;
        }
        let sec_info = patched.sec(sec);
        if marks.ignored_sections.contains(&sec) || sec_info.kind == SecKind::Marker {
            continue;
        }
        if patched.label_extent(p).is_some() {
            // Data without a size: its bytes are known, not where they end, so neither a fresh
            // copy nor the running kernel's can be trusted with new contents.
            if let Some(o) = twins.of_patched(p) {
                if orig.label_extent(o).is_some()
                    && orig_sums.full[o.index()] != patched_sums.full[p.index()]
                {
                    sel.refusals.push(refusal(
                        si.name,
                        "changed data without a size (a label: where its bytes end is not known, so its new contents can neither be carried nor written over the running kernel's)",
                        "give it a size (.type and .size, or SYM_DATA_START/SYM_DATA_END), or change the code that uses it instead",
                    ));
                }
            }
            continue;
        }
        match si.kind {
            SymKind::Function => {
                if marks.ignored_functions.contains(&p) {
                    continue;
                }
                let Some(o) = twins.of_patched(p) else {
                    if sec_info.init {
                        continue; // New init code never runs after boot.
                    }
                    sel.new_functions.push(p);
                    continue;
                };
                let forced = marks.forced.contains(&p);
                if orig_sums.full[o.index()] == patched_sums.full[p.index()] && !forced {
                    continue;
                }
                if !forced && line_sums.0.noline(o) == line_sums.1.noline(p) {
                    sel.line_only.push(si.name.to_string());
                    continue;
                }
                let osec = orig.obj.symbol(o).section();
                if sec_info.init || osec.is_some_and(|os| orig.sec(os).init) {
                    sel.refusals.push(refusal(
                        si.name,
                        format!(
                            "changed __init/__exit function (section {}): init code has already run and been freed, exit code runs outside any patch",
                            patched.obj.section(sec).name_lossy()
                        ),
                        "move the change out of __init code, or make it take effect at the next boot",
                    ));
                    continue;
                }
                if !orig.has_ftrace_entry(o) {
                    // Livepatch cannot redirect it; a local one can still be replaced by
                    // patching every function that calls it (see `through_callers`).
                    notrace.push((p, o));
                    continue;
                }
                check_static_locals(orig, twins, o, opts.accept_fresh_statics, &mut sel);
                check_weak_default(orig, o, image, &mut sel);
                check_alias_split(orig, patched, patched_sums, twins, (p, o), &mut sel);
                sel.changed.push((p, o));
            }
            SymKind::Object => {
                let Some(o) = twins.of_patched(p) else {
                    let plain = !matches!(sec_info.kind, SecKind::Special | SecKind::SpecialAux);
                    if !s.is_local() && !sec_info.init && plain {
                        sel.new_data.push(p);
                    }
                    continue;
                };
                if sec_info.kind == SecKind::Special || sec_info.kind == SecKind::SpecialAux {
                    continue;
                }
                let os = orig.obj.symbol(o);
                let changed =
                    os.size != s.size || orig_sums.full[o.index()] != patched_sums.full[p.index()];
                let read_only = |info: &ObjInfo<'_, '_>, sec: Option<SectionId>| {
                    sec.is_some_and(|x| info.sec(x).kind == SecKind::Rodata && !info.sec(x).init)
                };
                if changed && read_only(patched, Some(sec)) && read_only(orig, os.section()) {
                    match crate::fresh::fresh_copy(orig, patched, o, p, opts.whole) {
                        Ok(warning) => {
                            sel.warnings.push(warning);
                            sel.fresh_data.push(p);
                        }
                        Err(r) => sel.refusals.push(r),
                    }
                    continue;
                }
                if os.size != s.size {
                    sel.refusals.push(refusal(
                        si.name,
                        format!("data layout changed (size {} -> {})", os.size, s.size),
                        "a live patch cannot resize existing data: use shadow variables (klp_shadow_*) for new fields",
                    ));
                } else if orig_sums.full[o.index()] != patched_sums.full[p.index()] {
                    let init = sec_info.init;
                    sel.refusals.push(refusal(
                        si.name,
                        if init {
                            "changed __init data: it was used at boot and freed".to_string()
                        } else {
                            "changed initialised data: the running kernel keeps the old contents".to_string()
                        },
                        "change the data from a callback (KLP_POST_PATCH_CALLBACK) or use shadow variables instead",
                    ));
                }
            }
            _ => {}
        }
    }
    through_callers(orig, patched, twins, notrace, &mut sel);
    check_code_gaps(orig_sums, patched_sums, &mut sel);
    // Forced and callback functions count as included even when unchanged.
    for &f in marks.forced.iter().chain(callback_fns.iter()) {
        if twins.of_patched(f).is_none() && !sel.new_functions.contains(&f) {
            sel.new_functions.push(f);
        }
    }
    sel.changed.sort();
    sel.changed.dedup();
    sel.new_functions.sort();
    sel.new_functions.dedup();
    crate::code_bound::check(patched, twins, opts, &mut sel);
    drop_aliases(patched, &mut sel);
    sel
}

/// Keep one of several function symbols at the same address (`SYSCALL_DEFINE` aliases and
/// the like): the one its function section is named after, else the first. Patching one name
/// redirects the code for all of them.
fn drop_aliases(p: &ObjInfo<'_, '_>, sel: &mut Selection) {
    let place = |f: SymbolId| {
        let s = p.obj.symbol(f);
        (s.section(), s.value)
    };
    let preferred = |f: SymbolId| {
        let s = p.obj.symbol(f);
        let sec = s
            .section()
            .map(|x| p.obj.section(x).name_lossy().into_owned())
            .unwrap_or_default();
        !sec.ends_with(&format!(".{}", p.sym(f).name))
    };
    let mut all: Vec<SymbolId> = sel
        .changed
        .iter()
        .map(|c| c.0)
        .chain(sel.new_functions.iter().copied())
        .collect();
    all.sort_by_key(|&f| (place(f), preferred(f), f));
    let mut keep: HashSet<SymbolId> = HashSet::default();
    let mut last = None;
    for f in all {
        if last != Some(place(f)) {
            keep.insert(f);
            last = Some(place(f));
        } else {
            sel.warnings.push(format!(
                "{} is an alias of another changed function; patched through it",
                p.sym(f).name
            ));
        }
    }
    sel.changed.retain(|c| keep.contains(&c.0));
    sel.new_functions.retain(|f| keep.contains(f));
}

/// Changed functions without an ftrace entry (out-of-line copies of `static inline`
/// functions, which the kernel builds `notrace`, and other notrace code). Livepatch cannot
/// redirect them, but a *local* one is only reachable from its own object: its new version
/// is carried into the patch module and every function calling it is patched to call that
/// copy (recursively, when a caller has no ftrace entry either). A global one, or one whose
/// address is stored in data, cannot be handled and is refused.
fn through_callers(
    orig: &ObjInfo<'_, '_>,
    patched: &ObjInfo<'_, '_>,
    twins: &Twins,
    notrace: Vec<(SymbolId, SymbolId)>,
    sel: &mut Selection,
) {
    if notrace.is_empty() {
        return;
    }
    let (prefs, orefs) = (referrers(patched), referrers(orig));
    let mut queue: Vec<(SymbolId, SymbolId)> = notrace;
    let mut done: HashSet<SymbolId> = HashSet::default();
    while let Some((p, o)) = queue.pop() {
        if !done.insert(p) {
            continue;
        }
        let name = patched.sym(p).name;
        if !patched.obj.symbol(p).is_local() || !orig.obj.symbol(o).is_local() {
            sel.refusals.push(refusal(
                name,
                "changed function has no ftrace entry (notrace, noinstr or always-inline code) and is global, so its callers elsewhere cannot be found and patched",
                "patch its callers instead, or mark the function KPATCH_IGNORE_FUNCTION if the change does not matter",
            ));
            continue;
        }
        let refs = prefs.get(&p).cloned().unwrap_or_default();
        // The running kernel's object counts as much as the patched one: an address it took
        // at boot stays stored wherever it went.
        let escapes = refs
            .iter()
            .chain(orefs.get(&o).into_iter().flatten())
            .find_map(|r| match r {
                Referrer::Caller(_) => None,
                Referrer::Data => Some("its address is stored in data, so the stored pointers would keep calling the old code".to_string()),
                Referrer::Address(f) => Some(format!(
                    "{f} takes its address in code (to register or pass it), so the pointer handed out keeps calling the old code"
                )),
                Referrer::Replacement => Some("it is called from alternative replacement code (.altinstr_replacement), which was patched into its callers at boot and which patching the callers does not replace".to_string()),
            });
        if let Some(why) = escapes {
            sel.refusals.push(refusal(
                name,
                format!("changed function has no ftrace entry and {why}"),
                "patch the users of the pointer, or mark the function KPATCH_IGNORE_FUNCTION if the change does not matter",
            ));
            continue;
        }
        let mut callers: Vec<String> = Vec::new();
        for caller in refs.into_iter().filter_map(|r| match r {
            Referrer::Caller(f) => Some(f),
            _ => None,
        }) {
            let csec = patched.obj.symbol(caller).section();
            if csec.is_some_and(|s| patched.sec(s).init) {
                continue; // init code has already run
            }
            callers.push(patched.sym(caller).name.to_string());
            if sel.changed.iter().any(|c| c.0 == caller) || done.contains(&caller) {
                continue;
            }
            match twins.of_patched(caller) {
                Some(co) if orig.has_ftrace_entry(co) => sel.changed.push((caller, co)),
                Some(co) => queue.push((caller, co)),
                None => {
                    // A new caller is carried anyway.
                    if !sel.new_functions.contains(&caller) {
                        sel.new_functions.push(caller);
                    }
                }
            }
        }
        callers.sort();
        callers.dedup();
        sel.warnings.push(format!(
            "{name} has no ftrace entry (notrace); its new version is carried and its callers are patched instead: {}",
            if callers.is_empty() { "none".to_string() } else { callers.join(", ") }
        ));
        sel.through_callers.push(p);
    }
}

/// Refuse a change to code no function symbol covers (top-level assembly without
/// `.type`/`.size`): livepatch replaces whole functions with an ftrace entry, and this code
/// has neither, so nothing in the module could carry the change.
fn check_code_gaps(orig_sums: &Checksums, patched_sums: &Checksums, sel: &mut Selection) {
    let mut o = orig_sums.gaps.iter().peekable();
    let mut p = patched_sums.gaps.iter().peekable();
    loop {
        let (what, gap) = match (o.peek(), p.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) if a.key == b.key => {
                let (a, b) = (o.next().expect("peeked"), p.next().expect("peeked"));
                if a.full == b.full && a.len == b.len {
                    continue;
                }
                ("changed", b)
            }
            (Some(a), Some(b)) if a.key < b.key => ("removed", o.next().expect("peeked")),
            (Some(_), None) => ("removed", o.next().expect("peeked")),
            _ => ("added", p.next().expect("peeked")),
        };
        let k = &gap.key;
        let place = if k.label.is_empty() {
            format!("{}+{:#x}", k.section, gap.offset)
        } else {
            format!("{}+{:#x} in {}", k.label, gap.offset, k.section)
        };
        sel.refusals.push(refusal(
            if k.label.is_empty() { &k.section } else { &k.label },
            format!(
                "code without a function symbol (assembly without .type/.size) {what} at {place} ({} bytes): livepatch only replaces whole functions with an ftrace entry",
                gap.len
            ),
            "give the code a function symbol (SYM_FUNC_START/SYM_FUNC_END) and an ftrace entry, or change its callers instead",
        ));
    }
}

/// A changed `__weak` default is patched by name, and the livepatch core finds the name in the
/// running kernel: when a strong definition elsewhere won the link, that is the override, not
/// this default, so patching would replace the wrong function. With the image the binding
/// tells (refuse when strong); without it, warn.
fn check_weak_default(
    orig: &ObjInfo<'_, '_>,
    o: SymbolId,
    image: Option<&dyn SymposSource>,
    sel: &mut Selection,
) {
    if orig.obj.symbol(o).bind() != object::elf::STB_WEAK.0 {
        return;
    }
    let name = &orig.sym(o).name;
    match image.map(|i| i.global_binding(name)) {
        Some(Some(Binding::Strong)) => sel.refusals.push(refusal(
            name,
            "changed __weak default, but the kernel image links a strong definition of the same name from elsewhere: livepatch patches by name and would replace that override",
            "patch the overriding definition instead (this default is not used in this kernel)",
        )),
        Some(_) => {}
        None => sel.warnings.push(format!(
            "{name} is a __weak default: without the kernel image (--vmlinux) klpforge cannot tell whether a strong definition elsewhere overrides it, in which case the patch would replace the override"
        )),
    }
}

/// Refuse a changed function whose address the running kernel shares with another function
/// (an alias) that the patch turns into a function of its own with a different body:
/// livepatch redirects the shared entry, so calls through the other name would run the new
/// body. Aliases that stay aliases change together and are patched once.
fn check_alias_split(
    orig: &ObjInfo<'_, '_>,
    patched: &ObjInfo<'_, '_>,
    patched_sums: &Checksums,
    twins: &Twins,
    (p, o): (SymbolId, SymbolId),
    sel: &mut Selection,
) {
    let os = orig.obj.symbol(o);
    let Some(sec) = os.section() else { return };
    let place = |info: &ObjInfo<'_, '_>, f: SymbolId| {
        let s = info.obj.symbol(f);
        (s.section(), s.value)
    };
    for &(start, _, alias) in orig.ranges(sec) {
        if u64::from(start) != os.value || alias == o || orig.sym(alias).kind != SymKind::Function {
            continue;
        }
        let Some(p2) = twins.of_orig(alias) else {
            continue; // the name is gone: nothing can call it any more
        };
        if place(patched, p2) == place(patched, p)
            || patched_sums.full[p2.index()] == patched_sums.full[p.index()]
        {
            continue;
        }
        sel.refusals.push(refusal(
            patched.sym(p).name,
            format!(
                "changed function shares its address with {} in the running kernel, and the patch gives {} a body of its own: livepatch redirects the shared entry, so calls through {} would run the new code",
                orig.sym(alias).name,
                patched.sym(p2).name,
                orig.sym(alias).name
            ),
            "keep the two names aliases of one body, or change the callers of the other name instead",
        ));
    }
}

/// How a function is referred to, for replacing a notrace function through its callers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Referrer {
    /// Called (or jumped to) by this function.
    Caller(SymbolId),
    /// Its address is taken by the code of this function (named; `code` outside any).
    Address(String),
    /// Its address is stored in data.
    Data,
    /// Called from alternative replacement code.
    Replacement,
}

/// Who refers to each function of `info`, and how. Code-location entries (special sections)
/// describe the function itself and do not count; references from within a function to
/// itself neither.
fn referrers(info: &ObjInfo<'_, '_>) -> HashMap<SymbolId, Vec<Referrer>> {
    let mut out: HashMap<SymbolId, Vec<Referrer>> = HashMap::default();
    for (sec, _) in info.obj.sections() {
        let kind = info.sec(sec).kind;
        if !kind.uses_at_run_time() {
            continue;
        }
        for r in info.relocations(sec) {
            let Target::Symbol { sym, .. } = r.target else {
                continue;
            };
            if info.sym(sym).kind != SymKind::Function {
                continue;
            }
            let sym = info.sym(sym).parent.unwrap_or(sym);
            let from = info
                .symbol_at(sec, r.offset() as i64)
                .filter(|&f| info.sym(f).kind == SymKind::Function)
                .map(|f| info.sym(f).parent.unwrap_or(f));
            if from == Some(sym) {
                continue;
            }
            let how = match kind {
                SecKind::SpecialAux => Referrer::Replacement,
                SecKind::Text => match from {
                    Some(f) if info.is_branch(sec, r.offset(), r.r_type) => Referrer::Caller(f),
                    f => Referrer::Address(
                        f.map_or_else(|| "code".to_string(), |f| info.sym(f).name.to_string()),
                    ),
                },
                _ => Referrer::Data,
            };
            out.entry(sym).or_default().push(how);
        }
    }
    out
}

/// Refuse when a changed function used a function-scope static that no longer exists in the
/// patched build: whether the patched code's statics carry its state cannot be told. A static
/// that still exists (paired through its other users) may simply no longer be used here.
fn check_static_locals(
    orig: &ObjInfo<'_, '_>,
    twins: &Twins,
    o: SymbolId,
    accept_fresh: bool,
    sel: &mut Selection,
) {
    let mut used = BTreeSet::new();
    for part in std::iter::once(o).chain(orig.children(o).iter().copied()) {
        let s = orig.obj.symbol(part);
        let Some(sec) = s.section() else { continue };
        for r in orig.relocations(sec) {
            if r.offset() < s.value || r.offset() >= s.value + s.size {
                continue;
            }
            if let Target::Symbol { sym, .. } = r.target {
                if orig.sym(sym).static_local {
                    used.insert(sym);
                }
            }
        }
    }
    for s in used {
        // A static that still exists (correlated by its users) may simply no longer be used
        // here; one that vanished cannot be told from one the patched code got afresh.
        if twins.of_orig(s).is_none() && accept_fresh {
            sel.warnings.push(format!(
                "{} no longer uses static local variable {} (accepted with --accept-fresh-statics): its state in the running kernel is not carried to the patched code",
                orig.sym(o).name,
                orig.sym(s).name
            ));
        } else if twins.of_orig(s).is_none() {
            sel.refusals.push(refusal(
                orig.sym(s).name,
                format!(
                    "reference to static local variable {} in {} was removed",
                    orig.sym(s).name,
                    orig.sym(o).name
                ),
                "keep a reference to the variable in the patched function, or accept a fresh copy of the state with --accept-fresh-statics",
            ));
        }
    }
}
