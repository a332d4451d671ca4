//! Seed objects: the peer corpus (`NAME.ORIG.o` / `NAME.PATCHED.o` pairs per architecture,
//! found as the tests find it, see [`klpforge_testkit::corpus_dir`]) and a few objects built
//! in memory, so the reader has a big-endian seed and something to chew on without a corpus.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, Result};
use klpforge_elf::read::parse;
use klpforge_elf::write::write;
use klpforge_elf::{ElfObject, Endian, FileHeader, Section, Symbol, SymbolPlace};

/// One seed object.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Where it comes from: a corpus path, or `built-in ...`.
    pub name: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// The seeds of a campaign.
#[derive(Debug, Clone, Default)]
pub struct Seeds {
    /// Every object (reader seeds); pair members included.
    pub objects: Vec<Seed>,
    /// Original/patched pairs (differ seeds), as indices into `objects`.
    pub pairs: Vec<(usize, usize)>,
}

impl Seeds {
    /// The corpus at `corpus` (every object, its pairs) plus the built-in objects; objects the
    /// ELF reader rejects are left out (a seed must be valid to be mutated meaningfully).
    pub fn load(corpus: Option<&Path>) -> Result<Seeds> {
        let mut seeds = Seeds::default();
        if let Some(dir) = corpus {
            let pairing = klpforge_testkit::pair_objects(dir)
                .with_context(|| format!("listing corpus {}", dir.display()))?;
            for pair in &pairing.pairs {
                let orig = seeds.add_file(&pair.orig)?;
                let patched = seeds.add_file(&pair.patched)?;
                if let (Some(o), Some(p)) = (orig, patched) {
                    seeds.pairs.push((o, p));
                }
            }
            for path in &pairing.unmatched {
                seeds.add_file(path)?;
            }
        }
        seeds.objects.extend(builtin_objects());
        Ok(seeds)
    }

    /// Read and add one corpus object; `None` (with a note) when it does not parse.
    fn add_file(&mut self, path: &Path) -> Result<Option<usize>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if let Err(e) = parse(&bytes) {
            eprintln!("fuzz: seed {} left out: {e}", path.display());
            return Ok(None);
        }
        self.objects.push(Seed {
            name: path.display().to_string(),
            bytes,
        });
        Ok(Some(self.objects.len() - 1))
    }

    /// The objects whose bytes are at most `max_len` long, in order.
    pub fn smaller_than(&self, max_len: usize) -> impl Iterator<Item = &Seed> {
        self.objects.iter().filter(move |s| s.bytes.len() < max_len)
    }
}

/// Objects built in memory: a small big-endian (s390x) relocatable object with one function.
pub fn builtin_objects() -> Vec<Seed> {
    let mut obj = ElfObject::new(FileHeader {
        endian: Endian::Big,
        os_abi: 0,
        abi_version: 0,
        e_type: 1,
        e_machine: 22,
        e_flags: 0,
        e_entry: 0,
        program_headers: 0,
    });
    let text = obj.add_section(Section::new_bytes(&b".text"[..], 1, 6, 4, vec![7u8; 16]));
    obj.add_symbol(Symbol {
        name: Cow::Borrowed(b"f"),
        st_info: 0x12,
        st_other: 0,
        place: SymbolPlace::Section(text),
        value: 0,
        size: 16,
    });
    vec![Seed {
        name: "built-in big-endian".into(),
        bytes: write(&obj).expect("the built-in object is writable"),
    }]
}
