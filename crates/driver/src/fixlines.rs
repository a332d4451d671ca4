//! Keeping `__LINE__` stable below an edit.
//!
//! An edit that adds or removes lines shifts the line number of everything below it, and
//! every `WARN()`, `BUG()`, `might_sleep()` or printk index entry there would then differ
//! from the running kernel: noise at best, unpatchable data changes at worst. After each
//! block of added or removed lines in a C source or header, [`fix_lines`] inserts a
//! `#line N` directive before the next unchanged line, N being that line's number in the
//! original file, so the compiler numbers the rest of the file as before. Hunk headers are
//! recomputed (counts, and the start lines of later hunks), so `patch -p1` and `git apply`
//! both accept the result. Files other than `.c`/`.h` are left alone, and no directive is
//! placed where it would break a backslash-continued line.

use crate::patch::{FilePatch, HunkLine, Patch};

/// Whether a file gets `#line` directives.
pub fn is_c_source(path: &str) -> bool {
    path.ends_with(".c") || path.ends_with(".h")
}

/// Insert `#line` directives into the hunks of C files; returns how many were inserted.
pub fn fix_lines(patch: &mut Patch) -> usize {
    let mut total = 0;
    for file in &mut patch.files {
        if file.target().as_deref().is_some_and(is_c_source) && file.source().is_some() {
            total += fix_file(file);
        }
    }
    total
}

fn fix_file(file: &mut FilePatch) -> usize {
    let mut inserted_total: u64 = 0;
    let mut count = 0;
    for hunk in &mut file.hunks {
        hunk.new_start += inserted_total;
        let mut out = Vec::with_capacity(hunk.lines.len() + 4);
        let mut old_line = hunk.old_start;
        let mut in_change = false;
        // The last line of the patched text emitted so far (for backslash continuations).
        let mut last_new: Option<String> = None;
        for line in std::mem::take(&mut hunk.lines) {
            match &line {
                HunkLine::Context(text) => {
                    if in_change {
                        // Not inside a backslash-continued line: wait for the next
                        // context line that starts a line of its own.
                        let continued = last_new
                            .as_deref()
                            .is_some_and(|l| l.trim_end().ends_with('\\'));
                        if !continued {
                            out.push(HunkLine::Added(format!("#line {old_line}")));
                            inserted_total += 1;
                            count += 1;
                            in_change = false;
                        }
                    }
                    last_new = Some(text.clone());
                    old_line += 1;
                }
                HunkLine::Removed(_) => {
                    in_change = true;
                    old_line += 1;
                }
                HunkLine::Added(text) => {
                    in_change = true;
                    last_new = Some(text.clone());
                }
                HunkLine::Marker(_) => {}
            }
            out.push(line);
        }
        hunk.lines = out;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{parse, print};

    const PATCH: &str = "\
E2E-EXPECT: patched

diff --git a/fs/x.c b/fs/x.c
--- a/fs/x.c
+++ b/fs/x.c
@@ -7,6 +7,7 @@ static int f(void)
 
 static int g(struct seq_file *m, void *v)
 {
+\tseq_puts(m, \"x\");
 \tseq_puts(m, saved);
 \tseq_putc(m, '\\n');
 \treturn 0;
@@ -20,5 +21,4 @@ static int h(void)
 {
 \tint a;
-\tint b;
 \treturn a;
 }
diff --git a/Documentation/x.txt b/Documentation/x.txt
--- a/Documentation/x.txt
+++ b/Documentation/x.txt
@@ -1,2 +1,3 @@
 a
+b
 c
";

    #[test]
    fn directives_follow_changes_and_headers_are_recounted() {
        let mut p = parse(PATCH).unwrap();
        assert_eq!(fix_lines(&mut p), 2);
        let text = print(&p);
        assert!(text.starts_with("E2E-EXPECT: patched\n"));
        assert!(
            text.contains("@@ -7,6 +7,8 @@ static int f(void)\n"),
            "{text}"
        );
        assert!(
            text.contains("+\tseq_puts(m, \"x\");\n+#line 10\n \tseq_puts(m, saved);"),
            "{text}"
        );
        // The second hunk starts one line later (one more directive before it).
        assert!(
            text.contains("@@ -20,5 +22,5 @@ static int h(void)\n"),
            "{text}"
        );
        assert!(
            text.contains("-\tint b;\n+#line 23\n \treturn a;"),
            "{text}"
        );
        // Text files are untouched.
        assert!(text.contains("@@ -1,2 +1,3 @@\n a\n+b\n c\n"), "{text}");
    }

    #[test]
    fn no_directive_inside_a_continued_macro() {
        let src = "--- a/x.h\n+++ b/x.h\n@@ -1,3 +1,4 @@\n #define M(x) \\\n+\tfoo(x); \\\n \tbar(x)\n int y;\n";
        let mut p = parse(src).unwrap();
        assert_eq!(fix_lines(&mut p), 1);
        assert_eq!(
            print(&p),
            "--- a/x.h\n+++ b/x.h\n@@ -1,3 +1,5 @@\n #define M(x) \\\n+\tfoo(x); \\\n \tbar(x)\n+#line 3\n int y;\n"
        );
    }

    #[test]
    fn unchanged_patch_prints_back_exactly() {
        let p = parse(PATCH).unwrap();
        assert_eq!(print(&p), PATCH);
    }
}
