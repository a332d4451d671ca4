//! Compiler output checked against binutils: for a small C file compiled with the host and
//! cross gcc (each configuration skipped with a message when its compiler is missing):
//!
//! * `decode_lengths` over every executable section finds the instruction starts that the
//!   matching `objdump -d` prints;
//! * every relocation type is known and named as `readelf -rW` names it;
//! * every code relocation's bytes lie inside one instruction.

mod common;

use common::*;
use klpforge_arch::{for_machine, Arch};
use std::collections::BTreeSet;
use std::path::Path;

const SAMPLE_C: &str = r#"
#include <stddef.h>
extern int ext_fn(int);
extern long ext_data[];
struct ops { int (*f)(int); const char *name; };
static struct ops table[] = { { ext_fn, "ext" }, { 0, "none" } };
static __thread int tls_counter;
long global_sum;
double scale = 1.5;

int classify(int x)
{
	switch (x) {
	case 0: return ext_fn(1);
	case 1: return ext_fn(x * 3) + 7;
	case 2: return (int)ext_data[x];
	case 3: return x << 4;
	case 4: return -x;
	case 5: return ext_fn(ext_fn(x));
	case 6: return 99;
	case 7: return x ^ 0x5555;
	default: return 0;
	}
}

long sum(const long *p, size_t n)
{
	long s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i] * (long)i;
	global_sum += s;
	return s;
}

double mix(double a, int b)
{
	return a * scale + b / 3.0;
}

int call_ops(int i)
{
	tls_counter++;
	if (table[i & 1].f)
		return table[i & 1].f(i) + table[i & 1].name[0];
	return __builtin_popcount(i) + tls_counter;
}

void copy(char *dst, const char *src, size_t n)
{
	while (n--)
		*dst++ = *src++;
	__atomic_fetch_add(&global_sum, 1, __ATOMIC_SEQ_CST);
}

long big_constant(long x)
{
	return x * 0x123456789abcdefL + 0x7fff00001234L;
}

static int __attribute__((noinline, cold)) rarely(int x)
{
	return ext_fn(x + 1000);
}

int maybe(int x)
{
	if (__builtin_expect(x == 12345, 0))
		return rarely(x);
	return x + 1;
}
"#;

struct Config {
    /// `e_machine` of the objects this compiler makes.
    arch_name: &'static str,
    cc: &'static str,
    objdump: &'static str,
    flags: &'static [&'static str],
    /// Instruction lengths that must occur, so the check exercises the interesting cases.
    must_see_lengths: &'static [usize],
}

const CONFIGS: &[Config] = &[
    Config {
        arch_name: "x86_64",
        cc: "x86_64-linux-gnu-gcc",
        objdump: "x86_64-linux-gnu-objdump",
        flags: &["-O2"],
        must_see_lengths: &[1, 2, 3, 5, 7],
    },
    Config {
        arch_name: "x86_64",
        cc: "x86_64-linux-gnu-gcc",
        objdump: "x86_64-linux-gnu-objdump",
        flags: &["-O2", "-fPIC", "-mavx2"],
        must_see_lengths: &[1, 2, 3, 5, 7],
    },
    Config {
        arch_name: "aarch64",
        cc: "aarch64-linux-gnu-gcc",
        objdump: "aarch64-linux-gnu-objdump",
        flags: &["-O2", "-fPIC"],
        must_see_lengths: &[4],
    },
    Config {
        arch_name: "s390x",
        cc: "s390x-linux-gnu-gcc",
        objdump: "s390x-linux-gnu-objdump",
        flags: &["-O2"],
        must_see_lengths: &[2, 4, 6],
    },
    Config {
        arch_name: "s390x",
        cc: "s390x-linux-gnu-gcc",
        objdump: "s390x-linux-gnu-objdump",
        flags: &["-O2", "-fPIC", "-march=z14"],
        must_see_lengths: &[2, 4, 6],
    },
    Config {
        arch_name: "ppc64le",
        cc: "powerpc64le-linux-gnu-gcc",
        objdump: "powerpc64le-linux-gnu-objdump",
        flags: &["-O2"],
        must_see_lengths: &[4],
    },
    Config {
        arch_name: "ppc64le",
        cc: "powerpc64le-linux-gnu-gcc",
        objdump: "powerpc64le-linux-gnu-objdump",
        flags: &["-O2", "-mcpu=power10"],
        must_see_lengths: &[4, 8],
    },
];

fn check_config(config: &Config, readelf: &str, dir: &Path, index: usize) -> bool {
    let what = format!("{} {:?}", config.cc, config.flags);
    let Some(cc) = tool(config.cc, &what) else {
        return false;
    };
    let Some(objdump) = tool(config.objdump, &what) else {
        return false;
    };
    let src = dir.join("sample.c");
    std::fs::write(&src, SAMPLE_C).unwrap();
    let obj = dir.join(format!("sample-{index}.o"));
    let mut args: Vec<&str> = config.flags.to_vec();
    args.extend([
        "-ffunction-sections",
        "-c",
        src.to_str().unwrap(),
        "-o",
        obj.to_str().unwrap(),
    ]);
    run(&cc, &args);

    let elf = read_elf(&obj);
    let arch: &dyn Arch = for_machine(elf.machine, elf.big_endian).expect("unsupported machine");
    assert_eq!(arch.name(), config.arch_name, "{what}");

    // Instruction boundaries.
    let dump = objdump_boundaries(&objdump, &obj, &[]);
    assert!(
        dump.bad_sections.is_empty(),
        "{what}: objdump: {:?}",
        dump.bad_sections
    );
    let mut lengths = BTreeSet::new();
    let mut sections = 0;
    for section in elf
        .sections
        .iter()
        .filter(|s| s.executable && !s.data.is_empty())
    {
        let insns = arch
            .decode_lengths(&section.data)
            .unwrap_or_else(|e| panic!("{what} {}: {e}", section.name));
        let ours: Vec<u64> = insns.iter().map(|i| i.offset as u64).collect();
        let theirs = dump
            .starts
            .get(&section.name)
            .unwrap_or_else(|| panic!("{what}: objdump skipped {}", section.name));
        assert_eq!(
            &ours, theirs,
            "{what} {}: boundaries differ from objdump",
            section.name
        );
        lengths.extend(insns.iter().map(|i| i.len));
        sections += 1;

        for &(offset, r_type) in &section.relocs {
            let info = arch.reloc_info(r_type).unwrap();
            let (start, end) = (offset as usize, offset as usize + usize::from(info.size));
            if info.size == 0 {
                continue;
            }
            let insn = insns
                .iter()
                .find(|i| i.offset <= start && start < i.offset + i.len)
                .unwrap();
            assert!(
                end <= insn.offset + insn.len,
                "{what} {}: {} at {start:#x} runs past {insn:?}",
                section.name,
                info.name
            );
        }
    }
    assert!(sections > 0, "{what}: no code");
    for len in config.must_see_lengths {
        assert!(
            lengths.contains(len),
            "{what}: no {len}-byte instruction in {lengths:?}"
        );
    }

    // Relocation names.
    let printed = readelf_relocs(readelf, &obj);
    assert!(!printed.is_empty());
    for r in &printed {
        let info = arch
            .reloc_info(r.r_type)
            .unwrap_or_else(|| panic!("{what}: type {} unknown", r.r_type));
        assert_eq!(Some(info.name.to_string()), r.name, "{what}");
    }
    eprintln!(
        "{what}: {sections} code sections agree with objdump; lengths {lengths:?}; {} relocations named",
        printed.len()
    );
    true
}

#[test]
fn compiled_code_agrees_with_objdump_and_readelf() {
    let Some(readelf) = tool("readelf", "compiled-code checks") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ran = CONFIGS
        .iter()
        .enumerate()
        .filter(|(i, c)| check_config(c, &readelf, dir.path(), *i))
        .count();
    eprintln!("{ran} of {} configurations ran", CONFIGS.len());
}
