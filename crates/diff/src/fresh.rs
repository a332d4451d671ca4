//! Whether changed read-only data can get a fresh copy in the module.
//!
//! Read-only data has never been written, so the patched functions may read a copy with the
//! new contents while the running kernel's stays as it was: every reader must then be one of
//! the patched functions (references hash read-only content, so a reader of changed data is
//! changed too), and nothing may tell the copy from the original by its address. Refused
//! instead: a global in one compilation unit (other objects read it), an operations structure
//! (a file-scope object holding function pointers: recognised by its address), data whose
//! address code compares or stores, and data whose address went into data, `__init` code or
//! alternative replacement code.

use klpforge_elf::SymbolId;

use crate::analyze::{ObjInfo, SecKind, SymKind};
use crate::refs::Target;
use crate::refusal::{refusal, Refusal};

/// Whether changed read-only data `p` of the patched object (`o` of the original) gets a
/// fresh copy: the warning that says so, or the refusal. `whole`: the objects are whole
/// images, holding every reader of a global ([`crate::DiffOptions::whole`]).
pub(crate) fn fresh_copy(
    orig: &ObjInfo<'_, '_>,
    patched: &ObjInfo<'_, '_>,
    o: SymbolId,
    p: SymbolId,
    whole: bool,
) -> Result<String, Refusal> {
    let si = patched.sym(p);
    let global = !patched.obj.symbol(p).is_local() || !orig.obj.symbol(o).is_local();
    if global && !whole {
        return Err(refusal(
            si.name,
            "changed global read-only data: other objects may read it, and they would keep the old contents (only this object's functions get a fresh copy)",
            "make it static, change the code that uses it instead, or build in vmlinux mode (klpforge build --mode vmlinux), where every user is compared",
        ));
    }
    if !si.static_local {
        if let Some(f) = function_pointer_in(patched, p) {
            return Err(refusal(
                si.name,
                format!("changed read-only data holding function pointers ({f}): an operations structure, which code recognises by its address (`file->f_op == &{}`), so a fresh copy would not be recognised where the running kernel stored the old one's address", si.name),
                "change the functions that use it instead (keep the structure), or move the new behaviour into a function it already points to",
            ));
        }
    }
    if let Some(f) = address_identity_use(patched, p).or_else(|| address_identity_use(orig, o)) {
        return Err(refusal(
            si.name,
            format!("changed read-only data whose address code compares or stores ({f}): objects the running kernel has hold the old one's address, which a fresh copy would not match"),
            "change the functions that use it instead (keep the data), or compare by content rather than by address",
        ));
    }
    match data_escape(orig, o).or_else(|| data_escape(patched, p)) {
        None => Ok(format!(
            "{}: changed read-only data; the patched functions get a fresh copy (its only users are functions, which the change makes changed too)",
            si.name
        )),
        Some(why) => Err(refusal(
            si.name,
            format!("changed read-only data whose address {why}: the running kernel keeps using the old contents there"),
            "change the code that uses the data instead, or replace the holder of the pointer from a callback (KLP_POST_PATCH_CALLBACK)",
        )),
    }
}

/// The first function data object `sym` points to (at its entry: a function pointer), if any.
fn function_pointer_in<'i>(info: &'i ObjInfo<'_, '_>, sym: SymbolId) -> Option<&'i str> {
    let s = info.obj.symbol(sym);
    let sec = s.section()?;
    let relocs = crate::analyze::relocs_in(
        info.relocations(sec),
        s.value,
        s.value.saturating_add(s.size),
    );
    relocs.iter().find_map(|r| match r.target {
        Target::Symbol { sym: f, offset: 0 } if info.sym(f).kind == SymKind::Function => {
            Some(info.sym(f).name)
        }
        _ => None,
    })
}

/// The run-time function whose code compares or stores the address of data object `sym` in
/// one instruction (`Arch::compares_or_stores_address`: where the architecture can tell),
/// if any.
fn address_identity_use<'i>(info: &'i ObjInfo<'_, '_>, sym: SymbolId) -> Option<&'i str> {
    for (sec, _) in info.obj.sections() {
        let facts = info.sec(sec);
        if facts.kind != SecKind::Text || facts.init {
            continue;
        }
        let Some(code) = info.code(sec) else { continue };
        let data = info.obj.section(sec).bytes();
        for r in info.relocations(sec) {
            if !matches!(r.target, Target::Symbol { sym: t, .. } if t == sym) {
                continue;
            }
            let Some((start, end)) = code.span_at(r.offset()) else {
                continue;
            };
            let Some(insn) = data.get(start as usize..end as usize) else {
                continue;
            };
            if info
                .arch
                .compares_or_stores_address(insn, (r.offset() - start) as usize)
            {
                return Some(
                    info.symbol_at(sec, r.offset() as i64)
                        .map_or("code", |f| info.sym(f).name),
                );
            }
        }
    }
    None
}

/// Where the address of data object `sym` goes beyond the run-time functions that read it:
/// into data (a pointer the running kernel keeps), into `__init` code (which may have stored
/// it at boot), or into alternative replacement code. `None` when only run-time functions
/// refer to it (and the content hash makes each of them changed, so all get the copy).
fn data_escape(info: &ObjInfo<'_, '_>, sym: SymbolId) -> Option<String> {
    for (sec, _) in info.obj.sections() {
        let kind = info.sec(sec).kind;
        if matches!(
            kind,
            SecKind::Debug | SecKind::Meta | SecKind::Other | SecKind::Marker
        ) {
            continue;
        }
        for r in info.relocations(sec) {
            if !matches!(r.target, Target::Symbol { sym: t, .. } if t == sym) {
                continue;
            }
            let holder = info.symbol_at(sec, r.offset() as i64);
            if holder == Some(sym) {
                continue;
            }
            let name = holder.map_or_else(
                || info.obj.section(sec).name_lossy().into_owned(),
                |h| info.sym(h).name.to_string(),
            );
            match kind {
                SecKind::Text if info.sec(sec).init => {
                    return Some(format!(
                        "is taken by __init code ({name}), which may have stored it at boot"
                    ))
                }
                SecKind::Text => {}
                SecKind::SpecialAux => {
                    return Some(format!("is used by alternative replacement code ({name})"))
                }
                _ => return Some(format!("is stored in data ({name})")),
            }
        }
    }
    None
}
