//! The diff phases one at a time (analyze → checksum → correlate → select, and reference
//! resolution), on small objects gcc compiles at test time for the host (x86_64). The
//! end-to-end fixtures (`crates/cli/tests/diff_fixtures.rs`) prove the whole differ; these
//! pin what each phase itself decides, so a regression names its phase.

use klpforge_diff::analyze::ObjInfo;
use klpforge_diff::checksum::{compute, Checksums, Identity, LineSums, Sites};
use klpforge_diff::correlate::{correlate, Twins};
use klpforge_diff::refs::Target;
use klpforge_diff::select::{select, Selection};
use klpforge_diff::DiffOptions;
use klpforge_elf::{ElfFile, ElfObject, SymbolId};
use klpforge_testkit::{compile_c_source, toolchain, ScratchDir};

/// Kernel-like flags: each function and object in its own section.
const FLAGS: &[&str] = &["-O2", "-ffunction-sections", "-fdata-sections", "-fno-pic"];

/// Compile `source` for the host into an object file and parse it (leaked: tests only).
fn object(name: &str, source: &str) -> &'static ElfObject<'static> {
    let tc = toolchain("x86_64").expect("the host gcc (x86_64) is required");
    let scratch = Box::leak(Box::new(ScratchDir::new("diff-phases").unwrap()));
    let path = compile_c_source(&tc, source, name, scratch.path(), FLAGS).unwrap();
    let file: &'static ElfFile = Box::leak(Box::new(ElfFile::open(&path).unwrap()));
    Box::leak(Box::new(file.parse().unwrap()))
}

/// Compile each of `sources` for the host and link them with `ld -r` into one object (as
/// kbuild makes `vmlinux.o`), parsed (leaked: tests only).
fn linked(name: &str, sources: &[&str]) -> &'static ElfObject<'static> {
    let tc = toolchain("x86_64").expect("the host gcc (x86_64) is required");
    let scratch = Box::leak(Box::new(ScratchDir::new("diff-phases").unwrap()));
    let units: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            compile_c_source(&tc, source, &format!("{name}-{i}"), scratch.path(), FLAGS).unwrap()
        })
        .collect();
    let inputs: Vec<&std::path::Path> = units.iter().map(|u| u.as_path()).collect();
    let path = tc.link(&scratch.path().join(format!("{name}.o")), true, &inputs);
    let file: &'static ElfFile = Box::leak(Box::new(ElfFile::open(&path).unwrap()));
    Box::leak(Box::new(file.parse().unwrap()))
}

fn info(obj: &'static ElfObject<'static>) -> ObjInfo<'static, 'static> {
    ObjInfo::new(
        obj,
        klpforge_arch::for_machine(obj.header.e_machine, false).unwrap(),
    )
}

fn id(info: &ObjInfo<'_, '_>, name: &str) -> SymbolId {
    info.obj
        .symbol_by_name(name.as_bytes())
        .unwrap_or_else(|| panic!("no symbol {name}"))
}

/// The three phases up to the selection, as `diff` runs them.
fn phases(o: &ObjInfo<'_, '_>, p: &ObjInfo<'_, '_>) -> (Twins, Checksums, Checksums, Selection) {
    let (osites, psites) = (Sites::new(o), Sites::new(p));
    let (on, pn) = (
        compute(o, &osites, Identity::Names),
        compute(p, &psites, Identity::Names),
    );
    let twins = correlate(o, p, &on, &pn).unwrap();
    let identity = |patched| Identity::Twins {
        twins: &twins,
        patched,
    };
    let os = compute(o, &osites, identity(false));
    let ps = compute(p, &psites, identity(true));
    let lines = (
        LineSums::new(o, &osites, identity(false)),
        LineSums::new(p, &psites, identity(true)),
    );
    let sel = select(
        o,
        p,
        &os,
        &ps,
        (&lines.0, &lines.1),
        &twins,
        &DiffOptions::default(),
    );
    (twins, os, ps, sel)
}

#[test]
fn checksums_ignore_layout_and_see_meaning() {
    // Two bodies alike but for the function's name and place; a third differs by one constant.
    let obj = object(
        "sums",
        "int first(int x) { return x * 3 + 1; }\n\
         int pad(int x) { return x - 7; }\n\
         int second(int x) { return x * 3 + 1; }\n\
         int third(int x) { return x * 3 + 2; }\n",
    );
    let i = info(obj);
    let sums = compute(&i, &Sites::new(&i), Identity::Names);
    let s = |n: &str| sums.full[id(&i, n).index()];
    assert_eq!(s("first"), s("second"), "position and name are not content");
    assert_ne!(s("first"), s("third"), "a changed immediate is");
}

#[test]
fn line_numbers_alone_change_only_the_full_checksum() {
    let src = |blank: &str| {
        format!(
            "void __might_sleep(const char *file, int line);\nvolatile int slept;\n{blank}\
             void sleepy(void) {{ __might_sleep(\"f.c\", __LINE__); slept = 1; }}\n"
        )
    };
    let (o, p) = (
        info(object("lines", &src(""))),
        info(object("lines", &src("\n\n"))),
    );
    let (osites, psites) = (Sites::new(&o), Sites::new(&p));
    let (os, ps) = (
        compute(&o, &osites, Identity::Names),
        compute(&p, &psites, Identity::Names),
    );
    let (a, b) = (id(&o, "sleepy"), id(&p, "sleepy"));
    assert_ne!(os.full[a.index()], ps.full[b.index()], "the line moved");
    let (ol, pl) = (
        LineSums::new(&o, &osites, Identity::Names),
        LineSums::new(&p, &psites, Identity::Names),
    );
    assert_eq!(ol.noline(a), pl.noline(b), "only the line moved");
    // A changed constant changes both.
    let q = info(object(
        "lines",
        &src("\n\n").replace("slept = 1", "slept = 2"),
    ));
    let qsites = Sites::new(&q);
    let ql = LineSums::new(&q, &qsites, Identity::Names);
    assert_ne!(
        ol.noline(a),
        ql.noline(id(&q, "sleepy")),
        "a constant changed"
    );
}

#[test]
fn correlation_pairs_renumbered_statics_by_their_users() {
    // gcc numbers same-named statics in order: the patch puts a new one first, so the
    // original `hits.0` of `count_a` becomes `hits.1`.
    let orig = object(
        "statics",
        "int count_a(void) { static int hits; return ++hits; }\n\
         int count_b(void) { static int hits; return hits += 2; }\n",
    );
    let patched = object(
        "statics",
        "int count_new(void) { static int hits; return hits += 5; }\n\
         int count_a(void) { static int hits; return ++hits; }\n\
         int count_b(void) { static int hits; return hits += 2; }\n",
    );
    let (o, p) = (info(orig), info(patched));
    let (twins, _, _, sel) = phases(&o, &p);
    // Each original static pairs with the patched static its (unchanged) user refers to.
    for user in ["count_a", "count_b"] {
        let used = |i: &ObjInfo<'_, '_>| -> SymbolId {
            let f = id(i, user);
            let sec = i.obj.symbol(f).section().unwrap();
            i.relocations(sec)
                .iter()
                .find_map(|r| match r.target {
                    Target::Symbol { sym, .. } if i.sym(sym).name.starts_with("hits") => Some(sym),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(twins.of_orig(used(&o)), Some(used(&p)), "{user}'s static");
    }
    assert!(sel.changed.is_empty(), "nothing of the original changed");
    let new: Vec<&str> = sel.new_functions.iter().map(|&f| p.sym(f).name).collect();
    assert_eq!(new, ["count_new"]);
}

#[test]
fn selection_finds_changed_and_new_and_refuses_changed_data() {
    let orig = object(
        "select",
        "int limit = 10;\n\
         static int helper(int x) { return x + 1; }\n\
         int check(int x) { return helper(x) < limit; }\n\
         int steady(int x) { return x ^ 5; }\n",
    );
    let patched = object(
        "select",
        "int limit = 12;\n\
         static int __attribute__((noinline)) clamp(int x) { return x > 99 ? 99 : x; }\n\
         static int helper(int x) { return x + 1; }\n\
         int check(int x) { return helper(clamp(x)) < limit; }\n\
         int steady(int x) { return x ^ 5; }\n",
    );
    let (o, p) = (info(orig), info(patched));
    let (_, _, _, sel) = phases(&o, &p);
    let changed: Vec<&str> = sel.changed.iter().map(|&(f, _)| p.sym(f).name).collect();
    assert_eq!(changed, ["check"]);
    let new: Vec<&str> = sel.new_functions.iter().map(|&f| p.sym(f).name).collect();
    assert!(new.iter().any(|n| n.starts_with("clamp")), "{new:?}");
    assert!(
        sel.refusals
            .iter()
            .any(|r| r.symbol == "limit" && r.reason.contains("initialised data")),
        "{:?}",
        sel.refusals
    );
}

#[test]
fn references_resolve_to_strings_and_symbols() {
    let obj = object(
        "refs",
        "extern int puts(const char *);\n\
         int counter;\n\
         int hello(void) { puts(\"hello, world\"); return counter; }\n",
    );
    let i = info(obj);
    let f = id(&i, "hello");
    let sec = i.obj.symbol(f).section().unwrap();
    let targets: Vec<Target> = i.relocations(sec).iter().map(|r| r.target).collect();
    let string = targets.iter().find_map(|t| match *t {
        Target::String { sec, start, .. } => Some(klpforge_diff::refs::string_at(
            i.obj.section(sec).bytes(),
            start.into(),
        )),
        _ => None,
    });
    assert_eq!(string, Some(&b"hello, world"[..]), "{targets:?}");
    for name in ["puts", "counter"] {
        assert!(
            targets
                .iter()
                .any(|t| matches!(*t, Target::Symbol { sym, .. } if i.sym(sym).name == name)),
            "{name}: {targets:?}"
        );
    }
}

#[test]
fn per_site_tables_read_once_answer_as_the_kept_table() {
    // A per-site table (resolved only on demand) referring to functions, one with an addend.
    let obj = object(
        "once",
        "int f(int x) { return x + 1; }\n\
         static int g(int x) { return x * 2; }\n\
         int h(int x) { return g(x) + f(x); }\n\
         void *const sites[] __attribute__((section(\".call_sites\"), used)) =\n\
             { (char *)f + 1, (void *)g, (void *)h, (char *)g + 2 };\n",
    );
    let i = info(obj);
    let sec = i
        .section_named(b".call_sites")
        .expect("the .call_sites section");
    let listed = |rs: &[klpforge_diff::analyze::Reloc]| -> Vec<(u64, Target)> {
        rs.iter().map(|r| (r.offset(), r.target)).collect()
    };
    let ranges = [(0, 8), (8, 24), (4, 20), (24, 40), (0, 64), (16, 16)];
    // Read once before the table is kept, then kept, then read once again (now borrowed).
    for _ in 0..2 {
        let mut visited = Vec::new();
        i.visit_relocations_once(sec, |r| visited.push((r.offset(), r.target)));
        let once: Vec<_> = ranges
            .iter()
            .map(|&(a, b)| listed(&i.relocations_in_once(sec, a, b)))
            .collect();
        let kept = listed(i.relocations(sec));
        assert_eq!(kept.len(), 4);
        assert_eq!(visited, kept);
        for (&(a, b), got) in ranges.iter().zip(once) {
            assert_eq!(got, listed(i.relocations_in(sec, a, b)), "[{a}, {b})");
        }
    }
    let f = id(&i, "f");
    assert_eq!(
        i.relocations(sec)[0].target,
        Target::Symbol { sym: f, offset: 1 }
    );
}

#[test]
fn checksums_of_cyclic_read_only_data_do_not_depend_on_the_order_of_hashing() {
    // Two read-only objects that point to each other are hashed by their contents, entered
    // from each other and from functions; the same source with the definitions in the other
    // order is the same program, so nothing may differ (a cycle is cut where the hashing
    // entered it, never where an earlier symbol happened to enter it).
    let src = |defs: [&str; 4]| {
        format!(
            "struct node {{ const struct node *next; int v; }};\n\
             extern const struct node a, b;\n{}\n",
            defs.join("\n")
        )
    };
    let a = "const struct node a = { &b, 1 };";
    let b = "const struct node b = { &a, 2 };";
    let via_a = "__attribute__((noinline)) int via_a(void) { return a.next->v; }";
    let via_b = "__attribute__((noinline)) int via_b(void) { return b.next->v; }";
    let (o, p) = (
        info(object("cycle1", &src([a, b, via_a, via_b]))),
        info(object("cycle2", &src([b, a, via_b, via_a]))),
    );
    let (_, os, ps, sel) = phases(&o, &p);
    for name in ["a", "b", "via_a", "via_b"] {
        assert_eq!(
            os.full[id(&o, name).index()],
            ps.full[id(&p, name).index()],
            "{name} hashes differently in the reordered source"
        );
    }
    assert!(
        sel.changed.is_empty() && sel.refusals.is_empty(),
        "nothing changed: {:?} {:?}",
        sel.changed,
        sel.refusals
    );
}

/// An absolute symbol (`.set NAME, VALUE` in one unit, referenced from another: `ld -r`
/// keeps the reference as a relocation against it) is its value: a patch that changes only
/// the value changes every function using it (it was "nothing to patch").
#[test]
fn a_changed_absolute_symbol_changes_its_users() {
    let user = "extern char magic_abs[];\n\
                unsigned long get_magic(void) { return (unsigned long)magic_abs; }\n";
    let define = |value: &str| format!("asm(\".globl magic_abs\\n.set magic_abs, {value}\\n\");\n");
    let orig = linked("abs-orig", &[&define("0x1234"), user]);
    let patched = linked("abs-patched", &[&define("0x1235"), user]);
    let (o, p) = (info(orig), info(patched));
    let magic = id(&o, "magic_abs");
    assert_eq!(
        o.obj.symbol(magic).place,
        klpforge_elf::SymbolPlace::Absolute,
        "precondition: an absolute symbol"
    );
    let (_, _, _, sel) = phases(&o, &p);
    let changed: Vec<&str> = sel.changed.iter().map(|&(f, _)| p.sym(f).name).collect();
    assert_eq!(changed, ["get_magic"]);
    // The same value on both sides is no change.
    let again = linked("abs-again", &[&define("0x1234"), user]);
    let (_, _, _, same) = phases(&o, &info(again));
    assert!(same.changed.is_empty(), "{:?}", same.changed);
}
