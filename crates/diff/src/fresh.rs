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

use crate::analyze::{ObjInfo, SymKind};
use crate::refs::Target;
use crate::refusal::{refusal, Refusal};
use crate::uses::{uses_of, Holder, Source, Use};

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
    let (orig_uses, patched_uses) = (
        uses_of(orig, Holder::Symbol(o)),
        uses_of(patched, Holder::Symbol(p)),
    );
    let identity = address_identity_use(patched, &patched_uses)
        .or_else(|| address_identity_use(orig, &orig_uses));
    if let Some(f) = identity {
        return Err(refusal(
            si.name,
            format!("changed read-only data whose address code compares or stores ({f}): objects the running kernel has hold the old one's address, which a fresh copy would not match"),
            "change the functions that use it instead (keep the data), or compare by content rather than by address",
        ));
    }
    let escape = |uses: &[Use]| uses.iter().find_map(|u| u.from.beyond_code());
    match escape(&orig_uses).or_else(|| escape(&patched_uses)) {
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

/// The run-time function whose code compares or stores the address of a data object in one
/// instruction (`Arch::compares_or_stores_address`: where the architecture can tell), among
/// the object's `uses`, if any.
fn address_identity_use<'i>(info: &'i ObjInfo<'_, '_>, uses: &[Use]) -> Option<&'i str> {
    uses.iter().find_map(|u| {
        if !matches!(u.from, Source::Function(_) | Source::OtherCode(_)) {
            return None;
        }
        let (start, end) = info.code(u.sec)?.span_at(u.offset)?;
        let insn = info
            .obj
            .section(u.sec)
            .bytes()
            .get(start as usize..end as usize)?;
        info.arch
            .compares_or_stores_address(insn, (u.offset - start) as usize)
            .then(|| {
                info.symbol_at(u.sec, u.offset as i64)
                    .map_or("code", |f| info.sym(f).name)
            })
    })
}
