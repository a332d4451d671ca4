//! What a relocation refers to, independent of layout.
//!
//! A relocation names a symbol and an addend, but compilers often refer to `.text.foo+0x10`
//! or `.rodata.str1.1+0x2a` rather than to a named symbol, and x86 PC-relative addends count
//! from the end of the instruction. [`resolve`] turns a relocation into a [`Target`]: a named
//! symbol and the true offset within it, a string or constant by content, or an anonymous
//! section offset.

use klpforge_arch::RelocKind;
use klpforge_elf::{Relocation, SectionId, SymbolId, SymbolPlace};

use crate::analyze::{ObjInfo, SecKind};

/// A layout-independent reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No symbol (`r_sym == 0`): the value is the addend.
    Absolute {
        /// `r_addend`.
        addend: i64,
    },
    /// A named symbol (defined or not) and the offset from its start that is referred to.
    Symbol {
        /// The symbol.
        sym: SymbolId,
        /// True target offset from the symbol's start.
        offset: i64,
    },
    /// A NUL-terminated string in a string section (32-bit fields keep every target, and a
    /// kernel's millions of them, at 16 bytes).
    String {
        /// The string section.
        sec: SectionId,
        /// Offset of the first byte of the string.
        start: u32,
        /// True target offset minus `start` (normally 0).
        delta: i32,
    },
    /// A mergeable constant (`.rodata.cst*`).
    Constant {
        /// The constant section.
        sec: SectionId,
        /// True target offset.
        offset: i64,
    },
    /// An offset in a section with no symbol covering it (anonymous data, local labels).
    Section {
        /// The section.
        sec: SectionId,
        /// True target offset.
        offset: i64,
    },
}

/// The difference between where a PC-relative relocation's `S + A` points and where the
/// reference really goes, for the relocation of type `r_type` at `offset` of section `from`:
/// x86 instructions count from their end; s390 `*DBL` fields sit two bytes into the
/// instruction they are relative to.
pub fn pc_bias(info: &ObjInfo<'_, '_>, from: SectionId, offset: u64, r_type: u32) -> i64 {
    let kind = info.arch.reloc_info(r_type).map(|i| i.kind);
    if !matches!(
        kind,
        Some(RelocKind::PcRelative | RelocKind::Branch | RelocKind::GotRelative)
    ) {
        return 0;
    }
    let insn_end = info
        .code(from)
        .and_then(|c| c.span_at(offset))
        .map(|(_, end)| end);
    info.arch
        .pc_bias(r_type, offset, insn_end, info.obj.section(from).is_exec())
}

/// Find the start of the NUL-terminated string containing `offset`.
pub fn string_start(data: &[u8], offset: u64) -> u64 {
    let offset = (offset as usize).min(data.len());
    match data[..offset].iter().rposition(|&b| b == 0) {
        Some(nul) => nul as u64 + 1,
        None => 0,
    }
}

/// The string at `start` (without its NUL).
pub fn string_at(data: &[u8], start: u64) -> &[u8] {
    let start = (start as usize).min(data.len());
    let rest = &data[start..];
    &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
}

/// Resolve relocation `r`, which applies to section `from`.
pub fn resolve(info: &ObjInfo<'_, '_>, from: SectionId, r: &Relocation) -> Target {
    let Some(sym) = r.symbol else {
        return Target::Absolute { addend: r.addend };
    };
    let s = info.obj.symbol(sym);
    let eff = r
        .addend
        .saturating_add(pc_bias(info, from, r.offset, r.r_type));
    let SymbolPlace::Section(sec) = s.place else {
        return Target::Symbol { sym, offset: eff };
    };
    let sec_kind = info.sec(sec).kind;
    let section_offset = (s.value as i64).saturating_add(eff);
    match sec_kind {
        SecKind::Strings => {
            let data = info.obj.section(sec).bytes();
            let start = string_start(data, section_offset.max(0) as u64);
            let delta = section_offset.saturating_sub(start as i64);
            return match (u32::try_from(start), i32::try_from(delta)) {
                (Ok(start), Ok(delta)) => Target::String { sec, start, delta },
                // Only a corrupt addend (or a 4 GiB string table) gets here: by offset.
                _ => Target::Section {
                    sec,
                    offset: section_offset,
                },
            };
        }
        SecKind::Constants => {
            return Target::Constant {
                sec,
                offset: section_offset,
            }
        }
        _ => {}
    }
    if info.target_class(sym).is_named() {
        return Target::Symbol { sym, offset: eff };
    }
    match info.symbol_and_start_at(sec, section_offset) {
        Some((owner, start)) => Target::Symbol {
            sym: owner,
            offset: section_offset.saturating_sub(start as i64),
        },
        None => Target::Section {
            sec,
            offset: section_offset,
        },
    }
}
