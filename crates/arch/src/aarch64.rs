//! AArch64 (`EM_AARCH64`, LP64, little endian): fixed 4-byte instructions.

use crate::{fixed_width, Arch, DecodeError, Insn, RelocInfo, RelocKind};
use object::elf;

/// The AArch64 architecture (LP64 ABI; the ILP32 `R_AARCH64_P32_*` types are not supported).
#[derive(Debug, Clone, Copy, Default)]
pub struct Aarch64;

impl Arch for Aarch64 {
    fn name(&self) -> &'static str {
        "aarch64"
    }

    fn relative_branch_target(&self, insn: &[u8], at: u64) -> Option<i64> {
        let w = u32::from_le_bytes(insn.get(..4)?.try_into().ok()?);
        // B / BL: imm26 words, sign-extended
        if w & 0x7c00_0000 != 0x1400_0000 {
            return None;
        }
        Some(at as i64 + ((((w & 0x03ff_ffff) << 6) as i32 >> 6) as i64) * 4)
    }

    fn mask_branch_displacement(&self, insn: &mut [u8]) {
        if let Some(w) = insn.get_mut(..4) {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let v = if v & 0x7c00_0000 == 0x1400_0000 {
                v & !0x03ff_ffff
            } else {
                v
            };
            w.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn immediate_argument(&self, insn: &[u8]) -> Option<u8> {
        // movz w1 / w2, #imm16
        match u32::from_le_bytes(insn.get(..4)?.try_into().ok()?) & 0xffe0_001f {
            0x5280_0001 => Some(2),
            0x5280_0002 => Some(3),
            _ => None,
        }
    }

    fn machine(&self) -> u16 {
        elf::EM_AARCH64.0
    }

    fn reloc_info(&self, r_type: u32) -> Option<RelocInfo> {
        reloc_info(r_type)
    }

    fn abs64_reloc(&self) -> u32 {
        elf::R_AARCH64_ABS64.0
    }

    fn materializes_address(&self, insn: &[u8], r_type: u32) -> bool {
        // `add xD, xN, #:lo12:sym` after its `adrp`, and `adr xD, sym`
        let _ = insn;
        r_type == elf::R_AARCH64_ADD_ABS_LO12_NC.0 || r_type == elf::R_AARCH64_ADR_PREL_LO21.0
    }

    fn is_padding(&self, insn: &[u8]) -> bool {
        // `nop` and the zero word (`udf #0`).
        match <[u8; 4]>::try_from(insn) {
            Ok(w) => matches!(u32::from_le_bytes(w), 0 | 0xd503_201f),
            Err(_) => insn.iter().all(|&b| b == 0),
        }
    }

    fn decode_lengths(&self, code: &[u8]) -> Result<Vec<Insn>, DecodeError> {
        fixed_width(code, 4)
    }
}

/// The LP64 relocation types of the AArch64 ELF ABI that binutils knows.
///
/// Every relocation that patches an instruction reports size 4 (the instruction word).
fn reloc_info(r_type: u32) -> Option<RelocInfo> {
    use RelocKind as K;
    let (name, kind, size) = match r_type {
        0 => ("R_AARCH64_NONE", K::None, 0),
        // The ABI's alternative "no relocation" value.
        256 => ("R_AARCH64_NULL", K::None, 0),
        // Data.
        257 => ("R_AARCH64_ABS64", K::Absolute, 8),
        258 => ("R_AARCH64_ABS32", K::Absolute, 4),
        259 => ("R_AARCH64_ABS16", K::Absolute, 2),
        260 => ("R_AARCH64_PREL64", K::PcRelative, 8),
        261 => ("R_AARCH64_PREL32", K::PcRelative, 4),
        262 => ("R_AARCH64_PREL16", K::PcRelative, 2),
        // MOVZ/MOVK groups of an absolute address.
        263 => ("R_AARCH64_MOVW_UABS_G0", K::InstructionField, 4),
        264 => ("R_AARCH64_MOVW_UABS_G0_NC", K::InstructionField, 4),
        265 => ("R_AARCH64_MOVW_UABS_G1", K::InstructionField, 4),
        266 => ("R_AARCH64_MOVW_UABS_G1_NC", K::InstructionField, 4),
        267 => ("R_AARCH64_MOVW_UABS_G2", K::InstructionField, 4),
        268 => ("R_AARCH64_MOVW_UABS_G2_NC", K::InstructionField, 4),
        269 => ("R_AARCH64_MOVW_UABS_G3", K::InstructionField, 4),
        270 => ("R_AARCH64_MOVW_SABS_G0", K::InstructionField, 4),
        271 => ("R_AARCH64_MOVW_SABS_G1", K::InstructionField, 4),
        272 => ("R_AARCH64_MOVW_SABS_G2", K::InstructionField, 4),
        // A whole PC-relative address in one instruction (LDR literal, ADR).
        273 => ("R_AARCH64_LD_PREL_LO19", K::PcRelative, 4),
        274 => ("R_AARCH64_ADR_PREL_LO21", K::PcRelative, 4),
        // ADRP page + low-12-bit offset pairs.
        275 => ("R_AARCH64_ADR_PREL_PG_HI21", K::InstructionField, 4),
        276 => ("R_AARCH64_ADR_PREL_PG_HI21_NC", K::InstructionField, 4),
        277 => ("R_AARCH64_ADD_ABS_LO12_NC", K::InstructionField, 4),
        278 => ("R_AARCH64_LDST8_ABS_LO12_NC", K::InstructionField, 4),
        // Branches.
        279 => ("R_AARCH64_TSTBR14", K::Branch, 4),
        280 => ("R_AARCH64_CONDBR19", K::Branch, 4),
        282 => ("R_AARCH64_JUMP26", K::Branch, 4),
        283 => ("R_AARCH64_CALL26", K::Branch, 4),
        284 => ("R_AARCH64_LDST16_ABS_LO12_NC", K::InstructionField, 4),
        285 => ("R_AARCH64_LDST32_ABS_LO12_NC", K::InstructionField, 4),
        286 => ("R_AARCH64_LDST64_ABS_LO12_NC", K::InstructionField, 4),
        // MOVZ/MOVK groups of a PC-relative offset.
        287 => ("R_AARCH64_MOVW_PREL_G0", K::InstructionField, 4),
        288 => ("R_AARCH64_MOVW_PREL_G0_NC", K::InstructionField, 4),
        289 => ("R_AARCH64_MOVW_PREL_G1", K::InstructionField, 4),
        290 => ("R_AARCH64_MOVW_PREL_G1_NC", K::InstructionField, 4),
        291 => ("R_AARCH64_MOVW_PREL_G2", K::InstructionField, 4),
        292 => ("R_AARCH64_MOVW_PREL_G2_NC", K::InstructionField, 4),
        293 => ("R_AARCH64_MOVW_PREL_G3", K::InstructionField, 4),
        299 => ("R_AARCH64_LDST128_ABS_LO12_NC", K::InstructionField, 4),
        // Offsets from the GOT base (no PC involved).
        300 => ("R_AARCH64_MOVW_GOTOFF_G0", K::Other, 4),
        301 => ("R_AARCH64_MOVW_GOTOFF_G0_NC", K::Other, 4),
        302 => ("R_AARCH64_MOVW_GOTOFF_G1", K::Other, 4),
        303 => ("R_AARCH64_MOVW_GOTOFF_G1_NC", K::Other, 4),
        304 => ("R_AARCH64_MOVW_GOTOFF_G2", K::Other, 4),
        305 => ("R_AARCH64_MOVW_GOTOFF_G2_NC", K::Other, 4),
        306 => ("R_AARCH64_MOVW_GOTOFF_G3", K::Other, 4),
        307 => ("R_AARCH64_GOTREL64", K::Other, 8),
        308 => ("R_AARCH64_GOTREL32", K::Other, 4),
        // PC-relative access to the symbol's GOT entry.
        309 => ("R_AARCH64_GOT_LD_PREL19", K::GotRelative, 4),
        310 => ("R_AARCH64_LD64_GOTOFF_LO15", K::Other, 4),
        311 => ("R_AARCH64_ADR_GOT_PAGE", K::GotRelative, 4),
        312 => ("R_AARCH64_LD64_GOT_LO12_NC", K::GotRelative, 4),
        313 => ("R_AARCH64_LD64_GOTPAGE_LO15", K::Other, 4),
        // 32-bit PC-relative data through a PLT (binutils 2.41+) or the GOT (2.42+).
        314 => ("R_AARCH64_PLT32", K::Branch, 4),
        315 => ("R_AARCH64_GOTPCREL32", K::GotRelative, 4),
        // Thread-local storage.
        512 => ("R_AARCH64_TLSGD_ADR_PREL21", K::Tls, 4),
        513 => ("R_AARCH64_TLSGD_ADR_PAGE21", K::Tls, 4),
        514 => ("R_AARCH64_TLSGD_ADD_LO12_NC", K::Tls, 4),
        515 => ("R_AARCH64_TLSGD_MOVW_G1", K::Tls, 4),
        516 => ("R_AARCH64_TLSGD_MOVW_G0_NC", K::Tls, 4),
        517 => ("R_AARCH64_TLSLD_ADR_PREL21", K::Tls, 4),
        518 => ("R_AARCH64_TLSLD_ADR_PAGE21", K::Tls, 4),
        519 => ("R_AARCH64_TLSLD_ADD_LO12_NC", K::Tls, 4),
        520 => ("R_AARCH64_TLSLD_MOVW_G1", K::Tls, 4),
        521 => ("R_AARCH64_TLSLD_MOVW_G0_NC", K::Tls, 4),
        522 => ("R_AARCH64_TLSLD_LD_PREL19", K::Tls, 4),
        523 => ("R_AARCH64_TLSLD_MOVW_DTPREL_G2", K::Tls, 4),
        524 => ("R_AARCH64_TLSLD_MOVW_DTPREL_G1", K::Tls, 4),
        525 => ("R_AARCH64_TLSLD_MOVW_DTPREL_G1_NC", K::Tls, 4),
        526 => ("R_AARCH64_TLSLD_MOVW_DTPREL_G0", K::Tls, 4),
        527 => ("R_AARCH64_TLSLD_MOVW_DTPREL_G0_NC", K::Tls, 4),
        528 => ("R_AARCH64_TLSLD_ADD_DTPREL_HI12", K::Tls, 4),
        529 => ("R_AARCH64_TLSLD_ADD_DTPREL_LO12", K::Tls, 4),
        530 => ("R_AARCH64_TLSLD_ADD_DTPREL_LO12_NC", K::Tls, 4),
        531 => ("R_AARCH64_TLSLD_LDST8_DTPREL_LO12", K::Tls, 4),
        532 => ("R_AARCH64_TLSLD_LDST8_DTPREL_LO12_NC", K::Tls, 4),
        533 => ("R_AARCH64_TLSLD_LDST16_DTPREL_LO12", K::Tls, 4),
        534 => ("R_AARCH64_TLSLD_LDST16_DTPREL_LO12_NC", K::Tls, 4),
        535 => ("R_AARCH64_TLSLD_LDST32_DTPREL_LO12", K::Tls, 4),
        536 => ("R_AARCH64_TLSLD_LDST32_DTPREL_LO12_NC", K::Tls, 4),
        537 => ("R_AARCH64_TLSLD_LDST64_DTPREL_LO12", K::Tls, 4),
        538 => ("R_AARCH64_TLSLD_LDST64_DTPREL_LO12_NC", K::Tls, 4),
        539 => ("R_AARCH64_TLSIE_MOVW_GOTTPREL_G1", K::Tls, 4),
        540 => ("R_AARCH64_TLSIE_MOVW_GOTTPREL_G0_NC", K::Tls, 4),
        541 => ("R_AARCH64_TLSIE_ADR_GOTTPREL_PAGE21", K::Tls, 4),
        542 => ("R_AARCH64_TLSIE_LD64_GOTTPREL_LO12_NC", K::Tls, 4),
        543 => ("R_AARCH64_TLSIE_LD_GOTTPREL_PREL19", K::Tls, 4),
        544 => ("R_AARCH64_TLSLE_MOVW_TPREL_G2", K::Tls, 4),
        545 => ("R_AARCH64_TLSLE_MOVW_TPREL_G1", K::Tls, 4),
        546 => ("R_AARCH64_TLSLE_MOVW_TPREL_G1_NC", K::Tls, 4),
        547 => ("R_AARCH64_TLSLE_MOVW_TPREL_G0", K::Tls, 4),
        548 => ("R_AARCH64_TLSLE_MOVW_TPREL_G0_NC", K::Tls, 4),
        549 => ("R_AARCH64_TLSLE_ADD_TPREL_HI12", K::Tls, 4),
        550 => ("R_AARCH64_TLSLE_ADD_TPREL_LO12", K::Tls, 4),
        551 => ("R_AARCH64_TLSLE_ADD_TPREL_LO12_NC", K::Tls, 4),
        552 => ("R_AARCH64_TLSLE_LDST8_TPREL_LO12", K::Tls, 4),
        553 => ("R_AARCH64_TLSLE_LDST8_TPREL_LO12_NC", K::Tls, 4),
        554 => ("R_AARCH64_TLSLE_LDST16_TPREL_LO12", K::Tls, 4),
        555 => ("R_AARCH64_TLSLE_LDST16_TPREL_LO12_NC", K::Tls, 4),
        556 => ("R_AARCH64_TLSLE_LDST32_TPREL_LO12", K::Tls, 4),
        557 => ("R_AARCH64_TLSLE_LDST32_TPREL_LO12_NC", K::Tls, 4),
        558 => ("R_AARCH64_TLSLE_LDST64_TPREL_LO12", K::Tls, 4),
        559 => ("R_AARCH64_TLSLE_LDST64_TPREL_LO12_NC", K::Tls, 4),
        560 => ("R_AARCH64_TLSDESC_LD_PREL19", K::Tls, 4),
        561 => ("R_AARCH64_TLSDESC_ADR_PREL21", K::Tls, 4),
        562 => ("R_AARCH64_TLSDESC_ADR_PAGE21", K::Tls, 4),
        563 => ("R_AARCH64_TLSDESC_LD64_LO12", K::Tls, 4),
        564 => ("R_AARCH64_TLSDESC_ADD_LO12", K::Tls, 4),
        565 => ("R_AARCH64_TLSDESC_OFF_G1", K::Tls, 4),
        566 => ("R_AARCH64_TLSDESC_OFF_G0_NC", K::Tls, 4),
        // Markers for TLS descriptor relaxation; they patch nothing themselves.
        567 => ("R_AARCH64_TLSDESC_LDR", K::Tls, 0),
        568 => ("R_AARCH64_TLSDESC_ADD", K::Tls, 0),
        569 => ("R_AARCH64_TLSDESC_CALL", K::Tls, 0),
        570 => ("R_AARCH64_TLSLE_LDST128_TPREL_LO12", K::Tls, 4),
        571 => ("R_AARCH64_TLSLE_LDST128_TPREL_LO12_NC", K::Tls, 4),
        572 => ("R_AARCH64_TLSLD_LDST128_DTPREL_LO12", K::Tls, 4),
        573 => ("R_AARCH64_TLSLD_LDST128_DTPREL_LO12_NC", K::Tls, 4),
        // Dynamic-only types: never in relocatable objects. binutils spells the TLS ones with a
        // `64` suffix (the ABI document calls them R_AARCH64_TLS_DTPMOD etc.).
        1024 => ("R_AARCH64_COPY", K::Other, 0),
        1025 => ("R_AARCH64_GLOB_DAT", K::Other, 8),
        1026 => ("R_AARCH64_JUMP_SLOT", K::Other, 8),
        1027 => ("R_AARCH64_RELATIVE", K::Other, 8),
        1028 => ("R_AARCH64_TLS_DTPMOD64", K::Tls, 8),
        1029 => ("R_AARCH64_TLS_DTPREL64", K::Tls, 8),
        1030 => ("R_AARCH64_TLS_TPREL64", K::Tls, 8),
        1031 => ("R_AARCH64_TLSDESC", K::Tls, 16),
        1032 => ("R_AARCH64_IRELATIVE", K::Other, 8),
        _ => return None,
    };
    Some(RelocInfo { name, kind, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_four_byte_words() {
        // nop; bl .; ret
        let code = [
            0x1f, 0x20, 0x03, 0xd5, 0x00, 0x00, 0x00, 0x94, 0xc0, 0x03, 0x5f, 0xd6,
        ];
        let insns = Aarch64.decode_lengths(&code).unwrap();
        let starts: Vec<_> = insns.iter().map(|i| (i.offset, i.len)).collect();
        assert_eq!(starts, [(0, 4), (4, 4), (8, 4)]);
        let err = Aarch64.decode_lengths(&code[..10]).unwrap_err();
        assert_eq!(err.offset, 8);
    }

    #[test]
    fn kernel_relocations() {
        let check = |t: u32, name: &'static str, kind: RelocKind, size: u8| {
            assert_eq!(reloc_info(t), Some(RelocInfo { name, kind, size }), "{t}");
        };
        check(257, "R_AARCH64_ABS64", RelocKind::Absolute, 8);
        check(261, "R_AARCH64_PREL32", RelocKind::PcRelative, 4);
        check(283, "R_AARCH64_CALL26", RelocKind::Branch, 4);
        check(282, "R_AARCH64_JUMP26", RelocKind::Branch, 4);
        check(
            275,
            "R_AARCH64_ADR_PREL_PG_HI21",
            RelocKind::InstructionField,
            4,
        );
        check(
            277,
            "R_AARCH64_ADD_ABS_LO12_NC",
            RelocKind::InstructionField,
            4,
        );
        check(311, "R_AARCH64_ADR_GOT_PAGE", RelocKind::GotRelative, 4);
        check(312, "R_AARCH64_LD64_GOT_LO12_NC", RelocKind::GotRelative, 4);
        // The ILP32 types are not supported.
        assert_eq!(reloc_info(1), None);
        assert_eq!(reloc_info(281), None);
    }
}
