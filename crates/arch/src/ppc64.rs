//! 64-bit PowerPC, little endian, ELFv2 ABI (`EM_PPC64`): 4-byte instructions, plus the
//! 8-byte prefixed instructions of Power ISA 3.1 (POWER10).

use crate::{Arch, DecodeError, Insn, RelocInfo, RelocKind};
use object::elf;

/// The ppc64le (ELFv2) architecture.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ppc64;

/// Primary opcode (top 6 bits of the instruction word) of a Power ISA 3.1 prefix word.
const PREFIX_OPCODE: u32 = 1;

/// `R_PPC64_PCREL34` (Power ISA 3.1; not among `object`'s constants).
const R_PPC64_PCREL34: u32 = 132;

impl Arch for Ppc64 {
    fn name(&self) -> &'static str {
        "ppc64le"
    }

    fn linked_into_every_module(&self, name: &str) -> bool {
        // `.TOC.`: every module has its own TOC, which the module link defines; the global
        // entry sequence (`addis r2,r12,.TOC.-func@ha`) must find the module's, never the
        // kernel's. And arch/powerpc/lib/crtsavres.S, linked into every module
        // (KBUILD_LDFLAGS_MODULE).
        if name == ".TOC." {
            return true;
        }
        [
            "_savegpr0_",
            "_restgpr0_",
            "_savegpr1_",
            "_restgpr1_",
            "_savefpr_",
            "_restfpr_",
            "_savevr_",
            "_restvr_",
        ]
        .iter()
        .any(|p| {
            name.strip_prefix(p)
                .is_some_and(|n| n.parse::<u8>().is_ok())
        })
    }

    fn relative_branch_target(&self, insn: &[u8], at: u64) -> Option<i64> {
        let w = u32::from_le_bytes(insn.get(..4)?.try_into().ok()?);
        if w & 2 != 0 {
            return None; // AA: an absolute address
        }
        let disp = match w >> 26 {
            // I-form b/bl: LI, 24 bits, word-aligned, sign-extended
            18 => (((w & 0x03ff_fffc) << 6) as i32 >> 6) as i64,
            // B-form bc: BD, 14 bits
            16 => (((w & 0x0000_fffc) << 16) as i32 >> 16) as i64,
            _ => return None,
        };
        Some(at as i64 + disp)
    }

    fn mask_branch_displacement(&self, insn: &mut [u8]) {
        if let Some(w) = insn.get_mut(..4) {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let v = match v >> 26 {
                18 => v & !0x03ff_fffc,
                16 => v & !0x0000_fffc,
                _ => v,
            };
            w.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn clear_relocated_field(&self, r_type: u32, bytes: &mut [u8]) {
        let Some(info) = self.reloc_info(r_type) else {
            return;
        };
        // Branches: the displacement bits of the instruction word only (the loader merges
        // the value into the opcode it finds there); DS-form halfwords keep their low two
        // bits (part of the opcode); everything else: the whole field.
        let word_mask: Option<u32> = match info.name {
            "R_PPC64_REL24"
            | "R_PPC64_REL24_NOTOC"
            | "R_PPC64_REL24_P9NOTOC"
            | "R_PPC64_ADDR24" => Some(0x03ff_fffc),
            "R_PPC64_REL14"
            | "R_PPC64_REL14_BRTAKEN"
            | "R_PPC64_REL14_BRNTAKEN"
            | "R_PPC64_ADDR14"
            | "R_PPC64_ADDR14_BRTAKEN"
            | "R_PPC64_ADDR14_BRNTAKEN" => Some(0x0000_fffc),
            _ => None,
        };
        if let (Some(mask), Some(w)) = (word_mask, bytes.get_mut(..4)) {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) & !mask;
            w.copy_from_slice(&v.to_le_bytes());
        } else if info.name.ends_with("_DS") && info.size == 2 {
            if let Some(h) = bytes.get_mut(..2) {
                let v = u16::from_le_bytes([h[0], h[1]]) & 0x0003;
                h.copy_from_slice(&v.to_le_bytes());
            }
        } else {
            let end = usize::from(info.size).min(bytes.len());
            bytes[..end].fill(0);
        }
    }

    fn materializes_address(&self, insn: &[u8], r_type: u32) -> bool {
        let word = |w: &[u8]| <[u8; 4]>::try_from(w).ok().map(u32::from_le_bytes);
        match r_type {
            // `addi rT,rA,sym@toc@l` (D-form, primary opcode 14) after its `addis ...@ha`
            t if t == elf::R_PPC64_TOC16_LO.0
                || t == elf::R_PPC64_ADDR16_LO.0
                || t == elf::R_PPC64_REL16_LO.0 =>
            {
                insn.get(..4).and_then(word).is_some_and(|w| w >> 26 == 14)
            }
            // `paddi rT,0,sym@pcrel` (prefix word, then an addi word)
            R_PPC64_PCREL34 => insn.get(4..8).and_then(word).is_some_and(|w| w >> 26 == 14),
            _ => false,
        }
    }

    fn call_can_leave_module(&self, code: &[u8], offset: usize, r_type: u32) -> bool {
        let word = |at: usize| {
            code.get(at..at + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map(u32::from_le_bytes)
        };
        if r_type != elf::R_PPC64_REL24.0 {
            return true;
        }
        // `bl target` (I-form, opcode 18, AA = 0, LK = 1), then the `nop` the loader
        // rewrites (sibling calls are `Arch::sibling_call_breaks_toc`'s)
        match word(offset).map(|w| w & 0xfc00_0003) {
            Some(0x4800_0001) => word(offset + 4) == Some(0x6000_0000),
            _ => true,
        }
    }

    fn sibling_call_breaks_toc(&self, insn: &[u8], r_type: u32) -> bool {
        // `b target` (I-form, opcode 18, AA = LK = 0) with a 24-bit PC-relative relocation.
        r_type == elf::R_PPC64_REL24.0
            && insn
                .get(..4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .is_some_and(|w| u32::from_le_bytes(w) & 0xfc00_0003 == 0x4800_0000)
    }

    fn immediate_argument(&self, insn: &[u8]) -> Option<u8> {
        // li r4 / r5, imm
        match u32::from_le_bytes(insn.get(..4)?.try_into().ok()?) & 0xffff_0000 {
            0x3880_0000 => Some(2),
            0x38a0_0000 => Some(3),
            _ => None,
        }
    }

    fn machine(&self) -> u16 {
        elf::EM_PPC64.0
    }

    fn reloc_info(&self, r_type: u32) -> Option<RelocInfo> {
        reloc_info(r_type)
    }

    fn abs64_reloc(&self) -> u32 {
        elf::R_PPC64_ADDR64.0
    }

    /// Words are little endian. A word whose primary opcode is 1 is the prefix of an 8-byte
    /// instruction; the prefix and its suffix form one [`Insn`]. A slice whose length is not a
    /// multiple of 4, or that ends with a lone prefix, gives an error.
    fn is_padding(&self, insn: &[u8]) -> bool {
        // `nop` (`ori 0,0,0`), the group-ending nop gas ends alignment padding with on POWER
        // (`ori 2,2,0`), and the zero word.
        match <[u8; 4]>::try_from(insn) {
            Ok(w) => matches!(u32::from_le_bytes(w), 0 | 0x6000_0000 | 0x6042_0000),
            Err(_) => insn.iter().all(|&b| b == 0),
        }
    }

    fn decode_lengths(&self, code: &[u8]) -> Result<Vec<Insn>, DecodeError> {
        let mut out = Vec::with_capacity(code.len() / 4);
        let mut offset = 0;
        while offset < code.len() {
            let Some(word) = code.get(offset..offset + 4) else {
                return Err(DecodeError {
                    offset,
                    reason: "trailing bytes do not form a whole 4-byte instruction",
                });
            };
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            let len = if word >> 26 == PREFIX_OPCODE { 8 } else { 4 };
            if offset + len > code.len() {
                return Err(DecodeError {
                    offset,
                    reason: "prefixed instruction truncated by the end of the code",
                });
            }
            out.push(Insn { offset, len });
            offset += len;
        }
        Ok(out)
    }
}

/// The relocation types of the 64-bit ELF ABI (v1 and v2) plus the GNU extensions binutils
/// knows.
///
/// Sizes for a little-endian target: the `*16*` types patch the 16-bit immediate field, which
/// is the first halfword of the instruction word (size 2); 24- and 14-bit branch fields patch
/// the whole word (4); the `*34` / `*28` types patch both words of a prefixed instruction (8).
fn reloc_info(r_type: u32) -> Option<RelocInfo> {
    use RelocKind as K;
    let (name, kind, size) = match r_type {
        0 => ("R_PPC64_NONE", K::None, 0),
        1 => ("R_PPC64_ADDR32", K::Absolute, 4),
        // Absolute branch target (`ba`, `bca`).
        2 => ("R_PPC64_ADDR24", K::Absolute, 4),
        3 => ("R_PPC64_ADDR16", K::Absolute, 2),
        4 => ("R_PPC64_ADDR16_LO", K::InstructionField, 2),
        5 => ("R_PPC64_ADDR16_HI", K::InstructionField, 2),
        6 => ("R_PPC64_ADDR16_HA", K::InstructionField, 2),
        7 => ("R_PPC64_ADDR14", K::Absolute, 4),
        8 => ("R_PPC64_ADDR14_BRTAKEN", K::Absolute, 4),
        9 => ("R_PPC64_ADDR14_BRNTAKEN", K::Absolute, 4),
        10 => ("R_PPC64_REL24", K::Branch, 4),
        11 => ("R_PPC64_REL14", K::Branch, 4),
        12 => ("R_PPC64_REL14_BRTAKEN", K::Branch, 4),
        13 => ("R_PPC64_REL14_BRNTAKEN", K::Branch, 4),
        // TOC-relative offsets of the symbol's GOT entry (no PC involved).
        14 => ("R_PPC64_GOT16", K::Other, 2),
        15 => ("R_PPC64_GOT16_LO", K::Other, 2),
        16 => ("R_PPC64_GOT16_HI", K::Other, 2),
        17 => ("R_PPC64_GOT16_HA", K::Other, 2),
        // Dynamic-only types: never in relocatable objects.
        19 => ("R_PPC64_COPY", K::Other, 0),
        20 => ("R_PPC64_GLOB_DAT", K::Other, 8),
        21 => ("R_PPC64_JMP_SLOT", K::Other, 8),
        22 => ("R_PPC64_RELATIVE", K::Other, 8),
        // Unaligned data.
        24 => ("R_PPC64_UADDR32", K::Absolute, 4),
        25 => ("R_PPC64_UADDR16", K::Absolute, 2),
        26 => ("R_PPC64_REL32", K::PcRelative, 4),
        27 => ("R_PPC64_PLT32", K::Other, 4),
        28 => ("R_PPC64_PLTREL32", K::Other, 4),
        29 => ("R_PPC64_PLT16_LO", K::Other, 2),
        30 => ("R_PPC64_PLT16_HI", K::Other, 2),
        31 => ("R_PPC64_PLT16_HA", K::Other, 2),
        33 => ("R_PPC64_SECTOFF", K::Other, 2),
        34 => ("R_PPC64_SECTOFF_LO", K::Other, 2),
        35 => ("R_PPC64_SECTOFF_HI", K::Other, 2),
        36 => ("R_PPC64_SECTOFF_HA", K::Other, 2),
        // (S + A - P) >> 2 in a word.
        37 => ("R_PPC64_REL30", K::PcRelative, 4),
        38 => ("R_PPC64_ADDR64", K::Absolute, 8),
        39 => ("R_PPC64_ADDR16_HIGHER", K::InstructionField, 2),
        40 => ("R_PPC64_ADDR16_HIGHERA", K::InstructionField, 2),
        41 => ("R_PPC64_ADDR16_HIGHEST", K::InstructionField, 2),
        42 => ("R_PPC64_ADDR16_HIGHESTA", K::InstructionField, 2),
        43 => ("R_PPC64_UADDR64", K::Absolute, 8),
        44 => ("R_PPC64_REL64", K::PcRelative, 8),
        45 => ("R_PPC64_PLT64", K::Other, 8),
        46 => ("R_PPC64_PLTREL64", K::Other, 8),
        // TOC-relative address pieces (`addis rX,r2,sym@toc@ha` / `ld rY,sym@toc@l(rX)`).
        47 => ("R_PPC64_TOC16", K::InstructionField, 2),
        48 => ("R_PPC64_TOC16_LO", K::InstructionField, 2),
        49 => ("R_PPC64_TOC16_HI", K::InstructionField, 2),
        50 => ("R_PPC64_TOC16_HA", K::InstructionField, 2),
        // The TOC base (.TOC.) itself, as a doubleword; the symbol is not used.
        51 => ("R_PPC64_TOC", K::Other, 8),
        52 => ("R_PPC64_PLTGOT16", K::Other, 2),
        53 => ("R_PPC64_PLTGOT16_LO", K::Other, 2),
        54 => ("R_PPC64_PLTGOT16_HI", K::Other, 2),
        55 => ("R_PPC64_PLTGOT16_HA", K::Other, 2),
        // DS-form variants: the low two bits of the field belong to the opcode and are kept.
        56 => ("R_PPC64_ADDR16_DS", K::Absolute, 2),
        57 => ("R_PPC64_ADDR16_LO_DS", K::InstructionField, 2),
        58 => ("R_PPC64_GOT16_DS", K::Other, 2),
        59 => ("R_PPC64_GOT16_LO_DS", K::Other, 2),
        60 => ("R_PPC64_PLT16_LO_DS", K::Other, 2),
        61 => ("R_PPC64_SECTOFF_DS", K::Other, 2),
        62 => ("R_PPC64_SECTOFF_LO_DS", K::Other, 2),
        63 => ("R_PPC64_TOC16_DS", K::InstructionField, 2),
        64 => ("R_PPC64_TOC16_LO_DS", K::InstructionField, 2),
        65 => ("R_PPC64_PLTGOT16_DS", K::Other, 2),
        66 => ("R_PPC64_PLTGOT16_LO_DS", K::Other, 2),
        // Thread-local storage. R_PPC64_TLS, _TLSGD and _TLSLD mark instructions for the
        // linker's TLS optimisation and patch nothing themselves.
        67 => ("R_PPC64_TLS", K::Tls, 0),
        68 => ("R_PPC64_DTPMOD64", K::Tls, 8),
        69 => ("R_PPC64_TPREL16", K::Tls, 2),
        70 => ("R_PPC64_TPREL16_LO", K::Tls, 2),
        71 => ("R_PPC64_TPREL16_HI", K::Tls, 2),
        72 => ("R_PPC64_TPREL16_HA", K::Tls, 2),
        73 => ("R_PPC64_TPREL64", K::Tls, 8),
        74 => ("R_PPC64_DTPREL16", K::Tls, 2),
        75 => ("R_PPC64_DTPREL16_LO", K::Tls, 2),
        76 => ("R_PPC64_DTPREL16_HI", K::Tls, 2),
        77 => ("R_PPC64_DTPREL16_HA", K::Tls, 2),
        78 => ("R_PPC64_DTPREL64", K::Tls, 8),
        79 => ("R_PPC64_GOT_TLSGD16", K::Tls, 2),
        80 => ("R_PPC64_GOT_TLSGD16_LO", K::Tls, 2),
        81 => ("R_PPC64_GOT_TLSGD16_HI", K::Tls, 2),
        82 => ("R_PPC64_GOT_TLSGD16_HA", K::Tls, 2),
        83 => ("R_PPC64_GOT_TLSLD16", K::Tls, 2),
        84 => ("R_PPC64_GOT_TLSLD16_LO", K::Tls, 2),
        85 => ("R_PPC64_GOT_TLSLD16_HI", K::Tls, 2),
        86 => ("R_PPC64_GOT_TLSLD16_HA", K::Tls, 2),
        87 => ("R_PPC64_GOT_TPREL16_DS", K::Tls, 2),
        88 => ("R_PPC64_GOT_TPREL16_LO_DS", K::Tls, 2),
        89 => ("R_PPC64_GOT_TPREL16_HI", K::Tls, 2),
        90 => ("R_PPC64_GOT_TPREL16_HA", K::Tls, 2),
        91 => ("R_PPC64_GOT_DTPREL16_DS", K::Tls, 2),
        92 => ("R_PPC64_GOT_DTPREL16_LO_DS", K::Tls, 2),
        93 => ("R_PPC64_GOT_DTPREL16_HI", K::Tls, 2),
        94 => ("R_PPC64_GOT_DTPREL16_HA", K::Tls, 2),
        95 => ("R_PPC64_TPREL16_DS", K::Tls, 2),
        96 => ("R_PPC64_TPREL16_LO_DS", K::Tls, 2),
        97 => ("R_PPC64_TPREL16_HIGHER", K::Tls, 2),
        98 => ("R_PPC64_TPREL16_HIGHERA", K::Tls, 2),
        99 => ("R_PPC64_TPREL16_HIGHEST", K::Tls, 2),
        100 => ("R_PPC64_TPREL16_HIGHESTA", K::Tls, 2),
        101 => ("R_PPC64_DTPREL16_DS", K::Tls, 2),
        102 => ("R_PPC64_DTPREL16_LO_DS", K::Tls, 2),
        103 => ("R_PPC64_DTPREL16_HIGHER", K::Tls, 2),
        104 => ("R_PPC64_DTPREL16_HIGHERA", K::Tls, 2),
        105 => ("R_PPC64_DTPREL16_HIGHEST", K::Tls, 2),
        106 => ("R_PPC64_DTPREL16_HIGHESTA", K::Tls, 2),
        107 => ("R_PPC64_TLSGD", K::Tls, 0),
        108 => ("R_PPC64_TLSLD", K::Tls, 0),
        // Marks a call whose TOC save slot store may be moved into a stub; patches nothing.
        109 => ("R_PPC64_TOCSAVE", K::Other, 0),
        110 => ("R_PPC64_ADDR16_HIGH", K::InstructionField, 2),
        111 => ("R_PPC64_ADDR16_HIGHA", K::InstructionField, 2),
        112 => ("R_PPC64_TPREL16_HIGH", K::Tls, 2),
        113 => ("R_PPC64_TPREL16_HIGHA", K::Tls, 2),
        114 => ("R_PPC64_DTPREL16_HIGH", K::Tls, 2),
        115 => ("R_PPC64_DTPREL16_HIGHA", K::Tls, 2),
        // Call from code that does not maintain r2 (PC-relative code).
        116 => ("R_PPC64_REL24_NOTOC", K::Branch, 4),
        // Address of the local entry point of an ELFv2 function.
        117 => ("R_PPC64_ADDR64_LOCAL", K::Absolute, 8),
        // Marks the global entry point's TOC setup so the linker may optimise it; patches
        // nothing.
        118 => ("R_PPC64_ENTRY", K::Other, 0),
        // Markers on inline PLT call sequences; they patch nothing.
        119 => ("R_PPC64_PLTSEQ", K::Other, 0),
        120 => ("R_PPC64_PLTCALL", K::Other, 0),
        121 => ("R_PPC64_PLTSEQ_NOTOC", K::Other, 0),
        122 => ("R_PPC64_PLTCALL_NOTOC", K::Other, 0),
        // Marks a `pld` of a GOT entry and its use, for linker optimisation; patches nothing.
        123 => ("R_PPC64_PCREL_OPT", K::Other, 0),
        124 => ("R_PPC64_REL24_P9NOTOC", K::Branch, 4),
        // Power ISA 3.1 prefixed instructions: the 34-bit field spans both words.
        128 => ("R_PPC64_D34", K::Absolute, 8),
        129 => ("R_PPC64_D34_LO", K::InstructionField, 8),
        130 => ("R_PPC64_D34_HI30", K::InstructionField, 8),
        131 => ("R_PPC64_D34_HA30", K::InstructionField, 8),
        132 => ("R_PPC64_PCREL34", K::PcRelative, 8),
        133 => ("R_PPC64_GOT_PCREL34", K::GotRelative, 8),
        134 => ("R_PPC64_PLT_PCREL34", K::Other, 8),
        135 => ("R_PPC64_PLT_PCREL34_NOTOC", K::Other, 8),
        136 => ("R_PPC64_ADDR16_HIGHER34", K::InstructionField, 2),
        137 => ("R_PPC64_ADDR16_HIGHERA34", K::InstructionField, 2),
        138 => ("R_PPC64_ADDR16_HIGHEST34", K::InstructionField, 2),
        139 => ("R_PPC64_ADDR16_HIGHESTA34", K::InstructionField, 2),
        140 => ("R_PPC64_REL16_HIGHER34", K::InstructionField, 2),
        141 => ("R_PPC64_REL16_HIGHERA34", K::InstructionField, 2),
        142 => ("R_PPC64_REL16_HIGHEST34", K::InstructionField, 2),
        143 => ("R_PPC64_REL16_HIGHESTA34", K::InstructionField, 2),
        144 => ("R_PPC64_D28", K::Absolute, 8),
        145 => ("R_PPC64_PCREL28", K::PcRelative, 8),
        146 => ("R_PPC64_TPREL34", K::Tls, 8),
        147 => ("R_PPC64_DTPREL34", K::Tls, 8),
        148 => ("R_PPC64_GOT_TLSGD_PCREL34", K::Tls, 8),
        149 => ("R_PPC64_GOT_TLSLD_PCREL34", K::Tls, 8),
        150 => ("R_PPC64_GOT_TPREL_PCREL34", K::Tls, 8),
        151 => ("R_PPC64_GOT_DTPREL_PCREL34", K::Tls, 8),
        // PC-relative address pieces (`addis r2,r12,.TOC.-func@ha` etc.).
        240 => ("R_PPC64_REL16_HIGH", K::InstructionField, 2),
        241 => ("R_PPC64_REL16_HIGHA", K::InstructionField, 2),
        242 => ("R_PPC64_REL16_HIGHER", K::InstructionField, 2),
        243 => ("R_PPC64_REL16_HIGHERA", K::InstructionField, 2),
        244 => ("R_PPC64_REL16_HIGHEST", K::InstructionField, 2),
        245 => ("R_PPC64_REL16_HIGHESTA", K::InstructionField, 2),
        // `addpcis`: the field is split over the instruction word.
        246 => ("R_PPC64_REL16DX_HA", K::InstructionField, 4),
        247 => ("R_PPC64_JMP_IREL", K::Other, 8),
        248 => ("R_PPC64_IRELATIVE", K::Other, 8),
        249 => ("R_PPC64_REL16", K::PcRelative, 2),
        250 => ("R_PPC64_REL16_LO", K::InstructionField, 2),
        251 => ("R_PPC64_REL16_HI", K::InstructionField, 2),
        252 => ("R_PPC64_REL16_HA", K::InstructionField, 2),
        253 => ("R_PPC64_GNU_VTINHERIT", K::Other, 0),
        254 => ("R_PPC64_GNU_VTENTRY", K::Other, 0),
        _ => return None,
    };
    Some(RelocInfo { name, kind, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn lens(code: &[u8]) -> Vec<(usize, usize)> {
        Ppc64
            .decode_lengths(code)
            .unwrap()
            .iter()
            .map(|i| (i.offset, i.len))
            .collect()
    }

    #[test]
    fn plain_words_are_four_bytes() {
        // addis r2,r12,0; addi r2,r2,0; mflr r0; blr
        let code = words(&[0x3c4c_0000, 0x3842_0000, 0x7c08_02a6, 0x4e80_0020]);
        assert_eq!(lens(&code), [(0, 4), (4, 4), (8, 4), (12, 4)]);
    }

    #[test]
    fn prefixed_instructions_are_eight_bytes() {
        // nop; pld r3,0 (prefix 0x04100000, suffix 0xe4600000); paddi r3,r4,0; blr
        let code = words(&[
            0x6000_0000,
            0x0410_0000,
            0xe460_0000,
            0x0600_0000,
            0x3864_0000,
            0x4e80_0020,
        ]);
        assert_eq!(lens(&code), [(0, 4), (4, 8), (12, 8), (20, 4)]);
        // Primary opcode 1 is read from the top six bits of the little-endian word, so the
        // byte order matters: the same bytes big-endian would be a different instruction.
        assert_eq!(lens(&[0x04, 0x00, 0x00, 0x00]), [(0, 4)]);
    }

    #[test]
    fn truncated_code_is_an_error() {
        let code = words(&[0x6000_0000, 0x0410_0000]);
        let err = Ppc64.decode_lengths(&code).unwrap_err();
        assert_eq!(err.offset, 4);
        let err = Ppc64.decode_lengths(&code[..6]).unwrap_err();
        assert_eq!(err.offset, 4);
        assert_eq!(Ppc64.decode_lengths(&[]).unwrap(), []);
    }

    #[test]
    fn kernel_relocations() {
        let check = |t: u32, name: &'static str, kind: RelocKind, size: u8| {
            assert_eq!(reloc_info(t), Some(RelocInfo { name, kind, size }), "{t}");
        };
        check(38, "R_PPC64_ADDR64", RelocKind::Absolute, 8);
        check(10, "R_PPC64_REL24", RelocKind::Branch, 4);
        check(116, "R_PPC64_REL24_NOTOC", RelocKind::Branch, 4);
        check(50, "R_PPC64_TOC16_HA", RelocKind::InstructionField, 2);
        check(64, "R_PPC64_TOC16_LO_DS", RelocKind::InstructionField, 2);
        check(252, "R_PPC64_REL16_HA", RelocKind::InstructionField, 2);
        check(132, "R_PPC64_PCREL34", RelocKind::PcRelative, 8);
        check(118, "R_PPC64_ENTRY", RelocKind::Other, 0);
        check(109, "R_PPC64_TOCSAVE", RelocKind::Other, 0);
        check(51, "R_PPC64_TOC", RelocKind::Other, 8);
    }
}
