//! Instruction boundaries of every code section, decoded once per object.
//!
//! Later phases need, for a relocation inside code, the instruction holding it (x86
//! PC-relative references count from the end of the instruction), and for checksums the
//! instruction stream with branch targets. Sections are decoded from their start; where bytes
//! do not decode (data in a code section), decoding restarts at the next function symbol, and
//! relocations in undecodable stretches fall back to the common case.

use klpforge_arch::Arch;

/// One decoded instruction (the arch crate's): offset within the section, length, and for a
/// relative branch its target and displacement field.
pub use klpforge_arch::DecodedInsn as CodeInsn;

/// A relative branch's displacement field and target (the arch crate's).
pub use klpforge_arch::BranchField as Branch;

/// The decoded instructions of one section, sorted by offset.
#[derive(Debug, Clone, Default)]
pub struct CodeMap {
    /// Instructions in offset order.
    pub insns: Vec<CodeInsn>,
}

impl CodeMap {
    /// The instruction containing byte `offset`.
    pub fn insn_at(&self, offset: u64) -> Option<&CodeInsn> {
        let i = self.insns.partition_point(|x| x.offset() <= offset);
        let insn = self.insns.get(i.checked_sub(1)?)?;
        (offset < insn.end()).then_some(insn)
    }

    /// Instructions within `[start, end)`.
    pub fn range(&self, start: u64, end: u64) -> &[CodeInsn] {
        let a = self.insns.partition_point(|x| x.offset() < start);
        let b = self.insns.partition_point(|x| x.offset() < end);
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
    while (pos as usize) < data.len() {
        // Decode up to the next function start, so one bad stretch cannot swallow the rest.
        let next = starts
            .get(starts.partition_point(|&s| s <= pos))
            .copied()
            .unwrap_or(data.len() as u64)
            .min(data.len() as u64);
        let (decoded, _complete) =
            arch.decode_with_branches(&data[pos as usize..next as usize], pos);
        insns.extend(decoded);
        pos = next;
    }
    // Kept for the whole diff: no spare capacity (a kernel has millions of instructions).
    insns.shrink_to_fit();
    CodeMap { insns }
}
