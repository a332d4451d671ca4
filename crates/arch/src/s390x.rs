//! s390x (`EM_S390`, 64-bit, big endian): 2-, 4- or 6-byte instructions.

use crate::{Arch, DecodeError, Insn, RelocInfo, RelocKind};
use object::elf;

/// The s390x (z/Architecture) architecture.
#[derive(Debug, Clone, Copy, Default)]
pub struct S390x;

impl S390x {
    /// The length of the instruction whose first (opcode) byte is `first_byte`: the top two
    /// bits select 2 (`00`), 4 (`01`, `10`) or 6 (`11`) bytes.
    pub fn insn_len(first_byte: u8) -> usize {
        match first_byte >> 6 {
            0b00 => 2,
            0b01 | 0b10 => 4,
            _ => 6,
        }
    }
}

impl Arch for S390x {
    fn name(&self) -> &'static str {
        "s390x"
    }

    fn relative_branch_target(&self, insn: &[u8], at: u64) -> Option<i64> {
        // brasl (c0 r5) and brcl (c0 m4): a signed 32-bit count of halfwords
        match insn {
            [0xc0, op, d @ ..] if matches!(op & 0x0f, 4 | 5) && d.len() >= 4 => {
                let disp = i32::from_be_bytes([d[0], d[1], d[2], d[3]]) as i64;
                Some(at as i64 + disp * 2)
            }
            _ => None,
        }
    }

    fn mask_branch_displacement(&self, insn: &mut [u8]) {
        if let [0xc0, op, d @ ..] = insn {
            if matches!(*op & 0x0f, 4 | 5) && d.len() >= 4 {
                d[..4].fill(0);
            }
        }
    }

    fn immediate_argument(&self, insn: &[u8]) -> Option<u8> {
        // lghi / lhi %r3 / %r4, imm
        match insn {
            [0xa7, 0x39 | 0x38, _, _] => Some(2),
            [0xa7, 0x49 | 0x48, _, _] => Some(3),
            _ => None,
        }
    }

    fn pc_bias(&self, r_type: u32, _field: u64, _insn_end: Option<u64>, in_code: bool) -> i64 {
        // `*DBL` fields (halfword-scaled, PC-relative) sit two bytes into the instruction
        // whose address they count from.
        if in_code && self.reloc_name(r_type).ends_with("DBL") {
            -2
        } else {
            0
        }
    }

    fn has_nop_ftrace_entry(&self, code: &[u8]) -> bool {
        // -mnop-mcount: `brcl 0,0` where the mcount call would be.
        code.starts_with(&[0xc0, 0x04, 0, 0, 0, 0])
    }

    fn machine(&self) -> u16 {
        elf::EM_S390.0
    }

    fn reloc_info(&self, r_type: u32) -> Option<RelocInfo> {
        reloc_info(r_type)
    }

    fn abs64_reloc(&self) -> u32 {
        elf::R_390_64.0
    }

    /// Lengths come from the first byte of each instruction (see [`S390x::insn_len`]); an
    /// instruction that runs past the end of `code` gives an error.
    fn reloc_is_branch(&self, insn: &[u8], _at: usize, r_type: u32) -> bool {
        // `brasl`/`brcl` (RIL, 0xc0 with op2 5/4) and `bras`/`brc` (RI, 0xa7 with op2 5/4)
        // branch; `larl` (0xc0 op2 0) takes an address, yet gcc gives it the same PC32DBL or
        // PLT32DBL types. The instruction decides; without it, the type.
        match insn {
            [0xc0 | 0xa7, op2, ..] => matches!(op2 & 0x0f, 4 | 5),
            [_, ..] => false,
            [] => self.reloc_info(r_type).map(|i| i.kind) == Some(RelocKind::Branch),
        }
    }

    fn materializes_address(&self, insn: &[u8], r_type: u32) -> bool {
        // `larl` (RIL, 0xc0 with op2 0); gcc gives it PC32DBL (or PLT32DBL) like a branch
        let _ = r_type;
        matches!(insn, [0xc0, op2, ..] if op2 & 0x0f == 0)
    }

    fn is_padding(&self, insn: &[u8]) -> bool {
        // `nopr %r7` (0x0707, what gas aligns with), `nop` (`bc 0,0`), `jgnop` (`brcl 0,0`)
        // and zeros.
        matches!(
            insn,
            [0x07, 0x07] | [0x07, 0x00] | [0x47, 0x00, 0x00, 0x00] | [0xc0, 0x04, 0, 0, 0, 0]
        ) || insn.iter().all(|&b| b == 0)
    }

    fn decode_lengths(&self, code: &[u8]) -> Result<Vec<Insn>, DecodeError> {
        let mut out = Vec::with_capacity(code.len() / 4);
        let mut offset = 0;
        while let Some(&first) = code.get(offset) {
            let len = S390x::insn_len(first);
            if offset + len > code.len() {
                return Err(DecodeError {
                    offset,
                    reason: "instruction truncated by the end of the code",
                });
            }
            out.push(Insn { offset, len });
            offset += len;
        }
        Ok(out)
    }
}

/// The relocation types of the s390x ELF ABI plus the GNU extensions binutils knows.
///
/// Sizes are the number of bytes from `r_offset` that the relocation reads and rewrites.
/// gas points `r_offset` at the first byte holding part of the field: the `DBL` types
/// ("halved PC-relative") patch 2 bytes for 12- and 16-bit fields, 3 for 24-bit fields (the
/// `bprp` target; ld itself backs up one byte to use a 4-byte access) and 4 for 32-bit ones;
/// the 12-bit displacement types patch the low 12 bits of 2 bytes; the 20-bit
/// long-displacement types patch bits within the 4 bytes at `r_offset` (the last of which is
/// the second opcode byte, left alone).
fn reloc_info(r_type: u32) -> Option<RelocInfo> {
    use RelocKind as K;
    let (name, kind, size) = match r_type {
        0 => ("R_390_NONE", K::None, 0),
        1 => ("R_390_8", K::Absolute, 1),
        2 => ("R_390_12", K::Absolute, 2),
        3 => ("R_390_16", K::Absolute, 2),
        4 => ("R_390_32", K::Absolute, 4),
        5 => ("R_390_PC32", K::PcRelative, 4),
        // Offsets of the symbol's GOT entry from the GOT base (no PC involved).
        6 => ("R_390_GOT12", K::Other, 2),
        7 => ("R_390_GOT32", K::Other, 4),
        8 => ("R_390_PLT32", K::Branch, 4),
        // Dynamic-only types: never in relocatable objects.
        9 => ("R_390_COPY", K::Other, 0),
        10 => ("R_390_GLOB_DAT", K::Other, 8),
        11 => ("R_390_JMP_SLOT", K::Other, 8),
        12 => ("R_390_RELATIVE", K::Other, 8),
        13 => ("R_390_GOTOFF32", K::Other, 4),
        // PC-relative address of the GOT base itself (64 bits on s390x).
        14 => ("R_390_GOTPC", K::Other, 8),
        15 => ("R_390_GOT16", K::Other, 2),
        16 => ("R_390_PC16", K::PcRelative, 2),
        17 => ("R_390_PC16DBL", K::PcRelative, 2),
        18 => ("R_390_PLT16DBL", K::Branch, 2),
        19 => ("R_390_PC32DBL", K::PcRelative, 4),
        20 => ("R_390_PLT32DBL", K::Branch, 4),
        // PC-relative address of the GOT base, halved (`larl %r12,_GLOBAL_OFFSET_TABLE_`).
        21 => ("R_390_GOTPCDBL", K::Other, 4),
        22 => ("R_390_64", K::Absolute, 8),
        23 => ("R_390_PC64", K::PcRelative, 8),
        24 => ("R_390_GOT64", K::Other, 8),
        25 => ("R_390_PLT64", K::Branch, 8),
        // PC-relative address of the symbol's GOT entry, halved (`lgrl`, `larl`).
        26 => ("R_390_GOTENT", K::GotRelative, 4),
        27 => ("R_390_GOTOFF16", K::Other, 2),
        28 => ("R_390_GOTOFF64", K::Other, 8),
        29 => ("R_390_GOTPLT12", K::Other, 2),
        30 => ("R_390_GOTPLT16", K::Other, 2),
        31 => ("R_390_GOTPLT32", K::Other, 4),
        32 => ("R_390_GOTPLT64", K::Other, 8),
        // PC-relative address of the symbol's GOT (jump slot) entry, halved.
        33 => ("R_390_GOTPLTENT", K::GotRelative, 4),
        34 => ("R_390_PLTOFF16", K::Other, 2),
        35 => ("R_390_PLTOFF32", K::Other, 4),
        36 => ("R_390_PLTOFF64", K::Other, 8),
        // Thread-local storage. TLS_LOAD, TLS_GDCALL and TLS_LDCALL mark instructions for the
        // linker's TLS optimisation and patch nothing themselves.
        37 => ("R_390_TLS_LOAD", K::Tls, 0),
        38 => ("R_390_TLS_GDCALL", K::Tls, 0),
        39 => ("R_390_TLS_LDCALL", K::Tls, 0),
        40 => ("R_390_TLS_GD32", K::Tls, 4),
        41 => ("R_390_TLS_GD64", K::Tls, 8),
        42 => ("R_390_TLS_GOTIE12", K::Tls, 2),
        43 => ("R_390_TLS_GOTIE32", K::Tls, 4),
        44 => ("R_390_TLS_GOTIE64", K::Tls, 8),
        45 => ("R_390_TLS_LDM32", K::Tls, 4),
        46 => ("R_390_TLS_LDM64", K::Tls, 8),
        47 => ("R_390_TLS_IE32", K::Tls, 4),
        48 => ("R_390_TLS_IE64", K::Tls, 8),
        49 => ("R_390_TLS_IEENT", K::Tls, 4),
        50 => ("R_390_TLS_LE32", K::Tls, 4),
        51 => ("R_390_TLS_LE64", K::Tls, 8),
        52 => ("R_390_TLS_LDO32", K::Tls, 4),
        53 => ("R_390_TLS_LDO64", K::Tls, 8),
        54 => ("R_390_TLS_DTPMOD", K::Tls, 8),
        55 => ("R_390_TLS_DTPOFF", K::Tls, 8),
        56 => ("R_390_TLS_TPOFF", K::Tls, 8),
        // 20-bit long displacement (DL + DH), within the 4 bytes at r_offset.
        57 => ("R_390_20", K::Absolute, 4),
        58 => ("R_390_GOT20", K::Other, 4),
        59 => ("R_390_GOTPLT20", K::Other, 4),
        60 => ("R_390_TLS_GOTIE20", K::Tls, 4),
        61 => ("R_390_IRELATIVE", K::Other, 8),
        // Branch-prediction preload (`bpp`, `bprp`) targets.
        62 => ("R_390_PC12DBL", K::PcRelative, 2),
        63 => ("R_390_PLT12DBL", K::Branch, 2),
        64 => ("R_390_PC24DBL", K::PcRelative, 3),
        65 => ("R_390_PLT24DBL", K::Branch, 3),
        250 => ("R_390_GNU_VTINHERIT", K::Other, 0),
        251 => ("R_390_GNU_VTENTRY", K::Other, 0),
        _ => return None,
    };
    Some(RelocInfo { name, kind, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(code: &[u8]) -> Vec<(usize, usize)> {
        S390x
            .decode_lengths(code)
            .unwrap()
            .iter()
            .map(|i| (i.offset, i.len))
            .collect()
    }

    #[test]
    fn length_from_the_top_two_bits() {
        assert_eq!(S390x::insn_len(0x07), 2); // bcr
        assert_eq!(S390x::insn_len(0x3f), 2);
        assert_eq!(S390x::insn_len(0x41), 4); // la
        assert_eq!(S390x::insn_len(0x7f), 4);
        assert_eq!(S390x::insn_len(0xa7), 4); // brc, lhi
        assert_eq!(S390x::insn_len(0xb9), 4); // lgr
        assert_eq!(S390x::insn_len(0xc0), 6); // larl, brasl
        assert_eq!(S390x::insn_len(0xe3), 6); // lg
        assert_eq!(S390x::insn_len(0xff), 6);
    }

    #[test]
    fn decodes_a_hand_assembled_function() {
        let code = [
            0xeb, 0xef, 0xf0, 0x70, 0x00, 0x24, // stmg %r14,%r15,112(%r15)
            0xb9, 0x04, 0x00, 0x12, // lgr %r1,%r2
            0xc0, 0xe5, 0x00, 0x00, 0x00, 0x00, // brasl %r14,.
            0xa7, 0x29, 0x00, 0x00, // lghi %r2,0
            0x18, 0x12, // lr %r1,%r2
            0xe3, 0x10, 0xc0, 0x00, 0x00, 0x04, // lg %r1,0(%r12)
            0x07, 0xfe, // br %r14
            0x07, 0x07, // nopr %r7
        ];
        assert_eq!(
            lens(&code),
            [
                (0, 6),
                (6, 4),
                (10, 6),
                (16, 4),
                (20, 2),
                (22, 6),
                (28, 2),
                (30, 2)
            ]
        );
    }

    #[test]
    fn truncated_instruction_is_an_error() {
        let code = [0x07, 0xfe, 0xc0, 0xe5, 0x00, 0x00];
        let err = S390x.decode_lengths(&code).unwrap_err();
        assert_eq!(err.offset, 2);
        assert_eq!(S390x.decode_lengths(&[0x07]).unwrap_err().offset, 0);
        assert_eq!(S390x.decode_lengths(&[]).unwrap(), []);
    }

    #[test]
    fn kernel_relocations() {
        let check = |t: u32, name: &'static str, kind: RelocKind, size: u8| {
            assert_eq!(reloc_info(t), Some(RelocInfo { name, kind, size }), "{t}");
        };
        check(22, "R_390_64", RelocKind::Absolute, 8);
        check(19, "R_390_PC32DBL", RelocKind::PcRelative, 4);
        check(20, "R_390_PLT32DBL", RelocKind::Branch, 4);
        check(17, "R_390_PC16DBL", RelocKind::PcRelative, 2);
        check(26, "R_390_GOTENT", RelocKind::GotRelative, 4);
        check(57, "R_390_20", RelocKind::Absolute, 4);
        check(64, "R_390_PC24DBL", RelocKind::PcRelative, 3);
        check(25, "R_390_PLT64", RelocKind::Branch, 8);
    }
}
