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

/// The decoded instructions of one section, sorted by offset, stored compactly (a kernel has
/// millions): one byte per instruction (its length, and [`HAS_BRANCH`]), an offset checkpoint
/// every [`MARK_EVERY`] instructions and wherever decoding restarted, and the relative
/// branches apart (a few per hundred bytes), in instruction order: an instruction's branch is
/// the one after those of the instructions before it, counted from a checkpoint.
/// [`CodeMap::range`] and [`CodeMap::insn_at`] give whole instructions back. A view into the
/// object's [`CodeMaps`] (or a [`CodeMapBuilder`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeMap<'m> {
    /// Length of each instruction, in offset order, with [`HAS_BRANCH`] set for those with a
    /// relative branch.
    lens: &'m [u8],
    /// `(instruction index, offset)`: every [`MARK_EVERY`]th instruction and the first after a
    /// gap; sorted. The offset of any other instruction follows from the lengths since.
    marks: &'m [(u32, u32)],
    /// For each checkpoint, how many branches the instructions before it have.
    ranks: &'m [u32],
    /// The relative branches' targets minus their instructions' offsets, in order.
    branches: &'m [i32],
    /// Each branch's displacement field ([`pack_field`]), apart: a kernel has millions.
    fields: &'m [u8],
}

/// The bit of an instruction's length byte that says it has a relative branch (every
/// instruction set here has instructions shorter than 128 bytes: x86's are at most 15).
const HAS_BRANCH: u8 = 0x80;

/// An instruction's length from its byte in [`CodeMap::lens`].
fn length(byte: u8) -> u8 {
    byte & !HAS_BRANCH
}

/// Whether an instruction has a relative branch, from its byte in [`CodeMap::lens`].
fn has_branch(byte: u8) -> bool {
    byte & HAS_BRANCH != 0
}

/// The instructions of one section as decoding gives them, in runs ([`CodeMapBuilder::extend`]).
#[derive(Debug, Clone, Default)]
pub struct CodeMapBuilder {
    lens: Vec<u8>,
    marks: Vec<(u32, u32)>,
    ranks: Vec<u32>,
    branches: Vec<i32>,
    fields: Vec<u8>,
}

/// The decoded code sections of one object, stored together (one set of tables rather than
/// three vectors per section: a kernel has tens of thousands of code sections).
#[derive(Debug, Clone, Default)]
pub struct CodeMaps {
    lens: Vec<u8>,
    marks: Vec<(u32, u32)>,
    ranks: Vec<u32>,
    branches: Vec<i32>,
    fields: Vec<u8>,
    /// Per section (arena slot): its map's number in `starts`, or `u32::MAX` for none.
    slot: Vec<u32>,
    /// Where each map's tables start, and after the last map where they end.
    starts: Vec<(usize, usize, usize)>,
}

impl CodeMaps {
    /// Room for `sections` section slots, none decoded yet.
    pub fn new(sections: usize) -> CodeMaps {
        CodeMaps {
            slot: vec![u32::MAX; sections],
            starts: vec![(0, 0, 0)],
            ..CodeMaps::default()
        }
    }

    /// Keep the map `built` for section slot `sec` (each section once).
    pub fn push(&mut self, sec: usize, built: &CodeMapBuilder) {
        self.lens.extend_from_slice(&built.lens);
        self.marks.extend_from_slice(&built.marks);
        self.ranks.extend_from_slice(&built.ranks);
        self.branches.extend_from_slice(&built.branches);
        self.fields.extend_from_slice(&built.fields);
        self.slot[sec] = (self.starts.len() - 1) as u32;
        self.starts
            .push((self.lens.len(), self.marks.len(), self.branches.len()));
    }

    /// Kept for the whole diff: no spare capacity.
    pub fn finish(&mut self) {
        self.lens.shrink_to_fit();
        self.marks.shrink_to_fit();
        self.ranks.shrink_to_fit();
        self.branches.shrink_to_fit();
        self.fields.shrink_to_fit();
        self.starts.shrink_to_fit();
    }

    /// The map of section slot `sec`, if it was decoded.
    pub fn get(&self, sec: usize) -> Option<CodeMap<'_>> {
        let k = *self.slot.get(sec)? as usize;
        let (&(l0, m0, b0), &(l1, m1, b1)) = (self.starts.get(k)?, self.starts.get(k + 1)?);
        Some(CodeMap {
            lens: &self.lens[l0..l1],
            marks: &self.marks[m0..m1],
            ranks: &self.ranks[m0..m1],
            branches: &self.branches[b0..b1],
            fields: &self.fields[b0..b1],
        })
    }
}

impl CodeMapBuilder {
    /// Append `insns` (sorted by offset, after those already stored).
    fn extend(&mut self, insns: &[CodeInsn]) {
        let mut next = self.end();
        for insn in insns {
            let i = self.lens.len();
            if i % MARK_EVERY == 0 || next != Some(insn.offset()) {
                self.marks.push((i as u32, insn.offset() as u32));
                self.ranks.push(self.branches.len() as u32);
            }
            debug_assert!(
                insn.length() < HAS_BRANCH,
                "an instruction of 128 bytes or more"
            );
            let branch = insn.branch();
            self.lens
                .push(length(insn.length()) | if branch.is_some() { HAS_BRANCH } else { 0 });
            if let Some(b) = branch {
                self.branches.push((b.target - insn.offset() as i64) as i32);
                self.fields.push(pack_field(b.disp_offset, b.disp_size));
            }
            next = Some(insn.end());
        }
    }

    /// The end of the last instruction stored.
    fn end(&self) -> Option<u64> {
        let &(i, at) = self.marks.last()?;
        Some(
            u64::from(at)
                + self.lens[i as usize..]
                    .iter()
                    .map(|&l| u64::from(length(l)))
                    .sum::<u64>(),
        )
    }

    /// Empty again (keeping the room: one builder serves every section of an object).
    fn clear(&mut self) {
        self.lens.clear();
        self.marks.clear();
        self.ranks.clear();
        self.branches.clear();
        self.fields.clear();
    }

    /// The map as built so far.
    pub fn view(&self) -> CodeMap<'_> {
        CodeMap {
            lens: &self.lens,
            marks: &self.marks,
            ranks: &self.ranks,
            branches: &self.branches,
            fields: &self.fields,
        }
    }
}

/// A branch's displacement field in a byte: its offset in the instruction in the high
/// nibble, its size in the low one (every instruction set here has both below 16: x86
/// instructions are at most 15 bytes, the others' fields lie in 4- or 6-byte instructions).
fn pack_field(disp_offset: u8, disp_size: u8) -> u8 {
    debug_assert!(
        disp_offset < 16 && disp_size < 16,
        "a displacement field beyond 15 bytes"
    );
    (disp_offset << 4) | (disp_size & 0xf)
}

/// How many instructions apart [`CodeMap`] keeps offset checkpoints: a lookup walks at most
/// this many lengths.
const MARK_EVERY: usize = 32;

impl<'m> CodeMap<'m> {
    /// Instruction `i`, whose offset is `offset`; `branch` is the index in `branches` of its
    /// branch, if it has one.
    fn insn_with(&self, i: usize, offset: u64, branch: Option<usize>) -> CodeInsn {
        // Offsets were stored as 32 bits (`marks`), branches in the compact form.
        let (delta, disp_offset, disp_size) = branch.map_or((0, 0, 0), |k| {
            let field = self.fields[k];
            (self.branches[k], field >> 4, field & 0xf)
        });
        CodeInsn::from_compact(
            offset as u32,
            length(self.lens[i]),
            delta,
            disp_offset,
            disp_size,
        )
    }

    /// The instructions from the last checkpoint at or before `offset` on: the index and
    /// offset of the first, the number of branches before it, and the index where the next
    /// checkpoint starts (a gap may follow).
    fn checkpoint_before(&self, offset: u64) -> Option<Position> {
        let m = self
            .marks
            .partition_point(|&(_, at)| u64::from(at) <= offset)
            .checked_sub(1)?;
        let (i, at) = self.marks[m];
        let stop = self
            .marks
            .get(m + 1)
            .map_or(self.lens.len(), |&(j, _)| j as usize);
        Some(Position {
            i: i as usize,
            at: u64::from(at),
            rank: self.ranks[m] as usize,
            stop,
        })
    }

    /// The instruction containing byte `offset`.
    pub fn insn_at(&self, offset: u64) -> Option<CodeInsn> {
        let (p, _) = self.find(offset)?;
        let branch = has_branch(self.lens[p.i]).then_some(p.rank);
        Some(self.insn_with(p.i, p.at, branch))
    }

    /// Where the instruction containing byte `offset` starts and ends (what a reference
    /// inside it needs, without its branch).
    pub fn span_at(&self, offset: u64) -> Option<(u64, u64)> {
        self.find(offset).map(|(p, end)| (p.at, end))
    }

    /// The instruction containing byte `offset` and its end.
    fn find(&self, offset: u64) -> Option<(Position, u64)> {
        let mut p = self.checkpoint_before(offset)?;
        while p.i < p.stop {
            let byte = self.lens[p.i];
            let end = p.at + u64::from(length(byte));
            if offset < end {
                return Some((p, end));
            }
            p.at = end;
            p.rank += usize::from(has_branch(byte));
            p.i += 1;
        }
        None
    }

    /// Instructions within `[start, end)` (starting there; the last may extend past `end`).
    pub fn range(&self, start: u64, end: u64) -> Vec<CodeInsn> {
        self.walk(start, end).collect()
    }

    /// The instructions of [`CodeMap::range`], one by one.
    pub fn walk(&self, start: u64, end: u64) -> Walk<'m> {
        // From the first instruction (a function alone in its section): nothing to search.
        if let Some(&(0, first)) = self.marks.first() {
            if u64::from(first) >= start {
                return Walk {
                    map: *self,
                    i: 0,
                    at: u64::from(first),
                    mark: 1,
                    branch: 0,
                    next_mark: Walk::index_of(self.marks.get(1).map(|x| x.0)),
                    start,
                    end,
                };
            }
        }
        let (i, at, branch) = match self.checkpoint_before(start) {
            Some(p) => (p.i, p.at, p.rank),
            None => match self.marks.first() {
                Some(&(i, at)) => (i as usize, u64::from(at), 0),
                None => (self.lens.len(), 0, self.branches.len()),
            },
        };
        let mark = self.marks.partition_point(|&(j, _)| (j as usize) <= i);
        Walk {
            map: *self,
            i,
            at,
            mark,
            branch,
            next_mark: Walk::index_of(self.marks.get(mark).map(|x| x.0)),
            start,
            end,
        }
    }
}

/// The instructions of a [`CodeMap`] within a range, in order ([`CodeMap::walk`]).
pub struct Walk<'m> {
    map: CodeMap<'m>,
    /// The next instruction's index and offset.
    i: usize,
    at: u64,
    /// The next checkpoint at or after `i`, and its instruction index (`usize::MAX`: none
    /// left).
    mark: usize,
    next_mark: usize,
    /// The number of branches before instruction `i` (the index of its branch, if it has one).
    branch: usize,
    start: u64,
    end: u64,
}

/// An instruction of a [`CodeMap`] found from a checkpoint.
#[derive(Clone, Copy)]
struct Position {
    /// Its index and offset.
    i: usize,
    at: u64,
    /// The number of branches before it.
    rank: usize,
    /// The index of the next checkpoint (where a gap may lie).
    stop: usize,
}

impl Walk<'_> {
    fn index_of(k: Option<u32>) -> usize {
        k.map_or(usize::MAX, |j| j as usize)
    }
}

impl Iterator for Walk<'_> {
    type Item = CodeInsn;

    fn next(&mut self) -> Option<CodeInsn> {
        let m = self.map;
        while self.i < m.lens.len() {
            let i = self.i;
            // A checkpoint gives the offset after a gap.
            if i == self.next_mark {
                self.at = u64::from(m.marks[self.mark].1);
                self.mark += 1;
                self.next_mark = Self::index_of(m.marks.get(self.mark).map(|x| x.0));
            }
            if self.at >= self.end {
                self.i = m.lens.len();
                return None;
            }
            let byte = m.lens[i];
            let here = has_branch(byte).then_some(self.branch);
            self.branch += usize::from(here.is_some());
            let at = self.at;
            self.at += u64::from(length(byte));
            self.i += 1;
            if at >= self.start {
                return Some(m.insn_with(i, at, here));
            }
        }
        None
    }
}

/// Decode one code section's bytes `data` for `arch` into `map` (emptied first); `starts`
/// are the offsets where functions begin (decoding restarts there after bytes that do not
/// decode).
pub fn decode_section(arch: &dyn Arch, data: &[u8], starts: &[u64], map: &mut CodeMapBuilder) {
    let mut starts: Vec<u64> = starts.to_vec();
    starts.sort_unstable();
    starts.dedup();
    map.clear();
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
        map.extend(&decoded);
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instructions with gaps (decoding restarted), branches here and there, more than a
    /// checkpoint's worth, and an offset that needs all 32 bits.
    fn sample() -> Vec<CodeInsn> {
        let mut insns = Vec::new();
        let mut at = 0u64;
        for i in 0..200u64 {
            if i == 70 || i == 71 || i == 150 {
                at += 5 + i % 3; // undecodable bytes
            }
            let len = (1 + i % 7) as u8;
            let branch = (i % 5 == 0).then(|| Branch {
                target: at as i64 + (i as i64 - 100) * 3,
                disp_offset: 1,
                disp_size: len.min(4),
            });
            insns.push(CodeInsn::new(at, len, branch).unwrap());
            at += u64::from(len);
        }
        insns.push(CodeInsn::new(u64::from(u32::MAX) - 20, 3, None).unwrap());
        insns
    }

    #[test]
    fn compact_map_gives_back_every_instruction() {
        let insns = sample();
        // Stored in three runs, as decoding gives them (a run may end inside a checkpoint).
        let mut built = CodeMapBuilder::default();
        built.extend(&insns[..45]);
        built.extend(&insns[45..71]);
        built.extend(&insns[71..]);
        // Kept among other sections' maps.
        let mut maps = CodeMaps::new(3);
        maps.push(0, &CodeMapBuilder::default());
        maps.push(2, &built);
        maps.finish();
        assert!(maps.get(1).is_none());
        assert_eq!(maps.get(0).unwrap().range(0, 100), Vec::new());
        let map = maps.get(2).unwrap();
        let end = insns.last().unwrap().end();
        assert_eq!(map.range(0, end + 1), insns);
        // Every sub-range, every containing instruction, and the bytes in gaps.
        for start in (0..700).step_by(7) {
            for len in [0u64, 1, 9, 40, 300] {
                let want: Vec<CodeInsn> = insns
                    .iter()
                    .copied()
                    .filter(|x| x.offset() >= start && x.offset() < start + len)
                    .collect();
                assert_eq!(map.range(start, start + len), want, "[{start}, +{len})");
            }
            let holding = insns
                .iter()
                .copied()
                .find(|x| x.offset() <= start && start < x.end());
            assert_eq!(map.insn_at(start), holding, "at {start}");
            assert_eq!(
                map.span_at(start),
                holding.map(|x| (x.offset(), x.end())),
                "at {start}"
            );
        }
        assert_eq!(map.insn_at(end - 1), insns.last().copied());
        assert_eq!(map.insn_at(end), None);
        assert_eq!(CodeMap::default().range(0, 10), Vec::new());
        assert_eq!(CodeMap::default().insn_at(0), None);
    }
}
