//! The fuzz targets: what one execution runs on its (mutated) input. A target may return any
//! verdict; a panic is the only failure, and the harness catches it.

use klpforge_diff::{diff, DiffOptions, Outcome};
use klpforge_elf::read::parse;
use klpforge_elf::write::write;
use klpforge_elf::{Dump, ElfObject, Info, Link};

/// What an execution ended in (panics aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The ELF reader refused an input.
    Rejected,
    /// The reader accepted the input (and the walk and rewrite went through).
    Accepted,
    /// The differ returned an error.
    DiffError,
    /// The differ refused the patch.
    Refused,
    /// The differ found no change.
    NoChange,
    /// The differ produced an output object.
    Changed,
}

impl Verdict {
    /// Every verdict, in reporting order.
    pub const ALL: [Verdict; 6] = [
        Verdict::Rejected,
        Verdict::Accepted,
        Verdict::DiffError,
        Verdict::Refused,
        Verdict::NoChange,
        Verdict::Changed,
    ];

    /// The verdict's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Rejected => "rejected by the reader",
            Verdict::Accepted => "accepted",
            Verdict::DiffError => "diff errors",
            Verdict::Refused => "refused",
            Verdict::NoChange => "no change",
            Verdict::Changed => "changed",
        }
    }

    /// Position in [`Verdict::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The reader target: parse `bytes`; on success walk every section, symbol and relocation,
/// dump the object, write it back (when it has no program headers) and check that the
/// output reads back to the same dump. Every error message must be one line.
pub fn reader(bytes: &[u8]) -> Verdict {
    let obj = match parse(bytes) {
        Ok(obj) => obj,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            return Verdict::Rejected;
        }
    };
    std::hint::black_box(walk(&obj));
    let dump = Dump::new(&obj);
    assert!(!dump.to_text().is_empty());
    if obj.header.program_headers == 0 {
        match write(&obj) {
            Ok(out) => {
                let back = parse(&out)
                    .unwrap_or_else(|e| panic!("written output does not read back: {e}"));
                let again = Dump::new(&back);
                if again != dump {
                    let (text, now) = (dump.to_text(), again.to_text());
                    let (n, was, now) = first_difference(&text, &now).unwrap_or((0, "", ""));
                    panic!("dump changed by rewrite at line {n}: `{was}` became `{now}`");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line writer error: {msg}");
            }
        }
    }
    Verdict::Accepted
}

/// Visit everything the model holds, following every identity, and fold it into a number.
fn walk(obj: &ElfObject<'_>) -> u64 {
    let mut acc = obj.section_count() as u64 ^ obj.symbol_count() as u64;
    let mut mix = |v: u64| acc = acc.rotate_left(5) ^ v;
    for (id, s) in obj.sections() {
        mix(s.name.len() as u64 ^ s.sh_type as u64 ^ s.size() ^ s.bytes().len() as u64);
        mix(s.name_lossy().len() as u64 ^ s.is_alloc() as u64 ^ s.is_exec() as u64);
        if let Link::Section(t) = s.link {
            mix(obj.section(t).sh_type as u64);
        }
        match s.info {
            Info::Section(t) => mix(obj.section(t).sh_flags),
            Info::Symbol(y) => mix(obj.symbol(y).value),
            Info::Raw(v) => mix(v as u64),
            Info::None => {}
        }
        if let Some(t) = s.relocation_target() {
            mix(obj.section(t).size());
        }
        for r in s.relocations().unwrap_or(&[]) {
            mix(r.offset ^ r.r_type as u64 ^ r.addend as u64);
            if let Some(y) = r.symbol {
                mix(obj.symbol(y).name.len() as u64);
            }
        }
        if let klpforge_elf::SectionData::Group { members, flags } = &s.data {
            mix(*flags as u64);
            for &m in members {
                mix(obj.section(m).sh_flags);
            }
        }
        // The lookups by scan are linear: a few sections are enough to exercise them.
        if id.index() < 8 {
            mix(obj.relocation_sections_for(id).len() as u64);
            mix(obj.section_symbol(id).map_or(0, |s| s.index() as u64));
        }
    }
    for (_, y) in obj.symbols() {
        mix(y.value ^ y.size ^ y.st_info as u64 ^ y.st_other as u64 ^ y.visibility() as u64);
        mix(y.name_lossy().len() as u64 ^ y.is_local() as u64);
        if let Some(sec) = y.section() {
            mix(obj.section(sec).size());
        }
    }
    mix(obj.symbol_table().map_or(0, |s| s.index() as u64));
    mix(obj.section_indices().len() as u64 ^ obj.symbol_indices().len() as u64);
    acc
}

/// The first line that differs between two texts: (1-based number, old line, new line).
fn first_difference<'a>(a: &'a str, b: &'a str) -> Option<(usize, &'a str, &'a str)> {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return None,
            (x, y) if x == y => continue,
            (x, y) => return Some((n, x.unwrap_or("<end>"), y.unwrap_or("<end>"))),
        }
    }
    None
}

/// The differ target: parse both objects and run [`differ_objects`] when both parse.
pub fn differ(orig: &[u8], patched: &[u8], opts: &DiffOptions) -> Verdict {
    match (parse(orig), parse(patched)) {
        (Ok(o), Ok(p)) => differ_objects(&o, &p, opts),
        _ => Verdict::Rejected,
    }
}

/// The whole differ on two models, then the ELF writer on whatever it produced.
pub fn differ_objects(
    orig: &ElfObject<'_>,
    patched: &ElfObject<'_>,
    opts: &DiffOptions,
) -> Verdict {
    match diff(orig, patched, opts) {
        Ok(Outcome::Changed(out, _)) => {
            let _ = write(&out);
            Verdict::Changed
        }
        Ok(Outcome::NoChange(_)) => Verdict::NoChange,
        Ok(Outcome::Refused(_)) => Verdict::Refused,
        Err(_) => Verdict::DiffError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_finds_the_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(first_difference("a\nb\n", "a\nc\n"), Some((2, "b", "c")));
        assert_eq!(first_difference("a\n", "a\nc\n"), Some((2, "<end>", "c")));
    }

    #[test]
    fn reader_accepts_and_rejects() {
        let seed = crate::seeds::builtin_objects().remove(0).bytes;
        assert_eq!(reader(&seed), Verdict::Accepted);
        assert_eq!(reader(&seed[..40]), Verdict::Rejected);
        assert_eq!(reader(b""), Verdict::Rejected);
    }
}
