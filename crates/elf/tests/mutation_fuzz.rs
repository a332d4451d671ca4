//! A short, deterministic fuzz run: mutated objects must never make the ELF layer panic, and
//! whatever it accepts and writes must read back.
//!
//! Seeds are the real kernel objects of the shared corpus when present, plus objects built in
//! memory. Mutations aim at the structures that carry indices and offsets: the file header,
//! section headers, symbol table entries and relocation entries, with boundary values.

use std::path::PathBuf;

use klpforge_elf::read::parse;
use klpforge_elf::write::write;
use klpforge_elf::Dump;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    0x7f,
    0x80,
    0xff,
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
    u64::MAX,
    u64::MAX - 7,
];

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let corpus = std::env::var_os("KLPFORGE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/kpatch-unit")
        });
    if corpus.is_dir() {
        for arch in ["x86_64", "aarch64", "loongarch64"] {
            let Ok(rd) = std::fs::read_dir(corpus.join(arch)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            // Small objects mutate faster; take a spread of them.
            files.retain(|p| p.metadata().map(|m| m.len() < 100_000).unwrap_or(false));
            for p in files.into_iter().step_by(3) {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    } else {
        eprintln!(
            "skipping corpus seeds: {} not found (set KLPFORGE_CORPUS)",
            corpus.display()
        );
    }
    out
}

fn get(b: &[u8], off: usize, size: usize, big: bool) -> u64 {
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

fn put(b: &mut [u8], off: usize, size: usize, big: bool, v: u64) {
    for i in 0..size {
        if let Some(slot) = b.get_mut(off.wrapping_add(i)) {
            let shift = if big { 8 * (size - 1 - i) } else { 8 * i };
            *slot = (v >> shift) as u8;
        }
    }
}

/// Mutate one field: a header field, a section header field, or a random aligned word.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.len() < 64 {
        return;
    }
    let big = b[5] == 2;
    let shoff = get(b, 40, 8, big) as usize;
    let shnum = get(b, 60, 2, big) as usize;
    let value = if rng.below(3) == 0 {
        rng.next()
    } else {
        INTERESTING[rng.below(INTERESTING.len())]
    };
    match rng.below(6) {
        0 => {
            // File header: e_shoff, e_shnum, e_shstrndx, e_shentsize, e_phnum, e_phoff.
            let fields: [(usize, usize); 6] =
                [(40, 8), (60, 2), (62, 2), (58, 2), (56, 2), (32, 8)];
            let (off, size) = fields[rng.below(fields.len())];
            put(b, off, size, big, value);
        }
        1 | 2 if shnum > 0 => {
            // Section header fields: name, type, flags, offset, size, link, info, align, entsize.
            let fields: [(usize, usize); 9] = [
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
            let (off, size) = fields[rng.below(fields.len())];
            let sec = rng.below(shnum);
            put(b, shoff.wrapping_add(sec * 64 + off), size, big, value);
        }
        3 => {
            // Truncate.
            let len = rng.below(b.len());
            b.truncate(len);
        }
        _ => {
            // A random aligned field anywhere (hits symbols and relocations).
            let size = [1usize, 2, 4, 8][rng.below(4)];
            let off = rng.below(b.len()) & !(size - 1);
            put(b, off, size, big, value);
        }
    }
}

#[test]
fn mutated_objects_never_panic() {
    let mut seeds = seeds();
    // Objects built in memory keep the test meaningful without the corpus.
    let small = {
        let mut obj = klpforge_elf::ElfObject::new(klpforge_elf::FileHeader {
            endian: klpforge_elf::Endian::Big,
            os_abi: 0,
            abi_version: 0,
            e_type: 1,
            e_machine: 22,
            e_flags: 0,
            e_entry: 0,
            program_headers: 0,
        });
        let t = obj.add_section(klpforge_elf::Section::new_bytes(
            &b".text"[..],
            1,
            6,
            4,
            vec![7u8; 16],
        ));
        obj.add_symbol(klpforge_elf::Symbol {
            name: std::borrow::Cow::Borrowed(b"f"),
            st_info: 0x12,
            st_other: 0,
            place: klpforge_elf::SymbolPlace::Section(t),
            value: 0,
            size: 16,
        });
        write(&obj).unwrap()
    };
    seeds.push(("built-in big-endian".into(), small));
    let iterations: usize = std::env::var("KLPFORGE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for i in 0..iterations {
        let (name, seed) = &seeds[i % seeds.len()];
        let mut bytes = seed.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut bytes);
        }
        let outcome = std::panic::catch_unwind(|| match parse(&bytes) {
            Ok(obj) => {
                let text = Dump::new(&obj).to_text();
                assert!(!text.is_empty());
                if obj.header.program_headers == 0 {
                    if let Ok(out) = write(&obj) {
                        let back = parse(&out)
                            .unwrap_or_else(|e| panic!("written output does not read back: {e}"));
                        assert_eq!(Dump::new(&back).to_text(), text, "dump changed by rewrite");
                    }
                }
                true
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line error: {msg}");
                false
            }
        });
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => {
                let saved = std::env::temp_dir().join(format!("klpforge-fuzz-{i}.o"));
                let _ = std::fs::write(&saved, &bytes);
                panic!(
                    "iteration {i} on a mutation of {name} panicked; input saved as {}",
                    saved.display()
                )
            }
        }
    }
    eprintln!("{iterations} mutations: {accepted} accepted, {rejected} rejected, no panic");
    assert!(
        rejected > 0,
        "mutations never produced an error: the test is not exercising anything"
    );
}
