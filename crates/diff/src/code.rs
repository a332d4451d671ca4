//! Instruction boundaries of every code section, decoded once per object.
//!
//! Later phases need, for a relocation inside code, the instruction holding it (x86
//! PC-relative references count from the end of the instruction), and for checksums the
//! instruction stream with branch targets. Sections are decoded from their start; where bytes
//! do not decode (data in a code section), decoding restarts at the next function symbol, and
//! relocations in undecodable stretches fall back to the common case.

use klpforge_arch::{Arch, X86_64};

/// One decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInsn {
    /// Offset within the section.
    pub offset: u64,
    /// Length in bytes.
    pub len: u8,
    /// For x86 relative branches: the target offset within the section (may lie outside it),
    /// and where the displacement is within the instruction (offset, size).
    pub branch: Option<Branch>,
}

/// A relative branch without (necessarily) a relocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    /// Target as an offset within the same section.
    pub target: i64,
    /// Offset of the displacement within the instruction.
    pub disp_offset: u8,
    /// Size of the displacement.
    pub disp_size: u8,
}

/// The decoded instructions of one section, sorted by offset.
#[derive(Debug, Clone, Default)]
pub struct CodeMap {
    /// Instructions in offset order.
    pub insns: Vec<CodeInsn>,
}

impl CodeMap {
    /// The instruction containing byte `offset`.
    pub fn insn_at(&self, offset: u64) -> Option<&CodeInsn> {
        let i = self.insns.partition_point(|x| x.offset <= offset);
        let insn = self.insns.get(i.checked_sub(1)?)?;
        (offset < insn.offset + u64::from(insn.len)).then_some(insn)
    }

    /// Instructions within `[start, end)`.
    pub fn range(&self, start: u64, end: u64) -> &[CodeInsn] {
        let a = self.insns.partition_point(|x| x.offset < start);
        let b = self.insns.partition_point(|x| x.offset < end);
        &self.insns[a..b]
    }
}

/// Decode one code section's bytes `data` for `arch`; `starts` are the offsets where
/// functions begin (decoding restarts there after bytes that do not decode).
pub fn decode_section(arch: &dyn Arch, data: &[u8], starts: &[u64]) -> CodeMap {
    let mut starts: Vec<u64> = starts.to_vec();
    starts.sort_unstable();
    starts.dedup();
    let mut insns = Vec::new();
    let mut pos: u64 = 0;
    let x86 = arch.name() == "x86_64";
    while (pos as usize) < data.len() {
        // Decode up to the next function start, so one bad stretch cannot swallow the rest.
        let next = starts
            .iter()
            .copied()
            .find(|&s| s > pos)
            .unwrap_or(data.len() as u64)
            .min(data.len() as u64);
        let chunk = &data[pos as usize..next as usize];
        let ok = if x86 {
            decode_x86(chunk, pos, &mut insns)
        } else {
            match arch.decode_lengths(chunk) {
                Ok(list) => {
                    insns.extend(list.iter().map(|i| CodeInsn {
                        offset: pos + i.offset as u64,
                        len: i.len as u8,
                        branch: None,
                    }));
                    true
                }
                Err(e) => {
                    // Keep what decoded before the error.
                    if let Ok(list) = arch.decode_lengths(&chunk[..e.offset]) {
                        insns.extend(list.iter().map(|i| CodeInsn {
                            offset: pos + i.offset as u64,
                            len: i.len as u8,
                            branch: None,
                        }));
                    }
                    false
                }
            }
        };
        let _ = ok;
        pos = next;
    }
    CodeMap { insns }
}

/// Decode x86 code at section offset `base`, appending what decodes; stops at the first
/// undecodable byte and reports whether the whole chunk decoded.
fn decode_x86(chunk: &[u8], base: u64, out: &mut Vec<CodeInsn>) -> bool {
    let (list, complete) = match X86_64.constant_offsets(chunk, base) {
        Ok(list) => (list, true),
        Err(e) => match X86_64.constant_offsets(&chunk[..e.offset], base) {
            Ok(list) => (list, false),
            Err(_) => (Vec::new(), false),
        },
    };
    for c in list {
        let branch = c.branch_target.and_then(|target| {
            // iced reports the branch displacement as the (first) immediate.
            let o = &c.offsets;
            if o.has_immediate() {
                Some(Branch {
                    target: target as i64,
                    disp_offset: o.immediate_offset() as u8,
                    disp_size: o.immediate_size() as u8,
                })
            } else {
                None
            }
        });
        out.push(CodeInsn {
            offset: base + c.insn.offset as u64,
            len: c.insn.len as u8,
            branch,
        });
    }
    complete
}
