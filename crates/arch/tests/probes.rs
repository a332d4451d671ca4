//! Relocation sizes and instruction lengths checked against what the GNU assemblers emit.
//!
//! Each probe below is an assembly file in which every instruction or datum carrying a
//! relocation sits alone in its own section. After assembling it (with the host or cross
//! `as`, skipping with a message when that is not installed) we check, for every relocation:
//!
//! * its type is known and named as `readelf -rW` names it;
//! * in a code section, `[r_offset, r_offset + size)` lies inside one decoded instruction, and
//!   the decoder splits the section exactly (one instruction per probe section, except where
//!   a probe deliberately holds two);
//! * in a data section, `r_offset` is 0 and `size` is the section's size (the datum's width);
//! * on x86-64, the patched bytes are exactly the displacement or an immediate that
//!   [`X86_64::constant_offsets`] reports for the instruction.
//!
//! and that the probe produced exactly the relocation types we meant it to.

mod common;

use common::*;
use klpforge_arch::{Aarch64, Arch, Ppc64, S390x, X86_64};
use std::collections::BTreeSet;
use std::path::Path;

struct Probe {
    arch: &'static dyn Arch,
    assembler: &'static str,
    flags: &'static [&'static str],
    source: &'static str,
    expected: &'static [&'static str],
}

const X86_PROBE: &str = r#"
	.section .text.call,"ax",@progbits
	call ext
	.section .text.jmp,"ax",@progbits
	jmp ext
	.section .text.jne,"ax",@progbits
	jne ext
	.section .text.riprel,"ax",@progbits
	movq sym(%rip),%rax
	.section .text.riprelimm,"ax",@progbits
	movl $0x12345678,sym(%rip)
	.section .text.gotpcrel,"ax",@progbits
	movq sym@GOTPCREL(%rip),%rax
	.section .text.gotpcrelx,"ax",@progbits
	call *sym@GOTPCREL(%rip)
	.section .text.abs32,"ax",@progbits
	movl $sym,%eax
	.section .text.abs32s,"ax",@progbits
	movq $sym,%rax
	.section .text.abs64,"ax",@progbits
	movabsq $sym,%rax
	.section .text.disp32s,"ax",@progbits
	movq sym(,%rdi,8),%rax
	.section .text.immanddisp,"ax",@progbits
	movq $sym,other(,%rdi,8)
	.section .text.tpoff,"ax",@progbits
	movq %fs:sym@tpoff,%rax
	.section .text.gottpoff,"ax",@progbits
	movq sym@gottpoff(%rip),%rax
	.section .text.gotpc,"ax",@progbits
	leaq _GLOBAL_OFFSET_TABLE_(%rip),%rbx
	.section .data.q,"aw"
	.quad sym
	.section .data.l,"aw"
	.long sym
	.section .data.s,"aw"
	.word sym
	.section .data.b,"aw"
	.byte sym
	.section .data.pc64,"aw"
	.quad sym-.
	.section .data.pc32,"aw"
	.long sym-.
	.section .data.pc16,"aw"
	.word sym-.
	.section .data.pc8,"aw"
	.byte sym-.
	.section .data.size32,"aw"
	.long sym@SIZE
	.section .data.size64,"aw"
	.quad sym@SIZE
	.section .data.dtpoff32,"aw"
	.long sym@dtpoff
	.section .data.dtpoff64,"aw"
	.quad sym@dtpoff
	.section .data.gotoff64,"aw"
	.quad sym@GOTOFF
"#;

const X86_EXPECTED: &[&str] = &[
    "R_X86_64_16",
    "R_X86_64_32",
    "R_X86_64_32S",
    "R_X86_64_64",
    "R_X86_64_8",
    "R_X86_64_DTPOFF32",
    "R_X86_64_DTPOFF64",
    "R_X86_64_GOTOFF64",
    "R_X86_64_GOTPC32",
    "R_X86_64_GOTPCRELX",
    "R_X86_64_GOTTPOFF",
    "R_X86_64_PC16",
    "R_X86_64_PC32",
    "R_X86_64_PC64",
    "R_X86_64_PC8",
    "R_X86_64_PLT32",
    "R_X86_64_REX_GOTPCRELX",
    "R_X86_64_SIZE32",
    "R_X86_64_SIZE64",
    "R_X86_64_TPOFF32",
];

const AARCH64_PROBE: &str = r#"
	.section .text.bl,"ax",@progbits
	bl ext
	.section .text.b,"ax",@progbits
	b ext
	.section .text.beq,"ax",@progbits
	b.eq ext
	.section .text.cbz,"ax",@progbits
	cbz x0,ext
	.section .text.tbz,"ax",@progbits
	tbz x0,#1,ext
	.section .text.adrp,"ax",@progbits
	adrp x0,sym
	.section .text.add,"ax",@progbits
	add x0,x0,:lo12:sym
	.section .text.ldrb,"ax",@progbits
	ldrb w0,[x0,:lo12:sym]
	.section .text.ldrh,"ax",@progbits
	ldrh w0,[x0,:lo12:sym]
	.section .text.ldrw,"ax",@progbits
	ldr w0,[x0,:lo12:sym]
	.section .text.ldrx,"ax",@progbits
	ldr x0,[x0,:lo12:sym]
	.section .text.ldrq,"ax",@progbits
	ldr q0,[x0,:lo12:sym]
	.section .text.adr,"ax",@progbits
	adr x0,sym
	.section .text.ldrlit,"ax",@progbits
	ldr x0,sym
	.section .text.movz3,"ax",@progbits
	movz x0,#:abs_g3:sym
	.section .text.movk2,"ax",@progbits
	movk x0,#:abs_g2_nc:sym
	.section .text.movk1,"ax",@progbits
	movk x0,#:abs_g1_nc:sym
	.section .text.movk0,"ax",@progbits
	movk x0,#:abs_g0_nc:sym
	.section .text.adrpgot,"ax",@progbits
	adrp x0,:got:sym
	.section .text.ldgot,"ax",@progbits
	ldr x0,[x0,:got_lo12:sym]
	.section .data.q,"aw"
	.xword sym
	.section .data.l,"aw"
	.word sym
	.section .data.s,"aw"
	.hword sym
	.section .data.pc64,"aw"
	.xword sym-.
	.section .data.pc32,"aw"
	.word sym-.
	.section .data.pc16,"aw"
	.hword sym-.
"#;

const AARCH64_EXPECTED: &[&str] = &[
    "R_AARCH64_ABS16",
    "R_AARCH64_ABS32",
    "R_AARCH64_ABS64",
    "R_AARCH64_ADD_ABS_LO12_NC",
    "R_AARCH64_ADR_GOT_PAGE",
    "R_AARCH64_ADR_PREL_LO21",
    "R_AARCH64_ADR_PREL_PG_HI21",
    "R_AARCH64_CALL26",
    "R_AARCH64_CONDBR19",
    "R_AARCH64_JUMP26",
    "R_AARCH64_LD64_GOT_LO12_NC",
    "R_AARCH64_LDST128_ABS_LO12_NC",
    "R_AARCH64_LDST16_ABS_LO12_NC",
    "R_AARCH64_LDST32_ABS_LO12_NC",
    "R_AARCH64_LDST64_ABS_LO12_NC",
    "R_AARCH64_LDST8_ABS_LO12_NC",
    "R_AARCH64_LD_PREL_LO19",
    "R_AARCH64_MOVW_UABS_G0_NC",
    "R_AARCH64_MOVW_UABS_G1_NC",
    "R_AARCH64_MOVW_UABS_G2_NC",
    "R_AARCH64_MOVW_UABS_G3",
    "R_AARCH64_PREL16",
    "R_AARCH64_PREL32",
    "R_AARCH64_PREL64",
    "R_AARCH64_TSTBR14",
];

/// `.text.entry` deliberately holds the two-instruction ELFv2 global entry sequence; the
/// `.reloc` sections attach marker relocations the way gcc does.
const PPC64_PROBE: &str = r#"
	.abiversion 2
	.section .text.entry,"ax",@progbits
	.globl f
f:	addis 2,12,.TOC.-f@ha
	addi 2,2,.TOC.-f@l
	.localentry f,.-f
	.section .text.bl,"ax",@progbits
	bl ext
	.section .text.blnotoc,"ax",@progbits
	bl ext@notoc
	.section .text.b,"ax",@progbits
	b ext
	.section .text.beq,"ax",@progbits
	beq 0,ext
	.section .text.tocha,"ax",@progbits
	addis 3,2,sym@toc@ha
	.section .text.toclods,"ax",@progbits
	ld 3,sym@toc@l(3)
	.section .text.toclo,"ax",@progbits
	addi 3,3,sym@toc@l
	.section .text.highest,"ax",@progbits
	lis 3,sym@highest
	.section .text.higher,"ax",@progbits
	ori 3,3,sym@higher
	.section .text.ha,"ax",@progbits
	addis 3,3,sym@ha
	.section .text.lo,"ax",@progbits
	addi 3,3,sym@l
	.section .text.pld,"ax",@progbits
	pld 3,sym@pcrel
	.section .text.pla,"ax",@progbits
	pla 3,sym@pcrel
	.section .text.pldgot,"ax",@progbits
	pld 3,sym@got@pcrel
	.section .text.paddi,"ax",@progbits
	paddi 3,4,sym@l
	.section .text.gotha,"ax",@progbits
	addis 3,2,sym@got@ha
	.section .text.gotlo,"ax",@progbits
	ld 3,sym@got@l(3)
	.section .text.tocsave,"ax",@progbits
	.reloc .,R_PPC64_TOCSAVE,.text.tocsave
	std 2,24(1)
	.section .text.entrymark,"ax",@progbits
	.reloc .,R_PPC64_ENTRY
	addis 2,12,0
	.section .data.q,"aw"
	.quad sym
	.section .data.l,"aw"
	.long sym
	.section .data.pc64,"aw"
	.quad sym-.
	.section .data.pc32,"aw"
	.long sym-.
	.section .data.toc,"aw"
	.quad .TOC.@tocbase
"#;

const PPC64_EXPECTED: &[&str] = &[
    "R_PPC64_ADDR16_HA",
    "R_PPC64_ADDR16_HIGHER",
    "R_PPC64_ADDR16_HIGHEST",
    "R_PPC64_ADDR16_LO",
    "R_PPC64_ADDR32",
    "R_PPC64_ADDR64",
    "R_PPC64_D34_LO",
    "R_PPC64_ENTRY",
    "R_PPC64_GOT16_HA",
    "R_PPC64_GOT16_LO_DS",
    "R_PPC64_GOT_PCREL34",
    "R_PPC64_PCREL34",
    "R_PPC64_REL14",
    "R_PPC64_REL16_HA",
    "R_PPC64_REL16_LO",
    "R_PPC64_REL24",
    "R_PPC64_REL24_NOTOC",
    "R_PPC64_REL32",
    "R_PPC64_REL64",
    "R_PPC64_TOC",
    "R_PPC64_TOC16_HA",
    "R_PPC64_TOC16_LO",
    "R_PPC64_TOC16_LO_DS",
    "R_PPC64_TOCSAVE",
];

const S390X_PROBE: &str = r#"
	.section .text.brasl,"ax",@progbits
	brasl	%r14,ext@PLT
	.section .text.larl,"ax",@progbits
	larl	%r1,ext
	.section .text.lgrl,"ax",@progbits
	lgrl	%r1,ext@GOTENT
	.section .text.brc,"ax",@progbits
	brc	15,ext
	.section .text.brcplt,"ax",@progbits
	brc	15,ext@PLT
	.section .text.jg,"ax",@progbits
	jg	ext
	.section .text.bprp,"ax",@progbits
	bprp	0,ext,ext2
	.section .text.bprpplt,"ax",@progbits
	bprp	0,ext@PLT,ext2@PLT
	.section .text.bpp,"ax",@progbits
	bpp	0,ext,0(%r1)
	.section .text.lggot,"ax",@progbits
	lg	%r1,ext@GOT(%r12)
	.section .text.lgot,"ax",@progbits
	l	%r1,ext@GOT(%r12)
	.section .text.lay,"ax",@progbits
	lay	%r1,ext(%r2)
	.section .text.la,"ax",@progbits
	la	%r1,ext(%r2)
	.section .text.larlgotpc,"ax",@progbits
	larl	%r12,_GLOBAL_OFFSET_TABLE_
	.section .text.lhi,"ax",@progbits
	lhi	%r1,ext
	.section .text.nopr,"ax",@progbits
	.reloc .,R_390_NONE
	nopr
	.section .data.q,"aw"
	.quad	ext
	.section .data.l,"aw"
	.long	ext
	.section .data.s,"aw"
	.short	ext
	.section .data.b,"aw"
	.byte	ext
	.section .data.pc64,"aw"
	.quad	ext-.
	.section .data.pc32,"aw"
	.long	ext-.
	.section .data.plt64,"aw"
	.quad	ext@PLT-.
	.section .data.plt32,"aw"
	.long	ext@PLT-.
	.section .data.gotoff64,"aw"
	.quad	ext@GOTOFF
"#;

const S390X_EXPECTED: &[&str] = &[
    "R_390_12",
    "R_390_16",
    "R_390_20",
    "R_390_32",
    "R_390_64",
    "R_390_8",
    "R_390_GOT12",
    "R_390_GOT20",
    "R_390_GOTENT",
    "R_390_GOTOFF64",
    "R_390_GOTPCDBL",
    "R_390_NONE",
    "R_390_PC12DBL",
    "R_390_PC16DBL",
    "R_390_PC24DBL",
    "R_390_PC32",
    "R_390_PC32DBL",
    "R_390_PC64",
    "R_390_PLT12DBL",
    "R_390_PLT16DBL",
    "R_390_PLT24DBL",
    "R_390_PLT32",
    "R_390_PLT32DBL",
    "R_390_PLT64",
];

fn probes() -> [Probe; 4] {
    [
        Probe {
            arch: &X86_64,
            assembler: "x86_64-linux-gnu-as",
            flags: &["--64"],
            source: X86_PROBE,
            expected: X86_EXPECTED,
        },
        Probe {
            arch: &Aarch64,
            assembler: "aarch64-linux-gnu-as",
            flags: &[],
            source: AARCH64_PROBE,
            expected: AARCH64_EXPECTED,
        },
        Probe {
            arch: &Ppc64,
            assembler: "powerpc64le-linux-gnu-as",
            flags: &["-a64", "-mpower10"],
            source: PPC64_PROBE,
            expected: PPC64_EXPECTED,
        },
        Probe {
            arch: &S390x,
            assembler: "s390x-linux-gnu-as",
            flags: &["-m64"],
            source: S390X_PROBE,
            expected: S390X_EXPECTED,
        },
    ]
}

fn assemble(probe: &Probe, dir: &Path) -> Option<std::path::PathBuf> {
    let assembler = tool(probe.assembler, &format!("{} probe", probe.arch.name()))?;
    let src = dir.join(format!("{}.s", probe.arch.name()));
    let obj = dir.join(format!("{}.o", probe.arch.name()));
    std::fs::write(&src, probe.source).unwrap();
    let mut args: Vec<&str> = probe.flags.to_vec();
    args.extend([src.to_str().unwrap(), "-o", obj.to_str().unwrap()]);
    run(&assembler, &args);
    Some(obj)
}

fn check_probe(probe: &Probe, readelf: &str, obj: &Path) {
    let arch = probe.arch;
    let elf = read_elf(obj);
    assert_eq!(elf.machine, arch.machine());

    // Names, as readelf prints them.
    let mut produced = BTreeSet::new();
    for r in readelf_relocs(readelf, obj) {
        let info = arch
            .reloc_info(r.r_type)
            .unwrap_or_else(|| panic!("{}: type {} unknown", arch.name(), r.r_type));
        assert_eq!(Some(info.name.to_string()), r.name, "{}", arch.name());
        produced.insert(info.name);
    }
    let expected: BTreeSet<&str> = probe.expected.iter().copied().collect();
    assert_eq!(
        produced,
        expected,
        "{}: probe produced other types",
        arch.name()
    );

    for section in elf.sections.iter().filter(|s| !s.relocs.is_empty()) {
        let what = format!("{} {}", arch.name(), section.name);
        if section.executable {
            let insns = arch
                .decode_lengths(&section.data)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let expected_count = if section.name == ".text.entry" { 2 } else { 1 };
            assert_eq!(insns.len(), expected_count, "{what}: {insns:?}");
            for &(offset, r_type) in &section.relocs {
                let info = arch.reloc_info(r_type).unwrap();
                let (start, end) = (offset as usize, offset as usize + usize::from(info.size));
                let insn = insns
                    .iter()
                    .find(|i| i.offset <= start && start < i.offset + i.len)
                    .unwrap_or_else(|| panic!("{what}: {} outside the code", info.name));
                assert!(
                    end <= insn.offset + insn.len,
                    "{what}: {} at {start} size {} runs past {insn:?}",
                    info.name,
                    info.size
                );
            }
            if arch.name() == "x86_64" {
                check_x86_constant_fields(&what, section);
            }
        } else {
            assert_eq!(section.relocs.len(), 1, "{what}");
            let (offset, r_type) = section.relocs[0];
            let info = arch.reloc_info(r_type).unwrap();
            assert_eq!(offset, 0, "{what}");
            assert_eq!(
                usize::from(info.size),
                section.data.len(),
                "{what}: {}",
                info.name
            );
        }
    }
}

/// On x86-64 every code relocation patches exactly the displacement or one immediate.
fn check_x86_constant_fields(what: &str, section: &Section) {
    let consts = X86_64.constant_offsets(&section.data, 0).unwrap();
    for &(offset, r_type) in &section.relocs {
        let info = X86_64.reloc_info(r_type).unwrap();
        let c = consts
            .iter()
            .find(|c| {
                c.insn.offset <= offset as usize && (offset as usize) < c.insn.offset + c.insn.len
            })
            .unwrap();
        let rel = offset as usize - c.insn.offset;
        let size = usize::from(info.size);
        let o = &c.offsets;
        let fields = [
            (
                o.has_displacement(),
                o.displacement_offset(),
                o.displacement_size(),
            ),
            (o.has_immediate(), o.immediate_offset(), o.immediate_size()),
            (
                o.has_immediate2(),
                o.immediate_offset2(),
                o.immediate_size2(),
            ),
        ];
        assert!(
            fields.contains(&(true, rel, size)),
            "{what}: {} at +{rel} size {size} is not a constant field of {c:?}",
            info.name
        );
    }
}

#[test]
fn assembler_probes_agree_with_reloc_sizes_and_decoders() {
    let Some(readelf) = tool("readelf", "assembler probes") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for probe in probes() {
        if let Some(obj) = assemble(&probe, dir.path()) {
            check_probe(&probe, &readelf, &obj);
            ran += 1;
        }
    }
    eprintln!("{ran} of 4 probes ran");
}
