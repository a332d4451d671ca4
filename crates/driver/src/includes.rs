//! Which source files include a header, directly or through other headers, found by scanning
//! the source tree itself: what a header change needs when no full build left dependency
//! records behind (a prepared kernel). Include paths resolve as kbuild's compiler would see
//! them for the target architecture (`#include "x.h"` beside the file first, then the
//! `include/` and `arch/<arch>/include/` trees and their `uapi/`); an include that resolves
//! nowhere (a directory a Makefile adds with `-I`) matches every header whose path ends with
//! it. The answer may hold a few files too many (kbuild then says they are not built), never
//! one too few.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;

/// Directories of the source tree that hold no kernel code for the target.
const SKIPPED: &[&str] = &[
    ".git",
    "Documentation",
    "LICENSES",
    "samples",
    "scripts",
    "tools",
    "usr",
];

/// One `#include` of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Include {
    path: String,
    quoted: bool,
}

/// The `#include` directives of a C file or header.
fn includes_of(text: &str) -> Vec<Include> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("include") else {
            continue;
        };
        let rest = rest.trim_start();
        let (quoted, close) = match rest.chars().next() {
            Some('"') => (true, '"'),
            Some('<') => (false, '>'),
            _ => continue,
        };
        if let Some(end) = rest[1..].find(close) {
            out.push(Include {
                path: rest[1..1 + end].to_string(),
                quoted,
            });
        }
    }
    out
}

/// Every `.c` and `.h` file of the tree that can matter for `arch` (paths relative to it).
fn source_files(src: &Path, arch: &str) -> Vec<String> {
    let rel = |p: &Path| {
        p.strip_prefix(src)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let walk = walkdir::WalkDir::new(src)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            if !e.file_type().is_dir() {
                return true;
            }
            let name = e.file_name().to_string_lossy();
            let parent = e.path().parent().map(&rel).unwrap_or_default();
            // An object tree inside the source tree (O=build) holds a .config.
            !((e.depth() == 1 && SKIPPED.contains(&name.as_ref()))
                || (parent == "arch" && name != arch)
                || name.starts_with('.')
                || e.path().join(".config").exists())
        });
    let mut out: Vec<String> = walk
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            name.ends_with(".c") || name.ends_with(".h")
        })
        .map(|e| rel(e.path()))
        .collect();
    out.sort();
    out
}

/// The source files (`.c`, relative to `src`) that include one of `headers` (relative to
/// `src`) directly or through other headers, for the kernel architecture `arch` (`x86`,
/// `arm64`, ...).
pub fn sources_including(src: &Path, headers: &BTreeSet<String>, arch: &str) -> BTreeSet<String> {
    let files = source_files(src, arch);
    let known: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let roots = [
        "include".to_string(),
        format!("arch/{arch}/include"),
        "include/uapi".to_string(),
        format!("arch/{arch}/include/uapi"),
        format!("arch/{arch}/include/generated"),
    ];
    // Headers by the ends of their paths, for includes that resolve nowhere.
    let mut by_suffix: HashMap<&str, Vec<&str>> = HashMap::new();
    for f in files.iter().filter(|f| f.ends_with(".h")) {
        let mut rest = f.as_str();
        loop {
            by_suffix.entry(rest).or_default().push(f);
            match rest.find('/') {
                Some(i) => rest = &rest[i + 1..],
                None => break,
            }
        }
    }
    // Every file's includes, read in parallel.
    let parsed: Vec<Vec<Include>> = {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|f| {
                std::fs::read(src.join(f))
                    .map(|t| includes_of(&String::from_utf8_lossy(&t)))
                    .unwrap_or_default()
            })
            .collect()
    };
    // Reverse graph: header -> files that include it.
    let mut included_by: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        let dir = Path::new(f)
            .parent()
            .map(|d| d.to_string_lossy().into_owned());
        // The subsystem a bare `"name.h"` can come from through a Makefile's -I.
        let area: String = f.split('/').take(2).collect::<Vec<_>>().join("/");
        for inc in parsed[i].iter().cloned() {
            let mut targets: Vec<String> = Vec::new();
            if inc.quoted {
                let beside = match &dir {
                    Some(d) if !d.is_empty() => format!("{d}/{}", inc.path),
                    _ => inc.path.clone(),
                };
                let beside = normalize(&beside);
                if known.contains(beside.as_str()) {
                    targets.push(beside);
                }
            }
            if targets.is_empty() {
                for r in &roots {
                    let p = normalize(&format!("{r}/{}", inc.path));
                    if known.contains(p.as_str()) {
                        targets.push(p);
                        break;
                    }
                }
            }
            if targets.is_empty() {
                // Resolved through a directory a Makefile adds: any header ending so (a bare
                // name only within the includer's subsystem).
                let suffix = inc.path.trim_start_matches("./");
                let bare = !suffix.contains('/');
                targets.extend(
                    by_suffix
                        .get(suffix)
                        .into_iter()
                        .flatten()
                        .filter(|h| !bare || h.starts_with(&format!("{area}/")))
                        .map(|s| s.to_string()),
                );
            }
            for t in targets {
                included_by.entry(t).or_default().push(i);
            }
        }
    }
    let mut seen: BTreeSet<String> = headers.clone();
    let mut queue: VecDeque<String> = headers.iter().cloned().collect();
    let mut out = BTreeSet::new();
    while let Some(h) = queue.pop_front() {
        for &i in included_by.get(&h).into_iter().flatten() {
            let f = &files[i];
            if f.ends_with(".c") {
                out.insert(f.clone());
            } else if seen.insert(f.clone()) {
                queue.push_back(f.clone());
            }
        }
    }
    out
}

/// `a/b/../c` -> `a/c`, `./x` -> `x` (no file system access).
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_direct_and_indirect_includers_as_the_compiler_resolves_them() {
        let dir = std::env::temp_dir().join(format!("klpforge-includes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = [
            ("include/linux/a.h", "#include <linux/b.h>\n"),
            ("include/linux/b.h", "int b;\n"),
            ("fs/proc/internal.h", "# include <linux/a.h>\n"),
            ("fs/proc/base.c", "#include \"internal.h\"\n"),
            ("fs/proc/other.c", "#include <linux/kernel.h>\n"),
            ("fs/internal.h", "int fs;\n"),
            ("fs/namei.c", "#include \"internal.h\"\n"),
            ("mm/x.c", "#include \"../fs/proc/internal.h\"\n"),
            ("arch/x86/include/asm/c.h", "#include <linux/b.h>\n"),
            ("arch/x86/kernel/d.c", "#include <asm/c.h>\n"),
            ("arch/arm64/kernel/e.c", "#include <linux/b.h>\n"),
            ("drivers/y/z.c", "#include \"sub/w.h\"\n"),
            ("drivers/y/inc/sub/w.h", "#include <linux/a.h>\n"),
            ("tools/t.c", "#include <linux/b.h>\n"),
        ];
        for (p, text) in files {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let got = |h: &str| {
            sources_including(&dir, &BTreeSet::from([h.to_string()]), "x86")
                .into_iter()
                .collect::<Vec<_>>()
        };
        // Through internal.h and a.h; the x86 header; a -I directory (resolved by suffix);
        // never arm64 or tools.
        assert_eq!(
            got("include/linux/b.h"),
            [
                "arch/x86/kernel/d.c",
                "drivers/y/z.c",
                "fs/proc/base.c",
                "mm/x.c"
            ]
        );
        // fs/namei.c's "internal.h" is fs/internal.h, beside it.
        assert_eq!(got("fs/proc/internal.h"), ["fs/proc/base.c", "mm/x.c"]);
        assert_eq!(got("fs/internal.h"), ["fs/namei.c"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
