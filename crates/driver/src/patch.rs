//! Unified diffs: parsing into files and hunks, and printing back.
//!
//! The parser keeps everything it does not interpret (the text before the first file, `diff`
//! and `index` lines, `\ No newline at end of file` markers) so a patch prints back exactly.

use crate::error::Result;

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    /// ` text`: in both versions.
    Context(String),
    /// `-text`: only in the original.
    Removed(String),
    /// `+text`: only in the patched version.
    Added(String),
    /// `\ No newline at end of file`, kept verbatim.
    Marker(String),
}

/// One hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// First original line (1-based; 0 for an empty original).
    pub old_start: u64,
    /// First patched line.
    pub new_start: u64,
    /// The text after the second `@@` (function context), including its leading space.
    pub section: String,
    /// The lines.
    pub lines: Vec<HunkLine>,
}

impl Hunk {
    /// Original line count, from the lines.
    pub fn old_count(&self) -> u64 {
        self.lines
            .iter()
            .filter(|l| matches!(l, HunkLine::Context(_) | HunkLine::Removed(_)))
            .count() as u64
    }

    /// Patched line count, from the lines.
    pub fn new_count(&self) -> u64 {
        self.lines
            .iter()
            .filter(|l| matches!(l, HunkLine::Context(_) | HunkLine::Added(_)))
            .count() as u64
    }
}

/// The changes to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// Header lines before `---` (`diff --git ...`, `index ...`, mode lines).
    pub header: Vec<String>,
    /// The `--- ` line, without the prefix.
    pub old_path: String,
    /// The `+++ ` line, without the prefix.
    pub new_path: String,
    /// The hunks.
    pub hunks: Vec<Hunk>,
}

impl FilePatch {
    /// The path of the patched file with one leading component (`b/`) stripped, as
    /// `patch -p1` sees it; `None` for a deletion.
    pub fn target(&self) -> Option<String> {
        strip_p1(&self.new_path)
    }

    /// The path of the original file, `-p1` style; `None` for a new file.
    pub fn source(&self) -> Option<String> {
        strip_p1(&self.old_path)
    }
}

/// A `---`/`+++` path as `patch -p1` reads it (timestamp and first component dropped), or
/// `None` for `/dev/null`.
fn strip_p1(path: &str) -> Option<String> {
    let raw = path.split('\t').next().unwrap_or("");
    if raw == "/dev/null" {
        return None;
    }
    Some(
        raw.split_once('/')
            .map_or(raw, |(_, rest)| rest)
            .to_string(),
    )
}

/// A whole patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// Text before the first file (mail headers, description, klpforge headers).
    pub preamble: Vec<String>,
    /// Files in order.
    pub files: Vec<FilePatch>,
    /// Whether the input ended with a newline.
    pub trailing_newline: bool,
}

fn parse_range(s: &str) -> Option<u64> {
    let start = s.split(',').next()?;
    start.parse().ok()
}

fn parse_hunk_header(line: &str) -> Option<(u64, u64, String)> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, rest) = rest.split_once(" @@")?;
    Some((parse_range(old)?, parse_range(new)?, rest.to_string()))
}

/// Parse a unified diff.
pub fn parse(text: &str) -> Result<Patch> {
    let trailing_newline = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut patch = Patch {
        preamble: Vec::new(),
        files: Vec::new(),
        trailing_newline,
    };
    let mut pending_header: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("--- ") && lines.get(i + 1).is_some_and(|l| l.starts_with("+++ ")) {
            let mut file = FilePatch {
                header: std::mem::take(&mut pending_header),
                old_path: line[4..].to_string(),
                new_path: lines[i + 1][4..].to_string(),
                hunks: Vec::new(),
            };
            i += 2;
            while i < lines.len() && lines[i].starts_with("@@ ") {
                let (old_start, new_start, section) =
                    parse_hunk_header(lines[i]).ok_or_else(|| {
                        format!("line {}: malformed hunk header '{}'", i + 1, lines[i])
                    })?;
                let header = lines[i];
                let counts = header[3..].split(" @@").next().unwrap_or("");
                let count = |part: &str| -> u64 {
                    part.split_once(',')
                        .map_or(1, |(_, c)| c.parse().unwrap_or(1))
                };
                let mut parts = counts.split(' ');
                let old_count = parts.next().map_or(1, |p| count(&p[1..]));
                let new_count = parts.next().map_or(1, |p| count(&p[1..]));
                i += 1;
                let mut hunk = Hunk {
                    old_start,
                    new_start,
                    section,
                    lines: Vec::new(),
                };
                let (mut seen_old, mut seen_new) = (0, 0);
                while i < lines.len()
                    && (seen_old < old_count || seen_new < new_count || lines[i].starts_with('\\'))
                {
                    let l = lines[i];
                    let (kind, body) = l.split_at(l.len().min(1));
                    match kind {
                        " " | "" => {
                            hunk.lines.push(HunkLine::Context(body.to_string()));
                            seen_old += 1;
                            seen_new += 1;
                        }
                        "-" => {
                            hunk.lines.push(HunkLine::Removed(body.to_string()));
                            seen_old += 1;
                        }
                        "+" => {
                            hunk.lines.push(HunkLine::Added(body.to_string()));
                            seen_new += 1;
                        }
                        "\\" => hunk.lines.push(HunkLine::Marker(l.to_string())),
                        _ => {
                            return Err(format!(
                                "line {}: unexpected line inside a hunk of {}: '{l}'",
                                i + 1,
                                file.new_path
                            )
                            .into())
                        }
                    }
                    i += 1;
                }
                if seen_old != old_count || seen_new != new_count {
                    return Err(format!(
                        "hunk '{header}' of {}: expected {old_count} original and {new_count} new lines, found {seen_old} and {seen_new}",
                        file.new_path
                    ).into());
                }
                file.hunks.push(hunk);
            }
            patch.files.push(file);
            continue;
        }
        if patch.files.is_empty() && !line.starts_with("diff ") && pending_header.is_empty() {
            patch.preamble.push(line.to_string());
        } else {
            pending_header.push(line.to_string());
        }
        i += 1;
    }
    if !pending_header.is_empty() {
        // Trailing text after the last file (a signature, say): keep it with the last file.
        match patch.files.last_mut() {
            Some(_) => patch.files.push(FilePatch {
                header: pending_header,
                old_path: String::new(),
                new_path: String::new(),
                hunks: Vec::new(),
            }),
            None => patch.preamble.extend(pending_header),
        }
    }
    Ok(patch)
}

fn range(start: u64, count: u64) -> String {
    if count == 1 {
        start.to_string()
    } else {
        format!("{start},{count}")
    }
}

/// Print a patch, with hunk headers computed from the hunk lines.
pub fn print(patch: &Patch) -> String {
    let mut out = String::new();
    for l in &patch.preamble {
        out.push_str(l);
        out.push('\n');
    }
    for f in &patch.files {
        for l in &f.header {
            out.push_str(l);
            out.push('\n');
        }
        if f.old_path.is_empty() && f.new_path.is_empty() {
            continue;
        }
        out.push_str(&format!("--- {}\n+++ {}\n", f.old_path, f.new_path));
        for h in &f.hunks {
            out.push_str(&format!(
                "@@ -{} +{} @@{}\n",
                range(h.old_start, h.old_count()),
                range(h.new_start, h.new_count()),
                h.section
            ));
            for l in &h.lines {
                match l {
                    HunkLine::Context(s) => {
                        out.push(' ');
                        out.push_str(s);
                    }
                    HunkLine::Removed(s) => {
                        out.push('-');
                        out.push_str(s);
                    }
                    HunkLine::Added(s) => {
                        out.push('+');
                        out.push_str(s);
                    }
                    HunkLine::Marker(s) => out.push_str(s),
                }
                out.push('\n');
            }
        }
    }
    if !patch.trailing_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}
