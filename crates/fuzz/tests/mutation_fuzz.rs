//! A short, deterministic fuzz run: mutated objects must never make the ELF layer panic, and
//! whatever it accepts and writes must read back.
//!
//! Seeds are the real kernel objects of the shared corpus when present, plus objects built in
//! memory. Mutations (see `klpforge_fuzz::mutate_bytes`) aim at the structures that carry
//! indices and offsets: the file header, section headers, symbol table entries and relocation
//! entries, with boundary values. `KLPFORGE_FUZZ_ITERATIONS` sets the number of executions
//! (default 2500).

use klpforge_fuzz::target::{reader, Verdict};
use klpforge_fuzz::{mutate_bytes, Rng, Seeds};

#[test]
fn mutated_objects_never_panic() {
    let all = Seeds::load(klpforge_testkit::corpus_dir().as_deref()).unwrap();
    // Small objects mutate faster; take a spread of them (the built-in ones are small).
    let seeds: Vec<_> = all.smaller_than(100_000).step_by(3).collect();
    let iterations: usize = std::env::var("KLPFORGE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for i in 0..iterations {
        let seed = seeds[i % seeds.len()];
        let mut bytes = seed.bytes.clone();
        for _ in 0..1 + rng.below(3) {
            mutate_bytes(&mut rng, &mut bytes, &seed.bytes);
        }
        // `reader` parses, walks, dumps, rewrites and re-reads; it asserts one-line errors
        // and an unchanged dump.
        match std::panic::catch_unwind(|| reader(&bytes)) {
            Ok(Verdict::Rejected) => rejected += 1,
            Ok(_) => accepted += 1,
            Err(_) => {
                let saved = std::env::temp_dir().join(format!("klpforge-fuzz-{i}.o"));
                let _ = std::fs::write(&saved, &bytes);
                panic!(
                    "iteration {i} on a mutation of {} panicked; input saved as {}",
                    seed.name,
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
