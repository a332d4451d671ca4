//! Changed `struct` and `union` definitions in the patched sources.
//!
//! A live patch replaces code; the objects the running kernel already has (allocated,
//! embedded in others, static) keep the layout they were made with. A patch that adds,
//! removes, resizes or reorders a member would have the new code read and write the old
//! objects at the new offsets. The object code cannot show it (a heap object has no symbol to
//! compare), so the patch text is read: each changed source's definitions are compared before
//! and after, and every definition that differs beyond comments and spacing is named with the
//! remedy. This is a warning, not a refusal: a change inside a definition that keeps every
//! offset (an annotation, a member renamed) is safe, and only the author knows.

use std::collections::BTreeMap;

/// The names of the `struct`/`union` definitions of C source `before` whose bodies differ in
/// `after` (comments and spacing aside), as `struct NAME` / `union NAME`, sorted. Definitions
/// only one side has are not changes of existing layouts.
pub fn changed_definitions(before: &str, after: &str) -> Vec<String> {
    let (a, b) = (definitions(before), definitions(after));
    a.iter()
        .filter(|(name, body)| b.get(*name).is_some_and(|other| other != *body))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every named `struct`/`union` definition of `source` (and `typedef struct { ... } name`),
/// keyed by `struct NAME` / `union NAME` / the typedef name, with its body's tokens.
fn definitions(source: &str) -> BTreeMap<String, String> {
    let code = without_comments(source);
    let tokens = tokenize(&code);
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < tokens.len() {
        let kw = tokens[i].as_str();
        if kw != "struct" && kw != "union" {
            i += 1;
            continue;
        }
        // `struct NAME {` or `struct {` (a typedef names it after the body).
        let (name, open) = match (tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(n), Some(b)) if b == "{" && is_identifier(n) => (Some(n.clone()), i + 2),
            (Some(b), _) if b == "{" => (None, i + 1),
            _ => {
                i += 1;
                continue;
            }
        };
        let Some(close) = matching_brace(&tokens, open) else {
            break;
        };
        let body = tokens[open + 1..close].join(" ");
        let typedef = i > 0 && tokens[i - 1] == "typedef";
        let key = match name {
            Some(n) => Some(format!("{kw} {n}")),
            None if typedef => tokens
                .get(close + 1)
                .filter(|t| is_identifier(t))
                .map(|t| t.to_string()),
            None => None,
        };
        if let Some(key) = key {
            out.entry(key).or_insert(body);
        }
        i = open + 1;
    }
    out
}

fn is_identifier(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The index of the `}` closing the `{` at `open`.
fn matching_brace(tokens: &[String], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// `source` with comments replaced by a space (string and character literals kept whole).
fn without_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for d in chars.by_ref() {
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
                out.push(' ');
            }
            '/' if chars.peek() == Some(&'/') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' | '\'' => {
                out.push(c);
                let mut escaped = false;
                for d in chars.by_ref() {
                    out.push(d);
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c || d == '\n' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Identifiers and numbers as words, every other non-space character alone; preprocessor
/// lines as one token each (a definition's `#ifdef` is part of it).
fn tokenize(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            out.push(t.split_whitespace().collect::<Vec<_>>().join(" "));
            continue;
        }
        let mut word = String::new();
        for c in line.chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "/* a file */\nstruct foo {\n\tint a; /* count */\n\tlong b;\n};\n\
        typedef struct {\n\tint x;\n} bar_t;\n\
        union u { int i; struct { short s; } inner; };\n\
        static int f(struct foo *p) { return p->a; }\n";

    #[test]
    fn a_new_member_is_a_changed_definition() {
        let after = BEFORE.replace("\tlong b;\n", "\tlong b;\n\tint added;\n");
        assert_eq!(changed_definitions(BEFORE, &after), vec!["struct foo"]);
    }

    #[test]
    fn comments_spacing_and_code_outside_definitions_are_not() {
        let after = BEFORE
            .replace("/* count */", "/* how many */")
            .replace("\tlong b;", "    long   b ;")
            .replace("return p->a;", "return p->a + 1;");
        assert!(changed_definitions(BEFORE, &after).is_empty());
    }

    #[test]
    fn typedefs_nested_definitions_and_unions_are_named() {
        let after = BEFORE
            .replace("\tint x;\n", "\tlong x;\n")
            .replace("short s;", "int s;");
        assert_eq!(
            changed_definitions(BEFORE, &after),
            vec!["bar_t", "union u"]
        );
    }

    #[test]
    fn a_definition_only_one_side_has_is_not_a_layout_change() {
        let after = format!("{BEFORE}struct fresh {{ int z; }};\n");
        assert!(changed_definitions(BEFORE, &after).is_empty());
        assert!(changed_definitions(&after, BEFORE).is_empty());
    }

    #[test]
    fn comment_markers_inside_strings_are_text() {
        let before = "char *s = \"/* not a comment\";\nstruct k { int a; };\n";
        let after = "char *s = \"/* not a comment\";\nstruct k { int a; int b; };\n";
        assert_eq!(changed_definitions(before, after), vec!["struct k"]);
    }
}
