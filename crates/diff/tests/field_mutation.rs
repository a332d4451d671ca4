//! Field-aware mutation of the differ's input: one field of a real object pair is set to a
//! boundary value (a symbol's value or size, a section's alignment or entry size, a
//! relocation's offset, type or addend) and the whole differ runs, followed by the writer on
//! whatever it produced. Nothing may panic: bad input is an error or a refusal.
//!
//! Seeds are the peer corpus's object pairs (the test says so and passes trivially when the
//! corpus is absent). `KLPFORGE_DIFF_MUTATIONS` sets the number of executions (default 300).

use std::panic::{catch_unwind, AssertUnwindSafe};

use klpforge_diff::{diff, DiffOptions, Outcome};
use klpforge_elf::read::parse;
use klpforge_elf::{ElfObject, SectionData, SectionId, SymbolId};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const BOUNDARY: &[u64] = &[
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
    0xfff,
    0x1000,
    0xffff_ffff,
    1 << 40,
    u64::MAX / 2,
    u64::MAX - 1,
    u64::MAX,
];

/// Set one field of `obj` to a boundary value (or a nearby one); returns what was changed.
fn mutate(obj: &mut ElfObject<'_>, rng: &mut Rng) -> String {
    let value = match rng.below(3) {
        0 => BOUNDARY[rng.below(BOUNDARY.len())],
        1 => rng.next() % 0x10000,
        _ => rng.next(),
    };
    let syms: Vec<SymbolId> = obj.symbol_ids().to_vec();
    let secs: Vec<SectionId> = obj.section_ids().to_vec();
    match rng.below(7) {
        0 | 1 if !syms.is_empty() => {
            let id = syms[rng.below(syms.len())];
            let s = obj.symbol_mut(id);
            if rng.below(2) == 0 {
                s.value = value;
                format!("symbol {} value {value:#x}", s.name_lossy())
            } else {
                s.size = value;
                format!("symbol {} size {value:#x}", s.name_lossy())
            }
        }
        2 => {
            let id = secs[rng.below(secs.len())];
            let s = obj.section_mut(id);
            s.sh_addralign = value;
            format!("section {} align {value:#x}", s.name_lossy())
        }
        3 => {
            let id = secs[rng.below(secs.len())];
            let s = obj.section_mut(id);
            s.sh_entsize = value;
            format!("section {} entsize {value:#x}", s.name_lossy())
        }
        _ => {
            let rel: Vec<SectionId> = secs
                .iter()
                .copied()
                .filter(|&id| obj.section(id).relocations().is_some_and(|r| !r.is_empty()))
                .collect();
            if rel.is_empty() {
                return "nothing".into();
            }
            let id = rel[rng.below(rel.len())];
            let pick = rng.below(3);
            let n = rng.next() as usize;
            let s = obj.section_mut(id);
            let name = s.name_lossy().into_owned();
            let SectionData::Relocations { entries, .. } = &mut s.data else {
                unreachable!()
            };
            let len = entries.len();
            let r = &mut entries[n % len];
            match pick {
                0 => r.offset = value,
                1 => r.r_type = value as u32,
                _ => r.addend = value as i64,
            }
            format!("{name} relocation field {pick} = {value:#x}")
        }
    }
}

#[test]
fn differ_survives_field_mutations() {
    let runs: usize = std::env::var("KLPFORGE_DIFF_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut pairs = Vec::new();
    for (_, path) in klpforge_testkit::corpus_objects() {
        let name = path.to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".ORIG.o") else {
            continue;
        };
        let patched = std::path::PathBuf::from(format!("{stem}.PATCHED.o"));
        let (Ok(a), Ok(b)) = (std::fs::read(&path), std::fs::read(&patched)) else {
            continue;
        };
        // Small pairs keep the run short; the large ones add nothing the small ones lack.
        if a.len() + b.len() < 400_000 {
            pairs.push((name, a, b));
        }
    }
    if pairs.is_empty() {
        eprintln!("field mutation: no corpus pairs (set KLPFORGE_CORPUS): nothing to do");
        return;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let opts = DiffOptions::default();
    let mut panics = Vec::new();
    for i in 0..runs {
        let (name, a, b) = &pairs[i % pairs.len()];
        let orig = parse(a).expect("seed parses");
        let mut patched = parse(b).expect("seed parses");
        let what = mutate(&mut patched, &mut rng);
        let result = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(Outcome::Changed(out, _)) = diff(&orig, &patched, &opts) {
                let _ = klpforge_elf::write::write(&out);
            }
        }));
        if result.is_err() {
            panics.push(format!("{name}: {what}"));
        }
    }
    eprintln!(
        "field mutation: {runs} executions over {} pairs, {} panics",
        pairs.len(),
        panics.len()
    );
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
}
