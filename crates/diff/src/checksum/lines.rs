//! Which immediates of a call's setup are `__LINE__` numbers: the arguments of `WARN`-style
//! and printing calls that only say where the source is, masked so that a patch moving lines
//! does not change every function below it.

use klpforge_elf::{SectionId, SymbolId};

use crate::analyze::{ObjInfo, Reloc, RelocCursor};
use crate::code::CodeInsn;
use crate::refs::{string_at, Target};

/// Callees whose second argument (`%esi` on x86_64) is always a line number.
const LINE_IN_ARG2: &[&str] = &[
    "__might_sleep",
    "___might_sleep",
    "__might_fault",
    "__might_resched",
    "warn_slowpath_null",
    "warn_slowpath_fmt",
    "lockdep_rcu_suspicious",
];

/// Callees whose third argument (`%edx`) is always a line number.
const LINE_IN_ARG3: &[&str] = &[
    "__btrfs_abort_transaction",
    "__btrfs_handle_fs_error",
    "__btrfs_panic",
];

/// Variadic printing callees that receive `__FILE__, __LINE__` as arguments in `WARN`-style
/// macros (`ASSERT_RTNL`: "... at %s (%d)", file, line).
const LINE_IN_VARARGS: &[&str] = &["__warn_printk", "printk", "_printk"];

/// Whether `name` is a source file name as `__FILE__` gives it.
fn is_file_name(name: &[u8]) -> bool {
    !name.contains(&b' ') && (name.ends_with(b".c") || name.ends_with(b".h"))
}

/// The symbols of `info` named like a callee that takes `__LINE__` (few: one per name and
/// object), looked up once per object rather than compared by name per reference.
pub(super) fn line_callees(info: &ObjInfo<'_, '_>) -> Vec<SymbolId> {
    LINE_IN_ARG2
        .iter()
        .chain(LINE_IN_ARG3)
        .chain(LINE_IN_VARARGS)
        .flat_map(|name| info.named(name).iter().copied())
        .collect()
}

/// For each instruction: whether it only passes `__LINE__` to a known callee (the argument
/// register it loads is a line-number parameter of the next call). For a variadic printing
/// callee, an immediate counts as a line only when a source file name (`__FILE__`) is passed
/// with it: in the argument before it when that can be told (x86_64), else anywhere in the
/// call's setup or an earlier one (compilers keep the address in a callee-saved register).
/// Any other immediate argument of a printing call is a change.
pub(super) fn line_arguments(
    info: &ObjInfo<'_, '_>,
    callees: &[SymbolId],
    sec: SectionId,
    insns: &[CodeInsn],
    relocs: &[Reloc],
) -> Vec<Option<u8>> {
    let data = info.obj.section(sec).bytes();
    let arch = info.arch;
    let mut out = vec![None; insns.len()];
    // Most code calls none of the callees that take a line: nothing to look at.
    if !relocs
        .iter()
        .any(|r| matches!(r.target, Target::Symbol { sym, .. } if callees.contains(&sym)))
    {
        return out;
    }
    let mut pending: Vec<(usize, u8)> = Vec::new();
    // Where a file-name string is passed in this call's setup: the argument register when the
    // architecture can tell, else 0 (somewhere).
    let mut file_arg: Option<u8> = None;
    let mut cursor = RelocCursor::new(relocs);
    for (i, insn) in insns.iter().enumerate() {
        let end = insn.end();
        let Some(bytes) = data.get(insn.offset() as usize..end as usize) else {
            break;
        };
        let here = cursor.take(insn.offset(), end);
        for r in here {
            if let Target::String {
                sec: ssec, start, ..
            } = r.target
            {
                if is_file_name(string_at(info.obj.section(ssec).bytes(), start.into())) {
                    file_arg = Some(arch.address_argument(bytes).unwrap_or(0));
                }
            }
        }
        if here.is_empty() {
            if let Some(arg) = arch.immediate_argument(bytes) {
                pending.push((i, arg));
                continue;
            }
        }
        // A direct call.
        let call = here.iter().find(|r| arch.is_call(bytes, r.r_type));
        let Some(call) = call else { continue };
        let callee = match call.target {
            Target::Symbol { sym, .. } => info.sym(sym).name,
            _ => "",
        };
        for &(j, arg) in &pending {
            let after_file = file_arg.is_some_and(|f| f == 0 || f + 1 == arg);
            if (arg == 2 && LINE_IN_ARG2.contains(&callee))
                || (arg == 3 && LINE_IN_ARG3.contains(&callee))
                || (after_file && LINE_IN_VARARGS.contains(&callee))
            {
                out[j] = Some(arg);
            }
        }
        pending.clear();
        // The file name may stay in a callee-saved register for later calls: from now on it
        // is known to be passed, though not where.
        file_arg = file_arg.map(|_| 0);
    }
    out
}
