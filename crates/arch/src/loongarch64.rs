//! LoongArch64 (`EM_LOONGARCH`, little endian): fixed 4-byte instructions.

use crate::{fixed_width, Arch, DecodeError, Insn, RelocInfo, RelocKind};
use object::elf;

/// The LoongArch64 architecture.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoongArch64;

impl Arch for LoongArch64 {
    fn name(&self) -> &'static str {
        "loongarch64"
    }

    fn relative_branch_target(&self, insn: &[u8], at: u64) -> Option<i64> {
        let w = u32::from_le_bytes(insn.get(..4)?.try_into().ok()?);
        // B / BL: offs[15:0] in bits 25..10, offs[25:16] in bits 9..0, in words
        if !matches!(w >> 26, 0x14 | 0x15) {
            return None;
        }
        let offs = ((w & 0x3ff) << 16) | ((w >> 10) & 0xffff);
        Some(at as i64 + (((offs << 6) as i32 >> 6) as i64) * 4)
    }

    fn mask_branch_displacement(&self, insn: &mut [u8]) {
        if let Some(w) = insn.get_mut(..4) {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let v = if matches!(v >> 26, 0x14 | 0x15) {
                v & 0xfc00_0000
            } else {
                v
            };
            w.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn immediate_argument(&self, insn: &[u8]) -> Option<u8> {
        // addi.w / ori $a1 / $a2, $zero, imm
        match u32::from_le_bytes(insn.get(..4)?.try_into().ok()?) & 0xffc0_03ff {
            0x0280_0005 | 0x0380_0005 => Some(2),
            0x0280_0006 | 0x0380_0006 => Some(3),
            _ => None,
        }
    }

    fn machine(&self) -> u16 {
        elf::EM_LOONGARCH.0
    }

    fn reloc_info(&self, r_type: u32) -> Option<RelocInfo> {
        reloc_info(r_type)
    }

    fn abs64_reloc(&self) -> u32 {
        elf::R_LARCH_64.0
    }

    fn materializes_address(&self, insn: &[u8], r_type: u32) -> bool {
        // `addi.d rd, rj, %pc_lo12(sym)` after its `pcalau12i` (opcode bits 31..22 = 0x00b)
        r_type == elf::R_LARCH_PCALA_LO12.0
            && insn
                .get(..4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .is_some_and(|w| u32::from_le_bytes(w) >> 22 == 0x00b)
    }

    fn is_padding(&self, insn: &[u8]) -> bool {
        // `nop` (`andi $zero, $zero, 0`) and the zero word.
        match <[u8; 4]>::try_from(insn) {
            Ok(w) => matches!(u32::from_le_bytes(w), 0 | 0x0340_0000),
            Err(_) => insn.iter().all(|&b| b == 0),
        }
    }

    fn decode_lengths(&self, code: &[u8]) -> Result<Vec<Insn>, DecodeError> {
        fixed_width(code, 4)
    }
}

/// The relocation types of the LoongArch ELF psABI (v2.x), including the stack-machine
/// `R_LARCH_SOP_*` types that binutils before 2.40 emitted.
///
/// Every relocation that patches an instruction reports size 4 (the instruction word), except
/// the two-instruction call sequences (`R_LARCH_CALL36`, `R_LARCH_CALL30`), which report 8.
fn reloc_info(r_type: u32) -> Option<RelocInfo> {
    use RelocKind as K;
    let (name, kind, size) = match r_type {
        0 => ("R_LARCH_NONE", K::None, 0),
        1 => ("R_LARCH_32", K::Absolute, 4),
        2 => ("R_LARCH_64", K::Absolute, 8),
        // Dynamic-only types: never in relocatable objects.
        3 => ("R_LARCH_RELATIVE", K::Other, 8),
        4 => ("R_LARCH_COPY", K::Other, 0),
        5 => ("R_LARCH_JUMP_SLOT", K::Other, 8),
        6 => ("R_LARCH_TLS_DTPMOD32", K::Tls, 4),
        7 => ("R_LARCH_TLS_DTPMOD64", K::Tls, 8),
        8 => ("R_LARCH_TLS_DTPREL32", K::Tls, 4),
        9 => ("R_LARCH_TLS_DTPREL64", K::Tls, 8),
        10 => ("R_LARCH_TLS_TPREL32", K::Tls, 4),
        11 => ("R_LARCH_TLS_TPREL64", K::Tls, 8),
        12 => ("R_LARCH_IRELATIVE", K::Other, 8),
        // A two-word descriptor.
        13 => ("R_LARCH_TLS_DESC32", K::Tls, 8),
        14 => ("R_LARCH_TLS_DESC64", K::Tls, 16),
        // Markers for `la.abs` / `la.pcrel` macro expansions (old toolchains).
        20 => ("R_LARCH_MARK_LA", K::Other, 0),
        21 => ("R_LARCH_MARK_PCREL", K::Other, 0),
        // Stack-machine relocations: the pushes and operators compute, only the pops write
        // (an instruction word, or a 32-bit datum for SOP_POP_32_U).
        22 => ("R_LARCH_SOP_PUSH_PCREL", K::Other, 0),
        23 => ("R_LARCH_SOP_PUSH_ABSOLUTE", K::Other, 0),
        24 => ("R_LARCH_SOP_PUSH_DUP", K::Other, 0),
        25 => ("R_LARCH_SOP_PUSH_GPREL", K::Other, 0),
        26 => ("R_LARCH_SOP_PUSH_TLS_TPREL", K::Other, 0),
        27 => ("R_LARCH_SOP_PUSH_TLS_GOT", K::Other, 0),
        28 => ("R_LARCH_SOP_PUSH_TLS_GD", K::Other, 0),
        29 => ("R_LARCH_SOP_PUSH_PLT_PCREL", K::Other, 0),
        30 => ("R_LARCH_SOP_ASSERT", K::Other, 0),
        31 => ("R_LARCH_SOP_NOT", K::Other, 0),
        32 => ("R_LARCH_SOP_SUB", K::Other, 0),
        33 => ("R_LARCH_SOP_SL", K::Other, 0),
        34 => ("R_LARCH_SOP_SR", K::Other, 0),
        35 => ("R_LARCH_SOP_ADD", K::Other, 0),
        36 => ("R_LARCH_SOP_AND", K::Other, 0),
        37 => ("R_LARCH_SOP_IF_ELSE", K::Other, 0),
        38 => ("R_LARCH_SOP_POP_32_S_10_5", K::Other, 4),
        39 => ("R_LARCH_SOP_POP_32_U_10_12", K::Other, 4),
        40 => ("R_LARCH_SOP_POP_32_S_10_12", K::Other, 4),
        41 => ("R_LARCH_SOP_POP_32_S_10_16", K::Other, 4),
        42 => ("R_LARCH_SOP_POP_32_S_10_16_S2", K::Other, 4),
        43 => ("R_LARCH_SOP_POP_32_S_5_20", K::Other, 4),
        44 => ("R_LARCH_SOP_POP_32_S_0_5_10_16_S2", K::Other, 4),
        45 => ("R_LARCH_SOP_POP_32_S_0_10_10_16_S2", K::Other, 4),
        46 => ("R_LARCH_SOP_POP_32_U", K::Other, 4),
        // Paired label-difference relocations: ADDn adds S + A, SUBn subtracts S + A, in place.
        47 => ("R_LARCH_ADD8", K::Other, 1),
        48 => ("R_LARCH_ADD16", K::Other, 2),
        49 => ("R_LARCH_ADD24", K::Other, 3),
        50 => ("R_LARCH_ADD32", K::Other, 4),
        51 => ("R_LARCH_ADD64", K::Other, 8),
        52 => ("R_LARCH_SUB8", K::Other, 1),
        53 => ("R_LARCH_SUB16", K::Other, 2),
        54 => ("R_LARCH_SUB24", K::Other, 3),
        55 => ("R_LARCH_SUB32", K::Other, 4),
        56 => ("R_LARCH_SUB64", K::Other, 8),
        57 => ("R_LARCH_GNU_VTINHERIT", K::Other, 0),
        58 => ("R_LARCH_GNU_VTENTRY", K::Other, 0),
        // Branches.
        64 => ("R_LARCH_B16", K::Branch, 4),
        65 => ("R_LARCH_B21", K::Branch, 4),
        66 => ("R_LARCH_B26", K::Branch, 4),
        // Absolute address in up to four pieces (lu12i.w/ori/lu32i.d/lu52i.d).
        67 => ("R_LARCH_ABS_HI20", K::InstructionField, 4),
        68 => ("R_LARCH_ABS_LO12", K::InstructionField, 4),
        69 => ("R_LARCH_ABS64_LO20", K::InstructionField, 4),
        70 => ("R_LARCH_ABS64_HI12", K::InstructionField, 4),
        // PC-relative address: pcalau12i page + low 12 bits (+ high parts for the 64-bit form).
        71 => ("R_LARCH_PCALA_HI20", K::InstructionField, 4),
        72 => ("R_LARCH_PCALA_LO12", K::InstructionField, 4),
        73 => ("R_LARCH_PCALA64_LO20", K::InstructionField, 4),
        74 => ("R_LARCH_PCALA64_HI12", K::InstructionField, 4),
        // PC-relative address of the symbol's GOT entry, in pieces.
        75 => ("R_LARCH_GOT_PC_HI20", K::GotRelative, 4),
        76 => ("R_LARCH_GOT_PC_LO12", K::GotRelative, 4),
        77 => ("R_LARCH_GOT64_PC_LO20", K::GotRelative, 4),
        78 => ("R_LARCH_GOT64_PC_HI12", K::GotRelative, 4),
        // Absolute address of the symbol's GOT entry, in pieces.
        79 => ("R_LARCH_GOT_HI20", K::Other, 4),
        80 => ("R_LARCH_GOT_LO12", K::Other, 4),
        81 => ("R_LARCH_GOT64_LO20", K::Other, 4),
        82 => ("R_LARCH_GOT64_HI12", K::Other, 4),
        // Thread-local storage.
        83 => ("R_LARCH_TLS_LE_HI20", K::Tls, 4),
        84 => ("R_LARCH_TLS_LE_LO12", K::Tls, 4),
        85 => ("R_LARCH_TLS_LE64_LO20", K::Tls, 4),
        86 => ("R_LARCH_TLS_LE64_HI12", K::Tls, 4),
        87 => ("R_LARCH_TLS_IE_PC_HI20", K::Tls, 4),
        88 => ("R_LARCH_TLS_IE_PC_LO12", K::Tls, 4),
        89 => ("R_LARCH_TLS_IE64_PC_LO20", K::Tls, 4),
        90 => ("R_LARCH_TLS_IE64_PC_HI12", K::Tls, 4),
        91 => ("R_LARCH_TLS_IE_HI20", K::Tls, 4),
        92 => ("R_LARCH_TLS_IE_LO12", K::Tls, 4),
        93 => ("R_LARCH_TLS_IE64_LO20", K::Tls, 4),
        94 => ("R_LARCH_TLS_IE64_HI12", K::Tls, 4),
        95 => ("R_LARCH_TLS_LD_PC_HI20", K::Tls, 4),
        96 => ("R_LARCH_TLS_LD_HI20", K::Tls, 4),
        97 => ("R_LARCH_TLS_GD_PC_HI20", K::Tls, 4),
        98 => ("R_LARCH_TLS_GD_HI20", K::Tls, 4),
        99 => ("R_LARCH_32_PCREL", K::PcRelative, 4),
        // Linker-relaxation markers and linker-internal types.
        100 => ("R_LARCH_RELAX", K::Other, 0),
        101 => ("R_LARCH_DELETE", K::Other, 0),
        102 => ("R_LARCH_ALIGN", K::Other, 0),
        // pcaddi: a whole PC-relative address in one instruction.
        103 => ("R_LARCH_PCREL20_S2", K::PcRelative, 4),
        104 => ("R_LARCH_CFA", K::Other, 0),
        105 => ("R_LARCH_ADD6", K::Other, 1),
        106 => ("R_LARCH_SUB6", K::Other, 1),
        // ULEB128 label differences: the field's length is that of the ULEB128 already
        // there, so no fixed size can be given.
        107 => ("R_LARCH_ADD_ULEB128", K::Other, 0),
        108 => ("R_LARCH_SUB_ULEB128", K::Other, 0),
        // The types below are newer than binutils 2.40 (they come from the psABI as listed
        // by the `object` crate).
        109 => ("R_LARCH_64_PCREL", K::PcRelative, 8),
        // pcaddu18i + jirl.
        110 => ("R_LARCH_CALL36", K::Branch, 8),
        111 => ("R_LARCH_TLS_DESC_PC_HI20", K::Tls, 4),
        112 => ("R_LARCH_TLS_DESC_PC_LO12", K::Tls, 4),
        113 => ("R_LARCH_TLS_DESC64_PC_LO20", K::Tls, 4),
        114 => ("R_LARCH_TLS_DESC64_PC_HI12", K::Tls, 4),
        115 => ("R_LARCH_TLS_DESC_HI20", K::Tls, 4),
        116 => ("R_LARCH_TLS_DESC_LO12", K::Tls, 4),
        117 => ("R_LARCH_TLS_DESC64_LO20", K::Tls, 4),
        118 => ("R_LARCH_TLS_DESC64_HI12", K::Tls, 4),
        // Markers on the descriptor load and call; they patch nothing themselves.
        119 => ("R_LARCH_TLS_DESC_LD", K::Tls, 0),
        120 => ("R_LARCH_TLS_DESC_CALL", K::Tls, 0),
        121 => ("R_LARCH_TLS_LE_HI20_R", K::Tls, 4),
        // Marker on the add.d of a relaxable local-exec sequence.
        122 => ("R_LARCH_TLS_LE_ADD_R", K::Tls, 0),
        123 => ("R_LARCH_TLS_LE_LO12_R", K::Tls, 4),
        124 => ("R_LARCH_TLS_LD_PCREL20_S2", K::Tls, 4),
        125 => ("R_LARCH_TLS_GD_PCREL20_S2", K::Tls, 4),
        126 => ("R_LARCH_TLS_DESC_PCREL20_S2", K::Tls, 4),
        // LA32 additions: pcaddu12i + jirl, and pcaddu12i-based address pairs.
        127 => ("R_LARCH_CALL30", K::Branch, 8),
        128 => ("R_LARCH_PCADD_HI20", K::InstructionField, 4),
        129 => ("R_LARCH_PCADD_LO12", K::InstructionField, 4),
        130 => ("R_LARCH_GOT_PCADD_HI20", K::GotRelative, 4),
        131 => ("R_LARCH_GOT_PCADD_LO12", K::GotRelative, 4),
        132 => ("R_LARCH_TLS_IE_PCADD_HI20", K::Tls, 4),
        133 => ("R_LARCH_TLS_IE_PCADD_LO12", K::Tls, 4),
        134 => ("R_LARCH_TLS_LD_PCADD_HI20", K::Tls, 4),
        135 => ("R_LARCH_TLS_LD_PCADD_LO12", K::Tls, 4),
        136 => ("R_LARCH_TLS_GD_PCADD_HI20", K::Tls, 4),
        137 => ("R_LARCH_TLS_GD_PCADD_LO12", K::Tls, 4),
        138 => ("R_LARCH_TLS_DESC_PCADD_HI20", K::Tls, 4),
        139 => ("R_LARCH_TLS_DESC_PCADD_LO12", K::Tls, 4),
        _ => return None,
    };
    Some(RelocInfo { name, kind, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_four_byte_words() {
        // nop (andi $zero,$zero,0); jirl $zero,$ra,0 (ret)
        let code = [0x00, 0x00, 0x40, 0x03, 0x20, 0x00, 0x00, 0x4c];
        let insns = LoongArch64.decode_lengths(&code).unwrap();
        assert_eq!(
            insns,
            [Insn { offset: 0, len: 4 }, Insn { offset: 4, len: 4 }]
        );
        assert_eq!(
            LoongArch64.decode_lengths(&code[..7]).unwrap_err().offset,
            4
        );
    }

    #[test]
    fn kernel_relocations() {
        let check = |t: u32, name: &'static str, kind: RelocKind, size: u8| {
            assert_eq!(reloc_info(t), Some(RelocInfo { name, kind, size }), "{t}");
        };
        check(2, "R_LARCH_64", RelocKind::Absolute, 8);
        check(66, "R_LARCH_B26", RelocKind::Branch, 4);
        check(71, "R_LARCH_PCALA_HI20", RelocKind::InstructionField, 4);
        check(75, "R_LARCH_GOT_PC_HI20", RelocKind::GotRelative, 4);
        check(99, "R_LARCH_32_PCREL", RelocKind::PcRelative, 4);
        check(109, "R_LARCH_64_PCREL", RelocKind::PcRelative, 8);
        check(110, "R_LARCH_CALL36", RelocKind::Branch, 8);
        check(100, "R_LARCH_RELAX", RelocKind::Other, 0);
        check(102, "R_LARCH_ALIGN", RelocKind::Other, 0);
        check(107, "R_LARCH_ADD_ULEB128", RelocKind::Other, 0);
        check(50, "R_LARCH_ADD32", RelocKind::Other, 4);
        check(106, "R_LARCH_SUB6", RelocKind::Other, 1);
    }
}
