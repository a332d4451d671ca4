//! The instruction-set facts the diff engine asks the [`Arch`] trait for, one table per
//! architecture: which argument register a small immediate or an address is loaded into, what a
//! PC-relative field counts from, the compiler's no-op ftrace entry, direct calls, branch
//! targets, and the relocation types the module loader applies.

use klpforge_arch::{Aarch64, Arch, LoongArch64, Ppc64, S390x, X86_64};

#[test]
fn immediate_arguments_per_architecture() {
    let cases: [(&dyn Arch, &[u8], Option<u8>); 14] = [
        // mov $0x2a, %esi / %edx / %ecx; mov $0x2a, %eax is no argument of ours
        (&X86_64, &[0xbe, 0x2a, 0, 0, 0], Some(2)),
        (&X86_64, &[0xba, 0x2a, 0, 0, 0], Some(3)),
        (&X86_64, &[0xb9, 0x2a, 0, 0, 0], Some(4)),
        (&X86_64, &[0xb8, 0x2a, 0, 0, 0], None),
        // movz w1, #42 / movz w2, #42 / movz w0, #42
        (&Aarch64, &0x5280_0541u32.to_le_bytes(), Some(2)),
        (&Aarch64, &0x5280_0542u32.to_le_bytes(), Some(3)),
        (&Aarch64, &0x5280_0540u32.to_le_bytes(), None),
        // li r4, 42 / li r5, 42
        (&Ppc64, &0x3880_002au32.to_le_bytes(), Some(2)),
        (&Ppc64, &0x38a0_002au32.to_le_bytes(), Some(3)),
        // lghi %r3, 42 / lhi %r4, 42 / lghi %r2, 42
        (&S390x, &[0xa7, 0x39, 0x00, 0x2a], Some(2)),
        (&S390x, &[0xa7, 0x48, 0x00, 0x2a], Some(3)),
        (&S390x, &[0xa7, 0x29, 0x00, 0x2a], None),
        // addi.w $a1, $zero, 42 / ori $a2, $zero, 42
        (&LoongArch64, &0x0280_a805u32.to_le_bytes(), Some(2)),
        (&LoongArch64, &0x0380_a806u32.to_le_bytes(), Some(3)),
    ];
    for (arch, insn, want) in cases {
        assert_eq!(
            arch.immediate_argument(insn),
            want,
            "{} {insn:02x?}",
            arch.name()
        );
    }
}

#[test]
fn address_arguments_only_where_the_architecture_tells() {
    // mov $sym, %rdi (sign-extended); lea sym(%rip), %rsi; mov $sym, %edx
    assert_eq!(
        X86_64.address_argument(&[0x48, 0xc7, 0xc7, 0, 0, 0, 0]),
        Some(1)
    );
    assert_eq!(
        X86_64.address_argument(&[0x48, 0x8d, 0x35, 0, 0, 0, 0]),
        Some(2)
    );
    assert_eq!(X86_64.address_argument(&[0xba, 0, 0, 0, 0]), Some(3));
    for arch in [&Aarch64 as &dyn Arch, &Ppc64, &S390x, &LoongArch64] {
        assert_eq!(arch.address_argument(&[0; 4]), None, "{}", arch.name());
    }
}

#[test]
fn pc_relative_bias_per_architecture() {
    use object::elf::{R_390_PC32, R_390_PC32DBL, R_X86_64_PC32};
    // x86: from the end of the instruction; 4 past the field when not decoded, in code.
    assert_eq!(X86_64.pc_bias(R_X86_64_PC32.0, 0x13, Some(0x17), true), 4);
    assert_eq!(X86_64.pc_bias(R_X86_64_PC32.0, 0x13, Some(0x18), true), 5);
    assert_eq!(X86_64.pc_bias(R_X86_64_PC32.0, 0x13, None, true), 4);
    assert_eq!(X86_64.pc_bias(R_X86_64_PC32.0, 0x13, None, false), 0);
    // s390x: *DBL fields sit two bytes into their instruction, in code only.
    assert_eq!(S390x.pc_bias(R_390_PC32DBL.0, 2, None, true), -2);
    assert_eq!(S390x.pc_bias(R_390_PC32DBL.0, 2, None, false), 0);
    assert_eq!(S390x.pc_bias(R_390_PC32.0, 2, None, true), 0);
    for arch in [&Aarch64 as &dyn Arch, &Ppc64, &LoongArch64] {
        assert_eq!(arch.pc_bias(1, 8, Some(12), true), 0, "{}", arch.name());
    }
}

#[test]
fn nop_ftrace_entries_and_calls() {
    // s390x -mnop-mcount: brcl 0,0 where the mcount call would be.
    assert!(S390x.has_nop_ftrace_entry(&[0xc0, 0x04, 0, 0, 0, 0, 0x07, 0xfe]));
    assert!(!S390x.has_nop_ftrace_entry(&[0xc0, 0xe5, 0, 0, 0, 0]));
    assert!(!X86_64.has_nop_ftrace_entry(&[0xc0, 0x04, 0, 0, 0, 0]));
    // x86: `call rel32` and a tail call `jmp rel32` (with a relocation) are calls; a
    // short `jmp rel8` (within a function) is not.
    let plt32 = object::elf::R_X86_64_PLT32.0;
    assert!(X86_64.is_call(&[0xe8, 0, 0, 0, 0], plt32));
    assert!(X86_64.is_call(&[0xe9, 0, 0, 0, 0], plt32));
    assert!(!X86_64.is_call(&[0xeb, 0], plt32));
    // Elsewhere a branch relocation is a call.
    let call26 = object::elf::R_AARCH64_CALL26.0;
    assert!(Aarch64.is_call(&0x9400_0000u32.to_le_bytes(), call26));
    assert!(!Aarch64.is_call(&[0; 4], object::elf::R_AARCH64_ABS64.0));
}

#[test]
fn branch_targets_where_the_decoder_computes_them() {
    // call +0 (at 0x100: target 0x105), then ret.
    let (insns, complete) = X86_64.decode_with_branches(&[0xe8, 0, 0, 0, 0, 0xc3], 0x100);
    assert!(complete);
    assert_eq!(insns.len(), 2);
    let branch = insns[0].branch().expect("a relative call");
    assert_eq!(
        (branch.target, branch.disp_offset, branch.disp_size),
        (0x105, 1, 4)
    );
    assert_eq!(insns[1].offset(), 0x105);
    // Fixed-width architectures: boundaries, no targets; a partial word stops decoding.
    let (insns, complete) = Aarch64.decode_with_branches(&[0; 10], 0x40);
    assert!(!complete);
    assert_eq!(
        insns.iter().map(|i| i.offset()).collect::<Vec<_>>(),
        [0x40, 0x44]
    );
    assert!(insns.iter().all(|i| i.branch().is_none()));
}

#[test]
fn loader_relocation_types() {
    let types = X86_64.loader_relocation_types().expect("x86_64 is checked");
    for t in [
        object::elf::R_X86_64_PC32,
        object::elf::R_X86_64_PLT32,
        object::elf::R_X86_64_64,
    ] {
        assert!(types.contains(&t.0));
    }
    assert!(!types.contains(&object::elf::R_X86_64_GOTPCREL.0));
    assert_eq!(S390x.loader_relocation_types(), None);
}

#[test]
fn sibling_calls_that_break_the_toc() {
    let rel24 = object::elf::R_PPC64_REL24.0;
    // b target / bl target / ba target (absolute: not ours) on ppc64le
    assert!(Ppc64.sibling_call_breaks_toc(&0x4800_0000u32.to_le_bytes(), rel24));
    assert!(!Ppc64.sibling_call_breaks_toc(&0x4800_0001u32.to_le_bytes(), rel24));
    assert!(!Ppc64.sibling_call_breaks_toc(&0x4800_0002u32.to_le_bytes(), rel24));
    assert!(!Ppc64
        .sibling_call_breaks_toc(&0x4800_0000u32.to_le_bytes(), object::elf::R_PPC64_ADDR64.0));
    // Elsewhere a tail call out of the module is fine.
    assert!(!X86_64.sibling_call_breaks_toc(&[0xe9, 0, 0, 0, 0], object::elf::R_X86_64_PLT32.0));
    assert!(
        !S390x.sibling_call_breaks_toc(&[0xc0, 0xf4, 0, 0, 0, 0], object::elf::R_390_PLT32DBL.0)
    );
}

#[test]
fn helpers_every_module_links() {
    for name in [
        ".TOC.",
        "_restgpr0_25",
        "_savegpr0_14",
        "_restfpr_31",
        "_savevr_20",
    ] {
        assert!(Ppc64.linked_into_every_module(name), "{name}");
    }
    for name in ["_restgpr0_", "_restgpr0_x", "printk", "restgpr0_25"] {
        assert!(!Ppc64.linked_into_every_module(name), "{name}");
    }
    assert!(!X86_64.linked_into_every_module("_restgpr0_25"));
    assert!(!X86_64.linked_into_every_module(".TOC."));
}

#[test]
fn relative_branch_targets_as_encoded() {
    // x86: call -0x1a at 0x15 (from the decoder).
    assert_eq!(
        X86_64.relative_branch_target(&[0xe8, 0xe6, 0xff, 0xff, 0xff], 0x15),
        Some(0)
    );
    assert_eq!(
        X86_64.relative_branch_target(&[0x83, 0xc0, 0x05], 0x1a),
        None
    );
    // ppc64le: bl -0x10, b +0x20, bc +8; ba (absolute) is not relative.
    assert_eq!(
        Ppc64.relative_branch_target(&0x4bff_fff1u32.to_le_bytes(), 0x40),
        Some(0x30)
    );
    assert_eq!(
        Ppc64.relative_branch_target(&0x4800_0020u32.to_le_bytes(), 0x40),
        Some(0x60)
    );
    assert_eq!(
        Ppc64.relative_branch_target(&0x4182_0008u32.to_le_bytes(), 0x40),
        Some(0x48)
    );
    assert_eq!(
        Ppc64.relative_branch_target(&0x4800_0022u32.to_le_bytes(), 0x40),
        None
    );
    // aarch64: bl -8 words, b +4 words.
    assert_eq!(
        Aarch64.relative_branch_target(&0x97ff_fff8u32.to_le_bytes(), 0x40),
        Some(0x20)
    );
    assert_eq!(
        Aarch64.relative_branch_target(&0x1400_0004u32.to_le_bytes(), 0x40),
        Some(0x50)
    );
    // s390x: brasl %r14,+0x10 halfwords.
    assert_eq!(
        S390x.relative_branch_target(&[0xc0, 0xe5, 0, 0, 0, 0x10], 0x2a),
        Some(0x4a)
    );
    // loongarch64: bl +4 words.
    assert_eq!(
        LoongArch64.relative_branch_target(&0x5400_1000u32.to_le_bytes(), 0x40),
        Some(0x50)
    );
}

#[test]
fn branch_displacements_masked_keeping_the_opcode() {
    let masked = |arch: &dyn Arch, w: u32| {
        let mut b = w.to_le_bytes();
        arch.mask_branch_displacement(&mut b);
        u32::from_le_bytes(b)
    };
    // ppc64le: bl keeps opcode and LK, b keeps opcode; other instructions untouched.
    assert_eq!(masked(&Ppc64, 0x4bff_fff1), 0x4800_0001);
    assert_eq!(masked(&Ppc64, 0x4800_0020), 0x4800_0000);
    assert_eq!(masked(&Ppc64, 0x3880_002a), 0x3880_002a);
    // aarch64: bl / b keep their opcode.
    assert_eq!(masked(&Aarch64, 0x97ff_fff8), 0x9400_0000);
    assert_eq!(masked(&Aarch64, 0x1400_0004), 0x1400_0000);
    // s390x brasl: the 32-bit displacement only.
    let mut brasl = [0xc0, 0xe5, 0, 0, 0, 0x10];
    S390x.mask_branch_displacement(&mut brasl);
    assert_eq!(brasl, [0xc0, 0xe5, 0, 0, 0, 0]);
    assert!(X86_64.decoder_gives_branches() && !Ppc64.decoder_gives_branches());
}

#[test]
fn relocated_fields_cleared_without_the_opcode() {
    // ppc64le `bl` with a klp REL24: the displacement goes, opcode and LK stay.
    let mut bl = 0x4bff_fff1u32.to_le_bytes();
    Ppc64.clear_relocated_field(object::elf::R_PPC64_REL24.0, &mut bl);
    assert_eq!(u32::from_le_bytes(bl), 0x4800_0001);
    // A DS-form `ld` halfword keeps its two opcode bits.
    let mut ds = 0x1235u16.to_le_bytes();
    Ppc64.clear_relocated_field(object::elf::R_PPC64_TOC16_LO_DS.0, &mut ds);
    assert_eq!(u16::from_le_bytes(ds), 0x0001);
    // Data and x86 fields: every byte.
    let mut addr = [0xffu8; 8];
    Ppc64.clear_relocated_field(object::elf::R_PPC64_ADDR64.0, &mut addr);
    assert_eq!(addr, [0; 8]);
    let mut pc32 = [0xe6, 0xff, 0xff, 0xff, 0x90];
    X86_64.clear_relocated_field(object::elf::R_X86_64_PLT32.0, &mut pc32);
    assert_eq!(pc32, [0, 0, 0, 0, 0x90]);
}

/// Which relocated instructions put an address into a register (what can set up a section
/// anchor), and which load or store through it instead.
#[test]
fn address_materializations_per_architecture() {
    use object::elf;
    let word = |w: u32| w.to_le_bytes();
    // ppc64le: `addi r9,r9,sym@toc@l` (opcode 14) yes; `ld r9,sym@toc@l(r9)` (58) and
    // `lwz` (32) no; `paddi r9,0,sym@pcrel` (prefix, then an addi word) yes.
    let toc_lo = elf::R_PPC64_TOC16_LO.0;
    assert!(Ppc64.materializes_address(&word(0x3929_0000), toc_lo));
    assert!(!Ppc64.materializes_address(&word(0x8129_0000), toc_lo));
    assert!(!Ppc64.materializes_address(&word(0xe929_0000), elf::R_PPC64_TOC16_LO_DS.0));
    assert!(!Ppc64.materializes_address(&word(0x3d22_0000), elf::R_PPC64_TOC16_HA.0));
    let mut paddi = word(0x0610_0000).to_vec();
    paddi.extend_from_slice(&word(0x3920_0000));
    assert!(Ppc64.materializes_address(&paddi, 132));
    // aarch64: `add x0, x0, :lo12:sym` and `adr` yes; `ldr x0, [x0, :lo12:sym]` no.
    assert!(Aarch64.materializes_address(&[0; 4], elf::R_AARCH64_ADD_ABS_LO12_NC.0));
    assert!(Aarch64.materializes_address(&[0; 4], elf::R_AARCH64_ADR_PREL_LO21.0));
    assert!(!Aarch64.materializes_address(&[0; 4], elf::R_AARCH64_LDST64_ABS_LO12_NC.0));
    assert!(!Aarch64.materializes_address(&[0; 4], elf::R_AARCH64_ADR_PREL_PG_HI21.0));
    // s390x: `larl` yes, `brasl` (same relocation type) no.
    let dbl = elf::R_390_PC32DBL.0;
    assert!(S390x.materializes_address(&[0xc0, 0x10, 0, 0, 0, 0], dbl));
    assert!(!S390x.materializes_address(&[0xc0, 0xe5, 0, 0, 0, 0], dbl));
    // loongarch64: `addi.d` with %pc_lo12 yes, `ld.d` no.
    let lo12 = elf::R_LARCH_PCALA_LO12.0;
    assert!(LoongArch64.materializes_address(&word(0x02c0_0084), lo12));
    assert!(!LoongArch64.materializes_address(&word(0x28c0_0084), lo12));
    // x86_64 has no section anchors.
    assert!(!X86_64.materializes_address(&[0x48, 0x8d, 0x05, 0, 0, 0, 0], elf::R_X86_64_PC32.0));
}

/// ppc64le alignment padding includes the group-ending nop (`ori 2,2,0`) gas ends it with.
#[test]
fn ppc64_padding_nops() {
    assert!(Ppc64.is_padding(&0x6000_0000u32.to_le_bytes()));
    assert!(Ppc64.is_padding(&0x6042_0000u32.to_le_bytes()));
    assert!(!Ppc64.is_padding(&0x6042_0001u32.to_le_bytes()));
}

/// Calls that cannot leave a livepatch module for the kernel: on ppc64le a `bl` without the
/// TOC-restoring `nop` after it (a call within the unit; sibling calls are refused apart).
#[test]
fn calls_that_can_leave_the_module() {
    let rel24 = object::elf::R_PPC64_REL24.0;
    let code = |ws: &[u32]| ws.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    assert!(Ppc64.call_can_leave_module(&code(&[0x4800_0001, 0x6000_0000]), 0, rel24));
    assert!(!Ppc64.call_can_leave_module(&code(&[0x4800_0001, 0x4800_0001]), 0, rel24));
    assert!(!Ppc64.call_can_leave_module(&code(&[0x4800_0001]), 0, rel24));
    assert!(Ppc64.call_can_leave_module(&code(&[0x4800_0000, 0x6000_0000]), 0, rel24));
    assert!(Ppc64.call_can_leave_module(&code(&[0x3929_0000]), 0, object::elf::R_PPC64_TOC16_LO.0));
    assert!(X86_64.call_can_leave_module(&[0xe8, 0, 0, 0, 0], 1, object::elf::R_X86_64_PLT32.0));
    assert!(S390x.call_can_leave_module(
        &[0xc0, 0xe5, 0, 0, 0, 0],
        2,
        object::elf::R_390_PLT32DBL.0
    ));
}

/// Decoded instructions are kept for a whole diff (millions in a kernel): 12 bytes each, and
/// a branch target round-trips through the compact form.
#[test]
fn decoded_instructions_are_compact() {
    use klpforge_arch::{BranchField, DecodedInsn};
    assert_eq!(std::mem::size_of::<DecodedInsn>(), 12);
    let field = BranchField {
        target: -0x40,
        disp_offset: 1,
        disp_size: 4,
    };
    let i = DecodedInsn::new(0x1000, 5, Some(field)).expect("fits");
    assert_eq!((i.offset(), i.length(), i.end()), (0x1000, 5, 0x1005));
    assert_eq!(i.branch(), Some(field));
    assert_eq!(DecodedInsn::new(0x1_0000_0000, 4, None), None);
    let far = BranchField {
        target: 0x1_0000_1000,
        ..field
    };
    assert_eq!(
        DecodedInsn::new(0x10, 5, Some(far)).and_then(|i| i.branch()),
        None
    );
}
