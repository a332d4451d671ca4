//! Mutators of ELF objects.
//!
//! * [`mutate_bytes`] works on the raw file: header and section header fields, entries of the
//!   symbol and relocation tables found through the section headers, random aligned words, bit
//!   flips, boundary bytes, truncation and splicing from another object.
//! * [`mutate_object`] works on the parsed model: symbol values, sizes, places and types,
//!   section sizes, flags, alignments, entry sizes, links, and relocation offsets, types,
//!   addends and symbols. [`mutate_input`] writes such a model back with the ELF writer, so
//!   every mutated input is a file that can be saved and replayed.
//!
//! Every mutator returns a one-line description of what it did, for crash reports.

use std::borrow::Cow;

use klpforge_elf::read::parse;
use klpforge_elf::write::write;
use klpforge_elf::{ElfObject, Info, Link, SectionData, SectionId, SymbolId, SymbolPlace};

use crate::rng::Rng;

/// The largest input a mutator produces (splicing can grow a file).
pub const MAX_INPUT: usize = 8 << 20;

/// Values that sit on the edges of the fields' ranges and of the ELF constants.
pub const BOUNDARY: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    0x7f,
    0x80,
    0xff,
    0xfff,
    0x1000,
    0xfeff,
    0xff00,
    0xff20,
    0xfff1,
    0xfff2,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    u64::MAX / 2,
    u64::MAX - 7,
    u64::MAX - 1,
    u64::MAX,
];

/// A value for a field that holds `old`: a boundary value, a neighbour of `old`, a small
/// number, a power of two or random bits.
pub fn value(rng: &mut Rng, old: u64) -> u64 {
    match rng.below(8) {
        0..=2 => *rng.pick(BOUNDARY),
        3 | 4 => old.wrapping_add(rng.below(17) as u64).wrapping_sub(8),
        5 => rng.next_u64() % 0x10000,
        6 => 1 << rng.below(64),
        _ => rng.next_u64(),
    }
}

/// Read a `size`-byte field at `off` (missing bytes read as zero).
pub(crate) fn get(b: &[u8], off: usize, size: usize, big: bool) -> u64 {
    let mut v = 0u64;
    for i in 0..size {
        let byte = *b.get(off.wrapping_add(i)).unwrap_or(&0) as u64;
        v |= if big {
            byte << (8 * (size - 1 - i))
        } else {
            byte << (8 * i)
        };
    }
    v
}

/// Write a `size`-byte field at `off` (bytes past the end are dropped).
fn put(b: &mut [u8], off: usize, size: usize, big: bool, v: u64) {
    for i in 0..size {
        if let Some(slot) = b.get_mut(off.wrapping_add(i)) {
            let shift = if big { 8 * (size - 1 - i) } else { 8 * i };
            *slot = (v >> shift) as u8;
        }
    }
}

/// File header fields as (offset, size): e_shoff, e_shnum, e_shstrndx, e_shentsize, e_phnum,
/// e_phoff, e_type, e_machine, EI_CLASS, EI_DATA.
const HEADER_FIELDS: [(usize, usize); 10] = [
    (40, 8),
    (60, 2),
    (62, 2),
    (58, 2),
    (56, 2),
    (32, 8),
    (16, 2),
    (18, 2),
    (4, 1),
    (5, 1),
];

/// Section header fields as (offset, size): name, type, flags, offset, size, link, info,
/// align, entsize.
const SECTION_FIELDS: [(usize, usize); 9] = [
    (0, 4),
    (4, 4),
    (8, 8),
    (24, 8),
    (32, 8),
    (40, 4),
    (44, 4),
    (48, 8),
    (56, 8),
];

/// Fields of a structure as (offset, size).
type Fields = &'static [(usize, usize)];

/// Entry fields of a table section, by `sh_type`; with the entry size.
fn entry_fields(sh_type: u64) -> Option<(usize, Fields)> {
    match sh_type {
        // SHT_SYMTAB: st_name, st_info, st_other, st_shndx, st_value, st_size.
        2 => Some((24, &[(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)])),
        // SHT_RELA: r_offset, r_info (type half, symbol half, whole), r_addend.
        4 => Some((24, &[(0, 8), (8, 4), (12, 4), (8, 8), (16, 8)])),
        // SHT_REL: r_offset, r_info halves.
        9 => Some((16, &[(0, 8), (8, 4), (12, 4)])),
        // SHT_GROUP and SHT_SYMTAB_SHNDX: words.
        17 | 18 => Some((4, &[(0, 4)])),
        _ => None,
    }
}

/// One byte-level mutation of `b`; `donor` (another object, or `b` itself) supplies spliced
/// bytes. Returns what was done.
pub fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>, donor: &[u8]) -> String {
    if b.len() < 64 {
        let pos = rng.below(b.len() + 1);
        b.insert(pos.min(b.len()), rng.next_u64() as u8);
        return format!("insert a byte at {pos:#x} of a {}-byte file", b.len() - 1);
    }
    let big = b[5] == 2;
    let shoff = get(b, 40, 8, big) as usize;
    let shnum = get(b, 60, 2, big) as usize;
    match rng.below(11) {
        0 => {
            let (off, size) = *rng.pick(&HEADER_FIELDS);
            let v = value(rng, get(b, off, size, big));
            put(b, off, size, big, v);
            format!("file header field at {off:#x} = {v:#x}")
        }
        1 | 2 if shnum > 0 => {
            let (off, size) = *rng.pick(&SECTION_FIELDS);
            let sec = rng.below(shnum);
            let at = shoff.wrapping_add(sec * 64 + off);
            let v = value(rng, get(b, at, size, big));
            put(b, at, size, big, v);
            format!("section header [{sec}] field at {off:#x} = {v:#x}")
        }
        3 | 4 if shnum > 0 => {
            // An entry of a symbol, relocation, group or extended index table.
            let tables: Vec<(usize, usize, Fields)> = (0..shnum)
                .filter_map(|sec| {
                    let hdr = shoff.wrapping_add(sec * 64);
                    entry_fields(get(b, hdr.wrapping_add(4), 4, big))
                        .map(|(entsize, fields)| (sec, entsize, fields))
                })
                .collect();
            if tables.is_empty() {
                return "no table sections: unchanged".into();
            }
            let (sec, entsize, fields) = *rng.pick(&tables);
            let hdr = shoff.wrapping_add(sec * 64);
            let start = get(b, hdr.wrapping_add(24), 8, big);
            let size = get(b, hdr.wrapping_add(32), 8, big);
            let count = (size / entsize as u64).clamp(1, 1 << 32) as usize;
            let entry = rng.below(count);
            let (off, len) = *rng.pick(fields);
            let at = (start as usize).wrapping_add(entry.wrapping_mul(entsize) + off);
            let v = value(rng, get(b, at, len, big));
            put(b, at, len, big, v);
            format!("section [{sec}] entry {entry} field at {off:#x} = {v:#x}")
        }
        5 => {
            let len = if rng.one_in(2) {
                rng.below(b.len())
            } else {
                b.len().saturating_sub(1 + rng.below(64))
            };
            b.truncate(len);
            format!("truncate to {len:#x} bytes")
        }
        6 => {
            let size = *rng.pick(&[1usize, 2, 4, 8]);
            let off = rng.below(b.len()) & !(size - 1);
            let v = value(rng, get(b, off, size, big));
            put(b, off, size, big, v);
            format!("{size}-byte word at {off:#x} = {v:#x}")
        }
        7 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let bit = rng.below(b.len() * 8);
                b[bit / 8] ^= 1 << (bit % 8);
            }
            format!("{n} bit flips")
        }
        8 => {
            let off = rng.below(b.len());
            let v = *rng.pick(&[0u8, 1, 0x7f, 0x80, 0xfe, 0xff]);
            let end = (off + 1 + rng.below(4)).min(b.len());
            b[off..end].fill(v);
            format!("bytes {off:#x}..{end:#x} = {v:#x}")
        }
        _ if !donor.is_empty() => {
            let from = rng.below(donor.len());
            let len = (1 + rng.below(256)).min(donor.len() - from);
            let to = rng.below(b.len());
            let chunk = &donor[from..from + len];
            if rng.one_in(4) && b.len() + len <= MAX_INPUT {
                b.splice(to..to, chunk.iter().copied());
                format!("insert {len} donor bytes from {from:#x} at {to:#x}")
            } else {
                let end = (to + len).min(b.len());
                b[to..end].copy_from_slice(&chunk[..end - to]);
                format!(
                    "overwrite {:#x} bytes at {to:#x} with donor bytes from {from:#x}",
                    end - to
                )
            }
        }
        _ => {
            let off = rng.below(b.len());
            b[off] = rng.next_u64() as u8;
            format!("random byte at {off:#x}")
        }
    }
}

/// One field-aware mutation of the model `obj`. Returns what was changed.
pub fn mutate_object(obj: &mut ElfObject<'_>, rng: &mut Rng) -> String {
    let syms: Vec<SymbolId> = obj.symbol_ids().to_vec();
    let secs: Vec<SectionId> = obj.section_ids().to_vec();
    if secs.is_empty() {
        return "no sections: unchanged".into();
    }
    let any_sec = |rng: &mut Rng| secs[rng.below(secs.len())];
    match rng.below(15) {
        0 | 1 if !syms.is_empty() => {
            let id = syms[rng.below(syms.len())];
            let as_value = rng.one_in(2);
            let s = obj.symbol_mut(id);
            if as_value {
                s.value = value(rng, s.value);
                format!("symbol {} value {:#x}", s.name_lossy(), s.value)
            } else {
                s.size = value(rng, s.size);
                format!("symbol {} size {:#x}", s.name_lossy(), s.size)
            }
        }
        2 if !syms.is_empty() => {
            let id = syms[rng.below(syms.len())];
            let target = any_sec(rng);
            let pick = rng.below(4);
            let s = obj.symbol_mut(id);
            match pick {
                0 => {
                    s.place = *rng.pick(&[
                        SymbolPlace::Section(target),
                        SymbolPlace::Undefined,
                        SymbolPlace::Absolute,
                        SymbolPlace::Common,
                        SymbolPlace::Reserved(klpforge_elf::SHN_LIVEPATCH),
                    ]);
                    format!("symbol {} place {:?}", s.name_lossy(), s.place)
                }
                1 => {
                    s.st_info = (s.st_info & 0xf0) | rng.below(7) as u8;
                    format!("symbol {} type {}", s.name_lossy(), s.kind())
                }
                2 => {
                    s.set_bind(rng.below(3) as u8);
                    format!("symbol {} bind {}", s.name_lossy(), s.bind())
                }
                _ => {
                    s.st_info = rng.next_u64() as u8;
                    s.st_other = rng.next_u64() as u8;
                    format!(
                        "symbol {} info {:#x} other {:#x}",
                        s.name_lossy(),
                        s.st_info,
                        s.st_other
                    )
                }
            }
        }
        3 => {
            let s = obj.section_mut(any_sec(rng));
            s.sh_addralign = value(rng, s.sh_addralign);
            format!("section {} align {:#x}", s.name_lossy(), s.sh_addralign)
        }
        4 => {
            let s = obj.section_mut(any_sec(rng));
            s.sh_entsize = value(rng, s.sh_entsize);
            format!("section {} entsize {:#x}", s.name_lossy(), s.sh_entsize)
        }
        5 => {
            let s = obj.section_mut(any_sec(rng));
            let v = value(rng, s.size());
            match &mut s.data {
                SectionData::NoBits { size } => *size = v,
                SectionData::Bytes(bytes) => {
                    // Growth is capped: the point is a size near the contents' end.
                    let len = v.min(bytes.len() as u64 + 4096) as usize;
                    let mut owned = bytes.to_vec();
                    owned.resize(len, 0);
                    *bytes = Cow::Owned(owned);
                }
                _ => return format!("section {}: generated table, unchanged", s.name_lossy()),
            }
            format!("section {} size {:#x}", s.name_lossy(), s.size())
        }
        6 => {
            const FLAGS: [u64; 10] = [
                0x1, 0x2, 0x4, 0x10, 0x20, 0x40, 0x80, 0x200, 0x400, 0x10_0000,
            ];
            let flag = *rng.pick(&FLAGS);
            let s = obj.section_mut(any_sec(rng));
            s.sh_flags ^= flag;
            format!("section {} flags ^ {flag:#x}", s.name_lossy())
        }
        7 => {
            let target = any_sec(rng);
            let pick = rng.below(3);
            let s = obj.section_mut(any_sec(rng));
            match pick {
                0 => {
                    s.link = Link::Section(target);
                    format!("section {} link to another section", s.name_lossy())
                }
                1 => {
                    s.info = Info::Section(target);
                    format!("section {} info to another section", s.name_lossy())
                }
                _ => {
                    s.link = Link::None;
                    s.info = Info::None;
                    format!("section {} link and info cleared", s.name_lossy())
                }
            }
        }
        _ => mutate_relocation(obj, &secs, &syms, rng),
    }
}

/// Change one relocation entry (offset, type, addend or symbol), or drop, duplicate or swap
/// entries.
fn mutate_relocation(
    obj: &mut ElfObject<'_>,
    secs: &[SectionId],
    syms: &[SymbolId],
    rng: &mut Rng,
) -> String {
    let rel: Vec<SectionId> = secs
        .iter()
        .copied()
        .filter(|&id| obj.section(id).relocations().is_some_and(|r| !r.is_empty()))
        .collect();
    if rel.is_empty() {
        return "no relocations: unchanged".into();
    }
    let id = rel[rng.below(rel.len())];
    let pick = rng.below(7);
    let symbol = (!syms.is_empty() && !rng.one_in(8)).then(|| syms[rng.below(syms.len())]);
    let s = obj.section_mut(id);
    let name = s.name_lossy().into_owned();
    let SectionData::Relocations { entries, .. } = &mut s.data else {
        unreachable!("filtered on relocations")
    };
    let entries = entries.to_mut();
    let n = rng.below(entries.len());
    let other = rng.below(entries.len());
    let r = &mut entries[n];
    match pick {
        0 | 1 => r.offset = value(rng, r.offset),
        2 => r.r_type = value(rng, u64::from(r.r_type)) as u32,
        3 => r.addend = value(rng, r.addend as u64) as i64,
        4 => r.symbol = symbol,
        5 => {
            entries.remove(n);
            return format!("{name} entry {n} removed");
        }
        _ => {
            if rng.one_in(2) {
                let copy = entries[n];
                entries.insert(other, copy);
                return format!("{name} entry {n} duplicated at {other}");
            }
            entries.swap(n, other);
            return format!("{name} entries {n} and {other} swapped");
        }
    }
    let r = entries[n];
    format!(
        "{name} entry {n}: offset {:#x} type {:#x} addend {:#x} symbol {:?}",
        r.offset, r.r_type, r.addend, r.symbol
    )
}

/// A mutated copy of `seed`: either one to three byte-level mutations, or one or two
/// field-aware mutations of the parsed model written back by the ELF writer (sometimes
/// followed by a byte-level one). `donor` feeds splices. What was done is appended to `log`.
pub fn mutate_input(rng: &mut Rng, seed: &[u8], donor: &[u8], log: &mut Vec<String>) -> Vec<u8> {
    if rng.one_in(2) {
        if let Some(mut bytes) = field_aware(rng, seed, log) {
            if rng.one_in(4) {
                let what = mutate_bytes(rng, &mut bytes, donor);
                log.push(what);
            }
            return bytes;
        }
    }
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let what = mutate_bytes(rng, &mut bytes, donor);
        log.push(what);
    }
    bytes
}

/// Parse `seed`, mutate the model and write it back; `None` when the seed does not parse or
/// four attempts all produced models the writer refuses.
fn field_aware(rng: &mut Rng, seed: &[u8], log: &mut Vec<String>) -> Option<Vec<u8>> {
    for _ in 0..4 {
        let mut obj = parse(seed).ok()?;
        let what: Vec<String> = (0..1 + rng.below(2))
            .map(|_| mutate_object(&mut obj, rng))
            .collect();
        if let Ok(bytes) = write(&obj) {
            log.extend(what.into_iter().map(|w| format!("model: {w}")));
            return Some(bytes);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_put_round_trip() {
        let mut b = vec![0u8; 16];
        put(&mut b, 2, 4, true, 0x0102_0304);
        assert_eq!(&b[2..6], &[1, 2, 3, 4]);
        assert_eq!(get(&b, 2, 4, true), 0x0102_0304);
        put(&mut b, 8, 2, false, 0xabcd);
        assert_eq!(get(&b, 8, 2, false), 0xabcd);
        // Out of range reads zeros and writes nothing.
        put(&mut b, usize::MAX, 8, false, u64::MAX);
        assert_eq!(get(&b, 15, 4, false), 0);
    }

    #[test]
    fn byte_mutations_stay_bounded() {
        let mut rng = Rng::new(3);
        let seed = crate::seeds::builtin_objects().remove(0).bytes;
        for _ in 0..2000 {
            let mut b = seed.clone();
            for _ in 0..3 {
                mutate_bytes(&mut rng, &mut b, &seed);
            }
            assert!(b.len() <= seed.len() + 3 * 256);
        }
    }
}
