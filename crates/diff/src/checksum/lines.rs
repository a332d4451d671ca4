//! Which immediates of a call's setup are `__LINE__` numbers: the arguments of `WARN`-style
//! and printing calls that only say where the source is, masked so that a patch moving lines
//! does not change every function below it.

use klpforge_arch::RelocKind;
use klpforge_elf::SectionId;

use crate::analyze::{relocs_in, ObjInfo, Reloc};
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

/// If `bytes` is an instruction that loads a small immediate into the second or third
/// argument register, which one (2 or 3).
fn immediate_argument(arch: &str, bytes: &[u8]) -> Option<u8> {
    let word = |le: bool| {
        bytes.get(..4).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }
        })
    };
    match arch {
        // mov $imm32, %esi / %edx
        "x86_64" if bytes.len() == 5 => match bytes[0] {
            0xbe => Some(2),
            0xba => Some(3),
            0xb9 => Some(4),
            _ => None,
        },
        // movz w1 / w2, #imm16
        "aarch64" => match word(true)? & 0xffe0_001f {
            0x5280_0001 => Some(2),
            0x5280_0002 => Some(3),
            _ => None,
        },
        // li r4 / r5, imm
        "ppc64le" => match word(true)? & 0xffff_0000 {
            0x3880_0000 => Some(2),
            0x38a0_0000 => Some(3),
            _ => None,
        },
        // lghi / lhi %r3 / %r4, imm
        "s390x" if bytes.len() == 4 => match (bytes[0], bytes[1]) {
            (0xa7, 0x39 | 0x38) => Some(2),
            (0xa7, 0x49 | 0x48) => Some(3),
            _ => None,
        },
        // addi.w / ori $a1 / $a2, $zero, imm
        "loongarch64" => match word(true)? & 0xffc0_03ff {
            0x0280_0005 | 0x0380_0005 => Some(2),
            0x0280_0006 | 0x0380_0006 => Some(3),
            _ => None,
        },
        _ => None,
    }
}

/// Variadic printing callees that receive `__FILE__, __LINE__` as arguments in `WARN`-style
/// macros (`ASSERT_RTNL`: "... at %s (%d)", file, line).
const LINE_IN_VARARGS: &[&str] = &["__warn_printk", "printk", "_printk"];

/// The argument register (1-based) an x86_64 instruction loads an address into:
/// `mov $sym, %reg` (sign-extended or 32-bit) or `lea sym(%rip), %reg`.
fn x86_address_argument(bytes: &[u8]) -> Option<u8> {
    let reg = |r: u8| match r {
        7 => Some(1),
        6 => Some(2),
        2 => Some(3),
        1 => Some(4),
        _ => None,
    };
    match bytes {
        [0x48, 0xc7, m, ..] if m >> 6 == 3 => reg(m & 7),
        [0x48, 0x8d, m, ..] if m & 0xc7 == 0x05 => reg((m >> 3) & 7),
        [op, ..] if (0xb8..=0xbf).contains(op) && bytes.len() == 5 => reg(op - 0xb8),
        _ => None,
    }
}

/// Whether `name` is a source file name as `__FILE__` gives it.
fn is_file_name(name: &[u8]) -> bool {
    !name.contains(&b' ') && (name.ends_with(b".c") || name.ends_with(b".h"))
}

/// For each instruction: whether it only passes `__LINE__` to a known callee (the argument
/// register it loads is a line-number parameter of the next call). For a variadic printing
/// callee, an immediate counts as a line only when a source file name (`__FILE__`) is passed
/// with it: in the argument before it when that can be told (x86_64), else anywhere in the
/// call's setup or an earlier one (compilers keep the address in a callee-saved register).
/// Any other immediate argument of a printing call is a change.
pub(super) fn line_arguments(
    info: &ObjInfo<'_, '_>,
    sec: SectionId,
    insns: &[CodeInsn],
    relocs: &[Reloc],
) -> Vec<Option<u8>> {
    let data = info.obj.section(sec).bytes();
    let arch = info.arch.name();
    let mut out = vec![None; insns.len()];
    let mut pending: Vec<(usize, u8)> = Vec::new();
    // Where a file-name string is passed in this call's setup: the argument register when it
    // can be told (x86_64), else 0 (somewhere).
    let mut file_arg: Option<u8> = None;
    for (i, insn) in insns.iter().enumerate() {
        let end = insn.offset + u64::from(insn.len);
        let Some(bytes) = data.get(insn.offset as usize..end as usize) else {
            break;
        };
        let here = relocs_in(relocs, insn.offset, end);
        for r in here {
            if let Target::String {
                sec: ssec, start, ..
            } = r.target
            {
                if is_file_name(string_at(info.obj.section(ssec).bytes(), start)) {
                    file_arg = Some(if arch == "x86_64" {
                        x86_address_argument(bytes).unwrap_or(0)
                    } else {
                        0
                    });
                }
            }
        }
        if here.is_empty() {
            if let Some(arg) = immediate_argument(arch, bytes) {
                pending.push((i, arg));
                continue;
            }
        }
        // A direct call: on x86 `call rel32`; elsewhere any branch relocation.
        let call = here.iter().find(|r| {
            if arch == "x86_64" {
                bytes[0] == 0xe8
            } else {
                info.arch.reloc_info(r.r_type).map(|i| i.kind) == Some(RelocKind::Branch)
            }
        });
        let Some(call) = call else { continue };
        let callee = call.symbol.map(|s| info.sym(s).name.as_str()).unwrap_or("");
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
