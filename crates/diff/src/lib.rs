//! The differencing engine of klpforge.
//!
//! Given the original and the patched build of one object, find exactly which functions
//! changed and extract them, with everything they need, into a diff object. Each phase has its
//! own module, run in this order by [`diff`]:
//!
//! 1. [`analyze`]: per-object facts (section kinds, symbol ranges, scopes, `.cold` parents),
//!    with [`code`] decoding instruction boundaries and [`refs`] resolving relocations.
//! 2. [`checksum`]: position-independent checksums of every function and data object.
//! 3. [`correlate`]: pair each original symbol with its patched twin.
//! 4. [`select`]: changed and new functions; refusals of changes that cannot be live-patched.
//! 5. [`clone`]: build the diff object, turning references into normal or klp relocations
//!    ([`klp`]) and carrying special-section entries ([`special`]).

#![deny(missing_docs)]

pub mod analyze;
pub use analyze::refs;
pub mod checksum;
pub mod clone;
pub mod code;
mod code_bound;
pub mod correlate;
mod fresh;
pub mod klp;
pub mod markers;
pub mod refusal;
pub mod select;
pub mod special;
pub mod stable_name;
pub mod sympos;
pub mod symvers;
pub mod twins;
mod uses;

use klpforge_elf::ElfObject;

pub use clone::{KlpReloc, SpecialStat};
pub use select::{CallbackKind, KlpState, Refusal, Selection};
pub use symvers::Symvers;

/// Options of one diff.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// The object being patched: `vmlinux` or a module name.
    pub objname: String,
    /// Exports of the kernel build.
    pub symvers: Symvers,
    /// Print correlation and cloning decisions on stderr.
    pub debug: bool,
    /// Where `sympos` comes from; without one it is counted in the original object.
    pub sympos: Option<std::sync::Arc<dyn klp::SymposSource>>,
    /// Accept a changed function that no longer uses a function-scope static of the running
    /// kernel (whose state cannot be carried to whatever the patched code uses instead) with
    /// a warning, instead of refusing it.
    pub accept_fresh_statics: bool,
    /// The objects are whole linked images (a kernel's `vmlinux.o`, a module linked with
    /// `ld -r`): every user of their global symbols is in them. Otherwise (one compilation
    /// unit) other objects may read a global symbol's data, so changed global read-only data
    /// is refused rather than given to the patched functions alone.
    pub whole: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            objname: "vmlinux".into(),
            symvers: Symvers::assume_all_vmlinux(),
            debug: false,
            sympos: None,
            accept_fresh_statics: false,
            whole: false,
        }
    }
}

/// Errors that stop a diff (bad input; not refusals).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// The two objects cannot be compared.
    #[error("{0}")]
    Incompatible(String),
    /// Symbols could not be paired without guessing.
    #[error("{}", .0.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("; "))]
    Ambiguous(Vec<correlate::Ambiguity>),
    /// The output could not be built.
    #[error("{0}")]
    Output(String),
}

/// A changed function, as reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangedFunction {
    /// Name in the patched object.
    pub name: String,
    /// Name of the original twin (the function livepatch redirects).
    pub old_name: String,
    /// Why it counts as changed: the first difference found.
    pub reason: String,
}

/// How a diff ended, as the report says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffResult {
    /// `changed`: a diff object was written.
    Changed,
    /// `no-change`: nothing to patch.
    #[default]
    NoChange,
    /// `refused`: changes that cannot be live-patched.
    Refused,
}

/// What one diff found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// The object being patched.
    pub objname: String,
    /// How the diff ended.
    pub result: DiffResult,
    /// Changed functions.
    pub changed_functions: Vec<ChangedFunction>,
    /// New functions.
    pub new_functions: Vec<String>,
    /// New global data.
    pub new_data: Vec<String>,
    /// Functions that differ only in `__LINE__` immediates (not changes).
    pub line_only_functions: Vec<String>,
    /// Defined functions in the output (`__pfx_`/`__cfi_` left out).
    pub output_functions: Vec<String>,
    /// klp relocations created.
    pub klp_relocations: Vec<clone::KlpReloc>,
    /// Special-section entries kept and dropped.
    pub special_sections: Vec<clone::SpecialStat>,
    /// Callbacks found.
    pub callbacks: Vec<String>,
    /// System states declared (`KLPFORGE_STATE`).
    pub states: Vec<KlpState>,
    /// Refusals.
    pub refusals: Vec<Refusal>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// The outcome of a diff.
pub enum Outcome {
    /// Something to patch: the diff object and the report.
    Changed(Box<ElfObject<'static>>, Report),
    /// No functional change.
    NoChange(Report),
    /// Changes that cannot be live-patched.
    Refused(Report),
}

/// Describe the first difference between an original function and its patched twin. A
/// patched reference is named after its original twin, so renumbered names read alike.
fn first_difference(
    o: &analyze::ObjInfo<'_, '_>,
    p: &analyze::ObjInfo<'_, '_>,
    twins: &correlate::Twins,
    osym: klpforge_elf::SymbolId,
    psym: klpforge_elf::SymbolId,
) -> String {
    let os = o.obj.symbol(osym);
    let ps = p.obj.symbol(psym);
    if os.size != ps.size {
        // Keep looking for the first instruction difference; mention the size too.
    }
    let (Some(osec), Some(psec)) = (os.section(), ps.section()) else {
        return "definition changed".into();
    };
    let orig_insns = o
        .code(osec)
        .unwrap_or_default()
        .range(os.value, os.value + os.size);
    let patched_insns = p
        .code(psec)
        .unwrap_or_default()
        .range(ps.value, ps.value + ps.size);
    // An instruction as bytes (relocated fields as `__`) and what its references mean.
    // `patched`: `info` is the patched object, whose references are named after their twins.
    let operands = |info: &analyze::ObjInfo<'_, '_>, patched: bool, sec, insn: &code::CodeInsn| {
        let data = info.obj.section(sec).bytes();
        let end = insn.end();
        let bytes = &data[insn.offset() as usize..end as usize];
        let mut hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut refs = Vec::new();
        for r in info.relocations_in(sec, insn.offset(), end) {
            let off = (r.offset() - insn.offset()) as usize;
            let size = info
                .arch
                .reloc_info(r.r_type)
                .map_or(4, |i| usize::from(i.size));
            for h in hex.iter_mut().skip(off).take(size) {
                *h = "__".into();
            }
            refs.push(match r.target {
                refs::Target::Symbol { sym, offset } => {
                    let name = match twins.of_patched(sym) {
                        Some(t) if patched => &o.sym(t).name,
                        _ => &info.sym(sym).name,
                    };
                    format!("{name}{offset:+#x}")
                }
                refs::Target::String { sec: s, start, .. } => {
                    format!(
                        "\"{}\"",
                        String::from_utf8_lossy(refs::string_at(
                            info.obj.section(s).bytes(),
                            start.into()
                        ))
                        .escape_default()
                    )
                }
                refs::Target::Constant { sec: s, offset } => {
                    format!("{}{offset:+#x}", info.obj.section(s).name_lossy())
                }
                refs::Target::Section { sec: s, offset } => {
                    format!("{}{offset:+#x}", info.obj.section(s).name_lossy())
                }
                refs::Target::Absolute { addend } => format!("abs{addend:+#x}"),
            });
        }
        (hex, refs)
    };
    let describe = |info: &analyze::ObjInfo<'_, '_>, patched: bool, sec, insn: &code::CodeInsn| {
        let (hex, refs) = operands(info, patched, sec, insn);
        let data = info.obj.section(sec).bytes();
        let bytes = &data[insn.offset() as usize..(insn.end()) as usize];
        // Disassembly where available (relocated fields read as zero), else the bytes.
        let mut text = match info.arch.disassemble(bytes, insn.offset()) {
            Some(asm) => format!("{asm}  [{}]", hex.join(" ")),
            None => hex.join(" "),
        };
        if !refs.is_empty() {
            text.push_str(&format!(" -> {}", refs.join(", ")));
        }
        text
    };
    for (i, (a, b)) in orig_insns.iter().zip(patched_insns.iter()).enumerate() {
        // Equal bytes and references at the same offset disassemble alike: only a
        // difference is worth the disassembler.
        if a.offset() == b.offset() && operands(o, false, osec, a) == operands(p, true, psec, b) {
            continue;
        }
        let da = describe(o, false, osec, a);
        let db = describe(p, true, psec, b);
        if da != db {
            return format!(
                "instruction {i} at +{:#x}: {da}  =>  {db}",
                b.offset() - ps.value
            );
        }
    }
    if orig_insns.len() != patched_insns.len() || os.size != ps.size {
        return format!(
            "size {:#x} -> {:#x} ({} -> {} instructions)",
            os.size,
            ps.size,
            orig_insns.len(),
            patched_insns.len()
        );
    }
    if !o.children(osym).is_empty() || !p.children(psym).is_empty() {
        return "its .cold part changed".into();
    }
    "a referenced string, constant or target changed".into()
}

/// Largest section alignment accepted (a 1 MiB boundary; kernel objects use at most a page).
const MAX_ALIGN: u64 = 1 << 20;

/// Reject what no compiler produces and later phases cannot handle safely: a symbol name
/// that is not UTF-8, a defined symbol outside its section or whose end overflows, a
/// section of 4 GiB or more (offsets within a section are kept in 32 bits: a kernel's whole
/// image is smaller), an absurd section alignment, an `.orc_unwind_ip` whose size is not a
/// whole number of entries. The error names the section and symbol.
fn check_object(obj: &ElfObject<'_>) -> Result<(), String> {
    for (_, s) in obj.sections() {
        if s.size() > u64::from(u32::MAX) {
            return Err(format!(
                "section {}: {} bytes: sections of 4 GiB or more are not supported",
                s.name_lossy(),
                s.size()
            ));
        }
        if s.sh_addralign > MAX_ALIGN {
            return Err(format!(
                "section {}: alignment {:#x} is larger than {MAX_ALIGN:#x}",
                s.name_lossy(),
                s.sh_addralign
            ));
        }
        if s.name.as_ref() == b".orc_unwind_ip" && s.size() % 4 != 0 {
            return Err(format!(
                "section .orc_unwind_ip: size {} is not a multiple of its 4-byte entries",
                s.size()
            ));
        }
        if s.name.as_ref() == b".orc_unwind_ip" {
            // One .orc_unwind entry (6 bytes on x86, 8 on LoongArch) per .orc_unwind_ip entry.
            if let Some(u) = obj.section_by_name(b".orc_unwind") {
                let (count, have) = (s.size() / 4, obj.section(u).size());
                if (count == 0) != (have == 0) || (count > 0 && have % count != 0) {
                    return Err(format!(
                        "section .orc_unwind: {have} bytes are not a whole entry for each of the {count} .orc_unwind_ip entries"
                    ));
                }
            }
        }
    }
    for (_, sym) in obj.symbols() {
        if std::str::from_utf8(&sym.name).is_err() {
            return Err(format!(
                "symbol {}: the name is not UTF-8 (no compiler writes such a name)",
                sym.name_lossy()
            ));
        }
        let Some(sec) = sym.section() else { continue };
        if sym.kind() == object::elf::STT_SECTION.0 || sym.kind() == object::elf::STT_FILE.0 {
            continue; // section and file symbols
        }
        let size = obj.section(sec).size();
        let end = sym.value.checked_add(sym.size);
        if sym.value > size || end.is_none_or(|e| e > size) {
            return Err(format!(
                "section {}: symbol {} at {:#x} size {:#x} extends past the section's {size:#x} bytes",
                obj.section(sec).name_lossy(),
                sym.name_lossy(),
                sym.value,
                sym.size
            ));
        }
    }
    Ok(())
}

/// The hash maps of the diff phases: foldhash (hashbrown's own hasher), randomly seeded per
/// process, instead of SipHash, whose cost on names and ids was a tenth of correlation.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The hash sets of the diff phases (see [`HashMap`]).
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Run `a` and `b` side by side for pairs large enough to gain from it ([`side_by_side`]),
/// one after the other for small ones (starting threads costs more than they save).
pub(crate) fn both<A: Send, B: Send>(
    large: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if large {
        rayon::join(a, b)
    } else {
        (a(), b())
    }
}

/// One object's analysis and where its special-section entries apply (the part of their
/// checksums that does not depend on correlation).
fn analyzed<'a, 'd>(
    obj: &'a ElfObject<'d>,
    arch: &'static dyn klpforge_arch::Arch,
) -> (analyze::ObjInfo<'a, 'd>, checksum::Sites) {
    let info = analyze::ObjInfo::new(obj, arch);
    let sites = checksum::Sites::new(&info);
    obj.release_mapping();
    (info, sites)
}

/// Whether a pair of objects is large enough for [`both`] to run phases side by side:
/// together more than 2,000 symbols (a pair of 500 KB objects, about 5,000 symbols, diffs
/// 10-25% faster on two threads; below, starting them costs more than it saves).
pub(crate) fn side_by_side(orig: &ElfObject<'_>, patched: &ElfObject<'_>) -> bool {
    orig.symbol_arena_len() + patched.symbol_arena_len() > 2_000
}

/// Compare the original and patched builds of one object.
pub fn diff(
    orig: &ElfObject<'_>,
    patched: &ElfObject<'_>,
    opts: &DiffOptions,
) -> Result<Outcome, DiffError> {
    let oh = &orig.header;
    let ph = &patched.header;
    if (oh.e_machine, oh.endian, oh.e_type) != (ph.e_machine, ph.endian, ph.e_type) {
        return Err(DiffError::Incompatible(
            "the two objects differ in machine, byte order or file type".into(),
        ));
    }
    if oh.e_type != object::elf::ET_REL.0 {
        return Err(DiffError::Incompatible(
            "only relocatable objects (ET_REL) can be compared".into(),
        ));
    }
    for (which, obj) in [("original", orig), ("patched", patched)] {
        check_object(obj).map_err(|e| DiffError::Incompatible(format!("{which} object: {e}")))?;
    }
    let big_endian = oh.endian == klpforge_elf::Endian::Big;
    let arch = klpforge_arch::for_machine(oh.e_machine, big_endian)
        .ok_or_else(|| DiffError::Incompatible(format!("unsupported machine {}", oh.e_machine)))?;
    // The two objects are analysed and hashed side by side (each phase reads one object).
    let large = side_by_side(orig, patched);
    let started = std::time::Instant::now();
    let phase_done = |phase: &str| {
        log::debug!(
            "time: {phase} done at {:.3} s",
            started.elapsed().as_secs_f64()
        )
    };
    let ((o, osites), (p, psites)) =
        both(large, || analyzed(orig, arch), || analyzed(patched, arch));
    // Checksums by name pair the candidates names alone do not (computed only for those and
    // their users); checksums by twin identity then decide what changed (a renumbered
    // reference hashes equal, a retargeted one differs).
    // The patched object's special sections are indexed for cloning meanwhile (correlation
    // mostly runs on one thread).
    phase_done("analysis");
    let (twins, index) = both(
        large,
        || {
            let (orig_names, patched_names) = (
                checksum::LazySums::new(&o, &osites),
                checksum::LazySums::new(&p, &psites),
            );
            correlate::correlate(&o, &p, &orig_names, &patched_names)
        },
        || clone::SpecialIndex::new(&p),
    );
    let twins = twins.map_err(DiffError::Ambiguous)?;
    // Each phase over the two objects gives back the pages of the files it read (they would
    // otherwise add up, phase after phase, to most of both files).
    let release = || {
        orig.release_mapping();
        patched.release_mapping();
    };
    release();
    phase_done("correlation and special-section index");
    let identity = |patched| checksum::Identity::Twins {
        twins: &twins,
        patched,
    };
    let by_twins = |info, sites, patched| checksum::compute(info, sites, identity(patched));
    let (orig_sums, patched_sums) = both(
        large,
        || by_twins(&o, &osites, false),
        || by_twins(&p, &psites, true),
    );
    if opts.debug {
        for (id, _) in orig.symbols() {
            let name = &o.sym(id).name;
            match twins.of_orig(id) {
                Some(t) if &p.sym(t).name != name => {
                    log::debug!("correlate {name} <-> {}", p.sym(t).name)
                }
                None if !o.sym(id).never_correlate && orig.symbol(id).section().is_some() => {
                    log::debug!("no correlation: {name}")
                }
                _ => {}
            }
        }
    }
    release();
    phase_done("checksums");
    let (orig_lines, patched_lines) = (
        checksum::LineSums::new(&o, &osites, identity(false)),
        checksum::LineSums::new(&p, &psites, identity(true)),
    );
    let sel = select::select(
        &o,
        &p,
        &orig_sums,
        &patched_sums,
        (&orig_lines, &patched_lines),
        &twins,
        opts,
    );
    drop((orig_lines, patched_lines));
    let mut report = Report {
        objname: opts.objname.clone(),
        changed_functions: sel
            .changed
            .iter()
            .map(|&(ps, os)| ChangedFunction {
                name: p.sym(ps).name.to_string(),
                old_name: o.sym(os).name.to_string(),
                reason: first_difference(&o, &p, &twins, os, ps),
            })
            .collect(),
        new_functions: sel
            .new_functions
            .iter()
            .map(|&f| p.sym(f).name.to_string())
            .collect(),
        new_data: sel
            .new_data
            .iter()
            .map(|&d| p.sym(d).name.to_string())
            .collect(),
        line_only_functions: sel.line_only.clone(),
        callbacks: sel
            .callbacks
            .iter()
            .map(|&(k, f)| format!("{}: {}", k.name(), p.sym(f).name))
            .collect(),
        states: sel.states.clone(),
        refusals: sel.refusals.clone(),
        warnings: twins.notes.iter().chain(&sel.warnings).cloned().collect(),
        ..Report::default()
    };
    if !report.refusals.is_empty() {
        report.result = DiffResult::Refused;
        return Ok(Outcome::Refused(report));
    }
    if sel.changed.is_empty()
        && sel.new_functions.is_empty()
        && sel.callbacks.is_empty()
        && sel.states.is_empty()
        && sel.new_data.is_empty()
        && sel.through_callers.is_empty()
    {
        report.result = DiffResult::NoChange;
        return Ok(Outcome::NoChange(report));
    }
    phase_done("selection and report");
    let result = clone::clone(&o, &p, &twins, &sel, opts, &index).map_err(DiffError::Output)?;
    phase_done("cloning");
    // Two large analyses free faster side by side (a kernel's are millions of allocations).
    drop((index, sel, orig_sums, patched_sums, twins));
    both(large, move || drop(o), move || drop(p));
    report.output_functions = result.output_functions;
    report.klp_relocations = result.klp_relocs;
    report.special_sections = result.special;
    report.warnings.extend(result.warnings);
    if !result.refusals.is_empty() {
        report.refusals.extend(result.refusals);
        report.result = DiffResult::Refused;
        return Ok(Outcome::Refused(report));
    }
    report.result = DiffResult::Changed;
    Ok(Outcome::Changed(Box::new(result.obj), report))
}
