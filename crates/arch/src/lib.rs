//! Per-architecture facts for klpforge.
//!
//! The [`Arch`] trait holds what differs between instruction sets: what a relocation type is
//! called, how many bytes it patches and how it computes its value ([`RelocInfo`]), where
//! instruction boundaries fall in a run of code, padding, branch relocations. The ELF model uses
//! it to print relocation names; the diff engine uses it to checksum code position-independently.
//! The diff engine asks the trait for every instruction-set fact it uses: decoding with branch
//! targets ([`Arch::decode_with_branches`]), PC bias ([`Arch::pc_bias`]), calls and the
//! argument registers of a call's setup, the compiler's no-op ftrace entry, and the relocation
//! types the module loader applies; none of it tests an architecture's name. (The module
//! check of objtool's ORC and return sites, x86-only by nature, tests the machine.)
//!
//! Implementations: [`X86_64`], [`Aarch64`], [`Ppc64`], [`S390x`], [`LoongArch64`].
//! [`for_machine`] picks one from an ELF header's `e_machine`.
//!
//! Relocation names are binutils' (as `readelf -rW` prints them); the crate's tests check
//! every name against the host readelf and the `object` crate's tables, and every size and
//! decoder against what gas, gcc and objdump produce.

#![deny(missing_docs)]

mod aarch64;
mod loongarch64;
mod ppc64;
mod s390x;
mod x86_64;

pub use aarch64::Aarch64;
pub use loongarch64::LoongArch64;
pub use ppc64::Ppc64;
pub use s390x::S390x;
pub use x86_64::{X86Constants, X86_64};

/// iced's per-instruction displacement/immediate positions, as used in [`X86Constants`].
pub use iced_x86::ConstantOffsets;

use std::borrow::Cow;

/// How a relocation computes the value it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelocKind {
    /// `R_*_NONE`: patches nothing.
    None,
    /// Absolute address of the symbol plus addend (`S + A`), e.g. `R_X86_64_64`, whether in a
    /// data word or as the whole value of an instruction field (`R_X86_64_32S`,
    /// `R_390_20`, `R_PPC64_D34`).
    Absolute,
    /// PC-relative (`S + A - P`), e.g. `R_X86_64_PC32`, `R_AARCH64_PREL32`, including a whole
    /// PC-relative address in one instruction (`R_AARCH64_ADR_PREL_LO21`,
    /// `R_PPC64_PCREL34`, `R_390_PC32DBL`, `R_LARCH_PCREL20_S2`).
    PcRelative,
    /// PC-relative branch or call, possibly through a PLT, e.g. `R_X86_64_PLT32`,
    /// `R_AARCH64_CALL26`.
    Branch,
    /// PC-relative reference to a GOT entry (`G + GOT + A - P`), e.g. `R_X86_64_GOTPCRELX`,
    /// including the instruction-field pieces of such an address
    /// (`R_AARCH64_ADR_GOT_PAGE` / `R_AARCH64_LD64_GOT_LO12_NC`, `R_LARCH_GOT_PC_HI20` /
    /// `R_LARCH_GOT_PC_LO12`). GOT-base-relative offsets (`R_X86_64_GOT32`, `R_PPC64_GOT16*`)
    /// are [`RelocKind::Other`].
    GotRelative,
    /// Part of an instruction-encoded address split over several instructions
    /// (e.g. `R_AARCH64_ADR_PREL_PG_HI21` / `R_AARCH64_ADD_ABS_LO12_NC`,
    /// `R_PPC64_TOC16_HA`, `R_LARCH_PCALA_HI20`).
    InstructionField,
    /// Thread-local storage models.
    Tls,
    /// Relocations that describe rather than patch (`R_LARCH_RELAX`, `R_LARCH_ALIGN`,
    /// `R_PPC64_TOCSAVE`, ...) or that only the dynamic linker uses, and everything else that
    /// fits none of the kinds above: GOT/TOC-base-relative offsets, PLT offsets, symbol sizes
    /// (`R_X86_64_SIZE32`), LoongArch `ADD*`/`SUB*` label-difference pairs and stack-machine
    /// `R_LARCH_SOP_*` types.
    Other,
}

/// What klpforge knows about one relocation type of one architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelocInfo {
    /// The canonical name, as binutils prints it (`R_X86_64_PLT32`).
    pub name: &'static str,
    /// How the value is computed.
    pub kind: RelocKind,
    /// Number of bytes at `r_offset` that the relocation reads and rewrites: the width of the
    /// data word, or of the instruction word / field container it patches (for example 4 for
    /// an AArch64 instruction, 2 for a ppc64le `@ha`/`@l` halfword, 8 for a ppc64 prefixed
    /// instruction). Bits of that container outside the relocated field are left alone.
    /// 0 for `R_*_NONE`, for markers that patch nothing, and for variable-length fields
    /// (`R_LARCH_ADD_ULEB128` / `R_LARCH_SUB_ULEB128`).
    pub size: u8,
}

/// One decoded instruction boundary within a run of code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Offset of the first byte, relative to the start of the decoded slice.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

/// A relative branch's displacement field within its instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchField {
    /// The branch target, as an offset in the same coordinates as the decoded instruction
    /// (may lie outside the decoded run).
    pub target: i64,
    /// Offset of the displacement within the instruction.
    pub disp_offset: u8,
    /// Size of the displacement in bytes.
    pub disp_size: u8,
}

/// One decoded instruction with, for a relative branch, where it goes. Compact (12 bytes: a
/// kernel's sections decode to millions of them): offsets within a section below 4 GiB,
/// branch targets within 2 GiB of their instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedInsn {
    offset: u32,
    /// Branch target minus `offset` (meaningful when `disp_size` is not 0).
    target_delta: i32,
    len: u8,
    disp_offset: u8,
    /// 0: no branch.
    disp_size: u8,
}

impl DecodedInsn {
    /// An instruction of `len` bytes at `offset` (the `base` given to
    /// [`Arch::decode_with_branches`] plus its position in the decoded run), with the relative
    /// branch `branch` whose target the decoder computed. `None` when `offset` does not fit
    /// the compact form; a branch whose target does not is dropped.
    pub fn new(offset: u64, len: u8, branch: Option<BranchField>) -> Option<DecodedInsn> {
        let at = u32::try_from(offset).ok()?;
        let field = branch
            .filter(|b| b.disp_size > 0)
            .and_then(|b| Some((i32::try_from(b.target - offset as i64).ok()?, b)));
        Some(DecodedInsn {
            offset: at,
            target_delta: field.map_or(0, |(d, _)| d),
            len,
            disp_offset: field.map_or(0, |(_, b)| b.disp_offset),
            disp_size: field.map_or(0, |(_, b)| b.disp_size),
        })
    }

    /// An instruction given in the compact form itself: `offset`, `len`, and for a relative
    /// branch (`disp_size` not 0) its target minus `offset` and its displacement field.
    pub fn from_compact(
        offset: u32,
        len: u8,
        target_delta: i32,
        disp_offset: u8,
        disp_size: u8,
    ) -> DecodedInsn {
        DecodedInsn {
            offset,
            target_delta: if disp_size == 0 { 0 } else { target_delta },
            len,
            disp_offset: if disp_size == 0 { 0 } else { disp_offset },
            disp_size,
        }
    }

    /// Offset of the first byte.
    pub fn offset(&self) -> u64 {
        u64::from(self.offset)
    }

    /// Length in bytes.
    pub fn length(&self) -> u8 {
        self.len
    }

    /// Offset just past the last byte.
    pub fn end(&self) -> u64 {
        self.offset() + u64::from(self.len)
    }

    /// For a relative branch whose target the decoder computes: the target and the field.
    pub fn branch(&self) -> Option<BranchField> {
        (self.disp_size > 0).then(|| BranchField {
            target: self.offset as i64 + i64::from(self.target_delta),
            disp_offset: self.disp_offset,
            disp_size: self.disp_size,
        })
    }
}

/// Code that could not be split into instructions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode instruction at offset {offset:#x}: {reason}")]
pub struct DecodeError {
    /// Offset of the undecodable bytes within the slice.
    pub offset: usize,
    /// Why decoding stopped.
    pub reason: &'static str,
}

/// The per-architecture interface. One static instance per architecture; see [`for_machine`].
pub trait Arch: Send + Sync + std::fmt::Debug {
    /// Short name used in messages, fixtures and the kernel's `ARCH=` (`x86_64`, `aarch64`,
    /// `ppc64le`, `s390x`, `loongarch64`).
    fn name(&self) -> &'static str;

    /// The ELF `e_machine` value.
    fn machine(&self) -> u16;

    /// Facts about relocation type `r_type`, or `None` if the type is unknown to klpforge.
    fn reloc_info(&self, r_type: u32) -> Option<RelocInfo>;

    /// The relocation type that stores a full 64-bit absolute address (`R_X86_64_64`,
    /// `R_AARCH64_ABS64`, ...): what pointer-sized data references use.
    fn abs64_reloc(&self) -> u32;

    /// Split `code` into instructions. Fixed-width architectures check alignment; variable
    /// width ones decode lengths. Bytes that cannot be decoded give an error, never a guess.
    fn decode_lengths(&self, code: &[u8]) -> Result<Vec<Insn>, DecodeError>;

    /// Whether the relocated field at `at` of instruction `insn` (its bytes) is the target of
    /// a call or jump, rather than an address the code takes (to pass, store or compare).
    /// By default the relocation type tells; architectures whose branches and address loads
    /// share relocation types look at the instruction.
    fn reloc_is_branch(&self, insn: &[u8], at: usize, r_type: u32) -> bool {
        let _ = (insn, at);
        self.reloc_info(r_type).map(|i| i.kind) == Some(RelocKind::Branch)
    }

    /// Decode `code`, which starts at offset `base`, into instructions with the targets of
    /// relative branches where the architecture's decoder computes them; stops at the first
    /// bytes that do not decode and says whether everything did. By default: the boundaries of
    /// [`Arch::decode_lengths`], no branch targets.
    fn decode_with_branches(&self, code: &[u8], base: u64) -> (Vec<DecodedInsn>, bool) {
        let to_decoded = |list: Vec<Insn>| -> Vec<DecodedInsn> {
            list.into_iter()
                .map_while(|i| DecodedInsn::new(base + i.offset as u64, i.len as u8, None))
                .collect()
        };
        match self.decode_lengths(code) {
            Ok(list) => (to_decoded(list), true),
            Err(e) => (
                self.decode_lengths(&code[..e.offset])
                    .map(to_decoded)
                    .unwrap_or_default(),
                false,
            ),
        }
    }

    /// Whether [`Arch::decode_with_branches`] already gives every relative branch's target
    /// (then [`Arch::relative_branch_target`] has nothing to add for decoded code).
    fn decoder_gives_branches(&self) -> bool {
        false
    }

    /// For a PC-relative branch or call instruction `insn` at offset `at`, the offset it goes
    /// to as encoded (without a relocation), where klpforge knows the encoding: what shows a
    /// branch between functions of one section that the assembler resolved itself. By
    /// default the decoder's branch target ([`Arch::decode_with_branches`]).
    fn relative_branch_target(&self, insn: &[u8], at: u64) -> Option<i64> {
        let (decoded, _) = self.decode_with_branches(insn, at);
        decoded.first().and_then(|d| d.branch()).map(|b| b.target)
    }

    /// Clear the field a relocation of type `r_type` writes at the start of `bytes`, leaving
    /// the rest of its container alone (an instruction's opcode): how a livepatch relocation's
    /// place must look before the kernel applies it (x86's loader refuses nonzero bytes; the
    /// others merge the value into the instruction). By default the relocation's `size` bytes.
    fn clear_relocated_field(&self, r_type: u32, bytes: &mut [u8]) {
        let size = self.reloc_info(r_type).map_or(4, |i| usize::from(i.size));
        let end = size.min(bytes.len());
        bytes[..end].fill(0);
    }

    /// Zero the displacement bits of the relative branch `insn` (one that
    /// [`Arch::relative_branch_target`] reads), leaving the opcode and its other fields: what
    /// a checksum keeps of a branch whose target it hashes by identity. By default nothing.
    fn mask_branch_displacement(&self, insn: &mut [u8]) {
        let _ = insn;
    }

    /// How far the place a PC-relative relocation's value is relative to lies from the
    /// relocated field at `field` (a relocation of type `r_type`, in code when `in_code`, in an
    /// instruction ending at `insn_end` when decoded): what turns `S + A` into the true target.
    /// x86 counts from the end of the instruction; s390x `*DBL` fields sit two bytes into the
    /// instruction they are relative to. By default 0.
    fn pc_bias(&self, r_type: u32, field: u64, insn_end: Option<u64>, in_code: bool) -> i64 {
        let _ = (r_type, field, insn_end, in_code);
        0
    }

    /// Whether a function whose code starts with `code` has the ftrace entry the compiler
    /// writes as a no-op of its own (s390x `-mnop-mcount`: `brcl 0,0`), rather than a call
    /// or a `__mcount_loc`/`__patchable_function_entries` record. By default never.
    fn has_nop_ftrace_entry(&self, code: &[u8]) -> bool {
        let _ = code;
        false
    }

    /// If `insn` loads a small immediate into an argument register of the calling convention,
    /// which argument (1-based): what tells a `__LINE__` passed to a call. By default none.
    fn immediate_argument(&self, insn: &[u8]) -> Option<u8> {
        let _ = insn;
        None
    }

    /// If `insn` loads an address into an argument register, which argument (1-based), where
    /// the architecture can tell (x86_64); `None` elsewhere.
    fn address_argument(&self, insn: &[u8]) -> Option<u8> {
        let _ = insn;
        None
    }

    /// Whether `insn` uses the address relocated into its bytes at `field` as a value it
    /// compares or stores (an immediate compared with, or stored to memory), rather than to
    /// reach memory: what makes an object's identity matter. Only where the architecture can
    /// tell from one instruction (x86_64: `cmp $sym, ...`, `mov $sym, mem`, `push $sym`);
    /// `false` elsewhere, where addresses are built in registers first.
    fn compares_or_stores_address(&self, insn: &[u8], field: usize) -> bool {
        let _ = (insn, field);
        false
    }

    /// Whether `insn`, which carries a relocation of type `r_type`, is a direct call or a tail
    /// call (a jump to another function). By default any branch relocation.
    fn is_call(&self, insn: &[u8], r_type: u32) -> bool {
        let _ = insn;
        self.reloc_info(r_type).map(|i| i.kind) == Some(RelocKind::Branch)
    }

    /// Whether the call whose relocation (of type `r_type`) is at `offset` of `code` can
    /// reach a function that stays in the kernel once the calling code runs from a livepatch
    /// module. On ppc64le the module loader routes such a call through a stub that switches
    /// the TOC pointer and turns the `nop` gcc leaves after calls that may leave the unit into
    /// the instruction restoring it; a call to a function of the same unit has no such `nop`
    /// and the loader rejects the module ("Expected nop after call"). Sibling calls are
    /// [`Arch::sibling_call_breaks_toc`]'s. By default always.
    fn call_can_leave_module(&self, code: &[u8], offset: usize, r_type: u32) -> bool {
        let _ = (code, offset, r_type);
        true
    }

    /// Whether `insn`, carrying a relocation of type `r_type`, puts the relocated address into
    /// a register (an add-immediate or PC-relative address computation) rather than loading
    /// or storing through it. Where the compiler uses section anchors (gcc on ppc64, aarch64
    /// and s390x, for variables sharing a plain `.data`, `.bss` or `.rodata`), code reaches
    /// other variables of the section at displacements from such an address that carry no
    /// relocation. By default never (x86_64 has no section anchors).
    fn materializes_address(&self, insn: &[u8], r_type: u32) -> bool {
        let _ = (insn, r_type);
        false
    }

    /// Whether every module links a symbol of this name itself, so that a livepatch module
    /// must use its own, never the kernel's: ppc64's `.TOC.` (each module has its own TOC)
    /// and register save/restore helpers (`_savegpr0_*`, `_restgpr0_*`, ... of
    /// `arch/powerpc/lib/crtsavres.o`, which gcc calls at `-Os`). By default none.
    fn linked_into_every_module(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// Whether `insn`, carrying a relocation of type `r_type` to a function that stays in the
    /// kernel, is a sibling call that breaks the caller's state when made from a livepatch
    /// module: on ppc64le a `b` without link reaches the kernel through the module loader's
    /// stub, which switches the TOC pointer (r2), and with no return to the module nothing
    /// restores it for the caller. By default never.
    fn sibling_call_breaks_toc(&self, insn: &[u8], r_type: u32) -> bool {
        let _ = (insn, r_type);
        false
    }

    /// The relocation types the kernel's module loader applies in livepatch relocation
    /// sections, where klpforge checks them; `None` where it does not.
    fn loader_relocation_types(&self) -> Option<&'static [u32]> {
        None
    }

    /// Whether one instruction (its bytes) is alignment padding between functions: a no-op
    /// or trap the assembler or compiler fills gaps with, never code anything runs. By
    /// default only all-zero bytes.
    fn is_padding(&self, insn: &[u8]) -> bool {
        insn.iter().all(|&b| b == 0)
    }

    /// The text of the one instruction at the start of `bytes` (assumed at address `ip`), for
    /// messages; `None` where klpforge has no disassembler for the architecture.
    fn disassemble(&self, bytes: &[u8], ip: u64) -> Option<String> {
        let _ = (bytes, ip);
        None
    }

    /// The name of `r_type`, falling back to the placeholder `R_UNKNOWN_0x..` (type in hex)
    /// for types klpforge does not know.
    fn reloc_name(&self, r_type: u32) -> Cow<'static, str> {
        match self.reloc_info(r_type) {
            Some(info) => Cow::Borrowed(info.name),
            None => Cow::Owned(format!("R_UNKNOWN_{r_type:#x}")),
        }
    }
}

/// The architecture for an ELF `e_machine` value and byte order, or `None` if klpforge does
/// not support it. `big_endian` distinguishes ppc64 (unsupported) from ppc64le.
pub fn for_machine(machine: u16, big_endian: bool) -> Option<&'static dyn Arch> {
    use object::elf;
    match (machine, big_endian) {
        (m, false) if m == elf::EM_X86_64.0 => Some(&X86_64),
        (m, false) if m == elf::EM_AARCH64.0 => Some(&Aarch64),
        (m, false) if m == elf::EM_PPC64.0 => Some(&Ppc64),
        (m, true) if m == elf::EM_S390.0 => Some(&S390x),
        (m, false) if m == elf::EM_LOONGARCH.0 => Some(&LoongArch64),
        _ => None,
    }
}

/// Split `code` into `width`-byte instructions; a trailing partial instruction is an error.
pub(crate) fn fixed_width(code: &[u8], width: usize) -> Result<Vec<Insn>, DecodeError> {
    let whole = code.len() - code.len() % width;
    if whole != code.len() {
        return Err(DecodeError {
            offset: whole,
            reason: "trailing bytes do not form a whole fixed-width instruction",
        });
    }
    Ok((0..whole)
        .step_by(width)
        .map(|offset| Insn { offset, len: width })
        .collect())
}

/// All supported architectures, for tests and `--help` text.
pub fn all() -> [&'static dyn Arch; 5] {
    [&X86_64, &Aarch64, &Ppc64, &S390x, &LoongArch64]
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf;

    #[test]
    fn for_machine_picks_the_architecture() {
        let pick = |m: u16, be: bool| for_machine(m, be).map(|a| a.name());
        assert_eq!(pick(elf::EM_X86_64.0, false), Some("x86_64"));
        assert_eq!(pick(elf::EM_AARCH64.0, false), Some("aarch64"));
        assert_eq!(pick(elf::EM_PPC64.0, false), Some("ppc64le"));
        assert_eq!(pick(elf::EM_S390.0, true), Some("s390x"));
        assert_eq!(pick(elf::EM_LOONGARCH.0, false), Some("loongarch64"));
    }

    #[test]
    fn for_machine_rejects_unknown_machines_and_byte_orders() {
        for m in [
            elf::EM_NONE,
            elf::EM_386,
            elf::EM_ARM,
            elf::EM_RISCV,
            elf::EM_PPC,
            elf::EM_MIPS,
        ] {
            assert!(for_machine(m.0, false).is_none(), "{m:?}");
            assert!(for_machine(m.0, true).is_none(), "{m:?}");
        }
        // Big-endian ppc64 (ELFv1) and little-endian variants of big-endian-only machines.
        assert!(for_machine(elf::EM_PPC64.0, true).is_none());
        assert!(for_machine(elf::EM_S390.0, false).is_none());
        assert!(for_machine(elf::EM_X86_64.0, true).is_none());
        assert!(for_machine(elf::EM_AARCH64.0, true).is_none());
        assert!(for_machine(elf::EM_LOONGARCH.0, true).is_none());
        assert!(for_machine(0xffff, false).is_none());
    }

    #[test]
    fn all_round_trips_through_for_machine() {
        let archs = all();
        for arch in archs {
            let big_endian = arch.name() == "s390x";
            let found = for_machine(arch.machine(), big_endian).unwrap();
            assert_eq!(found.name(), arch.name());
        }
        let mut names: Vec<_> = archs.iter().map(|a| a.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), archs.len());
    }

    #[test]
    fn abs64_reloc_is_a_64_bit_absolute_relocation() {
        let expected = [
            ("x86_64", "R_X86_64_64"),
            ("aarch64", "R_AARCH64_ABS64"),
            ("ppc64le", "R_PPC64_ADDR64"),
            ("s390x", "R_390_64"),
            ("loongarch64", "R_LARCH_64"),
        ];
        for (arch, (name, reloc)) in all().iter().zip(expected) {
            assert_eq!(arch.name(), name);
            let info = arch.reloc_info(arch.abs64_reloc()).unwrap();
            assert_eq!(info.name, reloc);
            assert_eq!(info.kind, RelocKind::Absolute);
            assert_eq!(info.size, 8);
        }
    }

    /// Properties every relocation table must have, over the whole type range.
    #[test]
    fn reloc_tables_are_consistent() {
        for arch in all() {
            let prefix = match arch.name() {
                "x86_64" => "R_X86_64_",
                "aarch64" => "R_AARCH64_",
                "ppc64le" => "R_PPC64_",
                "s390x" => "R_390_",
                "loongarch64" => "R_LARCH_",
                other => panic!("{other}"),
            };
            let mut names = std::collections::HashSet::new();
            let mut known = 0;
            for r_type in 0..0x1_0000 {
                let Some(info) = arch.reloc_info(r_type) else {
                    assert!(arch.reloc_name(r_type).starts_with("R_UNKNOWN_0x"));
                    continue;
                };
                known += 1;
                assert!(info.name.starts_with(prefix), "{}", info.name);
                assert!(names.insert(info.name), "duplicate {}", info.name);
                assert_eq!(arch.reloc_name(r_type), info.name);
                assert!(
                    matches!(info.size, 0..=4 | 8 | 16),
                    "{}: {}",
                    info.name,
                    info.size
                );
                if info.kind == RelocKind::None {
                    assert_eq!(info.size, 0, "{}", info.name);
                    assert!(info.name.ends_with("_NONE") || info.name.ends_with("_NULL"));
                }
                if matches!(
                    info.kind,
                    RelocKind::Absolute
                        | RelocKind::PcRelative
                        | RelocKind::Branch
                        | RelocKind::GotRelative
                        | RelocKind::InstructionField
                ) {
                    assert!(info.size > 0, "{} patches something", info.name);
                }
            }
            assert_eq!(arch.reloc_info(0).unwrap().kind, RelocKind::None);
            assert!(known > 40, "{}: only {known} types", arch.name());
        }
    }

    #[test]
    fn unknown_types_get_a_placeholder_name() {
        assert_eq!(X86_64.reloc_name(39), "R_UNKNOWN_0x27");
        assert_eq!(Aarch64.reloc_name(1), "R_UNKNOWN_0x1");
        assert!(X86_64.reloc_info(0x1_0000).is_none());
    }

    #[test]
    fn fixed_width_splits_and_rejects_partial_words() {
        assert_eq!(fixed_width(&[], 4).unwrap(), vec![]);
        let insns = fixed_width(&[0; 12], 4).unwrap();
        assert_eq!(
            insns,
            vec![
                Insn { offset: 0, len: 4 },
                Insn { offset: 4, len: 4 },
                Insn { offset: 8, len: 4 },
            ]
        );
        for len in [1, 2, 3, 5, 7, 10] {
            let err = fixed_width(&vec![0; len], 4).unwrap_err();
            assert_eq!(err.offset, len - len % 4);
        }
    }
}
