//! Field-aware mutation of the differ's input: one field of a real object pair is set to a
//! boundary value (a symbol's value or size, a section's alignment or entry size, a
//! relocation's offset, type or addend; see `klpforge_fuzz::mutate_object`) and the whole
//! differ runs, followed by the writer on whatever it produced. Nothing may panic: bad input
//! is an error or a refusal.
//!
//! Seeds are the peer corpus's object pairs (the test says so and passes trivially when the
//! corpus is absent). `KLPFORGE_DIFF_MUTATIONS` sets the number of executions (default 300).

use std::panic::{catch_unwind, AssertUnwindSafe};

use klpforge_diff::DiffOptions;
use klpforge_elf::read::parse;
use klpforge_fuzz::target::differ_objects;
use klpforge_fuzz::{mutate_object, Rng, Seeds};

#[test]
fn differ_survives_field_mutations() {
    let runs: usize = std::env::var("KLPFORGE_DIFF_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seeds = Seeds::load(klpforge_testkit::corpus_dir().as_deref()).unwrap();
    // Small pairs keep the run short; the large ones add nothing the small ones lack.
    let pairs: Vec<(&str, &[u8], &[u8])> = seeds
        .pairs
        .iter()
        .map(|&(o, p)| (&seeds.objects[o], &seeds.objects[p]))
        .filter(|(o, p)| o.bytes.len() + p.bytes.len() < 400_000)
        .map(|(o, p)| (o.name.as_str(), &o.bytes[..], &p.bytes[..]))
        .collect();
    if pairs.is_empty() {
        eprintln!("field mutation: no corpus pairs (set KLPFORGE_CORPUS): nothing to do");
        return;
    }
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let opts = DiffOptions::default();
    let mut panics = Vec::new();
    for i in 0..runs {
        let (name, a, b) = pairs[i % pairs.len()];
        let orig = parse(a).expect("seed parses");
        let mut patched = parse(b).expect("seed parses");
        let what = mutate_object(&mut patched, &mut rng);
        let result = catch_unwind(AssertUnwindSafe(|| differ_objects(&orig, &patched, &opts)));
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
