//! Minimising a crashing input against the seeds it was made from.
//!
//! Each file is first put back to its seed, as is or as the ELF writer rewrites it (a
//! field-aware mutation goes through the writer), if the crash survives that. Otherwise, with
//! a base of the same length, the runs of differing bytes are reverted one at a time, keeping
//! each reversion that leaves the panic at the same location. What remains is reported as
//! byte runs, each placed in its section (and table entry) of the file.

use klpforge_elf::read::parse;
use klpforge_elf::write::write;

use crate::harness::{probe, Target};
use crate::mutate::get;

/// A run of bytes that differs from the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// File offset.
    pub offset: usize,
    /// The base's bytes.
    pub old: Vec<u8>,
    /// The crashing input's bytes.
    pub new: Vec<u8>,
}

/// A minimised crash.
#[derive(Debug, Clone)]
pub struct Minimized {
    /// The panic message.
    pub message: String,
    /// The panic location.
    pub location: String,
    /// The minimised files.
    pub files: Vec<Vec<u8>>,
    /// Per file: what its base is (`seed`, `seed as rewritten by the writer`, or `none`) and
    /// the runs still differing from it.
    pub changes: Vec<(&'static str, Vec<Hunk>)>,
}

/// Minimise `crash` (the target's files) against `bases` (their seeds, same order).
pub fn minimize(
    target: Target,
    crash: Vec<Vec<u8>>,
    bases: &[Vec<u8>],
) -> anyhow::Result<Minimized> {
    anyhow::ensure!(bases.len() == crash.len(), "one base per crashing file");
    let Some((message, location)) = probe(target, &crash)? else {
        anyhow::bail!("the input does not panic");
    };
    let crashes_here = |files: &[Vec<u8>]| {
        probe(target, files)
            .ok()
            .flatten()
            .is_some_and(|(_, l)| l == location)
    };
    let mut files = crash;
    let mut changes = Vec::new();
    for side in 0..files.len() {
        let mut candidates = vec![("seed", bases[side].clone())];
        if let Ok(Ok(bytes)) = parse(&bases[side]).map(|o| write(&o)) {
            candidates.push(("seed as rewritten by the writer", bytes));
        }
        if let Some((name, base)) = candidates.iter().find(|(_, base)| {
            let mut t = files.clone();
            t[side] = base.clone();
            crashes_here(&t)
        }) {
            files[side] = base.clone();
            changes.push((*name, Vec::new()));
            continue;
        }
        let Some((name, base)) = candidates
            .iter()
            .filter(|(_, b)| b.len() == files[side].len())
            .min_by_key(|(_, b)| hunks(b, &files[side]).len())
        else {
            changes.push(("none", Vec::new()));
            continue;
        };
        for h in hunks(base, &files[side]) {
            let mut t = files.clone();
            t[side][h.offset..h.offset + h.old.len()].copy_from_slice(&h.old);
            if crashes_here(&t) {
                files = t;
            }
        }
        changes.push((*name, hunks(base, &files[side])));
    }
    Ok(Minimized {
        message,
        location,
        files,
        changes,
    })
}

/// The runs of differing bytes between two files of the same length (runs closer than 8
/// bytes are merged).
pub fn hunks(base: &[u8], now: &[u8]) -> Vec<Hunk> {
    let mut out: Vec<Hunk> = Vec::new();
    let mut i = 0;
    while i < base.len().min(now.len()) {
        if base[i] == now[i] {
            i += 1;
            continue;
        }
        let start = match out.last() {
            Some(h) if h.offset + h.old.len() + 8 > i => out.pop().map_or(i, |h| h.offset),
            _ => i,
        };
        let mut end = i;
        while end < base.len() && base[end] != now[end] {
            end += 1;
        }
        out.push(Hunk {
            offset: start,
            old: base[start..end].to_vec(),
            new: now[start..end].to_vec(),
        });
        i = end;
    }
    out
}

/// Where `offset` lies in an ELF64 file: `section [N] NAME + 0xOFF`, with the entry number
/// for tables of fixed-size entries, or `file header` / `section header [N]`.
pub fn locate(b: &[u8], offset: usize) -> String {
    if b.len() < 64 {
        return format!("offset {offset:#x}");
    }
    let big = b[5] == 2;
    if offset < 64 {
        return format!("file header + {offset:#x}");
    }
    let shoff = get(b, 40, 8, big) as usize;
    let shnum = get(b, 60, 2, big) as usize;
    let shstrndx = get(b, 62, 2, big) as usize;
    let shdr =
        |i: usize, off: usize, size: usize| get(b, shoff.wrapping_add(i * 64 + off), size, big);
    if offset >= shoff && offset < shoff.saturating_add(shnum * 64) {
        let i = (offset - shoff) / 64;
        return format!("section header [{i}] + {:#x}", (offset - shoff) % 64);
    }
    let strtab = shdr(shstrndx, 24, 8) as usize;
    let name = |i: usize| {
        let start = strtab.saturating_add(shdr(i, 0, 4) as usize);
        let bytes = b.get(start..).unwrap_or(&[]);
        let end = bytes.iter().position(|&c| c == 0).unwrap_or(0);
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    for i in 1..shnum {
        let (start, size) = (shdr(i, 24, 8) as usize, shdr(i, 32, 8) as usize);
        if shdr(i, 4, 4) != 8 && offset >= start && offset < start.saturating_add(size) {
            let within = offset - start;
            let entsize = shdr(i, 56, 8) as usize;
            return if entsize > 0 && matches!(shdr(i, 4, 4), 2 | 4 | 9 | 17 | 18) {
                format!(
                    "section [{i}] {} entry {} + {:#x}",
                    name(i),
                    within / entsize,
                    within % entsize
                )
            } else {
                format!("section [{i}] {} + {within:#x}", name(i))
            };
        }
    }
    format!("offset {offset:#x} (padding)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_merge_close_runs() {
        let base = [0u8; 32];
        let mut now = base;
        now[2] = 1;
        now[5] = 1;
        now[20] = 2;
        let h = hunks(&base, &now);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].offset, h[0].new.as_slice()), (2, &[1, 0, 0, 1][..]));
        assert_eq!((h[1].offset, h[1].new.as_slice()), (20, &[2][..]));
    }

    #[test]
    fn locate_names_the_section() {
        let seed = crate::seeds::builtin_objects().remove(0).bytes;
        assert_eq!(locate(&seed, 3), "file header + 0x3");
        let obj = parse(&seed).unwrap();
        assert!(obj.section_by_name(b".text").is_some());
        // The writer puts `.text` right after the header.
        assert_eq!(locate(&seed, 64 + 2), "section [1] .text + 0x2");
    }
}
