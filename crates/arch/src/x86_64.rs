//! x86-64 (`EM_X86_64`, little endian): variable-length instructions decoded with `iced-x86`.

use crate::{Arch, BranchField, DecodeError, DecodedInsn, Insn, RelocInfo, RelocKind};
use iced_x86::{
    ConstantOffsets, Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind,
};
use object::elf;

/// One instruction in AT&T order (`mnemonic source, destination`), written from the decoded
/// operands: a message needs the mnemonic and operands, not a full formatter (whose tables
/// cost a small diff more than its whole comparison).
fn att_text(instr: &Instruction) -> String {
    use std::fmt::Write;
    let reg = |r: iced_x86::Register| format!("%{}", format!("{r:?}").to_ascii_lowercase());
    let operand = |i: u32| -> String {
        match instr.op_kind(i) {
            OpKind::Register => reg(instr.op_register(i)),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                format!("{:#x}", instr.near_branch_target())
            }
            OpKind::Memory => {
                let mut m = String::new();
                if instr.segment_prefix() != iced_x86::Register::None {
                    let _ = write!(m, "{}:", reg(instr.segment_prefix()));
                }
                let (base, index) = (instr.memory_base(), instr.memory_index());
                if instr.is_ip_rel_memory_operand() {
                    let _ = write!(m, "{:#x}(%rip)", instr.ip_rel_memory_address());
                    return m;
                }
                let disp = instr.memory_displacement64() as i64;
                if disp != 0 || (base == iced_x86::Register::None && index == base) {
                    let _ = write!(
                        m,
                        "{}{:#x}",
                        if disp < 0 { "-" } else { "" },
                        disp.unsigned_abs()
                    );
                }
                if base != iced_x86::Register::None || index != iced_x86::Register::None {
                    m.push('(');
                    if base != iced_x86::Register::None {
                        m.push_str(&reg(base));
                    }
                    if index != iced_x86::Register::None {
                        let _ = write!(m, ",{},{}", reg(index), instr.memory_index_scale());
                    }
                    m.push(')');
                }
                m
            }
            OpKind::FarBranch16 | OpKind::FarBranch32 => format!(
                "${:#x},${:#x}",
                instr.far_branch_selector(),
                instr.far_branch32()
            ),
            OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => format!("${:#x}", instr.immediate(i)),
            // String operands ((%rsi), (%rdi)) are implied by the mnemonic.
            _ => String::new(),
        }
    };
    let mut text = format!("{:?}", instr.mnemonic()).to_ascii_lowercase();
    let ops: Vec<String> = (0..instr.op_count())
        .rev()
        .map(operand)
        .filter(|o| !o.is_empty())
        .collect();
    if !ops.is_empty() {
        text.push(' ');
        text.push_str(&ops.join(","));
    }
    text
}

/// The x86-64 architecture.
#[derive(Debug, Clone, Copy, Default)]
pub struct X86_64;

/// The position-dependent parts of one decoded x86-64 instruction, as returned by
/// [`X86_64::constant_offsets`].
///
/// A position-independent checksum of a function can hash each instruction with the bytes
/// named here masked out (or replaced by something stable, such as the relocation target or a
/// branch target expressed relative to the function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X86Constants {
    /// Where the instruction is, relative to the start of the decoded slice.
    pub insn: Insn,
    /// Offsets (relative to the first byte of the instruction, not of the slice) and sizes of
    /// the displacement and of up to two immediates, as reported by iced's
    /// [`Decoder::get_constant_offsets`]. The rel8/rel32 of a relative branch is reported as an
    /// immediate.
    pub offsets: ConstantOffsets,
    /// For a near branch with an IP-relative target (`call rel32`, `jmp rel8/rel32`, `jcc`,
    /// `loop*`, `jrcxz`, `xbegin`): the absolute target address, computed from the `ip` passed
    /// to [`X86_64::constant_offsets`]. `None` for every other instruction, including indirect
    /// and far branches.
    pub branch_target: Option<u64>,
    /// For an instruction with a RIP-relative memory operand: the address it refers to,
    /// computed from the `ip` passed to [`X86_64::constant_offsets`].
    pub rip_relative_target: Option<u64>,
}

impl X86Constants {
    /// Whether the instruction is a near branch, call or jump with an IP-relative target.
    pub fn is_relative_branch(&self) -> bool {
        self.branch_target.is_some()
    }
}

/// Decoder options: none. iced's default rejects encodings the CPU would fault on (for example
/// `lock` on a register operand), which is what we want: such bytes are not code.
const OPTIONS: u32 = DecoderOptions::NONE;

impl X86_64 {
    /// Decode every instruction of `code`, assumed to be loaded at address `ip`, and return
    /// for each one where its displacement and immediates are and, for relative branches and
    /// RIP-relative memory operands, the absolute target.
    ///
    /// Like [`Arch::decode_lengths`], bytes that do not decode give an error.
    pub fn constant_offsets(&self, code: &[u8], ip: u64) -> Result<Vec<X86Constants>, DecodeError> {
        let mut out = Vec::new();
        decode_each(code, ip, |decoder, insn, instr| {
            let branch_target = match instr.op0_kind() {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                    Some(instr.near_branch_target())
                }
                _ => None,
            };
            let rip_relative_target = instr
                .is_ip_rel_memory_operand()
                .then(|| instr.ip_rel_memory_address());
            out.push(X86Constants {
                insn,
                offsets: decoder.get_constant_offsets(instr),
                branch_target,
                rip_relative_target,
            });
        })?;
        Ok(out)
    }
}

/// Decode `code` (loaded at `ip`) one instruction at a time, calling `f` for each.
fn decode_each(
    code: &[u8],
    ip: u64,
    mut f: impl FnMut(&Decoder<'_>, Insn, &Instruction),
) -> Result<(), DecodeError> {
    let mut decoder = Decoder::with_ip(64, code, ip, OPTIONS);
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        let offset = decoder.position();
        decoder.decode_out(&mut instr);
        match decoder.last_error() {
            DecoderError::None => {}
            DecoderError::NoMoreBytes => {
                return Err(DecodeError {
                    offset,
                    reason: "instruction truncated by the end of the code",
                })
            }
            _ => {
                return Err(DecodeError {
                    offset,
                    reason: "invalid x86-64 instruction",
                })
            }
        }
        let len = decoder.position() - offset;
        debug_assert_eq!(len, instr.len());
        f(&decoder, Insn { offset, len }, &instr);
    }
    Ok(())
}

impl Arch for X86_64 {
    fn decode_with_branches(&self, code: &[u8], base: u64) -> (Vec<DecodedInsn>, bool) {
        // One pass; the field offsets (a costly query) only for relative branches.
        let mut out = Vec::with_capacity(code.len() / 4);
        let mut fits = true;
        let complete = decode_each(code, base, |decoder, insn, instr| {
            let branch = match instr.op0_kind() {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                    // iced reports a branch displacement as the (first) immediate.
                    let o = decoder.get_constant_offsets(instr);
                    o.has_immediate().then(|| BranchField {
                        target: instr.near_branch_target() as i64,
                        disp_offset: o.immediate_offset() as u8,
                        disp_size: o.immediate_size() as u8,
                    })
                }
                _ => None,
            };
            match DecodedInsn::new(base + insn.offset as u64, insn.len as u8, branch) {
                Some(d) if fits => out.push(d),
                _ => fits = false,
            }
        })
        .is_ok();
        (out, complete)
    }

    fn decoder_gives_branches(&self) -> bool {
        true
    }

    fn pc_bias(&self, _r_type: u32, field: u64, insn_end: Option<u64>, in_code: bool) -> i64 {
        // PC-relative values count from the end of the instruction; undecoded code usually
        // ends with its 4-byte field.
        match insn_end {
            Some(end) => end as i64 - field as i64,
            None if in_code => 4,
            None => 0,
        }
    }

    fn immediate_argument(&self, insn: &[u8]) -> Option<u8> {
        // mov $imm32, %esi / %edx / %ecx
        match insn {
            [0xbe, _, _, _, _] => Some(2),
            [0xba, _, _, _, _] => Some(3),
            [0xb9, _, _, _, _] => Some(4),
            _ => None,
        }
    }

    fn address_argument(&self, insn: &[u8]) -> Option<u8> {
        // `mov $sym, %reg` (sign-extended or 32-bit) or `lea sym(%rip), %reg`.
        let reg = |r: u8| match r {
            7 => Some(1),
            6 => Some(2),
            2 => Some(3),
            1 => Some(4),
            _ => None,
        };
        match insn {
            [0x48, 0xc7, m, ..] if m >> 6 == 3 => reg(m & 7),
            [0x48, 0x8d, m, ..] if m & 0xc7 == 0x05 => reg((m >> 3) & 7),
            [op, ..] if (0xb8..=0xbf).contains(op) && insn.len() == 5 => reg(op - 0xb8),
            _ => None,
        }
    }

    fn compares_or_stores_address(&self, insn: &[u8], field: usize) -> bool {
        let mut decoder = Decoder::new(64, insn, OPTIONS);
        let instr = decoder.decode();
        if instr.is_invalid() {
            return false;
        }
        let offsets = decoder.get_constant_offsets(&instr);
        if !offsets.has_immediate() || offsets.immediate_offset() != field {
            return false;
        }
        match instr.mnemonic() {
            Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Push => true,
            Mnemonic::Mov => instr.op0_kind() == OpKind::Memory,
            _ => false,
        }
    }

    fn is_call(&self, insn: &[u8], _r_type: u32) -> bool {
        // call rel32, or jmp rel32 to another function: a tail call
        matches!(insn.first(), Some(&0xe8) | Some(&0xe9))
    }

    fn loader_relocation_types(&self) -> Option<&'static [u32]> {
        use object::elf::{
            R_X86_64_32, R_X86_64_32S, R_X86_64_64, R_X86_64_NONE, R_X86_64_PC32, R_X86_64_PC64,
            R_X86_64_PLT32,
        };
        const TYPES: [u32; 7] = [
            R_X86_64_NONE.0,
            R_X86_64_64.0,
            R_X86_64_PC32.0,
            R_X86_64_PLT32.0,
            R_X86_64_32.0,
            R_X86_64_32S.0,
            R_X86_64_PC64.0,
        ];
        Some(&TYPES)
    }

    fn disassemble(&self, bytes: &[u8], ip: u64) -> Option<String> {
        let mut decoder = Decoder::with_ip(64, bytes, ip, OPTIONS);
        let instr = decoder.decode();
        if instr.is_invalid() {
            return None;
        }
        Some(att_text(&instr))
    }

    fn name(&self) -> &'static str {
        "x86_64"
    }

    fn machine(&self) -> u16 {
        elf::EM_X86_64.0
    }

    fn reloc_info(&self, r_type: u32) -> Option<RelocInfo> {
        reloc_info(r_type)
    }

    fn abs64_reloc(&self) -> u32 {
        elf::R_X86_64_64.0
    }

    fn is_padding(&self, insn: &[u8]) -> bool {
        // `nop` in all its lengths, `int3` and the zeros of `.fill`.
        if insn.iter().all(|&b| b == 0xcc || b == 0) {
            return true;
        }
        let mut decoder = Decoder::new(64, insn, OPTIONS);
        let instr = decoder.decode();
        !instr.is_invalid()
            && instr.len() == insn.len()
            && matches!(instr.mnemonic(), Mnemonic::Nop | Mnemonic::Int3)
    }

    fn reloc_is_branch(&self, insn: &[u8], _at: usize, _r_type: u32) -> bool {
        // `call`/`jmp`/`jcc` carry their target as a relative branch operand, whatever the
        // relocation type (PC32 and PLT32 both appear on calls and on address loads).
        self.constant_offsets(insn, 0)
            .ok()
            .and_then(|c| c.first().map(X86Constants::is_relative_branch))
            .unwrap_or(false)
    }

    fn decode_lengths(&self, code: &[u8]) -> Result<Vec<Insn>, DecodeError> {
        let mut out = Vec::new();
        decode_each(code, 0, |_, insn, _| out.push(insn))?;
        Ok(out)
    }
}

/// The x86-64 psABI relocation types plus the GNU extensions binutils knows.
fn reloc_info(r_type: u32) -> Option<RelocInfo> {
    use RelocKind as K;
    let (name, kind, size) = match r_type {
        0 => ("R_X86_64_NONE", K::None, 0),
        1 => ("R_X86_64_64", K::Absolute, 8),
        2 => ("R_X86_64_PC32", K::PcRelative, 4),
        // G + A: offset of the symbol's GOT entry from the GOT base.
        3 => ("R_X86_64_GOT32", K::Other, 4),
        4 => ("R_X86_64_PLT32", K::Branch, 4),
        // Dynamic-only types: never in relocatable objects.
        5 => ("R_X86_64_COPY", K::Other, 0),
        6 => ("R_X86_64_GLOB_DAT", K::Other, 8),
        7 => ("R_X86_64_JUMP_SLOT", K::Other, 8),
        8 => ("R_X86_64_RELATIVE", K::Other, 8),
        9 => ("R_X86_64_GOTPCREL", K::GotRelative, 4),
        10 => ("R_X86_64_32", K::Absolute, 4),
        11 => ("R_X86_64_32S", K::Absolute, 4),
        12 => ("R_X86_64_16", K::Absolute, 2),
        13 => ("R_X86_64_PC16", K::PcRelative, 2),
        14 => ("R_X86_64_8", K::Absolute, 1),
        15 => ("R_X86_64_PC8", K::PcRelative, 1),
        16 => ("R_X86_64_DTPMOD64", K::Tls, 8),
        17 => ("R_X86_64_DTPOFF64", K::Tls, 8),
        18 => ("R_X86_64_TPOFF64", K::Tls, 8),
        19 => ("R_X86_64_TLSGD", K::Tls, 4),
        20 => ("R_X86_64_TLSLD", K::Tls, 4),
        21 => ("R_X86_64_DTPOFF32", K::Tls, 4),
        22 => ("R_X86_64_GOTTPOFF", K::Tls, 4),
        23 => ("R_X86_64_TPOFF32", K::Tls, 4),
        24 => ("R_X86_64_PC64", K::PcRelative, 8),
        // S + A - GOT: relative to the GOT base, needs no GOT entry.
        25 => ("R_X86_64_GOTOFF64", K::Other, 8),
        // GOT + A - P: PC-relative address of the GOT base itself, not of an entry.
        26 => ("R_X86_64_GOTPC32", K::Other, 4),
        27 => ("R_X86_64_GOT64", K::Other, 8),
        28 => ("R_X86_64_GOTPCREL64", K::GotRelative, 8),
        29 => ("R_X86_64_GOTPC64", K::Other, 8),
        30 => ("R_X86_64_GOTPLT64", K::Other, 8),
        31 => ("R_X86_64_PLTOFF64", K::Other, 8),
        // Z + A: the symbol's size.
        32 => ("R_X86_64_SIZE32", K::Other, 4),
        33 => ("R_X86_64_SIZE64", K::Other, 8),
        34 => ("R_X86_64_GOTPC32_TLSDESC", K::Tls, 4),
        // Marks the call through a TLS descriptor; writes nothing.
        35 => ("R_X86_64_TLSDESC_CALL", K::Tls, 0),
        // Dynamic: a two-word descriptor.
        36 => ("R_X86_64_TLSDESC", K::Tls, 16),
        37 => ("R_X86_64_IRELATIVE", K::Other, 8),
        38 => ("R_X86_64_RELATIVE64", K::Other, 8),
        // 39 and 40 were the MPX R_X86_64_PC32_BND / R_X86_64_PLT32_BND, now withdrawn.
        41 => ("R_X86_64_GOTPCRELX", K::GotRelative, 4),
        42 => ("R_X86_64_REX_GOTPCRELX", K::GotRelative, 4),
        // APX (REX2/EVEX-encoded) variants, binutils 2.43 and later.
        43 => ("R_X86_64_CODE_4_GOTPCRELX", K::GotRelative, 4),
        44 => ("R_X86_64_CODE_4_GOTTPOFF", K::Tls, 4),
        45 => ("R_X86_64_CODE_4_GOTPC32_TLSDESC", K::Tls, 4),
        46 => ("R_X86_64_CODE_5_GOTPCRELX", K::GotRelative, 4),
        47 => ("R_X86_64_CODE_5_GOTTPOFF", K::Tls, 4),
        48 => ("R_X86_64_CODE_5_GOTPC32_TLSDESC", K::Tls, 4),
        49 => ("R_X86_64_CODE_6_GOTPCRELX", K::GotRelative, 4),
        50 => ("R_X86_64_CODE_6_GOTTPOFF", K::Tls, 4),
        51 => ("R_X86_64_CODE_6_GOTPC32_TLSDESC", K::Tls, 4),
        // C++ vtable garbage-collection markers.
        250 => ("R_X86_64_GNU_VTINHERIT", K::Other, 0),
        251 => ("R_X86_64_GNU_VTENTRY", K::Other, 0),
        _ => return None,
    };
    Some(RelocInfo { name, kind, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_compared_or_stored_is_told_from_one_reached() {
        let x = X86_64;
        // cmpq $sym, (%rdi): the immediate at byte 3
        assert!(x.compares_or_stores_address(&[0x48, 0x81, 0x3f, 0, 0, 0, 0], 3));
        // movq $sym, (%rdi)
        assert!(x.compares_or_stores_address(&[0x48, 0xc7, 0x07, 0, 0, 0, 0], 3));
        // push $sym
        assert!(x.compares_or_stores_address(&[0x68, 0, 0, 0, 0], 1));
        // mov $sym, %rax: into a register, for whatever comes next
        assert!(!x.compares_or_stores_address(&[0x48, 0xc7, 0xc0, 0, 0, 0, 0], 3));
        // movl sym(,%rax,4), %eax: reaches memory through it (the displacement)
        assert!(!x.compares_or_stores_address(&[0x8b, 0x04, 0x85, 0, 0, 0, 0], 3));
        // lea sym(%rip), %rax
        assert!(!x.compares_or_stores_address(&[0x48, 0x8d, 0x05, 0, 0, 0, 0], 3));
        // not where the immediate is
        assert!(!x.compares_or_stores_address(&[0x48, 0x81, 0x3f, 0, 0, 0, 0], 2));
    }

    #[test]
    fn disassembles_in_att_order() {
        let text = |code: &[u8], ip| X86_64.disassemble(code, ip).unwrap();
        assert_eq!(text(&[0x48, 0x89, 0xe5], 0), "mov %rsp,%rbp");
        assert_eq!(
            text(&[0x48, 0x8b, 0x05, 0x20, 0, 0, 0], 0x10),
            "mov 0x37(%rip),%rax"
        );
        assert_eq!(
            text(&[0x48, 0x8b, 0x44, 0xfd, 0xf8], 0),
            "mov -0x8(%rbp,%rdi,8),%rax"
        );
        assert_eq!(text(&[0x48, 0x83, 0xec, 0x18], 0), "sub $0x18,%rsp");
        assert_eq!(text(&[0xe8, 0x10, 0, 0, 0], 0x100), "call 0x115");
        assert_eq!(
            text(&[0x65, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], 0),
            "mov %gs:0x28,%rax"
        );
        assert_eq!(text(&[0xc3], 0), "ret");
        assert_eq!(X86_64.disassemble(&[0x06], 0), None);
    }

    fn lens(code: &[u8]) -> Vec<(usize, usize)> {
        X86_64
            .decode_lengths(code)
            .unwrap()
            .iter()
            .map(|i| (i.offset, i.len))
            .collect()
    }

    #[test]
    fn decodes_a_hand_assembled_function() {
        let code = [
            0xf3, 0x0f, 0x1e, 0xfa, // endbr64
            0xe8, 0x00, 0x00, 0x00, 0x00, // call rel32
            0x55, // push %rbp
            0x48, 0x89, 0xe5, // mov %rsp,%rbp
            0x48, 0x8b, 0x05, 0x00, 0x00, 0x00, 0x00, // mov 0(%rip),%rax
            0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, // nopw 0(%rax,%rax,1)
            0x0f, 0x0b, // ud2
            0x5d, // pop %rbp
            0xc3, // ret
            0xcc, // int3
        ];
        assert_eq!(
            lens(&code),
            [
                (0, 4),
                (4, 5),
                (9, 1),
                (10, 3),
                (13, 7),
                (20, 6),
                (26, 2),
                (28, 1),
                (29, 1),
                (30, 1)
            ]
        );
    }

    #[test]
    fn invalid_or_truncated_code_is_an_error() {
        // push %es does not exist in 64-bit mode.
        let err = X86_64.decode_lengths(&[0x90, 0x06, 0x90]).unwrap_err();
        assert_eq!(err.offset, 1);
        assert_eq!(err.reason, "invalid x86-64 instruction");
        // A call whose rel32 is cut short.
        let err = X86_64
            .decode_lengths(&[0x90, 0xe8, 0x00, 0x00])
            .unwrap_err();
        assert_eq!(err.offset, 1);
        assert_eq!(err.reason, "instruction truncated by the end of the code");
        // lock on a register operand.
        assert!(X86_64.decode_lengths(&[0xf0, 0x48, 0x01, 0xc0]).is_err());
        assert_eq!(X86_64.decode_lengths(&[]).unwrap(), []);
    }

    #[test]
    fn constant_offsets_of_branches() {
        let ip = 0x1000;
        let code = [
            0xe8, 0x10, 0x00, 0x00, 0x00, // call ip+5+0x10
            0xeb, 0xfe, // jmp . (rel8)
            0x0f, 0x84, 0xf0, 0xff, 0xff, 0xff, // je ip+13-0x10
            0xff, 0xd0, // call *%rax
        ];
        let c = X86_64.constant_offsets(&code, ip).unwrap();
        assert_eq!(c.len(), 4);

        assert_eq!(c[0].insn, Insn { offset: 0, len: 5 });
        assert_eq!(c[0].branch_target, Some(0x1015));
        assert!(c[0].is_relative_branch());
        assert_eq!(
            (
                c[0].offsets.immediate_offset(),
                c[0].offsets.immediate_size()
            ),
            (1, 4)
        );
        assert!(!c[0].offsets.has_displacement());

        assert_eq!(c[1].branch_target, Some(0x1005));
        assert_eq!(
            (
                c[1].offsets.immediate_offset(),
                c[1].offsets.immediate_size()
            ),
            (1, 1)
        );

        assert_eq!(c[2].insn, Insn { offset: 7, len: 6 });
        assert_eq!(c[2].branch_target, Some(0x1000 + 13 - 0x10));
        assert_eq!(
            (
                c[2].offsets.immediate_offset(),
                c[2].offsets.immediate_size()
            ),
            (2, 4)
        );

        // Indirect call: no relative target, no constants.
        assert_eq!(c[3].branch_target, None);
        assert!(!c[3].is_relative_branch());
        assert_eq!(c[3].rip_relative_target, None);
        assert!(!c[3].offsets.has_displacement() && !c[3].offsets.has_immediate());
    }

    #[test]
    fn constant_offsets_of_memory_operands_and_immediates() {
        let ip = 0xffff_ffff_8100_0000;
        let code = [
            0x48, 0x8b, 0x05, 0x20, 0x00, 0x00, 0x00, // mov 0x20(%rip),%rax
            0xc7, 0x05, 0x08, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12, // movl $imm,8(%rip)
            0x48, 0xc7, 0xc7, 0x00, 0x00, 0x00, 0x00, // mov $0,%rdi (imm32 sign-extended)
            0x48, 0x8b, 0x04, 0xfd, 0x00, 0x00, 0x00, 0x00, // mov 0(,%rdi,8),%rax
            0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, // movabs $imm64,%rax
            0xc8, 0x10, 0x00, 0x01, // enter $0x10,$1 (two immediates)
        ];
        let c = X86_64.constant_offsets(&code, ip).unwrap();
        assert_eq!(c.len(), 6);

        assert_eq!(c[0].rip_relative_target, Some(ip + 7 + 0x20));
        assert_eq!(
            (
                c[0].offsets.displacement_offset(),
                c[0].offsets.displacement_size()
            ),
            (3, 4)
        );
        assert_eq!(c[0].branch_target, None);

        // RIP-relative with an immediate after the displacement: the target is relative to
        // the end of the whole instruction.
        assert_eq!(c[1].insn, Insn { offset: 7, len: 10 });
        assert_eq!(c[1].rip_relative_target, Some(ip + 17 + 8));
        assert_eq!(
            (
                c[1].offsets.displacement_offset(),
                c[1].offsets.displacement_size()
            ),
            (2, 4)
        );
        assert_eq!(
            (
                c[1].offsets.immediate_offset(),
                c[1].offsets.immediate_size()
            ),
            (6, 4)
        );

        assert_eq!(
            (
                c[2].offsets.immediate_offset(),
                c[2].offsets.immediate_size()
            ),
            (3, 4)
        );
        assert_eq!(c[2].rip_relative_target, None);

        assert_eq!(
            (
                c[3].offsets.displacement_offset(),
                c[3].offsets.displacement_size()
            ),
            (4, 4)
        );
        assert_eq!(c[3].rip_relative_target, None);

        assert_eq!(
            (
                c[4].offsets.immediate_offset(),
                c[4].offsets.immediate_size()
            ),
            (2, 8)
        );

        let o = &c[5].offsets;
        assert_eq!((o.immediate_offset(), o.immediate_size()), (1, 2));
        assert_eq!((o.immediate_offset2(), o.immediate_size2()), (3, 1));
    }

    #[test]
    fn constant_offsets_reports_errors_like_decode_lengths() {
        let err = X86_64.constant_offsets(&[0xc3, 0x06], 0).unwrap_err();
        assert_eq!(err.offset, 1);
    }

    #[test]
    fn kernel_relocations() {
        let check = |t: u32, name: &'static str, kind: RelocKind, size: u8| {
            assert_eq!(reloc_info(t), Some(RelocInfo { name, kind, size }), "{t}");
        };
        check(1, "R_X86_64_64", RelocKind::Absolute, 8);
        check(2, "R_X86_64_PC32", RelocKind::PcRelative, 4);
        check(4, "R_X86_64_PLT32", RelocKind::Branch, 4);
        check(11, "R_X86_64_32S", RelocKind::Absolute, 4);
        check(24, "R_X86_64_PC64", RelocKind::PcRelative, 8);
        check(42, "R_X86_64_REX_GOTPCRELX", RelocKind::GotRelative, 4);
        check(23, "R_X86_64_TPOFF32", RelocKind::Tls, 4);
        check(0, "R_X86_64_NONE", RelocKind::None, 0);
        assert_eq!(reloc_info(39), None);
    }
}
